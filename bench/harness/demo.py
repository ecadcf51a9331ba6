"""A small EMS stack in one process, to look at the console without a fleet.

:class:`DemoStack` prepares a data dir the way ``ems up`` does (keys,
registry, operator profile), seeds the store with a few hours of history,
and runs a broker and a persister on threads plus a :class:`SimFleet` of
simulated agents (real BusClients that report sysinfo and answer
commands). :mod:`bench.harness.screenshots` and ``bench/gui.py`` use it; by hand::

    python -m bench.harness.demo        # prints the data dir, runs until Ctrl-C
    ems gui --data-dir THAT_DIR         # in another terminal

The simulated agents have no screen: they capture nothing and stream no
frames; every command they get is answered ``done`` with ``simulated``. The
seeded history does hold a few screen captures (drawn desktops, see
:func:`desktop_picture`), so the Captures tab has something to show.
"""
from __future__ import annotations

import argparse
import io
import logging
import math
import random
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import zmq
from PIL import Image, ImageDraw

from broker.core.thumbnail_request import COMMAND as THUMBNAIL_COMMAND
from broker.core.thumbnail_request import DEFAULT_WIDTH as THUMBNAIL_WIDTH
from broker.core import keys
from broker.persister.cli import open_store
from broker.core.profile import Profile
from broker.core.profile import load as load_profile
from broker.core.profile import save as save_profile
from broker.core.client import BusClient
from broker.core.config import BrokerConfig, ClientConfig, DataDir, Timing
from broker.core.envelope import Envelope, Kind
from broker.core.errors import EmsError, ProtocolError
from broker.cli.local_stack import prepare
from broker.persister.service import Persister, PersisterConfig
from broker.persister.store import Record
from broker.server.registry import ACCEPTED, KeyRegistry
from broker.server.loop import Broker, serve_in_thread

log = logging.getLogger(__name__)

DEMO_TIMING = Timing(heartbeat_s=1.0, peer_timeout_s=3.0, broker_timeout_s=3.0, reconnect_min_s=0.1, reconnect_max_s=1.0)


@dataclass
class AgentSpec:
    client_id: str
    label: str
    hostname: str
    user: str
    os: str = "Linux"
    online: bool = True
    #: baseline load the simulated CPU and memory wander around
    cpu: float = 20.0
    memory: float = 45.0
    #: use of the fullest disk now (the seeded history climbs to it)
    disk: float = 58.0

    @property
    def disk_mount(self) -> str:
        return "C:\\" if self.os == "Windows" else "/"


DEMO_AGENTS: tuple[AgentSpec, ...] = (
    AgentSpec("reception-01", "Reception", "RECEPTION-01", "m.jones", "Windows", cpu=12, memory=38),
    AgentSpec("finance-01", "Finance 1", "FIN-WS-01", "a.patel", "Windows", cpu=35, memory=62),
    AgentSpec("finance-02", "Finance 2", "FIN-WS-02", "l.chen", "Windows", cpu=22, memory=55),
    AgentSpec("design-lab", "Design lab", "design-lab", "s.okafor", "Linux", cpu=71, memory=83, disk=86),
    AgentSpec("support-03", "Support desk 3", "support-03", "r.silva", "Linux", cpu=18, memory=47),
    AgentSpec("warehouse-scan", "Warehouse scanner", "WH-SCAN-2", "", "Linux", online=False, cpu=8, memory=30),
    AgentSpec("hr-laptop", "HR laptop", "hr-lt-07", "k.novak", "Darwin", online=False, cpu=15, memory=52),
    AgentSpec("build-server", "Build server", "ci-build-1", "ci", "Linux", cpu=88, memory=91, disk=93),
)


