"""Fleet: the EMS broker with 1k-10k simulated agents, beside its libzmq floor and Mosquitto.

For each size N (``--sizes``), one system after the other on this machine
(``--systems``, default all three):

EMS      ``ems broker`` + ``ems persist`` (bench/stack.py's ServerStack, the
         agent's default timing: heartbeat 5 s, offline after 15 s), the N
         agent keys enrolled in the registry before the broker starts, and N
         lean agents (bench/fleet_clients.py: one CurveZMQ DEALER each, HELLO,
         heartbeats as the client library sends them, one 1.4 KB sysinfo
         EVENT per agent per 10 s) in processes of at most ``--per-process``
         (two at least, so that one can be killed).
floor    bench/fleet_floor.py: a CurveZMQ ROUTER with the broker's socket
         options and ZAP decision that only answers HELLO and heartbeats,
         with the same agents: what libzmq + CurveZMQ + ZAP cost before any
         EMS logic (the ceiling EMS is measured against).
Mosquitto the Debian binary on a random port (bench/peers.py's config) and N
         raw-socket MQTT 3.1.1 clients in the same processes: CONNECT,
         a PINGREQ when idle for a heartbeat interval, the same body as a
         QoS 0 PUBLISH per 10 s; one more client subscribes to ``event/#``
         (the counterpart of the EMS persister, which stores every event and
         acknowledges it to its agent).

Measured, per system and size:

- server RSS before any client connects and at steady state: (steady - idle)
  / N is the memory per client; the peak is kept too;
- server CPU (every thread: psutil user + system) over a steady
  ``--window-s`` as a share of one core, beside the messages/s the clients sent
  and how busy the whole machine was;
- connect: seconds from starting the clients until all are welcomed
  (EMS WELCOME, MQTT CONNACK);
- EMS presence accuracy: the broker's own view (``status``: online agents
  and each agent's last presence change) against the agents that are
  actually connected; then one client process is SIGKILLed and the time until
  the broker marks its agents offline is taken from those presence stamps;
- reconnect storm: the server is SIGKILLed and restarted on the same port
  and data; the time from the kill until every client is welcomed again
  (clients' clock; EMS also by the broker's presence stamps), and how many
  failed to come back within ``--storm-timeout-s``.

Targets from the issue, judged at the largest size with the floor and
Mosquitto beside each: 10,000 agents on this 2-core machine, <= 30 KB of
broker memory per agent, <= 50 % of one core, storm <= 60 s. Reference
figures (cited, not measured here): Salt needed 24 cores for 8,400 minions;
MeshCentral runs 14,000 devices on 2 vCPU.

    python -m bench.fleet                         # 1k, 2.5k, 5k, 10k: about 12 min
    python -m bench.fleet --quick                 # 1k and 2.5k, shorter windows: about 4 min
    python -m bench.fleet --sizes 1000 --systems ems --json bench/out/fleet.json

Progress goes to stderr, the table to stdout. Every process started here is
stopped by its pid, also on Ctrl-C or an error.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from bench import bus
from bench.bus import progress, write_json
from bench.fleet_clients import write_keys
from bench.peers import peer_versions, start_mosquitto, wait_port
from bench.reliability import operator, wait_broker
from bench.stack import Proc, ServerStack, free_port
from broker.core import keys as keyfiles
from broker.core.client import BusClient
from broker.core.errors import EmsError
from broker.server.registry import KeyRegistry

#: the targets from the issue
TARGET_AGENTS = 10_000
TARGET_KB_PER_AGENT = 30.0
TARGET_CPU_SHARE = 0.50
TARGET_STORM_S = 60.0
#: cited in the issue, not measured here
REFERENCES = [
    {"system": "Salt", "figure": "24 cores for 8,400 minions", "agents_per_core": 8400 / 24},
    {"system": "MeshCentral", "figure": "14,000 devices on 2 vCPU", "agents_per_core": 14000 / 2},
]
SYSTEMS = ("ems", "floor", "mosquitto")
LABELS = {"ems": "EMS broker (Curve)", "floor": "libzmq floor (Curve+ZAP)", "mosquitto": "Mosquitto (no TLS)"}
#: file descriptors a lean client process needs per client (socket + libzmq mailbox), and some spare
FDS_PER_CLIENT = 2
FDS_SPARE = 200


@dataclass
class Settings:
    sizes: tuple[int, ...] = (1000, 2500, 5000, 10_000)
    systems: tuple[str, ...] = SYSTEMS
    per_process: int = 2500
    heartbeat_s: float = 5.0
    event_s: float = 10.0
    #: after every client is connected, before the CPU window (every client has sent an event by then)
    settle_s: float = 12.0
    window_s: float = 30.0
    storm_timeout_s: float = 180.0
    presence: bool = True

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Settings":
        s = cls(sizes=(1000, 2500), settle_s=11.0, window_s=15.0, storm_timeout_s=120.0) if args.quick else cls()
        if args.sizes:
            s.sizes = tuple(args.sizes)
        if args.systems:
            s.systems = tuple(args.systems)
        for name in ("per_process", "window_s", "settle_s", "storm_timeout_s", "heartbeat_s", "event_s"):
            value = getattr(args, name)
            if value is not None:
                setattr(s, name, value)
        s.presence = not args.no_presence
        return s

    @property
    def peer_timeout_s(self) -> float:
        return 3 * self.heartbeat_s

    def connect_timeout_s(self, n: int) -> float:
        return 60.0 + n / 50


def shards(n: int, per_process: int, at_least_two: bool) -> list[range]:
    """Client index ranges, one per process, as even as possible (two at least when one is to be killed)."""
    count = max(2 if at_least_two else 1, math.ceil(n / per_process))
    bounds = [round(i * n / count) for i in range(count + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(count)]


# ---------------------------------------------------------------------------
# processes we watch
# ---------------------------------------------------------------------------
class SimProc:
    """One bench/fleet_clients.py process; its latest JSON report is kept by a reader thread."""

    def __init__(self, name: str, argv: list[str], log_path: Path, ids: list[str]):
        self.name, self.ids, self.log_path = name, ids, log_path
        with log_path.open("ab") as log:
            self.popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True)
        self.ps = psutil.Process(self.popen.pid)
        self.latest: dict = {}
        self._reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.popen.stdout:
            try:
                self.latest = json.loads(line)
            except ValueError:
                continue

    @property
    def ready(self) -> int:
        return self.latest.get("ready", 0)

    def ready_since_mark(self, marked_at: float) -> int:
        """Clients welcomed since our SIGUSR1 at ``marked_at`` (0 until a report after it arrives)."""
        return self.latest.get("since_mark", 0) if self.latest.get("mark", 0.0) >= marked_at else 0

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise EmsError(f"{self.name} exited with code {self.popen.returncode}: " + " | ".join(tail))

    def cpu_s(self) -> float:
        try:
            t = self.ps.cpu_times()
            return t.user + t.system
        except psutil.Error:
            return 0.0

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._reader.join(2)


class Sampler:
    """RSS and CPU of one server process (all threads), with its peak RSS."""

    def __init__(self, pid: int):
        self.attach(pid)
        self.peak_rss = 0

    def attach(self, pid: int) -> None:
        self.ps = psutil.Process(pid)

    def rss(self) -> int:
        try:
            value = self.ps.memory_info().rss
        except psutil.Error:
            return 0
        self.peak_rss = max(self.peak_rss, value)
        return value

    def cpu_s(self) -> float:
        try:
            t = self.ps.cpu_times()
            return t.user + t.system
        except psutil.Error:
            return 0.0


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    t = psutil.cpu_times()
    total = sum(t)
    return total - t.idle - getattr(t, "iowait", 0.0), total


# ---------------------------------------------------------------------------
# the systems: EMS, the libzmq floor, Mosquitto
# ---------------------------------------------------------------------------
def enrol(registry_path: Path, ids: list[str]) -> dict[str, keyfiles.KeyPair]:
    """Fresh agent key pairs, accepted in the registry at ``registry_path`` before any server starts."""
    pairs = {cid: keyfiles.generate() for cid in ids}
    registry = KeyRegistry(registry_path)
    try:
        for cid, pair in pairs.items():
            registry.add(pair.public, cid, "agent")
    finally:
        registry.close()
    return pairs


class CurveAgents:
    """N enrolled agent keys split into shard key files, and the lean EMS agents that use them."""

    def __init__(self, settings: Settings, work: Path, n: int, registry_path: Path):
        self.s, self.work = settings, work
        ids = [f"fleet-{i:05d}" for i in range(n)]
        pairs = enrol(registry_path, ids)
        self.shard_files: list[tuple[Path, list[str]]] = []
        for k, part in enumerate(shards(n, settings.per_process, settings.presence)):
            path = work / f"shard-{k}.json"
            shard_ids = [ids[i] for i in part]
            write_keys(path, [(cid, pairs[cid].public, pairs[cid].secret) for cid in shard_ids])
            self.shard_files.append((path, shard_ids))

    def start(self, k: int, server: str, server_key: str, log_dir: Path) -> SimProc:
        path, ids = self.shard_files[k]
        argv = [sys.executable, "-m", "bench.fleet_clients", "ems", "--keys", str(path), "--server", server,
                f"--server-key={server_key}", "--heartbeat-s", str(self.s.heartbeat_s), "--event-s", str(self.s.event_s)]
        return SimProc(f"ems-sim-{k}", argv, log_dir / f"sim-{k}.log", ids)


class EmsSide:
    """The EMS broker + persister and N lean agents."""

    name = "ems"
    #: the fleet_clients counters of what clients send (events first)
    sent_counts = ("event", "heartbeat", "hello")

    def __init__(self, settings: Settings, work: Path, n: int):
        self.s, self.work, self.n = settings, work, n
        self.stack = ServerStack(work, heartbeat_s=settings.heartbeat_s)
        self.agents = CurveAgents(settings, work, n, self.stack.data.broker_db)
        self.op: BusClient | None = None

    @property
    def server_pid(self) -> int:
        return self.stack.broker.popen.pid

    def start_server(self) -> None:
        self.stack.start()
        wait_broker(self.stack, timeout_s=60)
        self.op = operator(self.stack)

    def shard_count(self) -> int:
        return len(self.agents.shard_files)

    def start_shard(self, k: int) -> SimProc:
        return self.agents.start(k, self.stack.bind, self.stack.broker_key, self.stack.logs)

    def keep_alive(self) -> None:
        """Let the operator client answer heartbeats between requests."""
        if self.op is not None:
            try:
                self.op.drain(1000, 0.0)
            except EmsError:
                pass

    def status(self) -> dict:
        return self.op.request("status", timeout_s=30)

    def presence(self) -> tuple[set[str], dict[str, float]]:
        """The broker's view: agents it lists online, and every agent's last presence change (wall clock)."""
        agents = self.status()["agents"]
        return {a["client_id"] for a in agents if a["state"] == "online"}, {a["client_id"]: a["last_seen"] or 0.0 for a in agents}

    def kill_server(self) -> None:
        if self.op is not None:
            self.op.close()
            self.op = None
        self.stack.data.endpoint_file.unlink(missing_ok=True)
        self.stack.broker.kill()

    def restart_server(self, timeout_s: float) -> None:
        """Start the broker again on the same port and data dir; return once it listens."""
        self.stack.broker.start()
        deadline = time.monotonic() + timeout_s
        while not self.stack.data.endpoint_file.exists():
            if self.stack.broker.popen.poll() is not None or time.monotonic() > deadline:
                raise EmsError(f"the broker did not come back; see {self.stack.broker.log_path}")
            time.sleep(0.02)

    def reconnect_operator(self) -> None:
        self.op = operator(self.stack)

    def stop(self) -> None:
        if self.op is not None:
            self.op.close()
        self.stack.stop()


class FloorSide:
    """bench/fleet_floor.py (a Curve ROUTER + ZAP, no EMS logic) and the same N lean agents."""

    name = "floor"
    sent_counts = EmsSide.sent_counts

    def __init__(self, settings: Settings, work: Path, n: int):
        self.s, self.work, self.n = settings, work, n
        self.pair = keyfiles.load_or_create(work / "keys", "floor")
        self.agents = CurveAgents(settings, work, n, work / "registry.db")
        self.bind = f"tcp://127.0.0.1:{free_port()}"
        self.ready_file = work / "floor.endpoint"
        self.proc = Proc("floor", [sys.executable, "-m", "bench.fleet_floor", "--bind", self.bind, "--dir", str(work),
                                   "--ready-file", str(self.ready_file), "--heartbeat-s", str(settings.heartbeat_s)],
                         work / "floor.log")

    @property
    def server_pid(self) -> int:
        return self.proc.popen.pid

    def start_server(self) -> None:
        self.restart_server(30)

    def shard_count(self) -> int:
        return len(self.agents.shard_files)

    def start_shard(self, k: int) -> SimProc:
        return self.agents.start(k, self.bind, self.pair.public, self.work)

    def keep_alive(self) -> None:
        pass

    def kill_server(self) -> None:
        self.ready_file.unlink(missing_ok=True)
        self.proc.kill()

    def restart_server(self, timeout_s: float) -> None:
        self.proc.start()
        deadline = time.monotonic() + timeout_s
        while not self.ready_file.exists():
            if self.proc.popen.poll() is not None or time.monotonic() > deadline:
                raise EmsError(f"the floor server did not start; see {self.proc.log_path}")
            time.sleep(0.02)

    def stop(self) -> None:
        self.proc.stop()


class MosquittoSide:
    """Mosquitto and N lean MQTT clients (+ one subscriber to event/#)."""

    name = "mosquitto"
    sent_counts = ("publish", "pingreq", "connect")

    def __init__(self, settings: Settings, work: Path, n: int):
        self.s, self.work, self.n = settings, work, n
        self.parts = shards(n, settings.per_process, settings.presence)  # the same layout as the EMS agents
        self.proc: Proc | None = None
        self.port = 0

    @property
    def server_pid(self) -> int:
        return self.proc.popen.pid

    def start_server(self) -> None:
        self.proc, self.port = start_mosquitto(self.work)

    def shard_count(self) -> int:
        return len(self.parts)

    def start_shard(self, k: int) -> SimProc:
        part = self.parts[k]
        argv = [sys.executable, "-m", "bench.fleet_clients", "mqtt", "--port", str(self.port), "--clients", str(len(part)),
                "--prefix", f"m{k}", "--heartbeat-s", str(self.s.heartbeat_s), "--event-s", str(self.s.event_s)]
        if k == 0:
            argv.append("--subscriber")
        return SimProc(f"mqtt-sim-{k}", argv, self.work / f"mqtt-sim-{k}.log", [f"m{k}-{i:05d}" for i in range(len(part))])

    def keep_alive(self) -> None:
        pass

    def kill_server(self) -> None:
        self.proc.kill()

    def restart_server(self, timeout_s: float) -> None:
        self.proc.start()
        wait_port(self.port, self.proc, timeout_s)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


# ---------------------------------------------------------------------------
# one system at one size
# ---------------------------------------------------------------------------
class FleetRun:
    """Start a system, connect N clients, measure, storm, stop: every phase bounded."""

    def __init__(self, side, settings: Settings):
        self.side, self.s, self.n = side, settings, side.n
        self.sims: list[SimProc] = []
        self.sampler: Sampler | None = None
        self.result: dict = {"system": side.name, "agents": side.n, "processes": side.shard_count()}

    # -- helpers ------------------------------------------------------------
    def tick(self, seconds: float = 0.25) -> None:
        """Wait a little while keeping the peak RSS, the operator and the sims checked."""
        end = time.monotonic() + seconds
        while True:
            if self.sampler is not None:
                self.sampler.rss()
            self.side.keep_alive()
            for sim in self.sims:
                sim.check_alive()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.25, left))

    def ready(self) -> int:
        return sum(sim.ready for sim in self.sims)

    def wait_all_ready(self, timeout_s: float, what: str) -> float:
        t0 = time.monotonic()
        last_said = 0.0
        while self.ready() < self.n or any(not sim.latest.get("min_ready_at") for sim in self.sims):
            if time.monotonic() - t0 > timeout_s:
                raise EmsError(f"{what}: only {self.ready():,} of {self.n:,} {self.side.name} clients ready after {timeout_s:.0f} s")
            if time.monotonic() - last_said >= 5:
                progress(f"  {what}: connected {self.ready():,}/{self.n:,}")
                last_said = time.monotonic()
            self.tick()
        return time.monotonic() - t0

    def client_counts(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for sim in self.sims:
            for k, v in sim.latest.get("counts", {}).items():
                total[k] = total.get(k, 0) + v
        return total

    # -- phases ---------------------------------------------------------------
    def run(self) -> dict:
        try:
            self.start_and_connect()
            self.steady_window()
            if self.side.name == "ems" and self.s.presence:
                self.presence()
            self.storm()
        except (EmsError, RuntimeError, OSError, subprocess.SubprocessError) as exc:  # recorded; the next system still runs
            self.result["error"] = str(exc)
            progress(f"  {self.side.name} N={self.n:,}: {exc}")
        finally:
            for sim in self.sims:
                sim.stop()
            self.side.stop()
        if self.sampler is not None and "rss_peak_mb" not in self.result:
            self.result["rss_peak_mb"] = self.sampler.peak_rss / 2**20
        return self.result

    def start_and_connect(self) -> None:
        side, r = self.side, self.result
        side.start_server()
        self.sampler = Sampler(side.server_pid)
        self.tick(2.0)
        r["rss_idle_mb"] = self.sampler.rss() / 2**20
        progress(f"  {side.name}: server pid {side.server_pid}, RSS {r['rss_idle_mb']:.1f} MB idle; starting {side.shard_count()} "
                 f"client process(es) for {self.n:,} clients")
        cpu0 = self.sampler.cpu_s()
        for k in range(side.shard_count()):  # one by one: whatever started is stopped if a later one fails
            self.sims.append(side.start_shard(k))
        r["connect_s"] = self.wait_all_ready(self.s.connect_timeout_s(self.n), "connect")
        r["connect_server_cpu_s"] = self.sampler.cpu_s() - cpu0
        progress(f"  all {self.n:,} connected in {r['connect_s']:.1f} s")

    def steady_window(self) -> None:
        r, s = self.result, self.s
        self.tick(s.settle_s)
        counts0, cpu0, sims0, machine0 = self.client_counts(), self.sampler.cpu_s(), [x.cpu_s() for x in self.sims], machine_cpu()
        t0 = time.monotonic()
        self.tick(s.window_s)
        wall = time.monotonic() - t0
        counts1, cpu1, sims1, machine1 = self.client_counts(), self.sampler.cpu_s(), [x.cpu_s() for x in self.sims], machine_cpu()
        r["rss_steady_mb"] = self.sampler.rss() / 2**20
        r["kb_per_agent"] = (r["rss_steady_mb"] - r["rss_idle_mb"]) * 1024 / self.n
        r["cpu_share"] = (cpu1 - cpu0) / wall
        r["clients_cpu_share"] = (sum(sims1) - sum(sims0)) / wall
        r["machine_busy"] = (machine1[0] - machine0[0]) / max(1e-9, machine1[1] - machine0[1])
        r["window_s"] = wall
        sent = self.side.sent_counts
        r["client_msgs_per_s"] = sum(counts1.get(k, 0) - counts0.get(k, 0) for k in sent) / wall
        r["events_per_s"] = (counts1.get(sent[0], 0) - counts0.get(sent[0], 0)) / wall
        r["ready_in_window"] = self.ready()
        r["reconnects_in_window"] = sum(v - counts0.get(k, 0) for k, v in counts1.items() if k.startswith("reopen_"))
        r["client_counts"] = counts1
        progress(f"  steady: RSS {r['rss_steady_mb']:.1f} MB ({r['kb_per_agent']:.1f} KB/client), server CPU "
                 f"{r['cpu_share'] * 100:.1f} % of a core, clients sent {r['client_msgs_per_s']:,.0f} msgs/s, "
                 f"machine {r['machine_busy'] * 100:.0f} % busy")

    def presence(self) -> None:
        """The broker's online list vs the connected agents; then one client process dies."""
        r, side = self.result, self.side
        truth = {cid for sim in self.sims for cid in sim.ids} - {cid for sim in self.sims for cid in sim.latest.get("not_ready", [])}
        online, _ = side.presence()
        r["presence_steady"] = {"connected": len(truth), "broker_online": len(online), "missing": len(truth - online),
                                "extra": len(online - truth)}
        victim = self.sims[-1]
        killed, alive = set(victim.ids), truth - set(victim.ids)
        progress(f"  presence: broker lists {len(online):,} online, {len(truth):,} connected; SIGKILL {victim.name} "
                 f"({len(killed):,} agents)")
        t_kill = time.time()
        victim.signal(signal.SIGKILL)
        victim.popen.wait(10)
        self.sims.remove(victim)
        deadline = time.monotonic() + 3 * self.s.peer_timeout_s + 15
        while True:
            self.tick(1.0)
            online, last_seen = side.presence()
            if not online & killed or time.monotonic() > deadline:
                break
        offline_at = [last_seen.get(cid, 0.0) for cid in killed if cid not in online]
        r["presence_kill"] = {"killed": len(killed), "marked_offline": len(offline_at),
                              "detect_max_s": max(offline_at) - t_kill if offline_at else None,
                              "detect_median_s": sorted(offline_at)[len(offline_at) // 2] - t_kill if offline_at else None,
                              "false_offline": len(alive - online), "broker_online": len(online), "connected": len(alive)}
        pk = r["presence_kill"]
        progress(f"  presence: {pk['marked_offline']:,}/{len(killed):,} marked offline, last after "
                 f"{pk['detect_max_s'] or float('nan'):.1f} s; {pk['false_offline']} live agents wrongly offline")
        self.sims.append(side.start_shard(side.shard_count() - 1))
        self.wait_all_ready(self.s.connect_timeout_s(len(killed)), "re-connect of the killed process")

    def storm(self) -> None:
        r, side, s = self.result, self.side, self.s
        progress(f"  storm: SIGKILL the {side.name} server (pid {side.server_pid}) and start it again")
        r["rss_peak_mb"] = self.sampler.peak_rss / 2**20
        counts0 = self.client_counts()
        t_kill = time.time()
        t0 = time.monotonic()
        side.kill_server()
        for sim in self.sims:
            sim.signal(signal.SIGUSR1)  # the clients count welcomes from here on
        side.restart_server(30)
        r["storm_listen_s"] = time.monotonic() - t0
        self.sampler.attach(side.server_pid)
        self.sampler.peak_rss = 0

        def back() -> int:
            return sum(sim.ready_since_mark(t_kill) for sim in self.sims)

        deadline = t0 + s.storm_timeout_s
        last_said = 0.0
        while back() < self.n and time.monotonic() < deadline:
            if time.monotonic() - last_said >= 5:
                progress(f"  storm: back {back():,}/{self.n:,}")
                last_said = time.monotonic()
            self.tick()
        back = back()
        r["storm_back"], r["storm_failed"] = back, self.n - back
        r["storm_s"] = max(sim.latest.get("max_ready_at", 0.0) for sim in self.sims) - t_kill if back == self.n else None
        r["storm_server_cpu_s"] = self.sampler.cpu_s()
        r["storm_client_counts"] = {k: v - counts0.get(k, 0) for k, v in self.client_counts().items() if v != counts0.get(k, 0)}
        r["storm_rss_peak_mb"] = self.sampler.peak_rss / 2**20
        if side.name == "ems":
            side.reconnect_operator()
            online, last_seen = side.presence()
            r["storm_broker_online"] = len(online)
            back_after = sorted(last_seen.get(cid, 0.0) - t_kill for cid in online)
            if back_after:
                r["storm_broker_s"] = back_after[-1]
                r["storm_broker_p50_s"] = back_after[len(back_after) // 2]
                r["storm_broker_p90_s"] = back_after[int(len(back_after) * 0.9)]
        shown = f"{r['storm_s']:.1f} s" if r["storm_s"] is not None else f"not within {s.storm_timeout_s:.0f} s"
        progress(f"  storm: {back:,}/{self.n:,} back, all of them after {shown} (server listening after {r['storm_listen_s']:.1f} s)")


# ---------------------------------------------------------------------------
def check_limits(settings: Settings) -> None:
    """Enough file descriptors for the largest server and each client process (raise the soft limit if needed)."""
    need = max(max(settings.sizes) + FDS_SPARE, settings.per_process * FDS_PER_CLIENT + FDS_SPARE)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    elif need > hard:
        raise SystemExit(f"fleet: needs {need:,} open files per process but the hard limit is {hard:,}; "
                         "use smaller --sizes or --per-process, or raise `ulimit -Hn`")


def run_size(settings: Settings, n: int) -> dict:
    out = {}
    for system in settings.systems:
        progress(f"N={n:,}: {system}")
        with tempfile.TemporaryDirectory(prefix=f"ems-fleet-{system}-{n}-") as tmp:
            side = {"ems": EmsSide, "floor": FloorSide, "mosquitto": MosquittoSide}[system](settings, Path(tmp), n)
            out[system] = FleetRun(side, settings).run()
    return out


def served_all(r: dict) -> bool:
    """Every agent connected, stayed connected through the window and came back after the restart."""
    return bool(r) and "error" not in r and r.get("ready_in_window") == r["agents"] and r.get("storm_failed") == 0


def _beside(res: dict, key: str, shown) -> str:
    """The same figure for the floor and the peer at this size, for a target row."""
    names = {"floor": "libzmq floor", "mosquitto": "Mosquitto"}
    return "; ".join(f"{names[s]} {shown(res[s][key])}" for s in names if res.get(s, {}).get(key) is not None)


def verdicts(sizes: dict[int, dict]) -> dict:
    """The issue's targets, judged at the largest size measured, with the floor and Mosquitto beside each."""
    targets: dict[str, dict] = {}
    largest = max(sizes) if sizes else 0
    res = sizes.get(largest, {})
    ems = res.get("ems", {})
    served = max((n for n, r in sizes.items() if served_all(r.get("ems", {}))), default=0)
    targets["agents"] = {"what": f"{TARGET_AGENTS:,} agents on this {os.cpu_count()}-core machine",
                         "shown": f"{served:,} served" if served else "none served", "beside": "",
                         "met": True if served >= TARGET_AGENTS else (False if largest >= TARGET_AGENTS else None)}
    if ems.get("kb_per_agent") is not None:
        targets["memory"] = {"what": f"broker memory <= {TARGET_KB_PER_AGENT:g} KB per agent ({largest:,} agents)",
                             "value": ems["kb_per_agent"], "shown": f"{ems['kb_per_agent']:.1f} KB",
                             "beside": _beside(res, "kb_per_agent", lambda v: f"{v:.1f} KB"),
                             "met": ems["kb_per_agent"] <= TARGET_KB_PER_AGENT}
    if ems.get("cpu_share") is not None:
        targets["cpu"] = {"what": f"broker CPU <= {TARGET_CPU_SHARE * 100:.0f} % of one core ({largest:,} agents)",
                          "value": ems["cpu_share"], "shown": f"{ems['cpu_share'] * 100:.1f} %",
                          "beside": _beside(res, "cpu_share", lambda v: f"{v * 100:.1f} %"),
                          "met": ems["cpu_share"] <= TARGET_CPU_SHARE}
    if "storm_back" in ems:
        storm = ems.get("storm_s")
        targets["storm"] = {"what": f"reconnect storm <= {TARGET_STORM_S:.0f} s, none failing ({largest:,} agents)",
                            "value": storm, "shown": f"{storm:.1f} s" if storm is not None else f"{ems['storm_failed']:,} not back",
                            "beside": _beside(res, "storm_s", lambda v: f"{v:.1f} s"),
                            "met": storm is not None and storm <= TARGET_STORM_S}
    return targets


def summarise(settings: Settings, sizes: dict[int, dict], facts: dict, runtime_s: float) -> dict:
    return {"machine": facts, "settings": asdict(settings), "sizes": {str(n): res for n, res in sizes.items()},
            "targets": verdicts(sizes), "references": REFERENCES, "runtime_s": runtime_s,
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _fmt(value, spec: str, suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def print_report(report: dict) -> None:
    facts, s = report["machine"], report["settings"]
    print()
    print(f"Fleet: {facts['cpus']} cores ({facts['cpu_model']}), Python {facts['python']}, pyzmq {facts['pyzmq']} / libzmq "
          f"{facts['libzmq']}, Mosquitto {facts['peers']['mosquitto']}; machine {facts['busy_before_start'] * 100:.0f} % busy "
          f"before the run")
    print(f"each client: heartbeat {s['heartbeat_s']:g} s, one {s['event_s']:g}-s event (the agent's sysinfo body); "
          f"<= {s['per_process']:,} clients per process; CPU over {s['window_s']:g} s after {s['settle_s']:g} s settling")
    head = (f"  {'system':26} {'agents':>7} {'connect':>8} {'RSS idle':>9} {'steady':>8} {'KB/agent':>9} {'CPU/core':>9} "
            f"{'msgs/s':>7} {'machine':>8} {'storm':>9} {'failed':>7}")
    print("\n" + head)
    for n, res in report["sizes"].items():
        for system, r in res.items():
            print(f"  {LABELS[system]:26} {int(n):7,} {_fmt(r.get('connect_s'), '.1f', ' s'):>8} "
                  f"{_fmt(r.get('rss_idle_mb'), '.1f', ' MB'):>9} "
                  f"{_fmt(r.get('rss_steady_mb'), '.1f', ' MB'):>8} {_fmt(r.get('kb_per_agent'), '.1f'):>9} "
                  f"{_fmt(r.get('cpu_share') and r['cpu_share'] * 100, '.1f', ' %'):>9} {_fmt(r.get('client_msgs_per_s'), ',.0f'):>7} "
                  f"{_fmt(r.get('machine_busy') and r['machine_busy'] * 100, '.0f', ' %'):>8} {_fmt(r.get('storm_s'), '.1f', ' s'):>9} "
                  f"{_fmt(r.get('storm_failed'), ','):>7}" + (f"  ERROR: {r['error']}" if r.get("error") else ""))
    presence = [(n, res["ems"]) for n, res in report["sizes"].items() if "presence_kill" in res.get("ems", {})]
    if presence:
        print("\n  EMS presence: broker's online list vs connected agents; one client process SIGKILLed")
        print(f"  {'agents':>7} {'online/connected':>17} {'killed':>7} {'offline after (median / last)':>31} {'live marked offline':>20}")
        for n, r in presence:
            st, pk = r["presence_steady"], r["presence_kill"]
            print(f"  {int(n):7,} {st['broker_online']:>8,}/{st['connected']:<8,} {pk['killed']:7,} "
                  f"{_fmt(pk['detect_median_s'], '.1f', ' s'):>20} / {_fmt(pk['detect_max_s'], '.1f', ' s'):<8} {pk['false_offline']:>20,}")
    print("\ntargets (from the issue; at the largest size; the floor and Mosquitto with as many clients beside):")
    for t in report["targets"].values():
        verdict = "–" if t["met"] is None else ("met" if t["met"] else "MISSED")
        print(f"  {t['what']:58} {t['shown']:>12}  {verdict:6}" + (f"  ({t['beside']})" if t["beside"] else ""))
    print("\nreference figures (cited in the issue, not measured here):")
    for ref in report["references"]:
        print(f"  {ref['system']:12} {ref['figure']:28} ({ref['agents_per_core']:,.0f} agents per core)")
    print(f"runtime {report['runtime_s']:.0f} s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def sizes(text: str) -> list[int]:
        try:
            values = [int(x) for x in text.split(",") if x]
        except ValueError:
            raise argparse.ArgumentTypeError("sizes are agent counts like 1000,2500") from None
        if not values or min(values) < 2:
            raise argparse.ArgumentTypeError("give at least one size of 2 or more agents")
        return values

    def systems(text: str) -> list[str]:
        values = [x for x in text.split(",") if x]
        if not values or not set(values) <= set(SYSTEMS):
            raise argparse.ArgumentTypeError(f"systems are {','.join(SYSTEMS)}")
        return values

    p = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=sizes, metavar="LIST", help="agent counts, comma-separated (default 1000,2500,5000,10000)")
    p.add_argument("--quick", action="store_true", help="sizes 1000,2500, a 15 s CPU window, a 120 s storm bound")
    p.add_argument("--systems", type=systems, metavar="LIST", help="ems,mosquitto (default both, one after the other)")
    p.add_argument("--per-process", type=int, metavar="N", help="clients per simulating process (default 2,500)")
    p.add_argument("--window-s", type=float, metavar="S", help="steady window for the CPU share (default 30)")
    p.add_argument("--settle-s", type=float, metavar="S", help="wait after all connected, before the window (default 12)")
    p.add_argument("--storm-timeout-s", type=float, metavar="S", help="how long to wait for every client after a restart (default 180)")
    p.add_argument("--heartbeat-s", type=float, metavar="S", help="heartbeat interval of broker and clients (default 5, the agent's)")
    p.add_argument("--event-s", type=float, metavar="S", help="one event per client per S seconds (default 10)")
    p.add_argument("--no-presence", action="store_true", help="skip the presence check (SIGKILL of one client process)")
    p.add_argument("--json", metavar="PATH", help="write every figure as JSON to PATH (for bench/report.py)")
    args = p.parse_args(argv)
    if args.per_process is not None and args.per_process < 1:
        p.error("--per-process must be at least 1")
    for name in ("window_s", "settle_s", "storm_timeout_s", "heartbeat_s", "event_s"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.from_args(args)
    check_limits(settings)
    facts = bus.machine_facts() | {"peers": peer_versions()}
    progress(f"{facts['cpus']} cores, machine {facts['busy_before_start'] * 100:.0f} % busy; sizes "
             f"{', '.join(f'{n:,}' for n in settings.sizes)}; systems {', '.join(settings.systems)}")
    t0 = time.monotonic()
    sizes: dict[int, dict] = {}
    try:
        for n in settings.sizes:
            sizes[n] = run_size(settings, n)
    except KeyboardInterrupt:
        progress("interrupted: reporting what was measured")
    report = summarise(settings, sizes, facts, time.monotonic() - t0)
    print_report(report)
    write_json(args.json, report)
    return 0 if all("error" not in r for res in sizes.values() for r in res.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
