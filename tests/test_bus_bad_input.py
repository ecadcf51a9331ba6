"""Malformed and hostile frames from authenticated peers.

Each case is sent on a *raw* Curve DEALER whose key is enrolled, so the
frames get past ZAP and reach the broker's decoder exactly as written. For
every case the broker must answer with an ERROR carrying the right
:class:`ErrorCode` (or drop and count the connection, for frames libzmq
itself refuses), count it, raise nothing internally, and keep serving
everyone else: a witness agent's event still reaches its subscriber and a
``status`` request still works.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import msgpack
import pytest
import zmq

from broker.core.envelope import Envelope, ErrorCode, Kind, decode, decode_header, new_id, pack_body, pack_header
from broker.core.errors import ProtocolError
from broker.core.keys import KeyPair, generate

from conftest import next_message, wait_for


# -- a hand-driven peer ----------------------------------------------------------
class RawPeer:
    """A Curve DEALER that sends whatever frames a test builds."""

    def __init__(self, ctx: zmq.Context, bus, keypair: KeyPair):
        self.keypair = keypair
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.sndhwm = self.sock.rcvhwm = 10_000
        self.sock.curve_serverkey = bus.server_key.encode("ascii")
        self.sock.curve_publickey = keypair.public_bytes
        self.sock.curve_secretkey = keypair.secret_bytes
        self.sock.connect(bus.endpoint)

    def send(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames, zmq.NOBLOCK)

    def receive(self, match, timeout_s: float) -> Envelope | None:
        """The next message ``match`` accepts (others skipped), or None after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            if self.sock.poll(int(remaining * 1000) + 1):
                env = decode(self.sock.recv_multipart())
                if match(env):
                    return env
        return None

    def expect(self, match, timeout_s: float = 5.0) -> Envelope:
        """Like :meth:`receive`, but fail the test after ``timeout_s``."""
        env = self.receive(match, timeout_s)
        if env is None:
            pytest.fail(f"no matching message within {timeout_s} s")
        return env

    def error(self, timeout_s: float = 5.0) -> tuple[Envelope, dict]:
        env = self.expect(lambda e: e.kind is Kind.ERROR, timeout_s)
        return env, env.data()

    def hello(self, client_id: str = "", timeout_s: float = 5.0) -> dict | None:
        """Say HELLO; the WELCOME's body, or None if none came within ``timeout_s``."""
        msg_id = new_id()
        self.send([pack_header(Kind.HELLO, msg_id=msg_id), pack_body({"client_id": client_id})])
        env = self.receive(lambda e: e.kind is Kind.WELCOME and e.corr == msg_id, timeout_s)
        return env.data() if env is not None else None

    def close(self) -> None:
        self.sock.close(linger=0)


@pytest.fixture
def raw(bus):
    """Factory of raw peers with enrolled keys (greeted unless ``hello=False``)."""
    ctx = zmq.Context()
    made: list[RawPeer] = []

    def make(client_id: str, role: str = "agent", hello: bool = True, keypair: KeyPair | None = None) -> RawPeer:
        peer = RawPeer(ctx, bus, keypair or bus.enrol(client_id, role))
        made.append(peer)
        if hello:
            welcome = peer.hello(client_id)
            assert welcome is not None and welcome["client_id"] == client_id
        return peer

    yield make
    for peer in made:
        peer.close()
    ctx.term()


@pytest.fixture
def witnesses(bus):
    """An agent and a viewer subscribed to its events: proof the bus still works."""
    agent = bus.peer("witness")
    viewer = bus.peer("witness-viewer", role="viewer")
    viewer.subscribe(["event.witness."])
    return agent, viewer


