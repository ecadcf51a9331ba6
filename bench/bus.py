"""Bus benchmark: the EMS broker against a raw pyzmq ceiling, in one run.

Every server and every load-generating peer is its own process on
loopback (random ports, CurveZMQ on everywhere), so the broker never
shares a GIL with the load generator:

  EMS broker     broker.server.Broker from BrokerConfig, in a temporary data
                 dir whose key registry is filled before it starts
  raw forwarder  a minimal Python loop on a plain pyzmq Curve ROUTER (same
                 HWMs, batch size and pyzmq calls as the broker: plain int
                 flags, Frame.more) that forwards [identity, header, body] to
                 one consumer DEALER, or relays a reply back to its
                 requester: no EMS logic at all
  sugar forwarder the same loop through pyzmq's recv_multipart /
                 send_multipart helpers: how much those cost (~35 %)
  raw echo       a Curve ROUTER that sends every message straight back
  zmq.proxy      libzmq's C proxy (ROUTER in, DEALER out): no Python per
                 message; shows what the load generator itself can reach
  publishers, consumer, agent, operator: one process each

Measured (200-byte event bodies unless --body-bytes):

1. Routed events/s. N publishers send EVENTs as fast as their sockets take
   them (EMS: enrolled agent BusClients calling client.send); one consumer
   (EMS: a viewer subscribed to "event.") counts what arrives. Rate =
   events received / (go -> last event). Lost = sent - received, beside the
   broker's dropped_* counters. EMS and raw trials alternate; the median
   trial is reported, with the server's CPU time per event.
2. Command round trip. An operator BusClient runs send_command(agent,
   "ping") + wait_result sequentially against an agent process (a minimal
   BusClient loop answering COMMAND_STATUS delivered + RESULT, or the real
   agent.runner.Agent with --real-agent), after a warm-up. Beside it: the
   raw relay echo (DEALER -> forwarder -> DEALER and back: the same two
   hops) and the raw direct ROUTER/DEALER echo.

Progress goes to stderr, the table to stdout, --json PATH writes every
figure (latency samples included) for a report generator.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing as mp
import os
import platform
import pstats
import queue
import resource
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):  # `python bench/bus.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgpack  # noqa: E402
import zmq  # noqa: E402

from bench.latency import round_trips  # noqa: E402
from bench.stack import stop_child  # noqa: E402
from broker.core import keys as keyfiles  # noqa: E402
from broker.core.client import BusClient  # noqa: E402
from broker.core.config import BrokerConfig, ClientConfig, DataDir, RateLimit  # noqa: E402
from broker.core.envelope import Kind, decode, pack_header  # noqa: E402
from broker.core.errors import EmsError, SendError  # noqa: E402
from broker.server.registry import KeyRegistry  # noqa: E402

#: the targets from the issue
TARGET_THROUGHPUT_RATIO = 0.50
TARGET_COMMAND_P99_MS = 1.0

AGENT_ID = "bench-agent"
OPERATOR_ID = "bench-operator"
VIEWER_ID = "bench-viewer"
ADMIN_ID = "bench-admin"
EVENT_KIND = int(Kind.EVENT)
#: the consumer fully decodes one message in this many (integrity check)
DECODE_SAMPLE_EVERY = 997

_T0 = time.monotonic()


def progress(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------
@dataclass
class Settings:
    publishers: int = 2
    events: int = 100_000  # per publisher, per trial
    trials: int = 3  # throughput trials per side (EMS and raw), alternated
    round_trips: int = 1000
    warmup: int = 100
    body_bytes: int = 200
    trial_timeout_s: float = 30.0
    real_agent: bool = False
    profile_path: str = ""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Settings":
        s = cls(trial_timeout_s=15.0, events=50_000, trials=1, round_trips=200, warmup=50) if args.quick else cls()
        for name in ("publishers", "events", "trials", "round_trips", "warmup", "body_bytes"):
            value = getattr(args, name)
            if value is not None:
                setattr(s, name, value)
        s.real_agent = args.real_agent
        s.profile_path = args.profile_broker or ""
        # bounded, but never shorter than a slow broker (10k events/s) needs
        s.trial_timeout_s = max(s.trial_timeout_s, 10 + s.publishers * s.events / 10_000)
        return s


# ---------------------------------------------------------------------------
# small process helpers
# ---------------------------------------------------------------------------
class StopFlag:
    """Set by SIGTERM (children are stopped by pid) and checked by loops."""

    def __init__(self) -> None:
        self.set = False
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us

    def _on_term(self, *_: Any) -> None:
        self.set = True


def _child_setup() -> StopFlag:
    return StopFlag()


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name of a live process (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            raw = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / tick
        key = "python" if tid == str(pid) else name
        out[key] = out.get(key, 0.0) + cpu
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after.get(k, 0.0) - before.get(k, 0.0), 3) for k in after}


class Inbox:
    """Messages children put on one queue, picked out by (tag, name).

    ``crashed`` names a child that died with an error, so a broken run
    fails at once instead of waiting out its timeout.
    """

    def __init__(self, q: mp.Queue, crashed: Callable[[], str] = lambda: ""):
        self.q = q
        self.crashed = crashed
        self._held: dict[tuple[str, str], Any] = {}

    def get(self, tag: str, name: str, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while (tag, name) not in self._held:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"no {tag!r} from {name} within {timeout_s:.0f} s")
            try:
                t, n, payload = self.q.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                dead = self.crashed()
                if dead:
                    raise RuntimeError(f"{dead} while waiting for {tag!r} from {name} (its traceback is above)") from None
                continue
            self._held[(t, n)] = payload
        return self._held.pop((tag, name))


class Procs:
    """Every child process we started; stopped by pid, never by name."""

    def __init__(self, ctx: mp.context.BaseContext):
        self.ctx = ctx
        self.live: list[mp.Process] = []

    def crashed(self) -> str:
        for proc in self.live:
            if proc.exitcode not in (None, 0, -signal.SIGTERM):
                return f"{proc.name} (pid {proc.pid}) exited with code {proc.exitcode}"
        return ""

    def start(self, name: str, target: Callable, *args: Any) -> mp.Process:
        proc = self.ctx.Process(target=target, args=args, name=name, daemon=True)
        proc.start()
        self.live.append(proc)
        return proc

    def stop(self, proc: mp.Process, timeout_s: float = 10.0) -> None:
        stop_child(proc, timeout_s, say=progress)
        if proc in self.live:
            self.live.remove(proc)

    def stop_all(self) -> None:
        for proc in list(reversed(self.live)):
            self.stop(proc, 5)


# ---------------------------------------------------------------------------
# children: the EMS side
# ---------------------------------------------------------------------------
def broker_main(root: str, out: mp.Queue, profile_path: str) -> None:
    """The EMS broker, alone in its process; SIGTERM stops it."""
    from broker.server.loop import Broker

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # no per-agent rate limit: this measures routing capacity with a few publishers flooding at full speed
    broker = Broker(BrokerConfig(DataDir(Path(root)), bind="tcp://127.0.0.1:0", rate_limit=RateLimit.off()))
    signal.signal(signal.SIGTERM, lambda *_: broker.stop())

    def announce() -> None:
        out.put(("ready", "broker", broker.endpoint if broker.wait_ready(10) else ""))

    threading.Thread(target=announce, daemon=True).start()
    if not profile_path:
        broker.run()
        return
    prof = cProfile.Profile(time.thread_time)  # CPU time: robust to other load on the machine
    prof.enable()
    try:
        broker.run()
    finally:
        prof.disable()
        prof.dump_stats(profile_path)


def _bus_client(endpoint: str, server_key: str, pair: keyfiles.KeyPair, client_id: str) -> BusClient:
    client = BusClient(ClientConfig(server=endpoint, server_key=server_key), pair, hello={"client_id": client_id})
    client.connect()
    client.wait_ready(10)
    return client


def _publish_loop(send: Callable[[], None], n: int, go: Any, timeout_s: float) -> dict:
    """Send ``n`` messages as fast as the socket takes them; back off on a full queue."""
    if not go.wait(timeout_s):
        return {"sent": 0, "backoffs": 0, "elapsed_s": 0.0, "cpu_s": 0.0, "error": "no go signal"}
    cpu0, t0 = _cpu_s(), time.monotonic()
    deadline = t0 + timeout_s
    sent = backoffs = 0
    while sent < n:
        try:
            send()
            sent += 1
        except (SendError, zmq.Again):
            backoffs += 1
            if time.monotonic() > deadline:
                break
            time.sleep(0.0002)
    elapsed = time.monotonic() - t0
    return {"sent": sent, "backoffs": backoffs, "elapsed_s": elapsed, "cpu_s": _cpu_s() - cpu0}


def ems_publisher_main(name: str, endpoint: str, server_key: str, pair: keyfiles.KeyPair, n: int, body_bytes: int,
                       go: Any, finish: Any, out: mp.Queue, timeout_s: float) -> None:
    """An enrolled agent BusClient publishing EVENTs in a tight loop."""
    _child_setup()
    client = _bus_client(endpoint, server_key, pair, name)
    body = os.urandom(body_bytes)
    topic = f"event.{client.client_id}.bench"
    send = client.send
    out.put(("ready", name, None))
    result = _publish_loop(lambda: send(Kind.EVENT, topic, body=body), n, go, timeout_s)
    out.put(("result", name, result))
    finish.wait(timeout_s + 30)  # linger 0: keep the socket until the consumer is done
    client.close()


def _count_events(sock: zmq.Socket, expected: int, go: Any, t_go: Any, done: Any, timeout_s: float, idle_s: float = 0.5) -> dict:
    """Count EVENT messages ``[sender, header, body]`` until all arrived or the flow stops.

    The kind is read from the header's third byte (fixarray, version,
    kind); one message in ``DECODE_SAMPLE_EVERY`` is fully decoded with
    ``broker.core.envelope.decode`` as an integrity check. The same function
    serves the EMS and the raw consumer, so both do identical work.
    """
    go.wait(timeout_s)
    recv = sock.recv_multipart
    count = other = bad = 0
    first = 0.0
    last = time.monotonic()
    deadline = last + timeout_s
    cpu0 = _cpu_s()
    while count < expected:
        try:
            frames = recv(zmq.NOBLOCK)
        except zmq.Again:
            now = time.monotonic()
            if now > deadline or (done.is_set() and now - last > idle_s):
                break
            sock.poll(20)
            continue
        last = time.monotonic()
        if len(frames) == 3 and frames[1][2] == EVENT_KIND:
            count += 1
            if count == 1:
                first = last
            if count % DECODE_SAMPLE_EVERY == 1:
                try:
                    env = decode(frames)
                    if env.kind is not Kind.EVENT or len(env.body) == 0:
                        bad += 1
                except EmsError:
                    bad += 1
        else:
            other += 1
    elapsed = last - t_go.value if count else 0.0
    return {"received": count, "other": other, "bad": bad, "elapsed_s": elapsed, "cpu_s": _cpu_s() - cpu0,
            "first_s": first - t_go.value if count else 0.0}


def ems_consumer_main(endpoint: str, server_key: str, pair: keyfiles.KeyPair, expected: int, go: Any, t_go: Any,
                      done: Any, out: mp.Queue, timeout_s: float) -> None:
    """A viewer: BusClient for HELLO and SUBSCRIBE, then counts on its socket."""
    _child_setup()
    client = _bus_client(endpoint, server_key, pair, VIEWER_ID)
    client.subscribe(["event."])
    out.put(("ready", "consumer", None))
    result = _count_events(client.socket, expected, go, t_go, done, timeout_s)
    out.put(("result", "consumer", result))
    client.close()


def ems_agent_main(endpoint: str, server_key: str, pair: keyfiles.KeyPair, out: mp.Queue) -> None:
    """A minimal agent loop: COMMAND -> COMMAND_STATUS delivered + RESULT ok."""
    stop = _child_setup()
    client = _bus_client(endpoint, server_key, pair, AGENT_ID)
    out.put(("ready", "agent", None))
    while not stop.set:
        env = client.poll(0.1)
        if env is None or env.kind is not Kind.COMMAND:
            continue
        client.send(Kind.COMMAND_STATUS, data={"status": "delivered"}, corr=env.msg_id)
        client.send(Kind.RESULT, data={"ok": True, "output": {"pong": True, "agent_time": time.time()}}, corr=env.msg_id)
    client.close()


def real_agent_main(endpoint: str, server_key: str, agent_dir: str, out: mp.Queue) -> None:
    """The real ``agent.runner.Agent`` (its SQLite at-most-once record included)."""
    import logging

    from agent.runner import Agent, AgentConfig

    _child_setup()
    logging.getLogger("agent").setLevel(logging.ERROR)  # no start-up NOTICE on the bench's stderr
    agent = Agent(AgentConfig(Path(agent_dir), ClientConfig(server=endpoint, server_key=server_key),
                              client_id=AGENT_ID, sysinfo_interval_s=3600.0))
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    out.put(("ready", "agent", None))
    agent.run()


def ems_operator(endpoint: str, server_key: str, pair: keyfiles.KeyPair, timeout_s: float = 10.0) -> BusClient:
    """A child's operator client, returned once the broker has the agent online (so no round trip waits in a queue)."""
    client = _bus_client(endpoint, server_key, pair, OPERATOR_ID)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if {a["client_id"]: a["state"] for a in client.request("agents")}.get(AGENT_ID) == "online":
            break
        time.sleep(0.05)
    return client