# -- simulated agents ---------------------------------------------------------------
@dataclass
class _SimAgent:
    spec: AgentSpec
    bus: BusClient
    next_report: float = 0.0
    cpu: float = 0.0
    memory: float = 0.0
    rng: random.Random = field(default_factory=random.Random)

    def sysinfo(self) -> dict:
        """Load that wanders around the agent's baseline (a random walk pulled back to it)."""
        s = self.spec
        self.cpu = min(100.0, max(0.5, self.cpu + self.rng.gauss(0, 6) + (s.cpu - self.cpu) * 0.15))
        self.memory = min(99.0, max(5.0, self.memory + self.rng.gauss(0, 1.2) + (s.memory - self.memory) * 0.05))
        return {"hostname": s.hostname, "os": s.os, "logged_in_user": s.user, "cpu_percent": round(self.cpu, 1),
                "memory_percent": round(self.memory, 1), "disk_percent": s.disk, "disk_percent_mount": s.disk_mount, "cpu_count": 8,
                "collected_at": time.time()}


    def thumbnail(self) -> dict:
        """What the real agent's ``thumbnail`` command returns, from a drawn desktop."""
        picture = Image.open(io.BytesIO(desktop_picture(self.spec, self.rng, frozen=False)))
        picture.thumbnail((THUMBNAIL_WIDTH, THUMBNAIL_WIDTH))
        out = io.BytesIO()
        picture.save(out, "JPEG", quality=50)
        return {"format": "jpeg", "image": out.getvalue(), "width": picture.width, "height": picture.height, "quality": 50}