def assert_still_serving(bus, witnesses) -> None:
    """Another agent's event reaches its subscriber, ``status`` answers, nothing raised."""
    agent, viewer = witnesses
    name = f"alive-{new_id()}"
    agent.publish(Kind.EVENT, name, {"alive": True})
    env = next_message(viewer, lambda e: e.kind is Kind.EVENT and e.topic == f"event.witness.{name}")
    assert env.sender == "witness"
    status = bus.admin.request("status")
    assert status["broker"]["boot_id"] == bus.broker.boot_id
    assert bus.thread.is_alive()
    assert bus.broker.counters["internal_errors"] == 0


def header(*fields) -> bytes:
    """A header frame with exactly these fields (valid or not)."""
    return msgpack.packb(list(fields), use_bin_type=True)


def restart_with(bus, **settings) -> None:
    """Restart the broker on the same port and data dir with changed settings."""
    bus.stop()
    for name, value in settings.items():
        setattr(bus.config, name, value)
    bus.start()


NAN, INF = math.nan, math.inf
EVENT_TOPIC = "event.raw.x"
BIG = 2 * 1024 * 1024  # over the default max_body_bytes (1 MiB), under MAXMSGSIZE (16 MiB)


@dataclass(frozen=True)
class Case:
    role: str  # who sends it: a greeted raw peer with this role, or "ungreeted"
    frames: tuple[bytes, ...]
    code: ErrorCode
    counter: str  # a broker counter this refusal must move


def case(role, frames, code, counter, id):
    return pytest.param(Case(role, tuple(frames), code, counter), id=id)