def ping_trip(client: BusClient) -> Callable[[int], bool]:
    """One ``send_command(agent, "ping")`` + ``wait_result`` round trip; True if it came back done."""

    def trip(i: int) -> bool:
        try:
            status = client.send_command(AGENT_ID, "ping", {"echo": i}, timeout_s=5)
            return client.wait_result(status["id"], 5).get("status") == "done"
        except EmsError:
            return False

    return trip


def ems_operator_main(endpoint: str, server_key: str, pair: keyfiles.KeyPair, n: int, warmup: int, out: mp.Queue) -> None:
    """Sequential ``send_command(agent, "ping")`` + ``wait_result`` round trips."""
    _child_setup()
    client = ems_operator(endpoint, server_key, pair)
    cpu0 = [0.0]

    def mark(i: int) -> None:
        if i == warmup:
            cpu0[0] = _cpu_s()

    trips = round_trips(ping_trip(client), n, warmup, before=mark)
    out.put(("result", "operator", trips.result() | {"cpu_s": _cpu_s() - cpu0[0]}))
    client.close()


# ---------------------------------------------------------------------------
# children: the raw pyzmq side
# ---------------------------------------------------------------------------
def _curve_client(ctx: zmq.Context, endpoint: str, server_public: bytes | None, hwm: int = 100_000) -> zmq.Socket:
    """A DEALER for the raw servers; ``server_public=None`` means no Curve (bench/peers.py's curve-off trial only)."""
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    if server_public is not None:
        public, secret = zmq.curve_keypair()
        sock.curve_serverkey = server_public
        sock.curve_publickey = public
        sock.curve_secretkey = secret
    sock.sndhwm = sock.rcvhwm = hwm
    sock.connect(endpoint)
    return sock


