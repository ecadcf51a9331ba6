"""Peer brokers: EMS beside Mosquitto and NATS, in one run, same harness.

Same shape as ``bench/bus.py`` (whose servers, children and trial code it
imports): every server and every load-generating peer is its own ``spawn``ed
process or child binary on 127.0.0.1 with a random port, started here and
stopped by its pid. The peers are the brokers people would pick instead,
each driven by its usual Python client:

  Mosquitto    the Debian ``mosquitto`` binary with a generated config file
               (one listener on 127.0.0.1:PORT, persistence off, queues
               large enough not to drop) and paho-mqtt; never the system's
               Mosquitto on 1883
  NATS         ``nats-server -a 127.0.0.1 -p PORT`` and nats-py (asyncio
               inside those peer processes); never the system's NATS on 4222

Measured (200-byte event bodies unless --body-bytes):

a. Routed events/s from N publishers to one consumer: EMS (CurveZMQ) vs
   Mosquitto QoS 0 vs NATS core, beside bus.py's raw pyzmq Curve forwarder
   and libzmq's zmq.proxy (the load generator's ceiling). The sides rotate
   within each trial; the median trial is reported with the server's CPU
   time per event (every thread of the server process).
b. Command round trip p50/p99/max: EMS ``send_command`` + ``wait_result``
   (bus.py's operator and minimal agent) vs NATS request/reply vs the raw
   ROUTER/DEALER echo, back to back and after idle gaps (one round trip
   per system every --idle-s, round-robin, so each is idle 3 x idle-s and
   the machine idle-s before each sample).
c. CurveZMQ on vs off: bus.py's raw forwarder (and zmq.proxy) with and
   without Curve. Benchmark only: the EMS broker never runs without it.
d. Durable: EMS end to end (bench/store.py's run_end_to_end: outbox ->
   broker -> persister -> SQLite commit -> ack) vs Mosquitto QoS 1 into a
   Python SQLite writer vs the raw SQLite executemany ceiling. Mosquitto's
   PUBACK comes from the broker when it has the message in memory, not
   after the SQLite commit; the subscriber acknowledges (manual ack) after
   its commit, and the figure is committed rows / (go -> last commit).

Progress goes to stderr, the table to stdout, --json PATH writes every
figure (latency samples included) for bench/report.py.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import select
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):  # `python bench/peers.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgpack  # noqa: E402

from bench import bus  # noqa: E402
from bench.bus import Trial, cpu_delta, percentiles, progress, thread_cpu  # noqa: E402
from bench.latency import RoundTrips, round_trips  # noqa: E402
from bench.stack import Proc, free_port  # noqa: E402
from broker.core.config import BrokerConfig  # noqa: E402
from broker.core.envelope import Kind, pack_header  # noqa: E402

#: the targets from the issue
TARGET_EMS_VS_MOSQUITTO = 1.5
TARGET_RTT_P50_MS = 0.150
TARGET_RTT_P99_MS = 1.0
TARGET_CURVE_SLOWDOWN = 2.0
TARGET_DURABLE_PER_S = 100_000

SECTIONS = ("throughput", "rtt", "idle", "curve", "durable")
MQTT_SUB = "event/#"
NATS_SUB = "event.>"
NATS_CMD = "command.bench-agent"
#: Mosquitto QoS 1 publisher: messages in flight before paho queues locally
MQTT_INFLIGHT = 1000


# ---------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------
@dataclass
class Settings:
    publishers: int = 2
    events: int = 100_000  # per publisher, per trial
    trials: int = 3  # throughput trials per side, sides rotated within a trial
    round_trips: int = 1000
    warmup: int = 100
    idle_trips: int = 50  # per system, each after idle_s of silence on the machine
    idle_s: float = 1.0
    body_bytes: int = 200
    durable_events: int = 100_000
    durable_processes: int = 2  # EMS agent processes = Mosquitto publisher processes
    durable_agents: int = 10  # EMS simulated agents per process
    durable_batch: int = 1000  # rows per SQLite transaction (the raw ceiling and the MQTT writer)
    trial_timeout_s: float = 30.0
    sections: tuple[str, ...] = SECTIONS

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        s = (cls(events=50_000, trials=1, round_trips=200, warmup=50, idle_trips=10, durable_events=20_000)
             if args.quick else cls())
        for name in ("publishers", "events", "trials", "round_trips", "warmup", "idle_trips", "idle_s", "body_bytes",
                     "durable_events"):
            value = getattr(args, name)
            if value is not None:
                setattr(s, name, value)
        if args.only:
            s.sections = tuple(x for x in args.only.split(",") if x)
        s.trial_timeout_s = max(s.trial_timeout_s, 10 + s.publishers * s.events / 10_000)
        return s

    def for_bus(self) -> bus.Settings:
        return bus.Settings(publishers=self.publishers, events=self.events, trials=self.trials,
                            round_trips=self.round_trips, warmup=self.warmup, body_bytes=self.body_bytes,
                            trial_timeout_s=self.trial_timeout_s)


# ---------------------------------------------------------------------------
# the peer servers: child binaries, stopped by pid
# ---------------------------------------------------------------------------
MOSQUITTO_CONF = """\
# generated by bench/peers.py: one loopback listener, nothing on disk
per_listener_settings false
listener {port} 127.0.0.1
allow_anonymous true
persistence false
# queue instead of dropping, so that throughput is not bought with loss
max_queued_messages 10000000
max_inflight_messages 0
max_keepalive 600
log_dest stderr
log_type error
log_type warning
"""


def wait_port(port: int, proc: Proc, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.popen is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with code {proc.popen.returncode}; see {proc.log_path}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not listen on 127.0.0.1:{port} within {timeout_s:.0f} s")


def start_mosquitto(work: Path) -> tuple[Proc, int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(MOSQUITTO_CONF.format(port=port))
    proc = Proc("mosquitto", [binary, "-c", str(conf)], work / "mosquitto.log")
    proc.start()
    wait_port(port, proc)
    return proc, port


def start_nats(work: Path) -> tuple[Proc, int]:
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    port = free_port()
    proc = Proc("nats-server", [binary, "-a", "127.0.0.1", "-p", str(port)], work / "nats.log")
    proc.start()
    wait_port(port, proc)
    return proc, port


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (out.stdout + out.stderr).strip()
    return text.splitlines()[0] if text else ""


def peer_versions() -> dict:
    def dist(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return ""

    mosquitto = _first_line([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-h"])
    nats = _first_line([shutil.which("nats-server") or "/usr/sbin/nats-server", "--version"])
    return {
        "mosquitto": mosquitto.replace("mosquitto version", "").strip(),
        "nats_server": nats.replace("nats-server:", "").strip().lstrip("v"),
        "paho_mqtt": dist("paho-mqtt"),
        "nats_py": dist("nats-py"),
        "sqlite": sqlite3.sqlite_version,
    }


# ---------------------------------------------------------------------------
# children: Mosquitto with paho-mqtt
# ---------------------------------------------------------------------------
def _mqtt_client(client_id: str, port: int, manual_ack: bool = False, inflight: int = 0):
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                         manual_ack=manual_ack)
    if inflight:
        client.max_inflight_messages_set(inflight)  # (only before connecting)
    client.connect("127.0.0.1", port, keepalive=300)
    deadline = time.monotonic() + 10
    while not client.is_connected():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no CONNACK from Mosquitto on port {port}")
        client.loop(0.05)
    return client


def mqtt_publisher_main(name: str, port: int, n: int, body_bytes: int, qos: int, go: Any, finish: Any, out: Any,
                        timeout_s: float) -> None:
    """paho-mqtt publishing ``n`` messages; with QoS 1 it waits for every PUBACK.

    No network thread: ``publish`` writes straight to the socket when it
    can and paho queues the rest, drained after the loop. QoS 1 payloads
    carry a message id for the SQLite writer: msgpack ``[id, ts, body]``.
    """
    bus._child_setup()
    client = _mqtt_client(name, port, inflight=MQTT_INFLIGHT if qos else 0)
    acked = 0

    def on_publish(_c, _u, _mid, _rc, _props) -> None:
        nonlocal acked
        acked += 1

    if qos:
        client.on_publish = on_publish
    body = os.urandom(body_bytes)
    topic = f"event/{name}/bench"
    publish, loop_read, sock = client.publish, client.loop_read, client.socket()
    out.put(("ready", name, None))
    if not go.wait(timeout_s):
        out.put(("result", name, {"sent": 0, "acked": 0, "backoffs": 0, "elapsed_s": 0.0, "cpu_s": 0.0}))
        return
    cpu0, t0 = bus._cpu_s(), time.monotonic()
    deadline = t0 + timeout_s
    packb = msgpack.packb
    for i in range(n):
        if qos:
            publish(topic, packb([f"{name}-{i:08d}", time.time(), body]), 1)
            if i % 256 == 255:
                loop_read()  # PUBACKs free in-flight slots
        else:
            publish(topic, body, 0)
    while (client.want_write() or (qos and acked < n)) and time.monotonic() < deadline:
        readable, writable, _ = select.select([sock], [sock] if client.want_write() else [], [], 0.05)
        if readable:
            loop_read()
        if writable:
            client.loop_write()
    elapsed = time.monotonic() - t0
    out.put(("result", name, {"sent": n, "acked": acked, "backoffs": 0, "elapsed_s": elapsed,
                              "cpu_s": bus._cpu_s() - cpu0}))
    finish.wait(timeout_s + 30)
    client.disconnect()


def mqtt_consumer_main(port: int, expected: int, qos: int, db_path: str, batch: int, go: Any, t_go: Any, done: Any,
                       out: Any, timeout_s: float, idle_s: float = 0.5) -> None:
    """A paho-mqtt subscriber counting messages; with ``db_path`` it is a durable SQLite writer.

    The writer inserts each batch with one ``executemany(INSERT OR IGNORE)``
    transaction into bench.store_write's raw table (same unique key), then
    acknowledges the batch's messages (manual PUBACK after the commit).
    Reads go through ``loop_read`` (one packet per call) with a select
    only when the socket is empty: paho's own loop() would add a select per
    packet.
    """
    bus._child_setup()
    durable = bool(db_path)
    client = _mqtt_client("bench-consumer", port, manual_ack=durable)
    count = bad = committed = 0
    first = last = last_commit = 0.0
    rows: list[tuple] = []
    mids: list[int] = []
    unpackb = msgpack.unpackb

    def on_message(_c, _u, msg) -> None:
        nonlocal count, first, last, bad
        count += 1
        last = time.monotonic()
        if count == 1:
            first = last
        if durable:
            try:
                msg_id, ts, body = unpackb(msg.payload)
                rows.append((msg.topic.split("/")[1], msg_id, ts, "bench", body))
            except (ValueError, msgpack.ExtraData, TypeError):
                bad += 1
            mids.append(msg.mid)
        elif count % bus.DECODE_SAMPLE_EVERY == 1 and not msg.payload:
            bad += 1

    subscribed = []
    client.on_message = on_message
    client.on_subscribe = lambda *_a: subscribed.append(True)
    client.subscribe(MQTT_SUB, qos)
    deadline = time.monotonic() + 10
    while not subscribed and time.monotonic() < deadline:
        client.loop(0.05)
    conn = None
    if durable:
        from bench.store_write import RAW_DDL
        from broker.core import sqlite_db

        conn = sqlite_db.connect(Path(db_path), "NORMAL")
        conn.executescript(RAW_DDL)
    insert = "INSERT OR IGNORE INTO raw_events (client_id, msg_id, ts, name, data) VALUES (?, ?, ?, ?, ?)"

    def flush() -> None:
        nonlocal committed, last_commit
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert, rows)
        conn.execute("COMMIT")
        committed += len(rows)
        last_commit = time.monotonic()
        for mid in mids:
            client.ack(mid, 1)
        rows.clear()
        mids.clear()

    out.put(("ready", "consumer", None))
    go.wait(timeout_s)
    cpu0 = bus._cpu_s()
    sock, loop_read = client.socket(), client.loop_read
    deadline = time.monotonic() + timeout_s
    while count < expected:
        before = count
        if loop_read() != 0:
            break  # connection lost
        if durable and rows and (len(rows) >= batch or count == before):
            flush()
        if count == before:
            if client.want_write():
                client.loop_write()
            now = time.monotonic()
            if now > deadline or (done.is_set() and now - last > idle_s):
                break
            select.select([sock], [], [], 0.02)
    if durable and rows:
        flush()
    stored = 0
    if conn is not None:
        (stored,) = conn.execute("SELECT count(*) FROM raw_events").fetchone()
        conn.close()
    t0 = t_go.value
    result = {"received": count, "other": 0, "bad": bad, "elapsed_s": last - t0 if count else 0.0,
              "cpu_s": bus._cpu_s() - cpu0, "first_s": first - t0 if count else 0.0}
    if durable:
        result |= {"committed": committed, "stored": stored, "commit_elapsed_s": last_commit - t0 if committed else 0.0}
    out.put(("result", "consumer", result))
    while client.want_write():  # the last PUBACKs
        client.loop_write()
    client.disconnect()


# ---------------------------------------------------------------------------
# children: NATS with nats-py (asyncio inside these processes only)
# ---------------------------------------------------------------------------
async def _nats_connect(port: int, errors: list[str] | None = None):
    import nats

    async def on_error(exc: Exception) -> None:
        if errors is not None:
            errors.append(type(exc).__name__)

    return await nats.connect(f"nats://127.0.0.1:{port}", allow_reconnect=False, connect_timeout=5,
                              pending_size=8 * 1024 * 1024, error_cb=on_error)


def nats_publisher_main(name: str, port: int, n: int, body_bytes: int, go: Any, finish: Any, out: Any,
                        timeout_s: float) -> None:
    """nats-py publishing ``n`` messages, then one flush (PING/PONG) so the server has them all."""
    bus._child_setup()

    async def run() -> None:
        nc = await _nats_connect(port)
        body = os.urandom(body_bytes)
        subject = f"event.{name}.bench"
        publish = nc.publish
        out.put(("ready", name, None))
        if not go.wait(timeout_s):  # nothing else to do in this process meanwhile
            out.put(("result", name, {"sent": 0, "backoffs": 0, "elapsed_s": 0.0, "cpu_s": 0.0}))
            return
        cpu0, t0 = bus._cpu_s(), time.monotonic()
        for _ in range(n):
            await publish(subject, body)
        await nc.flush(timeout=int(timeout_s))
        out.put(("result", name, {"sent": n, "backoffs": 0, "elapsed_s": time.monotonic() - t0,
                                  "cpu_s": bus._cpu_s() - cpu0}))
        await asyncio.get_running_loop().run_in_executor(None, finish.wait, timeout_s + 30)
        await nc.close()

    asyncio.run(run())


def nats_consumer_main(port: int, expected: int, go: Any, t_go: Any, done: Any, out: Any, timeout_s: float,
                       idle_s: float = 0.5) -> None:
    """A nats-py subscriber (callback) counting messages; no pending limits, so nothing is dropped client-side."""
    bus._child_setup()

    async def run() -> None:
        errors: list[str] = []
        nc = await _nats_connect(port, errors)
        count = bad = 0
        first = last = 0.0

        async def on_message(msg) -> None:
            nonlocal count, first, last, bad
            count += 1
            last = time.monotonic()
            if count == 1:
                first = last
            if count % bus.DECODE_SAMPLE_EVERY == 1 and not msg.data:
                bad += 1

        await nc.subscribe(NATS_SUB, cb=on_message, pending_msgs_limit=0, pending_bytes_limit=0)
        await nc.flush()
        out.put(("ready", "consumer", None))
        await asyncio.get_running_loop().run_in_executor(None, go.wait, timeout_s)
        cpu0 = bus._cpu_s()
        deadline = time.monotonic() + timeout_s
        while count < expected:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            if now > deadline or (done.is_set() and now - last > idle_s) or nc.is_closed:
                break
        t0 = t_go.value
        out.put(("result", "consumer", {"received": count, "other": 0, "bad": bad,
                                        "elapsed_s": last - t0 if count else 0.0, "cpu_s": bus._cpu_s() - cpu0,
                                        "first_s": first - t0 if count else 0.0, "errors": errors}))
        if not nc.is_closed:
            await nc.close()

    asyncio.run(run())


def nats_responder_main(port: int, out: Any) -> None:
    """The far end of NATS request/reply: answers every request with its payload."""
    stop = bus._child_setup()

    async def run() -> None:
        nc = await _nats_connect(port)

        async def on_request(msg) -> None:
            await msg.respond(msg.data)

        await nc.subscribe(NATS_CMD, cb=on_request)
        await nc.flush()
        out.put(("ready", "nats-responder", None))
        while not stop.set:
            await asyncio.sleep(0.1)
        await nc.close()

    asyncio.run(run())


def nats_rtt_main(port: int, n: int, warmup: int, body_bytes: int, at: list[float], out: Any, tag: str) -> None:
    """Sequential ``nc.request`` round trips; with ``at``, one round trip at each of those monotonic times."""
    bus._child_setup()

    async def run() -> None:
        nc = await _nats_connect(port)
        body = os.urandom(body_bytes)
        trips = RoundTrips(warmup)
        count = len(at) if at else n
        for i in range(warmup + count):
            if at and i >= warmup:
                await asyncio.sleep(max(0.0, at[i - warmup] - time.monotonic()))
            t0 = time.perf_counter_ns()
            try:
                await nc.request(NATS_CMD, pack_header(Kind.COMMAND, "command.x") + body, timeout=5)
                ok = True
            except Exception:  # noqa: BLE001 - any client error is a failed round trip, counted
                ok = False
            trips.add(i, t0, time.perf_counter_ns(), ok)
        out.put(("result", tag, trips.result()))
        await nc.close()

    asyncio.run(run())


# ---------------------------------------------------------------------------
# children: idle-gap round trips for EMS and the raw echo
# ---------------------------------------------------------------------------
def _pace(warmup: int, at: list[float], wait: Callable[[float], None]) -> Callable[[int], None]:
    """Before each counted round trip, ``wait(seconds)`` until its time in ``at``."""

    def before(i: int) -> None:
        if i >= warmup:
            while time.monotonic() < at[i - warmup]:
                wait(max(0.0, at[i - warmup] - time.monotonic()))

    return before


def ems_idle_operator_main(endpoint: str, server_key: str, pair: Any, warmup: int, at: list[float], out: Any) -> None:
    """bus.py's operator round trip, one at each time in ``at``; the client keeps polling (heartbeats) meanwhile."""
    bus._child_setup()
    client = bus.ems_operator(endpoint, server_key, pair)
    trips = round_trips(bus.ping_trip(client), len(at), warmup, before=_pace(warmup, at, client.poll))
    out.put(("result", "ems-idle", trips.result()))
    client.close()