CASES = [
    # frame count is checked before anything is decoded
    case("agent", [b"\x00\xff\xc1 garbage \x93\xdd"], ErrorCode.BAD_FRAMES, "bad_frames", "garbage-single-frame"),
    case("agent", [pack_header(Kind.EVENT, EVENT_TOPIC)], ErrorCode.BAD_FRAMES, "bad_frames", "one-frame"),
    case("agent", [b"witness", pack_header(Kind.EVENT, EVENT_TOPIC), pack_body({})], ErrorCode.BAD_FRAMES, "bad_frames", "three-frames"),
    case("agent", [b"", b"", b"", b""], ErrorCode.BAD_FRAMES, "bad_frames", "four-empty-frames"),
    # headers that are not msgpack, or not our 7-field array
    case("agent", [b"\xc1\xc1\xc1\xc1", pack_body({})], ErrorCode.BAD_HEADER, "bad_bad_header", "header-not-msgpack"),
    case("agent", [b"EVENT event.raw.x", pack_body({})], ErrorCode.BAD_HEADER, "bad_bad_header", "header-plain-text"),
    case("agent", [b"", pack_body({})], ErrorCode.BAD_HEADER, "bad_bad_header", "header-empty"),
    case("agent", [pack_header(Kind.EVENT, EVENT_TOPIC)[:-4], pack_body({})], ErrorCode.BAD_HEADER, "bad_bad_header", "header-truncated"),
    case("agent", [msgpack.packb({"v": 1, "kind": 4}), pack_body({})], ErrorCode.BAD_HEADER, "bad_bad_header", "header-map"),
    case("agent", [header(1, 4, EVENT_TOPIC), pack_body({})], ErrorCode.BAD_HEADER, "bad_bad_header", "header-3-fields"),
    case("agent", [header(1, 4, EVENT_TOPIC, "id1", 0.0, None, None, "x"), pack_body({})], ErrorCode.BAD_HEADER, "bad_bad_header", "header-8-fields"),
    case("agent", [msgpack.packb("header"), pack_body({})], ErrorCode.BAD_HEADER, "bad_bad_header", "header-string"),
    case("agent", [header(1, 4, 42, "id1", 0.0, None, None), pack_body({})], ErrorCode.BAD_HEADER, "bad_bad_header", "header-int-topic"),
    case("agent", [header(1, 4, EVENT_TOPIC.encode(), "id1", 0.0, None, None), pack_body({})], ErrorCode.BAD_HEADER, "bad_bad_header", "header-bin-topic"),
    case("agent", [header(1, 4, EVENT_TOPIC, "", 0.0, None, None), pack_body({})], ErrorCode.BAD_HEADER, "bad_bad_header", "header-empty-msg-id"),
    case("agent", [header(1, 4, EVENT_TOPIC, "i" * 65, 0.0, None, None), pack_body({})], ErrorCode.BAD_HEADER, "bad_bad_header", "header-long-msg-id"),
    case("agent", [header(1, 4, EVENT_TOPIC, "id1", "now", None, None), pack_body({})], ErrorCode.BAD_HEADER, "bad_bad_header", "header-string-timestamp"),
    case("agent", [header(1, 4, EVENT_TOPIC, "id1", NAN, None, None), pack_body({})], ErrorCode.BAD_HEADER, "bad_bad_header", "header-nan-timestamp"),
    case("agent", [header(1, 4, EVENT_TOPIC, "id1", 0.0, 7, None), pack_body({})], ErrorCode.BAD_HEADER, "bad_bad_header", "header-int-corr"),
    case("agent", [header(1, 4, "event.raw." + "x" * 300, "id1", 0.0, None, None), pack_body({})], ErrorCode.BAD_HEADER, "bad_bad_header", "header-long-topic"),
    case("agent", [header(1, 4, "t" * 2000, "id1", 0.0, None, None), pack_body({})], ErrorCode.TOO_LARGE, "bad_too_large", "header-over-1k"),
    # protocol version and kind
    case("agent", [header(2, 4, EVENT_TOPIC, "id1", 0.0, None, None), pack_body({})], ErrorCode.BAD_VERSION, "bad_bad_version", "version-2"),
    case("agent", [header(0, 4, EVENT_TOPIC, "id1", 0.0, None, None), pack_body({})], ErrorCode.BAD_VERSION, "bad_bad_version", "version-0"),
    case("agent", [header("1", 4, EVENT_TOPIC, "id1", 0.0, None, None), pack_body({})], ErrorCode.BAD_VERSION, "bad_bad_version", "version-string"),
    case("agent", [header(1, 99, EVENT_TOPIC, "id1", 0.0, None, None), pack_body({})], ErrorCode.UNKNOWN_KIND, "bad_unknown_kind", "kind-99"),
    case("agent", [header(1, 0, EVENT_TOPIC, "id1", 0.0, None, None), pack_body({})], ErrorCode.UNKNOWN_KIND, "bad_unknown_kind", "kind-0"),
    case("agent", [header(1, -1, EVENT_TOPIC, "id1", 0.0, None, None), pack_body({})], ErrorCode.UNKNOWN_KIND, "bad_unknown_kind", "kind-negative"),
    case("agent", [header(1, "EVENT", EVENT_TOPIC, "id1", 0.0, None, None), pack_body({})], ErrorCode.BAD_HEADER, "bad_bad_header", "kind-string"),
    case("agent", [header(1, True, EVENT_TOPIC, "id1", 0.0, None, None), pack_body({})], ErrorCode.BAD_HEADER, "bad_bad_header", "kind-bool"),
    # kinds this role may not send, and order
    case("agent", [pack_header(Kind.WELCOME), pack_body({"client_id": "admin", "role": "admin"})], ErrorCode.FORBIDDEN, "refused_role", "agent-sends-welcome"),
    case("agent", [pack_header(Kind.REQUEST), pack_body({"op": "keys.list", "args": {}})], ErrorCode.FORBIDDEN, "refused_role", "agent-sends-request"),
    case("ungreeted", [pack_header(Kind.EVENT, EVENT_TOPIC), pack_body({})], ErrorCode.HELLO_REQUIRED, "hello_required", "event-before-hello"),
    # bodies the broker has to read
    case("agent", [pack_header(Kind.HELLO), b"\xc1\xc1"], ErrorCode.BAD_BODY, "bad_body", "hello-body-not-msgpack"),
    case("agent", [pack_header(Kind.HELLO), pack_body({}) + b"junk"], ErrorCode.BAD_BODY, "bad_body", "hello-body-trailing-bytes"),
    case("agent", [pack_header(Kind.HELLO), pack_body(["client_id", "admin"])], ErrorCode.BAD_BODY, "bad_body", "hello-body-list"),
    case("agent", [pack_header(Kind.HELLO), b"\x81\x01\xa1x"], ErrorCode.BAD_BODY, "bad_body", "hello-body-int-key"),
    case("agent", [pack_header(Kind.HELLO), b"\xdf\xff\xff\xff\xff"], ErrorCode.BAD_BODY, "bad_body", "hello-body-4g-map"),
    case("ungreeted", [pack_header(Kind.HELLO), b"\xc1"], ErrorCode.BAD_BODY, "bad_body", "first-hello-body-not-msgpack"),
    case("viewer", [pack_header(Kind.REQUEST), b"\xc1\xc1"], ErrorCode.BAD_BODY, "bad_body", "request-body-not-msgpack"),
    case("viewer", [pack_header(Kind.REQUEST), pack_body("status")], ErrorCode.BAD_BODY, "bad_body", "request-body-string"),
    case("viewer", [pack_header(Kind.REQUEST), b"\x91" * 100_000], ErrorCode.BAD_BODY, "bad_body", "request-body-nested-100k"),
    case("viewer", [pack_header(Kind.REQUEST), pack_body({"op": "status", "pad": "x" * BIG})], ErrorCode.TOO_LARGE, "bad_body", "request-body-over-max-body-bytes"),
    case("viewer", [pack_header(Kind.REQUEST), pack_body({"op": 5})], ErrorCode.BAD_REQUEST, "security_malformed", "request-op-not-string"),
    case("viewer", [pack_header(Kind.REQUEST), pack_body({"op": "status", "args": [1]})], ErrorCode.BAD_REQUEST, "security_malformed", "request-args-not-map"),
    case("viewer", [pack_header(Kind.REQUEST), pack_body({"op": "shell.exec", "args": {}})], ErrorCode.BAD_REQUEST, "errors_sent", "request-unknown-op"),
    case("viewer", [pack_header(Kind.REQUEST), pack_body({"op": "command.get", "args": {}})], ErrorCode.BAD_REQUEST, "errors_sent", "request-missing-arg"),
    case("viewer", [pack_header(Kind.REQUEST), pack_body({"op": "command.list", "args": {"limit": "all"}})], ErrorCode.BAD_REQUEST, "errors_sent", "request-bad-arg"),
    case("viewer", [pack_header(Kind.SUBSCRIBE), pack_body({"prefixes": "event."})], ErrorCode.BAD_REQUEST, "security_malformed", "subscribe-string"),
    case("viewer", [pack_header(Kind.SUBSCRIBE), pack_body({"prefixes": ["e"] * 101})], ErrorCode.BAD_REQUEST, "security_malformed", "subscribe-101-prefixes"),
    case("viewer", [pack_header(Kind.UNSUBSCRIBE), pack_body({"prefixes": [["event."]]})], ErrorCode.BAD_REQUEST, "security_malformed", "unsubscribe-unhashable"),
    case("viewer", [pack_header(Kind.UNSUBSCRIBE), pack_body({"prefixes": 5})], ErrorCode.BAD_REQUEST, "security_malformed", "unsubscribe-int"),
    case("operator", [pack_header(Kind.COMMAND, "command.witness"), pack_body(["reboot"])], ErrorCode.BAD_BODY, "bad_body", "command-body-list"),
    case("operator", [pack_header(Kind.COMMAND, "command.witness"), pack_body({"name": "reboot"})], ErrorCode.BAD_REQUEST, "security_malformed", "command-no-target"),
    case("operator", [pack_header(Kind.COMMAND, "command.witness"), pack_body({"target": "witness", "name": "x" * 65, "args": {}})], ErrorCode.BAD_REQUEST, "security_malformed", "command-long-name"),
    case("operator", [pack_header(Kind.COMMAND, "command.nobody"), pack_body({"target": "nobody", "name": "ping", "args": {}})], ErrorCode.UNKNOWN_TARGET, "errors_sent", "command-unknown-target"),
    case("operator", [pack_header(Kind.COMMAND, "command.witness", expires=1.0), pack_body({"target": "witness", "name": "ping", "args": {}})], ErrorCode.EXPIRED, "errors_sent", "command-expired"),
    case("operator", [header(1, 7, "command.witness", "cmd-nan", 0.0, None, NAN), pack_body({"target": "witness", "name": "ping", "args": {}})], ErrorCode.BAD_HEADER, "bad_bad_header", "command-nan-expiry"),
    case("operator", [header(1, 7, "command.witness", "cmd-inf", 0.0, None, INF), pack_body({"target": "witness", "name": "ping", "args": {}})], ErrorCode.BAD_HEADER, "bad_bad_header", "command-infinite-expiry"),
    case("agent", [pack_header(Kind.RESULT), pack_body({"ok": True})], ErrorCode.FORBIDDEN, "security_foreign_command", "result-without-command"),
    case("agent", [pack_header(Kind.COMMAND_STATUS, corr="no-such-command"), pack_body({"status": "delivered"})], ErrorCode.FORBIDDEN, "security_foreign_command", "status-unknown-command"),
]


