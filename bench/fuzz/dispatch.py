"""Fuzz target (a): the broker's dispatch, with valid headers and hostile bodies.

A real :class:`~broker.server.Broker` runs on a thread (``serve_in_thread``)
on a random loopback port, with a real :class:`Persister` on a real
:class:`BusClient` providing ``store``. The persister is stepped on the
caller's thread, so whatever it raises surfaces here with the input that
caused it. One raw Curve peer per role (agent, viewer, operator, admin,
service, and a pending key) sends what a :class:`DispatchCase` says: a valid
header of any kind with a hostile topic, correlation id and expiry, and a
hostile body (or undecodable bytes and msgpack bombs).

After each case (:meth:`DispatchTarget.run`) these must hold, else a
:class:`~bench.fuzz.findings.Finding` is raised:

* the sending peer's next request is answered (the broker read past it);
* a ``store.*`` request is answered, by a reply or an error;
* the broker thread is alive and answers an admin's ``status`` within
  ``timeout_s``; the persister answers ``store.stats`` and raised nothing;
* ``internal_errors`` did not grow (INTERNAL is a bug, never an answer to
  peer input);
* the broker's per-peer state stays bounded (peers, forwarded requests,
  subscriptions).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import zmq

from bench.fuzz import hostile
from bench.fuzz.findings import Finding, from_exception
from bench.fuzz.hostile import Chooser, mapping, pick, value
from bench.fuzz.peers import RawPeer
from broker.core import keys as keyfiles
from broker.core.client import BusClient
from broker.core.config import BrokerConfig, ClientConfig, DataDir, Timing
from broker.core.envelope import Kind, pack_body, pack_header
from broker.server.fanout import MAX_PREFIXES
from broker.persister.crypto import SecurityManager
from broker.persister.service import DURABLE_PREFIXES, Persister, PersisterConfig
from broker.persister.store import Store
from broker.core.permissions import REQUEST_OPS
from broker.server.registry import KeyRegistry
from broker.server.loop import serve_in_thread

ROLES = ("agent", "viewer", "operator", "admin", "service", "pending")
ENROL_TOKEN = "fuzz-enrol-token"
OPS = (*REQUEST_OPS, "nope", "", "store.", "store.nope", "keys.")
#: operations drawn for a random request: the ones with arguments more often
OP_CHOICES = (*OPS, *["store.query"] * 6, *["store.capture", "store.stats", "command.list", "command.get"] * 2)
#: the store query arguments, by op
ARG_FIELDS = ("kind", "client_id", "since", "until", "limit", "before_id", "order", "text", "include_deleted",
              "thumbnails", "id", "purpose", "group_by", "target", "names", "upto", "public_key", "role", "label")
TOPICS = ("", "{me}", "event.{me}", "event.{me}.x", "event.{me}.chat", "event.{me}.capture", "event.{me}.sysinfo",
          "event.{me}.fileop", "event.{agent}.x", "event.", "event", "log.{me}", "log.{me}.x", "security.{me}",
          "security.broker", "frame.{me}", "frame.{me}.screen", "frame.{agent}.s", "audit.{me}", "audit.{agent}",
          "presence.{agent}", "ack.{agent}", "ack.", "ack.{me}", "command.{agent}", "store.query",
          "event.{me}." + "x" * 150, "event.{me}.\x00", "event.{me}.%")
COMMAND_NAMES = ("ping", "input", "thumbnail", "capture", "files.download", "files.list", "chat.send", "power.reboot",
                 "", "x" * 65)
#: every kind, those with the most handling behind them more often
KIND_CHOICES = (*Kind, *[Kind.REQUEST] * 8, *[Kind.COMMAND, Kind.EVENT, Kind.HELLO, Kind.SUBSCRIBE, Kind.BATCH,
                                               Kind.RESULT, Kind.COMMAND_STATUS] * 2)
CORRS = (None, None, "{cmd}", "nope", "", "x" * 64)
EXPIRIES = ("none", "past", "soon", "far")
BOMBS = (b"\xdb\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff", b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff",
         b"\x91" * 2000, b"\x81\xa1k" * 2000, b"", b"\xc1", b"\xd4\x01\x00", b"\x93\x01\x02")


@dataclass(frozen=True)
class Raw:
    """A body sent as these bytes, whatever they are."""

    data: bytes


@dataclass(frozen=True)
class Packed:
    """A value packed into bytes inside another value (a batch record's body)."""

    value: Any


@dataclass(frozen=True)
class DispatchCase:
    """One message: who sends it, its header fields and its body."""

    role: str
    kind: Kind
    topic: str = ""
    body: Any = None
    corr: str | None = None
    expires: str = "none"


# -- generation ---------------------------------------------------------------------
def dispatch_case(ch: Chooser, role: str | None = None, kind: Kind | None = None) -> DispatchCase:
    """A case from ``ch``: any role and kind (or these), a body shaped for that kind (mostly)."""
    role, kind = role or pick(ch, ROLES), kind or pick(ch, KIND_CHOICES)
    return DispatchCase(role, kind, pick(ch, TOPICS) if ch.int_in(0, 7) else ch.text(40), body_for(ch, kind),
                        pick(ch, CORRS), pick(ch, EXPIRIES))


def body_for(ch: Chooser, kind: Kind) -> Any:
    way = ch.int_in(0, 9)
    if way == 0:
        return Raw(pick(ch, BOMBS) if ch.int_in(0, 1) else ch.blob(64))
    if way == 1:
        return value(ch)
    if kind is Kind.REQUEST:
        return request_body(ch)
    if kind is Kind.COMMAND:
        return {"target": pick(ch, ("{agent}", "{agent}", "{viewer}", "nope")), "name": pick(ch, COMMAND_NAMES),
                "args": mapping(ch, 1, ("reason", "via", "caller", "path", "text"))}
    if kind in (Kind.SUBSCRIBE, Kind.UNSUBSCRIBE):
        return {"prefixes": [pick(ch, TOPICS) if ch.int_in(0, 3) else hostile.scalar(ch) for _ in range(ch.int_in(0, 4))]}
    if kind is Kind.HELLO:
        return mapping(ch, 1, ("client_id", "label", "hostname", "version", "os", "user", "token", "provides", "batches"))
    if kind is Kind.BATCH:
        return batch_body(ch)
    if kind is Kind.ACK:
        return {"ids": [hostile.scalar(ch) for _ in range(ch.int_in(0, 3))]}
    return mapping(ch, 1, hostile.RECORD_FIELDS, 6)


def request_body(ch: Chooser, op: str | None = None) -> dict:
    """``{"op", "args"}``: mostly a history kind and a few hostile arguments."""
    args = {"kind": pick(ch, hostile.KINDS)} if ch.int_in(0, 1) else {}
    args.update(mapping(ch, 1, ARG_FIELDS, 3))
    return {"op": op or pick(ch, OP_CHOICES), "args": args}


def batch_body(ch: Chooser) -> list:
    """``[version, [[kind, name, msg_id, ts, body], ...]]`` with hostile parts."""
    records = []
    for _ in range(ch.int_in(0, 3)):
        kind = pick(ch, (4, 5, 6, 4, 1, 18, "4"))
        name = pick(ch, hostile.EVENT_NAMES) if ch.int_in(0, 3) else hostile.scalar(ch)
        ts = pick(ch, (1.0, 0, -1.0, 1e308, "x")) if ch.int_in(0, 3) == 0 else time.time()
        body = Packed(mapping(ch, 1, hostile.RECORD_FIELDS, 6)) if ch.int_in(0, 4) else hostile.scalar(ch)
        records.append([kind, name, f"fz-{ch.int_in(0, 50)}", ts, body])
    return [pick(ch, (1, 1, 1, 2, None)), records]


def encode(body: Any, names: dict[str, str]) -> bytes:
    """The body's bytes, markers expanded."""
    if isinstance(body, Raw):
        return body.data
    return pack_body(_packed(hostile.materialise(body, names), names))


def _packed(v: Any, names: dict[str, str]) -> Any:
    if isinstance(v, list):
        return [_packed(x, names) for x in v] if len(v) < 100 else v
    if isinstance(v, Packed):
        return pack_body(hostile.materialise(v.value, names))
    return v


def _expiry(label: str) -> float | None:
    return {"none": None, "past": 1.0, "soon": time.time() + 60, "far": 1e300}[label]


class _Tracebacks(logging.Handler):
    """Keeps the last exception the broker logged (its INTERNAL answers)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.last: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.last = record.exc_info[1]


# -- the target ---------------------------------------------------------------------
class DispatchTarget:
    """A broker + persister + one raw peer per role under ``root``; see the module doc."""

    def __init__(self, root: Path, timeout_s: float = 5.0):
        self.root, self.timeout_s = root, timeout_s
        self.generation = 0
        self.tracebacks = _Tracebacks()
        server_log = logging.getLogger("broker.server.loop")
        server_log.addHandler(self.tracebacks)
        if server_log.getEffectiveLevel() > logging.ERROR:  # the handler must see log.exception
            server_log.setLevel(logging.ERROR)
        self.broker = None
        self._start()

    # -- life cycle
    def _start(self) -> None:
        self.generation += 1
        data = DataDir(self.root / f"server-{self.generation}").ensure()
        control_keys, self.ids = keyfiles.generate(), {}
        registry = KeyRegistry(data.broker_db)
        registry.add(control_keys.public, f"ctl-{control_keys.public[:12]}", "admin")
        pairs = {role: keyfiles.generate() for role in ROLES}
        for role in ROLES[:-1]:
            self.ids[role] = f"fz-{role}-{self.generation}"
            registry.add(pairs[role].public, self.ids[role] if role != "service" else "fz-service", role)
        self.ids["service"], self.ids["pending"] = "fz-service", f"fz-pending-{self.generation}"
        persister_keys = keyfiles.generate()
        registry.add(persister_keys.public, "persister", "service")
        registry.close()
        timing = Timing(heartbeat_s=1.0, peer_timeout_s=3600.0, broker_timeout_s=3600.0, request_timeout_s=self.timeout_s)
        self.config = BrokerConfig(data, bind="tcp://127.0.0.1:0", timing=timing, enrol_token=ENROL_TOKEN)
        self.broker, self.thread = serve_in_thread(self.config)
        server_key = keyfiles.load(data.keys, "broker").public
        self.ctx = zmq.Context()
        self.control = RawPeer(self.ctx, self.broker.endpoint, server_key, control_keys, "ctl", "admin")
        self.peers = {role: RawPeer(self.ctx, self.broker.endpoint, server_key, pairs[role], self.ids[role], role)
                      for role in ROLES}
        for peer in [self.control, *self.peers.values()]:
            peer.send_kind(Kind.HELLO, {"client_id": peer.client_id})
        self.store = Store(data.root / "store.db", SecurityManager(data.root / "store-keys.json"))
        client = BusClient(ClientConfig(server=self.broker.endpoint, server_key=server_key, timing=timing),
                           persister_keys, hello={"client_id": "persister", "provides": ["store"]}, context=self.ctx)
        client.hello_info["batches"] = True
        client.connect()
        client.wait_ready(self.timeout_s)
        client.subscribe(DURABLE_PREFIXES)
        self.persister_client = client
        self.persister = Persister(client, self.store, PersisterConfig(commit_latency_s=0.0, retry_s=0.1))
        self.internal_errors = 0
        self._control_ok()

    def close(self) -> None:
        if self.broker is None:
            return
        for peer in [self.control, *self.peers.values()]:
            peer.close()
        self.persister_client.close()
        self.store.close()
        self.broker.stop()
        self.thread.join(10)
        self.ctx.term()
        self.broker = None
        logging.getLogger("broker.server.loop").removeHandler(self.tracebacks)

    def restart(self) -> None:
        """A fresh broker, persister and peers (after something broke)."""
        self.close()
        logging.getLogger("broker.server.loop").addHandler(self.tracebacks)
        self._start()

    # -- one case
    def names(self, peer: RawPeer) -> dict[str, str]:
        out = {f"{{{role}}}": p.client_id for role, p in self.peers.items()}
        out["{me}"] = peer.client_id
        out["{cmd}"] = self.peers["agent"].last_command or "none"
        return out

    def run(self, case: DispatchCase) -> None:
        """Send ``case`` and check every invariant; raises :class:`Finding`."""
        if not self.thread.is_alive():
            self.restart()
        peer = self.peers[case.role]
        names = self.names(peer)
        corr = names.get(case.corr, case.corr) if case.corr else None
        msg_id = f"fz{time.time_ns():x}"
        header = pack_header(case.kind, hostile.materialise(case.topic, names)[:200], msg_id, corr, _expiry(case.expires))
        try:
            body = encode(case.body, names)
        except (ValueError, TypeError, OverflowError, msgpack.PackException):
            return  # not something a peer could send (msgpack cannot carry it)
        self.tracebacks.last = None
        peer.send([header, body])
        self._after(case, peer, msg_id)

    def _after(self, case: DispatchCase, peer: RawPeer, msg_id: str) -> None:
        sync = peer.send_kind(Kind.REQUEST, {"op": "status", "args": {}})
        if peer.answer(sync, self.timeout_s) is None:
            self._broken(f"no answer to {case.role}'s next request")
        self._reclaim_store()
        if case.kind is Kind.REQUEST and isinstance(case.body, dict) and str(case.body.get("op", "")).startswith("store."):
            if peer.answer(msg_id, self.timeout_s, self.pump) is None:
                raise Finding("a store request got no answer", repr(case))
        self._control_ok()
        for p in self.peers.values():
            p.drain()
        self._check_internal(case)
        self._check_bounds()

    def _reclaim_store(self) -> None:
        """If a hostile service HELLO took over ``store``, the persister says HELLO again."""
        rid = self.broker.providers.get("store")
        owner = self.broker.peers.get(rid) if rid is not None else None
        if owner is None or owner.client_id != "persister":
            self.persister_client.send(Kind.HELLO, data=self.persister_client.hello_info)
            self.persister_client.request("status", timeout_s=self.timeout_s)

    def pump(self, force: bool = False) -> None:
        """One persister pass if it has messages waiting (or ``force``); what it
        raises is a finding (the persister is restarted on the same store, as
        its supervisor would)."""
        client = self.persister_client
        if not force and not client._backlog and not client.socket.poll(10):
            return
        try:
            self.persister.step()
        except Exception as exc:
            self.persister = Persister(self.persister_client, self.store, self.persister.config)
            raise from_exception("the persister raised", exc) from exc

    def _control_ok(self) -> None:
        """``status`` answers, and ``store.stats`` after everything sent so far is stored."""
        status = self.control.send_kind(Kind.REQUEST, {"op": "status", "args": {}})
        stats = self.control.send_kind(Kind.REQUEST, {"op": "store.stats", "args": {}})
        if self.control.answer(status, self.timeout_s) is None:
            self._broken("the broker did not answer status")
        answer = self.control.answer(stats, self.timeout_s, self.pump)
        if answer is None or answer.kind is not Kind.REPLY:
            raise Finding("the persister did not answer store.stats", repr(answer and answer.data()))
        if self.persister.batch:
            self.pump(force=True)

    def _broken(self, what: str) -> None:
        alive = self.thread.is_alive()
        self.restart()
        raise Finding(what, f"broker thread alive: {alive}")

    def _check_internal(self, case: DispatchCase) -> None:
        count = self.broker.counters["internal_errors"]
        if count == self.internal_errors:
            return
        self.internal_errors = count
        # the broker logs 5 tracebacks a minute; forget that this one was logged, so the next is too
        self.broker._throttle._state.pop("internal_error", None)
        exc = self.tracebacks.last
        if exc is not None:
            raise from_exception("the broker answered INTERNAL", exc)
        op = case.body.get("op") if isinstance(case.body, dict) else None
        raise Finding("the broker answered INTERNAL", repr(case),
                      f"the broker answered INTERNAL: {case.role} {case.kind.name} {op or ''} (traceback throttled)")

    def _check_bounds(self) -> None:
        b = self.broker
        if len(b.peers) > 64 or len(b.forwarded) > 10_000 or any(len(p.prefixes) > MAX_PREFIXES for p in list(b.peers.values())):
            raise Finding("broker state grew past its bounds", f"peers {len(b.peers)}, forwarded {len(b.forwarded)}")
        for role, peer in self.peers.items():
            record = b.registry.get(peer.keypair.public)
            state, wanted = ("pending", None) if role == "pending" else ("accepted", role)
            if record is None or record.state != state or (wanted and record.role != wanted):
                self.restart()  # an admin case revoked or re-roled one of ours: start clean
                return