def _handshake(sock: zmq.Socket, what: bytes, timeout_s: float = 10.0) -> None:
    sock.send(what)
    if not sock.poll(int(timeout_s * 1000)):
        raise RuntimeError(f"raw server did not answer {what!r}")
    sock.recv_multipart()


_NOBLOCK = int(zmq.NOBLOCK)
_MORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)


def _lean_multipart(sock: zmq.Socket) -> tuple[Callable, Callable]:
    """recv/send of whole messages without pyzmq's Python-level multipart sugar.

    ``Socket.send_multipart`` ORs ``zmq.SNDMORE | flags`` (an ``enum.Flag``
    operation, ~0.7 us) per frame and ``recv_multipart`` asks
    ``getsockopt(RCVMORE)`` (enum conversion) per frame; plain int flags and
    ``Frame.more`` avoid both. Same semantics otherwise (NOBLOCK, copy=False).
    """
    recv, send = sock.recv, sock.send

    def recv_parts(_flags: int = 0, copy: bool = False) -> list:
        part = recv(_NOBLOCK, copy=False)
        parts = [part]
        while part.more:
            part = recv(_NOBLOCK, copy=False)
            parts.append(part)
        return parts

    def send_parts(parts: list, _flags: int = 0, copy: bool = False) -> None:
        for part in parts[:-1]:
            send(part, _MORE_NOBLOCK, copy=False)
        send(parts[-1], _NOBLOCK, copy=False)

    return recv_parts, send_parts


def raw_forwarder_main(server_public: bytes | None, server_secret: bytes | None, sndhwm: int, rcvhwm: int, batch: int, out: mp.Queue,
                       name: str = "forwarder", lean: bool = False) -> None:
    """A minimal Python forwarding loop on a Curve ROUTER (no EMS logic).

    One-frame messages are control: ``consumer`` registers the sender as the
    consumer, ``stats`` returns the counters, anything else is answered
    ``ok``. Other messages from a peer go to the consumer as ``[identity,
    header, body]``; messages from the consumer are ``[destination, ...]``
    and are relayed to that destination (for the relay echo). With ``lean``
    it makes the same pyzmq calls as the broker (plain int flags,
    ``Frame.more``); without, it goes through ``recv_multipart`` /
    ``send_multipart``.
    """
    stop = _child_setup()
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    if server_public is not None:  # None: no Curve (bench/peers.py's curve-off trial only)
        router.curve_server = True
        router.curve_publickey = server_public
        router.curve_secretkey = server_secret
    router.router_mandatory = 1
    router.sndhwm = sndhwm
    router.rcvhwm = rcvhwm
    router.bind("tcp://127.0.0.1:*")
    out.put(("ready", name, router.getsockopt_string(zmq.LAST_ENDPOINT)))
    consumer = b""
    counters = {"forwarded": 0, "dropped_hwm": 0, "dropped_unroutable": 0}
    recv, send = _lean_multipart(router) if lean else (router.recv_multipart, router.send_multipart)
    while not stop.set:
        if not router.poll(100):
            continue
        for _ in range(batch):
            try:
                frames = recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            rid = frames[0].bytes
            try:
                if len(frames) == 2:
                    op = frames[1].bytes
                    if op == b"consumer":
                        consumer = rid
                    send([rid, msgpack.packb(counters) if op == b"stats" else b"ok"], zmq.NOBLOCK)
                elif rid == consumer:
                    send(frames[1:], zmq.NOBLOCK, copy=False)
                else:
                    send([consumer, frames[0], frames[1], frames[2]], zmq.NOBLOCK, copy=False)
                    counters["forwarded"] += 1
            except zmq.Again:
                counters["dropped_hwm"] += 1
            except zmq.ZMQError:
                counters["dropped_unroutable"] += 1
    router.close(0)
    ctx.term()