@pytest.mark.parametrize("bad", CASES)
def test_bad_input_gets_an_error_and_the_bus_keeps_serving(bus, raw, witnesses, bad: Case):
    """Tried: one malformed message (see the case id) on a raw Curve DEALER
    whose key is enrolled with ``bad.role``.

    Expected: an ERROR with ``bad.code`` comes back (correlated to the
    message id whenever the header could be decoded), ``bad.counter``
    moves, ``internal_errors`` stays 0, and the broker still routes a
    witness agent's event and answers ``status``.
    """
    greeted = bad.role != "ungreeted"
    peer = raw(f"raw-{bad.role}", "agent" if bad.role == "ungreeted" else bad.role, hello=greeted)
    before = bus.broker.counters[bad.counter]

    peer.send(list(bad.frames))
    env, err = peer.error()

    assert err["code"] == bad.code, err
    try:
        expected_corr = decode_header(bad.frames[0]).msg_id if len(bad.frames) == 2 else None
    except ProtocolError:
        expected_corr = None
    assert env.corr == expected_corr
    assert env.sender == ""
    assert bus.broker.counters[bad.counter] > before
    assert_still_serving(bus, witnesses)


def test_frame_over_max_message_bytes_drops_the_connection(bus, raw):
    """Tried: with ``max_message_bytes`` at 64 KiB (broker restarted with it),
    an enrolled agent sends an EVENT whose body frame is 100 KB, then, on
    its automatically re-established connection, one of 60 KB.

    Expected: libzmq refuses the 100 KB frame by closing that connection
    (``conn_disconnected`` counts it; nothing is routed, no error reply is
    possible); the peer reconnects, is asked to HELLO again, and its 60 KB
    event is routed; the witness agent and ``status`` keep working.
    """
    restart_with(bus, max_message_bytes=64 * 1024)
    witnesses = (bus.peer("witness"), bus.peer("witness-viewer", role="viewer"))
    witnesses[1].subscribe(["event.witness.", "event.big."])
    big = raw("big")
    routed_before = bus.broker.counters["routed"]
    dropped_before = bus.broker.counters["conn_disconnected"]

    big.send([pack_header(Kind.EVENT, "event.big.huge"), b"x" * 100_000])
    wait_for(lambda: bus.broker.counters["conn_disconnected"] > dropped_before, what="dropped connection")
    assert bus.broker.counters["routed"] == routed_before

    # the DEALER reconnects by itself; the new connection must greet again
    wait_for(lambda: big.hello("big", timeout_s=0.5), 5, what="the dropped peer to be welcomed again")
    big.send([pack_header(Kind.EVENT, "event.big.fits"), pack_body({"pad": "y" * 60_000})])
    env = next_message(witnesses[1], lambda e: e.kind is Kind.EVENT and e.topic.startswith("event.big."))
    assert env.topic == "event.big.fits" and env.sender == "big"
    assert_still_serving(bus, witnesses)