class SimFleet:
    """Simulated agents on one thread: sysinfo every ``interval_s`` (spread
    out over the interval), every command answered at once. One poller
    watches every agent's socket, so hundreds cost little while idle."""

    def __init__(self, config: ClientConfig, agents: list[tuple[AgentSpec, keys.KeyPair]], interval_s: float = 1.0,
                 token: str = "", seed: int = 1):
        self.interval_s = interval_s
        self.agents: list[_SimAgent] = []
        start = time.monotonic()
        for n, (spec, pair) in enumerate(agents):
            hello = {"client_id": spec.client_id, "label": spec.label, "hostname": spec.hostname, "user": spec.user,
                     "os": spec.os, "version": "demo"}
            if token:
                hello["token"] = token
            agent = _SimAgent(spec, BusClient(config, pair, hello=hello), rng=random.Random(seed * 7919 + n))
            agent.cpu, agent.memory = spec.cpu, spec.memory
            agent.next_report = start + interval_s * n / max(1, len(agents))
            self.agents.append(agent)
        self.reports = 0
        self.commands = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def ready(self) -> int:
        return sum(1 for a in self.agents if a.bus.ready)

    def start(self) -> SimFleet:
        self._thread = threading.Thread(target=self.run, name="sim-fleet", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def run(self) -> None:
        for agent in self.agents:
            agent.bus.connect()
        poller, sockets = zmq.Poller(), {}
        next_sweep = 0.0
        try:
            while not self._stop.is_set():
                current = {id(a.bus.socket): a for a in self.agents if a.bus.socket is not None}
                if current.keys() != sockets.keys():  # a reconnect made a new socket
                    poller, sockets = zmq.Poller(), current
                    for agent in current.values():
                        poller.register(agent.bus.socket, zmq.POLLIN)
                now = time.monotonic()
                for agent in self.agents:
                    if agent.bus.ready and now >= agent.next_report:
                        agent.next_report += self.interval_s
                        if agent.next_report < now:
                            agent.next_report = now + self.interval_s
                        self._report(agent)
                busy = [sockets[id(s)] for s, _ in poller.poll(20) if id(s) in sockets]
                if now >= next_sweep:  # everyone's timers: heartbeats, reconnects
                    next_sweep = now + 0.25
                    busy = self.agents
                for agent in busy:
                    for env in agent.bus.drain(100, 0.0):
                        self._handle(agent, env)
        finally:
            for agent in self.agents:
                agent.bus.close()

    def _report(self, agent: _SimAgent) -> None:
        try:
            agent.bus.publish(Kind.EVENT, "sysinfo", agent.sysinfo())
            self.reports += 1
        except EmsError as exc:  # a full queue or a reconnect: the next report will do
            log.debug("%s: sysinfo not sent: %s", agent.spec.client_id, exc)

    def _handle(self, agent: _SimAgent, env: Envelope) -> None:
        if env.kind is not Kind.COMMAND:
            return
        self.commands += 1
        try:
            name = env.data().get("name", "?")
        except (ProtocolError, AttributeError):
            name = "?"
        output = agent.thumbnail() if name == THUMBNAIL_COMMAND else {"simulated": True, "command": name}
        try:
            agent.bus.send(Kind.COMMAND_STATUS, data={"status": "delivered"}, corr=env.msg_id)
            agent.bus.send(Kind.RESULT, data={"ok": True, "output": output}, corr=env.msg_id)
        except EmsError as exc:
            log.debug("%s: no answer to %s now: %s", agent.spec.client_id, name, exc)


# -- seeded history ----------------------------------------------------------------
DESKTOP_COLOURS = {"Windows": (22, 78, 130), "Linux": (48, 44, 58), "Darwin": (70, 62, 110)}


def desktop_picture(spec: AgentSpec, rng: random.Random, frozen: bool, size: tuple[int, int] = (1280, 720)) -> bytes:
    """A JPEG that looks like a desktop at a glance: a few text windows, a
    taskbar and, when ``frozen``, a "not responding" dialog on top."""
    width, height = size
    picture = Image.new("RGB", size, DESKTOP_COLOURS.get(spec.os, (40, 40, 40)))
    draw = ImageDraw.Draw(picture)
    draw.rectangle((0, height - 36, width, height), fill=(24, 24, 28))
    for n in range(rng.randint(2, 3)):
        left, top = rng.randint(20, width // 2), rng.randint(20, height // 3)
        right, bottom = min(width - 20, left + rng.randint(420, 700)), min(height - 56, top + rng.randint(260, 420))
        draw.rectangle((left, top, right, bottom), fill=(246, 246, 246), outline=(90, 90, 90))
        draw.rectangle((left, top, right, top + 26), fill=(60, 120, 200) if n == 0 else (120, 120, 130))
        draw.text((left + 10, top + 7), f"{spec.hostname}: document {n + 1}", fill=(255, 255, 255))
        for line in range(top + 40, bottom - 14, 16):
            draw.rectangle((left + 14, line, left + 14 + rng.randint(60, right - left - 40), line + 7), fill=(170, 170, 176))
    if frozen:
        box = (width // 2 - 190, height // 2 - 70, width // 2 + 190, height // 2 + 70)
        draw.rectangle(box, fill=(250, 250, 250), outline=(200, 40, 40), width=3)
        draw.text((box[0] + 20, box[1] + 20), "Invoice app is not responding", fill=(200, 40, 40))
        draw.rectangle((box[2] - 130, box[3] - 44, box[2] - 20, box[3] - 16), fill=(60, 120, 200))
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=70)
    return out.getvalue()


def seed_history(specs: tuple[AgentSpec, ...], now: float, hours: float = 3.0, seed: int = 3) -> list[Record]:
    """Store records that look like a few hours of a small office: sessions,
    metrics every 30 s, some security events, logs, commands and their audit."""
    rng = random.Random(seed)
    records: list[Record] = []
    n = 0

    def add(kind: str, client_id: str, ts: float, topic: str, data: dict, msg_id: str = "") -> None:
        nonlocal n
        n += 1
        records.append(Record(kind, client_id, msg_id or f"seed-{n:06d}", ts, topic, data))

    operator = "it.lead@hq"
    for i, s in enumerate(specs):
        cid = s.client_id
        info = {"user": s.user, "hostname": s.hostname, "os": s.os, "label": s.label}
        for day in (2, 1):  # two earlier working days
            start = now - day * 86400 - 9 * 3600 + rng.uniform(0, 1800)
            add("presence", cid, start, f"presence.{cid}", {"state": "online", "reason": "hello", "info": info})
            add("presence", cid, start + 8.5 * 3600, f"presence.{cid}", {"state": "offline", "reason": "disconnected"})
        # today: up for the last few hours; the offline ones went away a while ago,
        # the others restarted just now (the demo's live connection follows)
        end = now - 30 if s.online else now - 2700 - 900 * i
        start = now - hours * 3600
        add("presence", cid, start, f"presence.{cid}", {"state": "online", "reason": "hello", "info": info})
        add("presence", cid, end, f"presence.{cid}",
            {"state": "offline", "reason": "agent restarted" if s.online else "heartbeat timeout"})
        wobble, mem = 0.0, s.memory
        ts = start
        while ts < end:  # the baseline, a slow swing, and noise that lingers a little
            wobble = 0.7 * wobble + rng.gauss(0, 4)
            cpu = min(100.0, max(0.5, s.cpu + 0.3 * s.cpu * math.sin(2 * math.pi * ts / 3600 + i) + wobble))
            mem = min(99.0, max(5.0, mem + rng.gauss(0, 0.8) + (s.memory - mem) * 0.05))
            add("event", cid, ts, f"event.{cid}.sysinfo",
                {"hostname": s.hostname, "os": s.os, "logged_in_user": s.user, "cpu_percent": round(cpu, 1),
                 "memory_percent": round(mem, 1), "disk_percent": round(s.disk - 4.0 * (end - ts) / (end - start), 1),
                 "disk_percent_mount": s.disk_mount})
            ts += 30
        for minutes, level, message in ((170, "INFO", "agent started; policy loaded"),
                                        (95, "WARNING", "disk C: 91 % full"),
                                        (12, "INFO", "3 OS updates available")):
            if now - minutes * 60 < end:
                add("log", cid, now - minutes * 60 + i, f"log.{cid}", {"level": level, "logger": "agent", "message": message})
        events = [(150, "usb_storage_connected", "info", {"device": "SanDisk Ultra 32GB"}),
                  (64, "login_failed", "warning", {"detail": f"3 failed logins for {s.user or 'admin'}"})]
        if i % 3 == 0:
            events.append((20, "av_signatures_outdated", "high", {"detail": "antivirus signatures 9 days old"}))
        for minutes, event, severity, extra in events:
            if now - minutes * 60 < end:
                add("security", cid, now - minutes * 60 + i * 7, f"security.{cid}.os", {"event": event, "severity": severity, **extra})
        for minutes, name, reason in ((130, "update.check", "weekly patch review"), (40, "capture", "user reported a frozen app"),
                                      (8, "capture", "follow-up: is the app responding again?")):
            if now - minutes * 60 >= end:
                continue
            ts = now - minutes * 60 + i * 11
            cmd_id = f"seedcmd{n:06d}{i:02d}"
            add("audit", operator, ts, f"audit.{operator}",
                {"operator": operator, "role": "admin", "action": "command", "target": cid, "reason": reason,
                 "detail": {"id": cmd_id, "target": cid, "name": name, "reason": reason}})
            # the broker's record of the command first: the store names a capture's operator from it
            add("command_status", cid, ts + 2, f"command.{cid}",
                {"id": cmd_id, "target": cid, "name": name, "status": "done", "operator": operator, "created": ts,
                 "result": {"ok": True, "output": {"update_count": 3} if name == "update.check" else {"bytes": 183_224}}})
            if name == "capture":
                add("event", cid, ts + 1, f"event.{cid}.capture",
                    {"width": 1280, "height": 720, "quality": 70, "format": "jpeg", "command": cmd_id, "reason": reason,
                     "image": desktop_picture(s, rng, frozen=minutes > 10)})
        if s.user and now - 50 * 60 < end:
            seed_chat(add, cid, s.user, operator, now - 50 * 60 + i * 13)
    return records


def seed_chat(add: Callable[..., None], cid: str, user: str, operator: str, ts: float) -> None:
    """A short conversation as the agent reports it: a message the user read,
    their reply, and a message the operator deleted after sending it."""
    topic = f"event.{cid}.chat"
    read_id, deleted_id = f"seedchat-{cid}-1", f"seedchat-{cid}-2"
    for cmd_id, sent in ((read_id, ts), (deleted_id, ts + 130)):  # the broker's record of each chat.send
        add("command_status", cid, sent, f"command.{cid}",
            {"id": cmd_id, "target": cid, "name": "chat.send", "status": "done", "operator": operator, "created": sent})
    add("event", cid, ts, topic, {"direction": "out", "command": read_id, "status": "sent",
                                  "body": "Hello, IT here. Is the invoice app still freezing?"}, read_id)
    add("event", cid, ts + 40, topic, {"ref": read_id, "message_id": read_id, "direction": "out", "status": "read",
                                       "operator": operator, "ts": ts + 40})
    add("event", cid, ts + 95, topic, {"direction": "in", "status": "delivered", "operator": operator,
                                       "body": f"Yes, twice this morning. ({user})", "ts": ts + 95})
    add("event", cid, ts + 130, topic, {"direction": "out", "command": deleted_id, "status": "sent",
                                        "body": "Sent to the wrong desk, sorry."}, deleted_id)
    add("event", cid, ts + 150, topic, {"ref": deleted_id, "message_id": deleted_id, "deleted": True, "ts": ts + 150})


# -- the stack ------------------------------------------------------------------------
class DemoStack:
    """Broker + persister (threads) + simulated agents over a data dir in ``root``."""

    def __init__(self, root: Path, specs: tuple[AgentSpec, ...] = DEMO_AGENTS, interval_s: float = 1.0,
                 seed_hours: float = 3.0):
        self.root = Path(root)
        self.specs = specs
        self.interval_s = interval_s
        self.seed_hours = seed_hours
        self.data = DataDir(self.root / "server")
        self.broker: Broker | None = None
        self._broker_thread: threading.Thread | None = None
        self.persister: Persister | None = None
        self._persister_thread: threading.Thread | None = None
        self.fleet: SimFleet | None = None

    @property
    def data_dir(self) -> Path:
        return self.data.root

    def start(self, timeout_s: float = 20.0) -> DemoStack:
        prepare(self.data, "tcp://127.0.0.1:0", with_agent=False)
        pairs = {s.client_id: keys.load_or_create(self.root / "agents" / s.client_id, "agent") for s in self.specs}
        registry = KeyRegistry(self.data.broker_db)
        try:
            for s in self.specs:
                if registry.get(pairs[s.client_id].public) is None:
                    registry.add(pairs[s.client_id].public, s.client_id, "agent", ACCEPTED, label=s.label)
        finally:
            registry.close()
        store = open_store(self.data)
        try:
            store.write_batch(seed_history(self.specs, time.time(), self.seed_hours))
        finally:
            store.close()
        self.broker, self._broker_thread = serve_in_thread(BrokerConfig(self.data, bind="tcp://127.0.0.1:0", timing=DEMO_TIMING))
        profile = load_profile(self.data)
        save_profile(self.data, Profile(server=self.broker.endpoint, server_key=profile.server_key,
                                        key_name=profile.key_name, client_id=profile.client_id))
        config = ClientConfig(server=self.broker.endpoint, server_key=profile.server_key, timing=DEMO_TIMING)
        client = BusClient(config, keys.load(self.data.keys, "persister"), hello={"client_id": "persister", "provides": ["store"]})
        self.persister = Persister(client, open_store(self.data), PersisterConfig(commit_latency_s=0.02))
        self._persister_thread = threading.Thread(target=self.persister.run, name="demo-persister", daemon=True)
        self._persister_thread.start()
        online = [(s, pairs[s.client_id]) for s in self.specs if s.online]
        self.fleet = SimFleet(config, online, self.interval_s).start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not (self.fleet.ready == len(online) and "store" in self.broker.providers):
            time.sleep(0.05)
        if self.fleet.ready != len(online):
            raise RuntimeError(f"only {self.fleet.ready} of {len(online)} demo agents connected")
        return self

    def stop(self) -> None:
        if self.fleet is not None:
            self.fleet.stop()
        if self.persister is not None:
            self.persister.stop()
            self._persister_thread.join(10)
        if self.broker is not None:
            self.broker.stop()
            self._broker_thread.join(10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, help="where the data dir goes (default: a new temporary directory)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = args.dir or Path(tempfile.mkdtemp(prefix="ems-demo-"))
    stack = DemoStack(root).start()
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    print(f"demo stack running: {len(stack.specs)} agents, data dir {stack.data_dir}", flush=True)
    print(f"open the console:   ems gui --data-dir {stack.data_dir}", flush=True)
    stopping.wait()
    stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