def raw_idle_rtt_main(endpoint: str, server_public: bytes, warmup: int, body_bytes: int, at: list[float], out: Any) -> None:
    """bus.py's raw direct echo round trip, one at each time in ``at``."""
    bus._child_setup()
    ctx, sock = bus.raw_dealer(endpoint, server_public)
    trips = round_trips(bus.echo_trip(sock, os.urandom(body_bytes)), len(at), warmup, before=_pace(warmup, at, time.sleep))
    out.put(("result", "raw-idle", trips.result()))
    sock.close(0)
    ctx.term()


def _log_tails(logs: Path, lines: int = 3) -> dict[str, str]:
    """The last lines of each log of a failed stack (a crashed persister says why there)."""
    out = {}
    for path in sorted(logs.glob("*.log")):
        try:
            tail = path.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            continue
        out[path.stem] = " | ".join(tail)
    return out


# ---------------------------------------------------------------------------
# the orchestrator
# ---------------------------------------------------------------------------
class PlainRaw(bus.Bench):
    """bus.Bench's raw forwarder and zmq.proxy with CurveZMQ off (benchmark only).

    It shares the parent's processes, inbox and EMS broker, so that
    ``bus.Bench.throughput_trial("raw" | "proxy")`` measures these two with
    exactly the code that measures the Curve ones.
    """

    def __init__(self, parent: bus.Bench):
        super().__init__(parent.s, parent.work)
        self.procs, self.inbox, self.data = parent.procs, parent.inbox, parent.data
        self.broker, self.endpoint, self.server_key = parent.broker, parent.endpoint, parent.server_key

    def start_raw(self) -> None:
        defaults = BrokerConfig(self.data)
        self.raw_public = None
        self.forwarder = self.procs.start("plain-forwarder", bus.raw_forwarder_main, None, None, defaults.send_hwm,
                                          defaults.receive_hwm, defaults.batch, self.inbox.q, "plain-forwarder", True)
        self.forwarder_endpoint = self.inbox.get("ready", "plain-forwarder", 20)
        self.proxy = self.procs.start("plain-proxy", bus.raw_proxy_main, None, None, defaults.send_hwm,
                                      defaults.receive_hwm, self.inbox.q)
        self.proxy_front, self.proxy_back = self.inbox.get("ready", "proxy", 20)
        self.lean, self.lean_endpoint = self.forwarder, self.forwarder_endpoint  # throughput_trial looks every server up
        progress(f"curve-off forwarder pid {self.forwarder.pid} on {self.forwarder_endpoint}, "
                 f"curve-off zmq.proxy pid {self.proxy.pid}")