def test_bad_input_from_a_pending_key(bus, raw, witnesses):
    """Tried: a key nobody accepted (raw Curve DEALER with a fresh key pair)
    sends a garbage frame, a header that is not msgpack, an unknown kind,
    a HELLO with a broken body and a well-formed EVENT.

    Expected: the same codes as from an enrolled peer for the malformed
    frames (the decoder runs before any role check), NOT_ENROLLED for the
    well-formed EVENT, and the bus keeps serving.
    """
    stranger = raw("stranger", hello=False, keypair=generate())
    sent = [
        ([b"garbage"], ErrorCode.BAD_FRAMES),
        ([b"\xc1", pack_body({})], ErrorCode.BAD_HEADER),
        ([header(1, 99, EVENT_TOPIC, "id1", 0.0, None, None), pack_body({})], ErrorCode.UNKNOWN_KIND),
        ([pack_header(Kind.HELLO), b"\xc1"], ErrorCode.BAD_BODY),
        ([pack_header(Kind.EVENT, "event.stranger.x"), pack_body({})], ErrorCode.NOT_ENROLLED),
    ]
    for frames, code in sent:
        stranger.send(frames)
        assert stranger.error()[1]["code"] == code
    assert_still_serving(bus, witnesses)


def test_deeply_nested_hello_values_are_answered(bus, raw, witnesses):
    """Tried: HELLO bodies whose values (client id, label, version) are
    lists nested 1,000 deep: valid msgpack, within every size limit.

    Expected: the broker welcomes the peer under its registered id (the
    nonsense values are ignored) instead of failing inside the handler
    (before the fix, ``str()`` of the value hit RecursionError: an internal
    error, a traceback in the log and no answer).
    """
    peer = raw("nested", hello=False)
    deep = b"\x91" * 1000 + b"\xc0"
    for field in (b"\xa9client_id", b"\xa5label", b"\xa7version"):
        msg_id = new_id()
        peer.send([pack_header(Kind.HELLO, msg_id=msg_id), b"\x81" + field + deep])
        welcome = peer.expect(lambda e: e.corr == msg_id)
        assert welcome.kind is Kind.WELCOME and welcome.data()["client_id"] == "nested"
    assert_still_serving(bus, witnesses)