def raw_echo_server_main(server_public: bytes, server_secret: bytes, out: mp.Queue) -> None:
    """A Curve ROUTER that sends every message straight back."""
    stop = _child_setup()
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    router.curve_server = True
    router.curve_publickey = server_public
    router.curve_secretkey = server_secret
    router.bind("tcp://127.0.0.1:*")
    out.put(("ready", "echo", router.getsockopt_string(zmq.LAST_ENDPOINT)))
    while not stop.set:
        if router.poll(100):
            router.send_multipart(router.recv_multipart())
    router.close(0)
    ctx.term()


def raw_proxy_main(server_public: bytes | None, server_secret: bytes | None, sndhwm: int, rcvhwm: int, out: mp.Queue) -> None:
    """libzmq's own ``zmq.proxy`` (C, no Python per message): ROUTER in, DEALER out.

    The consumer connects to the DEALER side and receives ``[identity,
    header, body]``, the same shape as the other two. SIGTERM ends it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctx = zmq.Context()
    sockets = []
    for kind, hwm_out in ((zmq.ROUTER, sndhwm), (zmq.DEALER, sndhwm)):
        sock = ctx.socket(kind)
        sock.linger = 0
        if server_public is not None:  # None: no Curve (bench/peers.py's curve-off trial only)
            sock.curve_server = True
            sock.curve_publickey = server_public
            sock.curve_secretkey = server_secret
        sock.sndhwm = hwm_out
        sock.rcvhwm = rcvhwm
        sock.bind("tcp://127.0.0.1:*")
        sockets.append(sock)
    front, back = sockets
    out.put(("ready", "proxy", (front.getsockopt_string(zmq.LAST_ENDPOINT), back.getsockopt_string(zmq.LAST_ENDPOINT))))
    zmq.proxy(front, back)


def raw_publisher_main(name: str, endpoint: str, server_public: bytes, n: int, body_bytes: int,
                       go: Any, finish: Any, out: mp.Queue, timeout_s: float, handshake: bool = True) -> None:
    """Same work per message as ``BusClient.send``: a fresh header, then send."""
    _child_setup()
    ctx = zmq.Context()
    sock = _curve_client(ctx, endpoint, server_public)
    if handshake:  # (zmq.proxy has nobody to answer it)
        _handshake(sock, b"hello")
    body = os.urandom(body_bytes)
    topic = f"event.{name}.bench"
    send = sock.send_multipart
    out.put(("ready", name, None))
    result = _publish_loop(lambda: send([pack_header(Kind.EVENT, topic), body], zmq.NOBLOCK), n, go, timeout_s)
    out.put(("result", name, result))
    finish.wait(timeout_s + 30)
    sock.close(0)
    ctx.term()


def raw_consumer_main(endpoint: str, server_public: bytes, expected: int, go: Any, t_go: Any, done: Any,
                      out: mp.Queue, timeout_s: float, handshake: bool = True) -> None:
    _child_setup()
    ctx = zmq.Context()
    sock = _curve_client(ctx, endpoint, server_public)
    if handshake:
        _handshake(sock, b"consumer")
    out.put(("ready", "consumer", None))
    result = _count_events(sock, expected, go, t_go, done, timeout_s)
    out.put(("result", "consumer", result))
    sock.close(0)
    ctx.term()


def raw_relay_peer_main(endpoint: str, server_public: bytes, out: mp.Queue) -> None:
    """The far end of the relay echo: registers as consumer, returns everything to its sender."""
    stop = _child_setup()
    ctx = zmq.Context()
    sock = _curve_client(ctx, endpoint, server_public)
    _handshake(sock, b"consumer")
    out.put(("ready", "relay-peer", None))
    while not stop.set:
        if sock.poll(100):
            sock.send_multipart(sock.recv_multipart())  # [origin, header, body] back to origin
    sock.close(0)
    ctx.term()


def raw_dealer(endpoint: str, server_public: bytes | None) -> tuple[zmq.Context, zmq.Socket]:
    """A child's Curve DEALER to a raw server, past its handshake."""
    ctx = zmq.Context()
    sock = _curve_client(ctx, endpoint, server_public)
    _handshake(sock, b"hello")
    return ctx, sock


def echo_trip(sock: zmq.Socket, body: bytes) -> Callable[[int], bool]:
    """One ``[header, body]`` request and its echo; False if none came within 5 s."""

    def trip(_i: int) -> bool:
        sock.send_multipart([pack_header(Kind.COMMAND, "command.x"), body])
        if sock.poll(5000):
            sock.recv_multipart()
            return True
        return False

    return trip


def raw_rtt_main(endpoint: str, server_public: bytes, n: int, warmup: int, body_bytes: int, out: mp.Queue, tag: str) -> None:
    """Sequential request/reply round trips of ``[header, body]`` over a DEALER."""
    _child_setup()
    ctx, sock = raw_dealer(endpoint, server_public)
    trips = round_trips(echo_trip(sock, os.urandom(body_bytes)), n, warmup)
    out.put(("result", tag, trips.result()))
    sock.close(0)
    ctx.term()


# ---------------------------------------------------------------------------
# the orchestrator
# ---------------------------------------------------------------------------
@dataclass
class Trial:
    side: str
    sent: int
    received: int
    elapsed_s: float
    events_per_s: float
    publisher_rate: float
    backoffs: int
    bad: int
    counters: dict = field(default_factory=dict)
    server_cpu: dict = field(default_factory=dict)
    load_cpu_s: float = 0.0
    publish_s: float = 0.0  # the slowest publisher's own sending time
    first_s: float = 0.0  # go -> first event at the consumer

    @property
    def lost(self) -> int:
        return self.sent - self.received


def percentiles(values_us: list[float]) -> dict:
    if not values_us:
        return {"n": 0}
    s = sorted(values_us)

    def pick(p: float) -> float:
        return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s))) - 1))]

    return {"n": len(s), "p50_ms": pick(50) / 1000, "p99_ms": pick(99) / 1000, "max_ms": s[-1] / 1000,
            "mean_ms": statistics.fmean(s) / 1000, "latencies_us": [round(v, 1) for v in values_us]}