class PeerBench:
    def __init__(self, settings: Settings, workdir: Path):
        self.s = settings
        self.work = workdir
        self.ems = bus.Bench(settings.for_bus(), workdir)
        self.procs, self.inbox, self.ctx = self.ems.procs, self.ems.inbox, self.ems.ctx
        self.servers: list[Proc] = []
        self.results: dict[str, Any] = {}

    def want(self, *sections: str) -> bool:
        return any(x in self.s.sections for x in sections)

    # -- set-up ---------------------------------------------------------------
    def start(self) -> None:
        if self.want("throughput", "rtt", "idle", "curve"):
            self.ems.prepare_ems()
            self.ems.start_broker()
            self.ems.start_raw()
        if self.want("curve"):
            self.plain = PlainRaw(self.ems)
            self.plain.start_raw()
        if self.want("throughput", "durable"):
            self.mosquitto, self.mqtt_port = start_mosquitto(self.work)
            self.servers.append(self.mosquitto)
            progress(f"mosquitto pid {self.mosquitto.popen.pid} on 127.0.0.1:{self.mqtt_port}")
        if self.want("throughput", "rtt", "idle"):
            self.nats, self.nats_port = start_nats(self.work)
            self.servers.append(self.nats)
            progress(f"nats-server pid {self.nats.popen.pid} on 127.0.0.1:{self.nats_port}")

    def stop(self) -> None:
        self.procs.stop_all()
        for server in reversed(self.servers):
            server.stop()

    # -- (a) and (c): routed events/s ----------------------------------------------
    def peer_trial(self, side: str, qos: int = 0, db_path: str = "", events: int | None = None) -> tuple[Trial, dict]:
        """One trial against Mosquitto or NATS, the same protocol as bus.Bench.throughput_trial."""
        s = self.s
        events = events or s.events
        go, done, finish = self.ctx.Event(), self.ctx.Event(), self.ctx.Event()
        t_go = self.ctx.Value("d", 0.0)
        expected = s.publishers * events
        names = [f"bench-pub-{i}" for i in range(s.publishers)]
        timeout_s = s.trial_timeout_s
        if side == "mosquitto":
            server, port = self.mosquitto, self.mqtt_port
            consumer = self.procs.start("mqtt-consumer", mqtt_consumer_main, port, expected, qos, db_path, s.durable_batch,
                                        go, t_go, done, self.inbox.q, timeout_s)
            pubs = [self.procs.start(name, mqtt_publisher_main, name, port, events, s.body_bytes, qos, go, finish,
                                     self.inbox.q, timeout_s) for name in names]
        else:
            server, port = self.nats, self.nats_port
            consumer = self.procs.start("nats-consumer", nats_consumer_main, port, expected, go, t_go, done, self.inbox.q,
                                        timeout_s)
            pubs = [self.procs.start(name, nats_publisher_main, name, port, events, s.body_bytes, go, finish, self.inbox.q,
                                     timeout_s) for name in names]
        try:
            self.inbox.get("ready", "consumer", 20)
            for name in names:
                self.inbox.get("ready", name, 20)
            cpu0 = thread_cpu(server.popen.pid)
            t_go.value = time.monotonic()
            go.set()
            pub_results = [self.inbox.get("result", name, timeout_s + 10) for name in names]
            done.set()
            result = self.inbox.get("result", "consumer", timeout_s + 10)
            cpu1 = thread_cpu(server.popen.pid)
        finally:
            finish.set()
            for proc in [consumer, *pubs]:
                proc.join(10)
                self.procs.stop(proc)
        sent = sum(p["sent"] for p in pub_results)
        elapsed = result["elapsed_s"]
        trial = Trial(side if not qos else f"{side}-qos{qos}", sent, result["received"], elapsed,
                      result["received"] / elapsed if elapsed > 0 else 0.0,
                      sum(p["sent"] / p["elapsed_s"] for p in pub_results if p["elapsed_s"] > 0),
                      0, result["bad"], {}, cpu_delta(cpu0, cpu1),
                      sum(p["cpu_s"] for p in pub_results) + result["cpu_s"], max(p["elapsed_s"] for p in pub_results),
                      result["first_s"])
        extra = {"publishers": pub_results, "consumer": result}
        busy = sum(trial.server_cpu.values()) / elapsed * 100 if elapsed else 0.0
        progress(f"  {trial.side:9}: {trial.received:,}/{trial.sent:,} in {elapsed:.2f} s = {trial.events_per_s:,.0f} ev/s; "
                 f"lost {trial.lost:,}; publishers done after {trial.publish_s:.2f} s; server CPU {busy:.0f} %; "
                 f"load generator CPU {trial.load_cpu_s:.2f} s" + (f"; errors {result['errors']}" if result.get("errors") else ""))
        return trial, extra

    def throughput(self) -> None:
        s = self.s
        sides = ["ems", "mosquitto", "nats", "raw"] + (["raw-plain"] if self.want("curve") else [])
        progress(f"throughput: {s.publishers} publishers x {s.events:,} events of {s.body_bytes} B, {s.trials} trial(s), "
                 f"sides rotated: {', '.join(sides)} (+ zmq.proxy once{', with and without Curve' if self.want('curve') else ''})")
        trials: dict[str, list[Trial]] = {side: [] for side in sides}
        for i in range(s.trials):
            for side in sides[i % len(sides):] + sides[: i % len(sides)]:
                if side in ("mosquitto", "nats"):
                    trials[side].append(self.peer_trial(side)[0])
                elif side == "raw-plain":
                    trials[side].append(self.plain.throughput_trial("raw"))
                else:
                    trials[side].append(self.ems.throughput_trial(side))
        trials["proxy"] = [self.ems.throughput_trial("proxy")]
        if self.want("curve"):
            trials["proxy-plain"] = [self.plain.throughput_trial("proxy")]
        self.results["throughput"] = {side: [asdict(t) | {"lost": t.lost} for t in ts] for side, ts in trials.items()}

    # -- (b): command round trips ------------------------------------------------
    def rtt(self) -> None:
        s = self.s
        self.ems.raw_rtt()
        self.ems.command_rtt()
        self.results["raw_echo_direct"] = self.ems.results["raw_echo_direct"]
        self.results["raw_echo_relay"] = self.ems.results["raw_echo_relay"]
        self.results["command_rtt"] = self.ems.results["command_rtt"]
        progress(f"NATS request/reply: {s.round_trips} sequential round trips, {s.warmup} warm-up")
        responder = self.procs.start("nats-responder", nats_responder_main, self.nats_port, self.inbox.q)
        try:
            self.inbox.get("ready", "nats-responder", 20)
            client = self.procs.start("nats-rtt", nats_rtt_main, self.nats_port, s.round_trips, s.warmup, s.body_bytes, [],
                                      self.inbox.q, "nats-rtt")
            result = self.inbox.get("result", "nats-rtt", 60 + s.round_trips * 0.01)
            self.procs.stop(client)
        finally:
            self.procs.stop(responder)
        self.results["nats_rtt"] = percentiles(result["latencies_us"]) | {"failures": result["failures"]}
        r = self.results["nats_rtt"]
        progress(f"  NATS: p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms, max {r['max_ms']:.3f} ms")

    def idle_rtt(self) -> None:
        """One round trip per system every idle_s, round-robin: EMS, NATS, raw echo."""
        s = self.s
        systems = ("ems", "nats", "raw")
        progress(f"idle round trips: {s.idle_trips} per system, one every {s.idle_s:g} s round-robin over "
                 f"{', '.join(systems)} (about {s.idle_trips * len(systems) * s.idle_s:.0f} s)")
        agent = self.procs.start("ems-agent", bus.ems_agent_main, self.ems.endpoint, self.ems.server_key,
                                 self.ems.pairs[bus.AGENT_ID], self.inbox.q)
        responder = self.procs.start("nats-responder", nats_responder_main, self.nats_port, self.inbox.q)
        clients = []
        try:
            self.inbox.get("ready", "agent", 20)
            self.inbox.get("ready", "nats-responder", 20)
            t0 = time.monotonic() + 5.0 + s.idle_s  # time for every client to connect and warm up first
            at = {name: [t0 + (i * len(systems) + k) * s.idle_s for i in range(s.idle_trips)]
                  for k, name in enumerate(systems)}
            warm = 10
            clients.append(self.procs.start("ems-idle", ems_idle_operator_main, self.ems.endpoint, self.ems.server_key,
                                            self.ems.pairs[bus.OPERATOR_ID], warm, at["ems"], self.inbox.q))
            clients.append(self.procs.start("nats-idle", nats_rtt_main, self.nats_port, 0, warm, s.body_bytes, at["nats"],
                                            self.inbox.q, "nats-idle"))
            clients.append(self.procs.start("raw-idle", raw_idle_rtt_main, self.ems.echo_endpoint, self.ems.raw_public, warm,
                                            s.body_bytes, at["raw"], self.inbox.q))
            wait_s = t0 - time.monotonic() + s.idle_trips * len(systems) * s.idle_s + 30
            for name in systems:
                result = self.inbox.get("result", f"{name}-idle", wait_s)
                self.results[f"{name}_idle_rtt"] = percentiles(result["latencies_us"]) | {"failures": result["failures"]}
                r = self.results[f"{name}_idle_rtt"]
                progress(f"  {name} after {s.idle_s:g} s idle: p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms, "
                         f"max {r['max_ms']:.3f} ms, failures {r['failures']}")
        finally:
            for proc in clients + [responder, agent]:
                self.procs.stop(proc)

    # -- (d): durable ---------------------------------------------------------------
    def durable(self) -> None:
        from bench.store import run_end_to_end
        from bench.store_write import bench_raw, make_records

        s = self.s
        procs, agents = s.durable_processes, s.durable_agents
        progress(f"durable: EMS end to end, {s.durable_events:,} events, {procs} agent processes x {agents} agents "
                 "(outbox -> broker -> persister -> SQLite -> ack)")
        timeout_s = 60 + s.durable_events / 2000  # (a stalled run must not hold the whole bench for 10 minutes)
        try:
            e2e = run_end_to_end(self.work / "e2e", s.durable_events, procs, agents, timeout_s)
            progress(f"  EMS: {e2e['events_per_s']:,.0f} events/s, stored {e2e['stored']:,}/{e2e['events']:,}")
        except SystemExit as exc:  # run_end_to_end's way of saying the agents did not finish
            e2e = {"events": s.durable_events, "error": f"{exc} within {timeout_s:.0f} s", "logs": _log_tails(self.work / "e2e" / "logs")}
            progress(f"  EMS: FAILED: {e2e['error']}")
            for name, tail in e2e["logs"].items():
                progress(f"    {name}: {tail}")
        progress(f"durable: Mosquitto QoS 1, {procs} publishers x {s.durable_events // procs:,} -> one paho subscriber "
                 f"committing batches of {s.durable_batch} into SQLite")
        saved = self.s.publishers
        self.s.publishers = procs
        try:
            trial, extra = self.peer_trial("mosquitto", qos=1, db_path=str(self.work / "mqtt-writer.db"),
                                           events=s.durable_events // procs)
        finally:
            self.s.publishers = saved
        consumer = extra["consumer"]
        acked = sum(p.get("acked", 0) for p in extra["publishers"])
        pub_s = max(p["elapsed_s"] for p in extra["publishers"])
        mqtt = {"events": trial.sent, "acked_by_broker": acked, "received": trial.received,
                "committed": consumer["committed"], "stored": consumer["stored"],
                "puback_s": pub_s, "puback_per_s": acked / pub_s if pub_s else 0.0,
                "commit_s": consumer["commit_elapsed_s"],
                "events_per_s": consumer["stored"] / consumer["commit_elapsed_s"] if consumer["commit_elapsed_s"] else 0.0,
                "server_cpu_s": sum(trial.server_cpu.values())}
        progress(f"  Mosquitto QoS 1: {mqtt['events_per_s']:,.0f} committed events/s (PUBACKed by the broker at "
                 f"{mqtt['puback_per_s']:,.0f}/s), stored {mqtt['stored']:,}/{mqtt['events']:,}")
        progress(f"durable: raw SQLite executemany ceiling, {s.durable_events:,} rows in batches of {s.durable_batch}")
        records = make_records(s.durable_events, procs * agents)
        timer = bench_raw(self.work / "raw-ceiling.db", records, s.durable_batch, "NORMAL")
        raw = {"events": len(records), "seconds": timer.wall, "events_per_s": len(records) / timer.wall}
        progress(f"  raw executemany: {raw['events_per_s']:,.0f} rows/s")
        self.results["durable"] = {"ems": e2e, "mosquitto_qos1": mqtt, "raw_sqlite": raw}

    # -- the run ----------------------------------------------------------------
    def run(self) -> dict:
        try:
            self.start()
            if self.want("throughput"):
                self.throughput()
            elif self.want("curve"):
                self.curve_only()
            if self.want("rtt"):
                self.rtt()
            if self.want("idle"):
                self.idle_rtt()
            if self.want("durable"):
                self.durable()
        finally:
            self.stop()
        return self.results

    def curve_only(self) -> None:
        """--only curve: the raw forwarder and zmq.proxy with and without Curve, alternated."""
        trials: dict[str, list[Trial]] = {"raw": [], "raw-plain": []}
        for i in range(self.s.trials):
            for side in ("raw", "raw-plain") if i % 2 == 0 else ("raw-plain", "raw"):
                trials[side].append((self.plain if side == "raw-plain" else self.ems).throughput_trial("raw"))
        trials["proxy"] = [self.ems.throughput_trial("proxy")]
        trials["proxy-plain"] = [self.plain.throughput_trial("proxy")]
        self.results["throughput"] = {side: [asdict(t) | {"lost": t.lost} for t in ts] for side, ts in trials.items()}


# ---------------------------------------------------------------------------
# summary and table
# ---------------------------------------------------------------------------
def _trials(results: dict, side: str) -> list[Trial]:
    return [Trial(**{k: v for k, v in t.items() if k != "lost"}) for t in results.get("throughput", {}).get(side, [])]


def _cpu_us(trial: Trial) -> float:
    """Server CPU per event, every thread of the server process (the EMS broker's libzmq I/O thread included)."""
    return sum(trial.server_cpu.values()) / trial.received * 1e6 if trial.received else 0.0


def _rtt(r: dict) -> dict:
    return {k: r[k] for k in ("n", "p50_ms", "p99_ms", "max_ms", "mean_ms", "failures") if k in r}


def summarise(settings: Settings, results: dict, facts: dict, runtime_s: float) -> dict:
    summary: dict[str, Any] = {"throughput": {}, "rtt": {}, "rtt_idle": {}, "targets": {}}
    for side in ("ems", "mosquitto", "nats", "raw", "raw-plain", "proxy", "proxy-plain"):
        trials = _trials(results, side)
        if not trials:
            continue
        t = bus.median_trial(trials)
        summary["throughput"][side] = {
            "events_per_s": t.events_per_s, "trials_events_per_s": [x.events_per_s for x in trials],
            "server_cpu_us_per_event": _cpu_us(t), "lost": sum(x.lost for x in trials),
            "dropped_counted": sum(x.counters.get("dropped_hwm", 0) for x in trials),
            "sent": sum(x.sent for x in trials), "received": sum(x.received for x in trials),
            "publisher_rate": t.publisher_rate, "publish_s": t.publish_s, "elapsed_s": t.elapsed_s,
        }
    tp = summary["throughput"]
    targets = summary["targets"]

    def ratio(a: str, b: str) -> float | None:
        return tp[a]["events_per_s"] / tp[b]["events_per_s"] if a in tp and b in tp and tp[b]["events_per_s"] else None

    if ratio("ems", "mosquitto") is not None:
        r = ratio("ems", "mosquitto")
        targets["ems_vs_mosquitto"] = {"what": f"routed events/s, EMS >= {TARGET_EMS_VS_MOSQUITTO:g}x Mosquitto QoS 0",
                                       "value": r, "shown": f"{r:.2f}x", "met": r >= TARGET_EMS_VS_MOSQUITTO}
    if ratio("raw-plain", "raw") is not None:
        r = ratio("raw-plain", "raw")
        targets["curve_slowdown"] = {"what": f"CurveZMQ costs <= {TARGET_CURVE_SLOWDOWN:g}x (raw forwarder off / on)",
                                     "value": r, "shown": f"{r:.2f}x", "met": r <= TARGET_CURVE_SLOWDOWN}
    for key, name in (("command_rtt", "ems"), ("nats_rtt", "nats"), ("raw_echo_direct", "raw"), ("raw_echo_relay", "raw_relay")):
        if key in results:
            summary["rtt"][name] = _rtt(results[key])
    for name in ("ems", "nats", "raw"):
        if f"{name}_idle_rtt" in results:
            summary["rtt_idle"][name] = _rtt(results[f"{name}_idle_rtt"])
    for label, block in (("", summary["rtt"]), ("_idle", summary["rtt_idle"])):
        ems = block.get("ems")
        if not ems:
            continue
        when = "back to back" if not label else f"after {settings.idle_s:g} s idle"
        targets[f"command_p50{label}"] = {"what": f"EMS command p50 <= {TARGET_RTT_P50_MS * 1000:.0f} us ({when})",
                                          "value": ems["p50_ms"], "shown": f"{ems['p50_ms'] * 1000:.0f} us",
                                          "met": ems["p50_ms"] <= TARGET_RTT_P50_MS and not ems["failures"]}
        targets[f"command_p99{label}"] = {"what": f"EMS command p99 <= {TARGET_RTT_P99_MS * 1000:.0f} us ({when})",
                                          "value": ems["p99_ms"], "shown": f"{ems['p99_ms'] * 1000:.0f} us",
                                          "met": ems["p99_ms"] <= TARGET_RTT_P99_MS and not ems["failures"]}
    if "durable" in results:
        d = results["durable"]
        ems, mqtt = d["ems"].get("events_per_s", 0.0), d["mosquitto_qos1"]["events_per_s"]
        summary["durable"] = {"ems_events_per_s": ems, "mosquitto_qos1_events_per_s": mqtt,
                              "mosquitto_puback_per_s": d["mosquitto_qos1"]["puback_per_s"],
                              "raw_sqlite_events_per_s": d["raw_sqlite"]["events_per_s"],
                              "ems_stored": d["ems"].get("stored", 0), "ems_events": d["ems"]["events"],
                              "ems_error": d["ems"].get("error", ""),
                              "mosquitto_stored": d["mosquitto_qos1"]["stored"], "mosquitto_events": d["mosquitto_qos1"]["events"]}
        shown = f"{ems:,.0f}/s" if not d["ems"].get("error") else "failed"
        targets["durable_rate"] = {"what": f"EMS durable >= {TARGET_DURABLE_PER_S:,} events/s end to end", "value": ems,
                                   "shown": shown, "met": ems >= TARGET_DURABLE_PER_S}
        targets["durable_vs_mosquitto"] = {"what": "EMS durable ahead of Mosquitto QoS 1 + SQLite writer",
                                           "value": ems / mqtt if mqtt else None,
                                           "shown": f"{ems / mqtt:.2f}x" if mqtt and ems else "-", "met": bool(mqtt) and ems > mqtt}
    return {"machine": facts, "settings": asdict(settings), "summary": summary, "results": results,
            "runtime_s": runtime_s, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def print_report(report: dict) -> None:
    facts, s, summ = report["machine"], report["settings"], report["summary"]
    v = facts["peers"]
    print()
    print(f"EMS vs peer brokers: {facts['cpus']} cores ({facts['cpu_model']}), Python {facts['python']}, "
          f"pyzmq {facts['pyzmq']} / libzmq {facts['libzmq']}, Mosquitto {v['mosquitto']} + paho-mqtt {v['paho_mqtt']}, "
          f"nats-server {v['nats_server']} + nats-py {v['nats_py']}, SQLite {v['sqlite']}")
    print(f"machine {facts['busy_before_start'] * 100:.0f} % busy just before the bench; load average "
          f"{', '.join(f'{x:.2f}' for x in facts['loadavg_at_start'])}")
    tp = summ["throughput"]
    names = {"ems": "EMS broker (Curve)", "mosquitto": "Mosquitto QoS 0", "nats": "NATS core",
             "raw": "raw pyzmq forwarder (Curve)", "raw-plain": "raw pyzmq forwarder (no Curve)",
             "proxy": "libzmq zmq.proxy (Curve)", "proxy-plain": "libzmq zmq.proxy (no Curve)"}
    if tp:
        ems = tp.get("ems", {}).get("events_per_s")
        print(f"\n(a) routed events/s, {s['publishers']} publishers x {s['events']:,} events of {s['body_bytes']} B, "
              f"median of {s['trials']} trial(s)")
        print(f"  {'':34} {'events/s':>10} {'EMS/this':>9} {'server CPU/event':>17} {'lost':>8}  trials")
        for side, row in tp.items():
            rel = f"{ems / row['events_per_s']:.2f}x" if ems and row["events_per_s"] else "-"
            print(f"  {names[side]:34} {row['events_per_s']:10,.0f} {rel:>9} {row['server_cpu_us_per_event']:14.1f} us "
                  f"{row['lost']:8,}  " + " ".join(f"{x / 1000:.1f}k" for x in row["trials_events_per_s"]))
    for title, block in (("(b) command round trip, back to back", summ["rtt"]),
                         (f"(b) command round trip after {s['idle_s']:g} s idle", summ["rtt_idle"])):
        if not block:
            continue
        print(f"\n{title}")
        print(f"  {'':44} {'n':>5} {'p50':>9} {'p99':>9} {'max':>9} {'failed':>7}")
        label = {"ems": "EMS send_command + wait_result", "nats": "NATS request/reply",
                 "raw": "raw ROUTER/DEALER echo (direct, 2 hops)", "raw_relay": "raw relay echo (forwarder, 4 hops)"}
        for name, r in block.items():
            print(f"  {label[name]:44} {r['n']:5} {r['p50_ms'] * 1000:6.0f} us {r['p99_ms'] * 1000:6.0f} us "
                  f"{r['max_ms'] * 1000:6.0f} us {r['failures']:7}")
    if "durable" in summ:
        d = summ["durable"]
        print("\n(d) durable events/s")
        print(f"  EMS end to end (outbox -> broker -> persister -> commit -> ack): {d['ems_events_per_s']:10,.0f}  "
              f"stored {d['ems_stored']:,}/{d['ems_events']:,}" + (f"  FAILED: {d['ems_error']}" if d["ems_error"] else ""))
        print(f"  Mosquitto QoS 1 -> paho -> SQLite commit -> PUBACK:              {d['mosquitto_qos1_events_per_s']:10,.0f}  "
              f"stored {d['mosquitto_stored']:,}/{d['mosquitto_events']:,} (publisher PUBACKs from the broker: "
              f"{d['mosquitto_puback_per_s']:,.0f}/s)")
        print(f"  raw SQLite executemany ceiling:                                  {d['raw_sqlite_events_per_s']:10,.0f}")
    if summ["targets"]:
        print("\ntargets (from the issue):")
        for t in summ["targets"].values():
            print(f"  {t['what']:62} {t['shown']:>10}  {'met' if t['met'] else 'MISSED'}")
    print(f"runtime {report['runtime_s']:.1f} s")


# ---------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/peers.py", formatter_class=argparse.RawDescriptionHelpFormatter,
                                description=__doc__)
    p.add_argument("--quick", action="store_true", help="1 trial of 50,000 events per publisher, 200 round trips, "
                   "10 idle round trips, 20,000 durable events")
    p.add_argument("--only", metavar="LIST", help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})")
    p.add_argument("--events", type=int, metavar="N", help="events per publisher per trial (default 100,000)")
    p.add_argument("--publishers", type=int, metavar="N", help="publisher processes (default 2)")
    p.add_argument("--trials", type=int, metavar="N", help="throughput trials per side, median reported (default 3)")
    p.add_argument("--round-trips", type=int, metavar="N", help="back-to-back round trips per system (default 1,000)")
    p.add_argument("--warmup", type=int, metavar="N", help="round trips before measuring (default 100)")
    p.add_argument("--idle-trips", type=int, metavar="N", help="round trips per system after an idle gap (default 50)")
    p.add_argument("--idle-s", type=float, metavar="S", help="the idle gap (default 1 s)")
    p.add_argument("--body-bytes", type=int, metavar="N", help="event body size (default 200)")
    p.add_argument("--durable-events", type=int, metavar="N", help="durable events per system (default 100,000)")
    p.add_argument("--json", metavar="PATH", help="write every figure as JSON to PATH")
    args = p.parse_args(argv)
    if args.only and not set(args.only.split(",")) <= set(SECTIONS):
        p.error(f"--only takes {','.join(SECTIONS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.from_args(args)
    facts = bus.machine_facts() | {"peers": peer_versions()}
    progress(f"{facts['cpus']} cores, Mosquitto {facts['peers']['mosquitto']}, nats-server {facts['peers']['nats_server']}")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ems-bench-peers-") as tmp:
        results = PeerBench(settings, Path(tmp)).run()
    report = summarise(settings, results, facts, time.monotonic() - t0)
    print_report(report)
    bus.write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