def test_a_burst_of_bad_input_is_answered_counted_and_not_logged_in_full(bus, raw, witnesses, caplog):
    """Tried: one enrolled agent sends 2,000 malformed messages (cycling
    through bad frame counts, bad headers, bad versions, unknown kinds and
    broken HELLO bodies) as fast as it can.

    Expected: 2,000 ERROR replies, the matching counters add up to 2,000,
    the log carries only a handful of throttled ``security: malformed``
    lines for this key (not 2,000), and the bus keeps serving.
    """
    peer = raw("noisy")
    bad = [
        [b"junk"],
        [b"\xc1", pack_body({})],
        [header(9, 4, EVENT_TOPIC, "id1", 0.0, None, None), pack_body({})],
        [header(1, 77, EVENT_TOPIC, "id1", 0.0, None, None), pack_body({})],
        [pack_header(Kind.HELLO), b"\xc1"],
    ]
    names = ("bad_frames", "bad_bad_header", "bad_bad_version", "bad_unknown_kind", "bad_body")
    before = sum(bus.broker.counters[n] for n in names)
    for i in range(2000):
        peer.send(bad[i % len(bad)])
    for _ in range(2000):
        peer.error()
    assert sum(bus.broker.counters[n] for n in names) - before == 2000
    malformed_lines = [r for r in caplog.records if "security: malformed" in r.getMessage() and "noisy" in r.getMessage()]
    assert 1 <= len(malformed_lines) <= 10
    assert_still_serving(bus, witnesses)