class Bench:
    def __init__(self, settings: Settings, workdir: Path):
        self.s = settings
        self.work = workdir
        self.ctx = mp.get_context("spawn")
        self.procs = Procs(self.ctx)
        self.inbox = Inbox(self.ctx.Queue(), self.procs.crashed)
        self.results: dict[str, Any] = {}

    # -- set-up ---------------------------------------------------------------
    def prepare_ems(self) -> None:
        """A data dir whose registry already knows every key the bench uses."""
        self.data = DataDir(self.work / "server").ensure()
        self.pairs = {name: keyfiles.generate() for name in
                      [ADMIN_ID, VIEWER_ID, OPERATOR_ID, AGENT_ID] + [f"bench-pub-{i}" for i in range(self.s.publishers)]}
        roles = {ADMIN_ID: "admin", VIEWER_ID: "viewer", OPERATOR_ID: "operator"}
        self.agent_dir = self.work / "agent"
        agent_pair = keyfiles.load_or_create(self.agent_dir / "keys", "agent")  # the real agent's own key
        if self.s.real_agent:
            self.pairs[AGENT_ID] = agent_pair
        registry = KeyRegistry(self.data.broker_db)
        for name, pair in self.pairs.items():
            registry.add(pair.public, name, roles.get(name, "agent"))
        registry.close()

    def start_broker(self) -> None:
        profile = self.s.profile_path
        self.broker = self.procs.start("ems-broker", broker_main, str(self.data.root), self.inbox.q, profile)
        self.endpoint = self.inbox.get("ready", "broker", 20)
        if not self.endpoint:
            raise RuntimeError("the broker did not start")
        self.server_key = keyfiles.load(self.data.keys, "broker").public
        progress(f"EMS broker pid {self.broker.pid} on {self.endpoint}{' (under cProfile)' if profile else ''}")

    def start_raw(self) -> None:
        public, secret = zmq.curve_keypair()
        self.raw_public = public
        defaults = BrokerConfig(self.data)
        self.forwarder = self.procs.start("raw-forwarder", raw_forwarder_main, public, secret,
                                          defaults.send_hwm, defaults.receive_hwm, defaults.batch, self.inbox.q,
                                          "forwarder", True)
        self.forwarder_endpoint = self.inbox.get("ready", "forwarder", 20)
        self.echo = self.procs.start("raw-echo", raw_echo_server_main, public, secret, self.inbox.q)
        self.echo_endpoint = self.inbox.get("ready", "echo", 20)
        self.lean = self.procs.start("raw-sugar-forwarder", raw_forwarder_main, public, secret, defaults.send_hwm,
                                     defaults.receive_hwm, defaults.batch, self.inbox.q, "lean-forwarder", False)
        self.lean_endpoint = self.inbox.get("ready", "lean-forwarder", 20)
        self.proxy = self.procs.start("raw-proxy", raw_proxy_main, public, secret, defaults.send_hwm, defaults.receive_hwm,
                                      self.inbox.q)
        self.proxy_front, self.proxy_back = self.inbox.get("ready", "proxy", 20)
        progress(f"raw forwarder pid {self.forwarder.pid} on {self.forwarder_endpoint}, sugar forwarder pid {self.lean.pid}, "
                 f"raw echo pid {self.echo.pid}, zmq.proxy pid {self.proxy.pid}")

    # -- status --------------------------------------------------------------
    def ems_counters(self) -> dict:
        client = BusClient(ClientConfig(server=self.endpoint, server_key=self.server_key), self.pairs[ADMIN_ID],
                           hello={"client_id": ADMIN_ID})
        try:
            client.connect()
            client.wait_ready(10)
            return client.request("status", timeout_s=10)["counters"]
        finally:
            client.close()

    def raw_counters(self, endpoint: str) -> dict:
        ctx = zmq.Context()
        sock = _curve_client(ctx, endpoint, self.raw_public)
        try:
            sock.send(b"stats")
            if not sock.poll(10_000):
                raise RuntimeError("raw forwarder did not answer stats")
            return msgpack.unpackb(sock.recv_multipart()[-1])
        finally:
            sock.close(0)
            ctx.term()

    # -- throughput -----------------------------------------------------------
    def throughput_trial(self, side: str) -> Trial:
        s = self.s
        go, done, finish = self.ctx.Event(), self.ctx.Event(), self.ctx.Event()
        t_go = self.ctx.Value("d", 0.0)
        expected = s.publishers * s.events
        counters_of = {"ems": self.ems_counters, "raw": lambda: self.raw_counters(self.forwarder_endpoint),
                       "lean": lambda: self.raw_counters(self.lean_endpoint), "proxy": dict}[side]
        before = counters_of()
        server_pid = {"ems": self.broker, "raw": self.forwarder, "lean": self.lean, "proxy": self.proxy}[side].pid
        names = [f"bench-pub-{i}" for i in range(s.publishers)]
        started = []
        if side == "ems":
            started.append(self.procs.start("ems-consumer", ems_consumer_main, self.endpoint, self.server_key,
                                            self.pairs[VIEWER_ID], expected, go, t_go, done, self.inbox.q, s.trial_timeout_s))
            for name in names:
                started.append(self.procs.start(name, ems_publisher_main, name, self.endpoint, self.server_key, self.pairs[name],
                                                s.events, s.body_bytes, go, finish, self.inbox.q, s.trial_timeout_s))
        else:
            proxy = side == "proxy"
            front, back = {"raw": (self.forwarder_endpoint,) * 2, "lean": (self.lean_endpoint,) * 2,
                           "proxy": (self.proxy_front, self.proxy_back)}[side]
            started.append(self.procs.start(f"{side}-consumer", raw_consumer_main, back, self.raw_public,
                                            expected, go, t_go, done, self.inbox.q, s.trial_timeout_s, not proxy))
            for name in names:
                started.append(self.procs.start(name, raw_publisher_main, name, front, self.raw_public,
                                                s.events, s.body_bytes, go, finish, self.inbox.q, s.trial_timeout_s, not proxy))
        try:
            self.inbox.get("ready", "consumer", 20)
            for name in names:
                self.inbox.get("ready", name, 20)
            cpu0 = thread_cpu(server_pid)
            t_go.value = time.monotonic()
            go.set()
            pubs = [self.inbox.get("result", name, s.trial_timeout_s + 10) for name in names]
            done.set()
            consumer = self.inbox.get("result", "consumer", s.trial_timeout_s + 10)
            cpu1 = thread_cpu(server_pid)
        finally:
            finish.set()
            for proc in started:
                proc.join(10)
                self.procs.stop(proc)
        after = counters_of()
        counters = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
        sent = sum(p["sent"] for p in pubs)
        elapsed = consumer["elapsed_s"]
        pub_rate = sum(p["sent"] / p["elapsed_s"] for p in pubs if p["elapsed_s"] > 0)
        trial = Trial(side, sent, consumer["received"], elapsed, consumer["received"] / elapsed if elapsed > 0 else 0.0,
                      pub_rate, sum(p["backoffs"] for p in pubs), consumer["bad"], counters, cpu_delta(cpu0, cpu1),
                      sum(p["cpu_s"] for p in pubs) + consumer["cpu_s"], max(p["elapsed_s"] for p in pubs), consumer["first_s"])
        busy = ", ".join(f"{k} {v / elapsed * 100:.0f}%" for k, v in trial.server_cpu.items() if v > 0.01) if elapsed else ""
        progress(f"  {side:5}: {trial.received:,}/{trial.sent:,} in {elapsed:.2f} s = {trial.events_per_s:,.0f} ev/s; "
                 f"lost {trial.lost:,}; publishers done after {trial.publish_s:.2f} s, {trial.backoffs:,} back-offs; "
                 f"server CPU [{busy}]; load generator CPU {trial.load_cpu_s:.2f} s")
        return trial

    def throughput(self) -> None:
        s = self.s
        progress(f"throughput: {s.publishers} publishers x {s.events:,} events of {s.body_bytes} B, "
                 f"{s.trials} trial(s) per side, alternating EMS / raw (+ one lean-loop and one zmq.proxy trial)")
        trials: dict[str, list[Trial]] = {"ems": [], "raw": [], "lean": [], "proxy": []}
        for i in range(s.trials):
            for side in ("ems", "raw") if i % 2 == 0 else ("raw", "ems"):
                trials[side].append(self.throughput_trial(side))
            if i == 0:
                trials["lean"].append(self.throughput_trial("lean"))
                trials["proxy"].append(self.throughput_trial("proxy"))
        self.results["throughput"] = {side: [asdict(t) | {"lost": t.lost} for t in ts] for side, ts in trials.items()}
        self.trials = trials

    # -- round trips ------------------------------------------------------------
    def command_rtt(self) -> None:
        s = self.s
        kind = "real agent.runner.Agent" if s.real_agent else "minimal BusClient agent loop"
        progress(f"command round trips: {s.round_trips} sequential send_command + wait_result ({kind}), {s.warmup} warm-up")
        if s.real_agent:
            agent = self.procs.start("ems-agent", real_agent_main, self.endpoint, self.server_key, str(self.agent_dir), self.inbox.q)
        else:
            agent = self.procs.start("ems-agent", ems_agent_main, self.endpoint, self.server_key, self.pairs[AGENT_ID], self.inbox.q)
        before = self.ems_counters()
        try:
            self.inbox.get("ready", "agent", 20)
            cpu0 = thread_cpu(self.broker.pid)
            op = self.procs.start("ems-operator", ems_operator_main, self.endpoint, self.server_key, self.pairs[OPERATOR_ID],
                                  s.round_trips, s.warmup, self.inbox.q)
            result = self.inbox.get("result", "operator", 30 + (s.round_trips + s.warmup) * 0.05)
            cpu1 = thread_cpu(self.broker.pid)
            op.join(10)
            self.procs.stop(op)
        finally:
            self.procs.stop(agent)
        after = self.ems_counters()
        stats = percentiles(result["latencies_us"]) | {"failures": result["failures"], "agent": kind,
                                                        "broker_cpu_s": cpu_delta(cpu0, cpu1), "operator_cpu_s": result["cpu_s"]}
        stats["broker_counters"] = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
        self.results["command_rtt"] = stats
        progress(f"  EMS command: p50 {stats['p50_ms']:.3f} ms, p99 {stats['p99_ms']:.3f} ms, max {stats['max_ms']:.3f} ms, "
                 f"failures {stats['failures']}")

    def raw_rtt(self) -> None:
        s = self.s
        progress(f"raw round trips: {s.round_trips} direct ROUTER/DEALER echoes, then {s.round_trips} relayed through the forwarder")
        rtt = self.procs.start("raw-rtt-direct", raw_rtt_main, self.echo_endpoint, self.raw_public, s.round_trips, s.warmup,
                               s.body_bytes, self.inbox.q, "direct")
        direct = self.inbox.get("result", "direct", 60)
        self.procs.stop(rtt)
        peer = self.procs.start("raw-relay-peer", raw_relay_peer_main, self.forwarder_endpoint, self.raw_public, self.inbox.q)
        try:
            self.inbox.get("ready", "relay-peer", 20)
            rtt = self.procs.start("raw-rtt-relay", raw_rtt_main, self.forwarder_endpoint, self.raw_public, s.round_trips,
                                   s.warmup, s.body_bytes, self.inbox.q, "relay")
            relay = self.inbox.get("result", "relay", 60)
            self.procs.stop(rtt)
        finally:
            self.procs.stop(peer)
        self.results["raw_echo_direct"] = percentiles(direct["latencies_us"]) | {"failures": direct["failures"]}
        self.results["raw_echo_relay"] = percentiles(relay["latencies_us"]) | {"failures": relay["failures"]}
        for name in ("direct", "relay"):
            r = self.results[f"raw_echo_{name}"]
            progress(f"  raw {name} echo: p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms, max {r['max_ms']:.3f} ms")

    # -- the run ----------------------------------------------------------------
    def run(self) -> dict:
        try:
            self.prepare_ems()
            self.start_broker()
            self.start_raw()
            self.throughput()
            self.raw_rtt()
            self.command_rtt()
        finally:
            self.procs.stop_all()
        return self.results


# ---------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------
def machine_busy(sample_s: float = 0.5) -> float:
    """Fraction of all cores busy over ``sample_s`` (other load on the machine)."""

    def read() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    try:
        total0, idle0 = read()
        time.sleep(sample_s)
        total1, idle1 = read()
    except (OSError, ValueError, IndexError):
        return 0.0
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def machine_facts() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "curve": bool(zmq.has("curve")),
        "msgpack": ".".join(map(str, msgpack.version)),
        "loadavg_at_start": os.getloadavg(),
        "busy_before_start": machine_busy(),
    }


def median_trial(trials: list[Trial]) -> Trial:
    return sorted(trials, key=lambda t: t.events_per_s)[len(trials) // 2]


def cpu_us_per_event(trial: Trial, thread: str = "python") -> float:
    return trial.server_cpu.get(thread, 0.0) / trial.received * 1e6 if trial.received else 0.0


def summarise(settings: Settings, results: dict, facts: dict, runtime_s: float) -> dict:
    ems, raw = median_trial(_trials(results, "ems")), median_trial(_trials(results, "raw"))
    proxy = _trials(results, "proxy")
    ratio = ems.events_per_s / raw.events_per_s if raw.events_per_s else 0.0
    cmd = results["command_rtt"]
    summary = {
        "ems_events_per_s": ems.events_per_s,
        "raw_events_per_s": raw.events_per_s,
        "proxy_events_per_s": proxy[0].events_per_s if proxy else None,
        "lean_events_per_s": _trials(results, "lean")[0].events_per_s if _trials(results, "lean") else None,
        "lean_server_cpu_us_per_event": cpu_us_per_event(_trials(results, "lean")[0]) if _trials(results, "lean") else None,
        "throughput_ratio": ratio,
        "ems_server_cpu_us_per_event": cpu_us_per_event(ems),
        "cpu_capacity_ratio": cpu_us_per_event(raw) / cpu_us_per_event(ems) if cpu_us_per_event(ems) else None,
        "raw_server_cpu_us_per_event": cpu_us_per_event(raw),
        "ems_lost": sum(t.lost for t in _trials(results, "ems")),
        "raw_lost": sum(t.lost for t in _trials(results, "raw")),
        "command_p50_ms": cmd["p50_ms"],
        "command_p99_ms": cmd["p99_ms"],
        "command_max_ms": cmd["max_ms"],
        "broker_cpu_ms_per_command": cmd["broker_cpu_s"].get("python", 0.0) / max(1, cmd["n"] + settings.warmup) * 1000,
        "raw_relay_p50_ms": results["raw_echo_relay"]["p50_ms"],
        "raw_relay_p99_ms": results["raw_echo_relay"]["p99_ms"],
        "raw_direct_p50_ms": results["raw_echo_direct"]["p50_ms"],
        "raw_direct_p99_ms": results["raw_echo_direct"]["p99_ms"],
        "targets": {
            "throughput_ratio_ge_50pct": {"target": TARGET_THROUGHPUT_RATIO, "value": ratio, "met": ratio >= TARGET_THROUGHPUT_RATIO},
            "command_p99_le_1ms": {"target_ms": TARGET_COMMAND_P99_MS, "value_ms": cmd["p99_ms"],
                                   "met": cmd["p99_ms"] <= TARGET_COMMAND_P99_MS and cmd["failures"] == 0},
        },
    }
    return {"machine": facts, "settings": asdict(settings), "summary": summary, "results": results,
            "runtime_s": runtime_s, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _trials(results: dict, side: str) -> list[Trial]:
    return [Trial(**{k: v for k, v in t.items() if k != "lost"}) for t in results["throughput"].get(side, [])]


def print_report(report: dict) -> None:
    facts, s, r, summ = report["machine"], report["settings"], report["results"], report["summary"]
    ems_trials, raw_trials, proxy_trials = _trials(r, "ems"), _trials(r, "raw"), _trials(r, "proxy")
    ems, raw = median_trial(ems_trials), median_trial(raw_trials)
    cmd, relay, direct = r["command_rtt"], r["raw_echo_relay"], r["raw_echo_direct"]

    def pct(a: float, b: float) -> str:
        return f"{a / b * 100:.0f} %" if b else "-"

    def ms(x: float) -> str:
        return f"{x:.3f} ms"

    def total(trials: list[Trial], attr: str) -> int:
        return sum(getattr(t, attr) for t in trials)

    def counter(trials: list[Trial], name: str) -> int:
        return sum(t.counters.get(name, 0) for t in trials)

    ems_cpu, raw_cpu = cpu_us_per_event(ems), cpu_us_per_event(raw)
    rows = [
        (f"routed events/s ({s['body_bytes']} B bodies, {s['publishers']} publishers, median trial)",
         f"{ems.events_per_s:,.0f}", f"{raw.events_per_s:,.0f}", pct(ems.events_per_s, raw.events_per_s)),
        ("  every trial, events/s", " ".join(f"{t.events_per_s / 1000:.1f}k" for t in ems_trials),
         " ".join(f"{t.events_per_s / 1000:.1f}k" for t in raw_trials), ""),
        ("  received / sent, all trials", f"{total(ems_trials, 'received'):,}/{total(ems_trials, 'sent'):,}",
         f"{total(raw_trials, 'received'):,}/{total(raw_trials, 'sent'):,}", ""),
        ("  lost (sent - received), all trials", f"{summ['ems_lost']:,}", f"{summ['raw_lost']:,}", ""),
        ("  server drop counters, all trials",
         f"hwm {counter(ems_trials, 'dropped_hwm')} fanout {counter(ems_trials, 'dropped_fanout')} "
         f"unroutable {counter(ems_trials, 'dropped_unroutable')}",
         f"hwm {counter(raw_trials, 'dropped_hwm')} unroutable {counter(raw_trials, 'dropped_unroutable')}", ""),
        ("  server main-thread CPU per event (median trial)", f"{ems_cpu:.1f} us", f"{raw_cpu:.1f} us", pct(ems_cpu, raw_cpu)),
        ("  implied events/s with one full core (1 / CPU per event)", f"{1e6 / ems_cpu:,.0f}" if ems_cpu else "-",
         f"{1e6 / raw_cpu:,.0f}" if raw_cpu else "-", pct(raw_cpu, ems_cpu)),
        ("  server main thread / libzmq I/O thread busy", f"{_busy(ems, 'python')} / {_busy(ems, 'ZMQbg/IO/0')}",
         f"{_busy(raw, 'python')} / {_busy(raw, 'ZMQbg/IO/0')}", ""),
        ("  publishers' own send rate, msgs/s", f"{ems.publisher_rate:,.0f}", f"{raw.publisher_rate:,.0f}", ""),
    ]
    for lean in _trials(r, "lean")[:1]:
        rows.append(("  raw loop with pyzmq's recv/send_multipart helpers", "",
                     f"{lean.events_per_s:,.0f} ({cpu_us_per_event(lean):.1f} us CPU/event"
                     + (f", lost {lean.lost:,})" if lean.lost else ")"), ""))
    for p in proxy_trials[:1]:
        rows.append(("  libzmq C zmq.proxy, same shape (ceiling of this load generator)", "",
                     f"{p.events_per_s:,.0f}", ""))
    rows += [
        (f"command RTT p50 ({cmd['n']} pings; raw = relay echo, same 2 hops)", ms(cmd["p50_ms"]), ms(relay["p50_ms"]),
         pct(cmd["p50_ms"], relay["p50_ms"])),
        ("command RTT p99", ms(cmd["p99_ms"]), ms(relay["p99_ms"]), pct(cmd["p99_ms"], relay["p99_ms"])),
        ("command RTT max", ms(cmd["max_ms"]), ms(relay["max_ms"]), pct(cmd["max_ms"], relay["max_ms"])),
        ("  raw direct ROUTER/DEALER echo p50 / p99 / max", "",
         f"{direct['p50_ms']:.3f} / {direct['p99_ms']:.3f} / {direct['max_ms']:.3f} ms", ""),
        ("  broker main-thread CPU per command", f"{summ['broker_cpu_ms_per_command']:.3f} ms", "", ""),
        ("  failed round trips", str(cmd["failures"]), str(relay["failures"] + direct["failures"]), ""),
    ]
    header = ("metric", "EMS", "raw pyzmq", "EMS/raw")
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(4)]
    line = "  ".join("-" * w for w in widths)
    print()
    print(f"EMS bus benchmark: {facts['cpus']} cores ({facts['cpu_model']}), Python {facts['python']}, "
          f"pyzmq {facts['pyzmq']}, libzmq {facts['libzmq']}, CurveZMQ {'on' if facts['curve'] else 'OFF'}, "
          f"msgpack {facts['msgpack']}")
    print(f"{facts['platform']}; load average at start {', '.join(f'{x:.2f}' for x in facts['loadavg_at_start'])}; "
          f"machine {facts['busy_before_start'] * 100:.0f} % busy just before the bench")
    if facts["busy_before_start"] > 0.10:
        print("WARNING: other processes were using the CPU before the bench started; absolute figures are depressed")
    print(f"command agent: {cmd['agent']}; raw forwarder: Python loop on a Curve ROUTER, same HWMs and batch as the broker")
    print()
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print(line)
    for row in rows:
        print("  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]))
    print(line)
    t = summ["targets"]
    tr, tc = t["throughput_ratio_ge_50pct"], t["command_p99_le_1ms"]
    print("targets (from the issue):")
    print(f"  routed throughput >= {TARGET_THROUGHPUT_RATIO * 100:.0f} % of raw pyzmq : "
          f"{tr['value'] * 100:6.1f} %   {'met' if tr['met'] else 'MISSED'}"
          + (f"   (by server CPU per event: {summ['cpu_capacity_ratio'] * 100:.0f} %)" if summ.get("cpu_capacity_ratio") else ""))
    print(f"  command p99 <= {TARGET_COMMAND_P99_MS:.0f} ms                    : "
          f"{tc['value_ms']:6.3f} ms  {'met' if tc['met'] else 'MISSED'}")
    print(f"runtime {report['runtime_s']:.1f} s")


def _busy(trial: Trial, thread: str) -> str:
    if not trial.elapsed_s:
        return "-"
    return f"{trial.server_cpu.get(thread, 0.0) / trial.elapsed_s * 100:.0f} %"


def print_profile(path: str, top: int = 25) -> None:
    stats = pstats.Stats(path, stream=sys.stderr)
    print(f"\nbroker profile ({path}), top {top} by own time:", file=sys.stderr)
    stats.sort_stats("tottime").print_stats(top)
    print(f"top {top} by cumulative time:", file=sys.stderr)
    stats.sort_stats("cumulative").print_stats(top)


# ---------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/bus.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__,
        epilog="Targets (from the issue): routed throughput >= 50 % of raw pyzmq; command p99 <= 1 ms.\n"
               "Everything binds 127.0.0.1 on random ports and stops by pid; a default run takes well under 2 minutes.",
    )
    p.add_argument("--quick", action="store_true", help="about 15 s: 50,000 events per publisher, 1 trial per side, 200 round trips")
    p.add_argument("--events", type=int, metavar="N", help="events per publisher per trial (default 100,000; --quick 50,000)")
    p.add_argument("--publishers", type=int, metavar="N", help="publisher processes (default 2)")
    p.add_argument("--trials", type=int, metavar="N", help="throughput trials per side, median reported (default 3; --quick 1)")
    p.add_argument("--round-trips", type=int, metavar="N", help="sequential command round trips (default 1,000; --quick 200)")
    p.add_argument("--warmup", type=int, metavar="N", help="round trips before measuring (default 100; --quick 50)")
    p.add_argument("--body-bytes", type=int, metavar="N", help="event body size (default 200)")
    p.add_argument("--real-agent", action="store_true",
                   help="answer commands with the real agent.runner.Agent instead of a minimal BusClient loop")
    p.add_argument("--profile-broker", metavar="PATH", help="run the broker under cProfile (timer: its main thread's CPU time), write stats to PATH and print the top "
                   "functions (slows the broker: do not compare those figures)")
    p.add_argument("--json", metavar="PATH", help="write every figure as JSON to PATH")
    args = p.parse_args(argv)
    for name in ("events", "publishers", "trials", "round_trips", "body_bytes"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def write_json(path: str | None, report: dict) -> None:
    """Write the figures for bench/report.py (nothing without ``--json``)."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(report, indent=2, default=str) + "\n")
        progress(f"figures written to {path}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.from_args(args)
    facts = machine_facts()
    progress(f"{facts['cpus']} cores, Python {facts['python']}, pyzmq {facts['pyzmq']} / libzmq {facts['libzmq']}")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ems-bench-") as tmp:
        results = Bench(settings, Path(tmp)).run()
    report = summarise(settings, results, facts, time.monotonic() - t0)
    print_report(report)
    write_json(args.json, report)
    if settings.profile_path:
        print_profile(settings.profile_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
