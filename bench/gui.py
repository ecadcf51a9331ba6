"""The operator console under 500 agents: how long is its event loop ever blocked?

    .venv/bin/python bench/gui.py                 # 500 agents, about 1.5 minutes
    .venv/bin/python bench/gui.py --quick         # 200 agents, shorter phases
    .venv/bin/python bench/gui.py --json bench/out/gui.json

It starts a broker and a persister as processes (``bench.stack.ServerStack``:
a fresh data dir, the operator profile, an enrolment token), simulated agents
in ``--processes`` child processes (``bench.harness.demo.SimFleet``: real BusClients,
each reporting sysinfo every ``--interval-s``, answering commands), and the
console in this process, offscreen, connected the way ``ems gui`` connects
(the profile). A ``--tick-ms`` QTimer on the GUI thread measures how late
each tick fires: its lateness is how long the event loop could not run, so
the longest lateness is the longest block.

Beside it, a *control* process runs the same timer on an empty event loop:
its lateness is the machine's own scheduling jitter (two cores shared by the
broker, the persister, the agents and the console), the floor under the
console's figures.

Phases: *connect* (the agents arrive: presence and the first reports),
*steady* (sysinfo from every agent, nobody touching the console), and
*operator* (a client selected every 2 s, which loads eight history tabs and
the chart; the search box typed into and cleared; tiles and table swapped).

Target (issue "Operator console"): the event loop is never blocked > 100 ms.
Figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # `python bench/gui.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_MAX_BLOCK_MS = 100.0


# -- the agent processes -------------------------------------------------------------
def fleet_main(args) -> int:
    """A child process: ``--agents`` simulated agents until SIGTERM."""
    from broker.core import keys
    from broker.core.config import timing_for
    from broker.core.config import ClientConfig
    from bench.harness.demo import AgentSpec, SimFleet

    config = ClientConfig(server=args.server, server_key=args.server_key, timing=timing_for(args.heartbeat_s))
    rng = random.Random(args.prefix)
    specs = [
        (AgentSpec(f"{args.prefix}-{n:03d}", f"{args.prefix.upper()} desk {n}", f"{args.prefix}-ws-{n:03d}", f"user{n:03d}",
                   cpu=rng.uniform(5, 80), memory=rng.uniform(20, 85)), keys.generate())
        for n in range(args.agents)
    ]
    fleet = SimFleet(config, specs, args.interval_s, token=args.token, seed=hash(args.prefix) & 0xFFFF)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    fleet.start()
    deadline = time.monotonic() + 120
    while fleet.ready < len(specs) and time.monotonic() < deadline and not stop.is_set():
        time.sleep(0.05)
    print("READY", fleet.ready, time.time(), flush=True)
    parent = os.getppid()
    while not stop.wait(1.0) and os.getppid() == parent:  # also ends if the bench dies without stopping us
        pass
    fleet.stop()
    print("STOPPED reports", fleet.reports, "commands", fleet.commands, flush=True)
    return 0


def control_main(args) -> int:
    """A child process: the same probe timer on an empty event loop, until SIGTERM.

    What it measures is the machine's own scheduling jitter (2 cores shared
    by the broker, the persister, the agents and the console), the floor
    under the console's figures. Prints ``LATE <wall time> <ms>`` for each
    tick more than 1 ms late.
    """
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QCoreApplication, Qt, QTimer

    app = QCoreApplication([])
    tick_s = args.tick_ms / 1000
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        late_ms = (now - last[0] - tick_s) * 1000
        last[0] = now
        if late_ms > 1.0:
            print(f"LATE {time.time():.3f} {late_ms:.2f}", flush=True)

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.timeout.connect(tick)
    timer.start(args.tick_ms)
    signal.signal(signal.SIGTERM, lambda *_: app.quit())
    parent = os.getppid()
    wake = QTimer()
    wake.timeout.connect(lambda: app.quit() if os.getppid() != parent else None)  # runs the signal handler too
    wake.start(200)
    print("READY", flush=True)
    return app.exec()


# -- the console side ---------------------------------------------------------------------
class LatenessProbe:
    """A repeating QTimer; each tick's lateness is recorded under the current phase."""

    def __init__(self, tick_ms: int):
        from PySide6.QtCore import Qt, QTimer

        self.tick_s = tick_ms / 1000
        self.phase = "start"
        self.samples: dict[str, list[float]] = {}
        self.worst: dict[str, tuple[float, float]] = {}
        self.windows: dict[str, list[float]] = {}  # phase -> [wall start, wall end]
        self._last = time.perf_counter()
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.timer.start(tick_ms)

    def _tick(self) -> None:
        now = time.perf_counter()
        late_ms = max(0.0, (now - self._last - self.tick_s) * 1000)
        self._last = now
        self.samples.setdefault(self.phase, []).append(late_ms)
        if late_ms > self.worst.get(self.phase, (0.0, 0.0))[0]:
            self.worst[self.phase] = (late_ms, time.time())

    def set_phase(self, name: str) -> None:
        now = time.time()
        if self.phase in self.windows:
            self.windows[self.phase][1] = now
        self.phase = name
        self.windows[name] = [now, now]
        self._last = time.perf_counter()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def run(args) -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from bench.stack import Proc, ServerStack
    from gui.app import application
    from gui.bus_worker import BusWorker, profile_client_factory
    from gui.main_window import MainWindow
    from bench.harness.screenshots import pause, run_until

    root = Path(tempfile.mkdtemp(prefix="ems-bench-gui-"))
    print(f"working in {root}", file=sys.stderr)
    stack = ServerStack(root, heartbeat_s=args.heartbeat_s)
    per_process = args.agents // args.processes
    fleets = [
        Proc(f"fleet{i}", [sys.executable, str(Path(__file__).resolve()), "--fleet-child", "--server", stack.bind,
                           f"--server-key={stack.broker_key}", "--token", "bench-enrolment-token", "--agents", str(per_process),
                           "--prefix", f"p{i}", "--interval-s", str(args.interval_s), "--heartbeat-s", str(args.heartbeat_s)],
             stack.logs / f"fleet{i}.log")
        for i in range(args.processes)
    ]
    total = per_process * args.processes
    control = Proc("control", [sys.executable, str(Path(__file__).resolve()), "--control-child", "--tick-ms", str(args.tick_ms)],
                   stack.logs / "control.log")
    app = application()
    stack.start()
    control.start()
    window = None
    result: dict = {}
    try:
        window = MainWindow(BusWorker(profile_client_factory(str(stack.data.root))))
        window.resize(1440, 900)
        window.show()
        run_until(lambda: window._ready, 30, "the console to connect")
        probe = LatenessProbe(args.tick_ms)
        cpu0, wall0 = time.process_time(), time.monotonic()

        probe.set_phase("connect")
        print(f"  connect: {total} agents in {args.processes} processes ...", file=sys.stderr)
        t0 = time.monotonic()
        for fleet in fleets:
            fleet.start()
        clients = window.clients
        run_until(lambda: clients.online_count() >= total, 180, f"{total} agents online in the console")
        connect_s = time.monotonic() - t0
        run_until(lambda: all(clients.client(c).cpu_percent is not None for c in clients.client_ids()), 60,
                  "a first sysinfo from every agent")

        probe.set_phase("steady")
        print(f"  steady: {args.steady_s:.0f} s of sysinfo ...", file=sys.stderr)
        received0 = window.worker.stats["received"]
        t1 = time.monotonic()
        pause(args.steady_s)
        steady_rate = (window.worker.stats["received"] - received0) / (time.monotonic() - t1)

        probe.set_phase("operator")
        print(f"  operator: {args.operator_s:.0f} s of clicking around ...", file=sys.stderr)
        rng = random.Random(5)
        ids = clients.client_ids()
        end = time.monotonic() + args.operator_s
        selections = 0
        step = 0
        while time.monotonic() < end:
            window.select_client(rng.choice(ids))
            selections += 1
            step += 1
            if step % 3 == 0:
                window.search.setText("p1-0")
                pause(0.5)
                window.search.clear()
            if step % 4 == 0:
                window.set_fleet_view("table" if window.fleet_stack.currentWidget() is window.tiles else "tiles")
            pause(2.0)
        histories = sum(window.history[k].rowCount() for k in window.history)
        probe.set_phase("done")

        cpu_s, wall_s = time.process_time() - cpu0, time.monotonic() - wall0
        phases = {}
        control.stop()
        jitter = [(float(t), float(ms)) for word, t, ms in
                  (line.split() for line in control.log_path.read_text().splitlines() if line.startswith("LATE "))]
        for name in ("connect", "steady", "operator"):
            values = probe.samples.get(name, [])
            start, end = probe.windows[name]
            floor = [ms for t, ms in jitter if start <= t <= end]
            ticks = max(1, int((end - start) / probe.tick_s))
            phases[name] = {
                "ticks": len(values),
                "max_ms": max(values) if values else 0.0,
                "p99_ms": percentile(values, 0.99),
                "p50_ms": statistics.median(values) if values else 0.0,
                "over_100ms": sum(1 for v in values if v > TARGET_MAX_BLOCK_MS),
                # the empty event loop in its own process, same timer, same time
                "control_max_ms": max(floor, default=0.0),
                "control_p99_ms": percentile(floor + [0.0] * max(0, ticks - len(floor)), 0.99),
            }
        result = {
            "agents": total,
            "processes": args.processes,
            "interval_s": args.interval_s,
            "tick_ms": args.tick_ms,
            "connect_s": connect_s,
            "live_messages_per_s": steady_rate,
            "selections": selections,
            "history_rows_last": histories,
            "gui_cpu_percent": 100 * cpu_s / wall_s,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker": dict(window.worker.stats),
            "phases": phases,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        }
    finally:
        if window is not None:
            window.close()
        for fleet in fleets:
            fleet.stop()
        control.stop()
        stack.stop()
        app.processEvents()
    return result


def print_report(r: dict) -> None:
    worst = max(p["max_ms"] for p in r["phases"].values())
    print(f"EMS console under {r['agents']} simulated agents ({r['processes']} processes, sysinfo every {r['interval_s']:g} s),"
          f" {r['tick_ms']} ms probe timer on the GUI thread")
    print(f"{'phase':<10} {'ticks':>7} {'max late':>10} {'p99 late':>10} {'p50 late':>10} {'> 100 ms':>9}"
          f"   {'control max':>11} {'control p99':>11}")
    for name, p in r["phases"].items():
        print(f"{name:<10} {p['ticks']:>7} {p['max_ms']:>8.1f}ms {p['p99_ms']:>8.1f}ms {p['p50_ms']:>8.2f}ms {p['over_100ms']:>9}"
              f"   {p['control_max_ms']:>9.1f}ms {p['control_p99_ms']:>9.1f}ms")
    print("(control: the same timer in an idle process beside it: the machine's own scheduling jitter)")
    print(f"agents online after {r['connect_s']:.1f} s; live messages {r['live_messages_per_s']:.0f}/s in steady state;"
          f" {r['selections']} client selections; GUI process CPU {r['gui_cpu_percent']:.0f} % of one core;"
          f" max RSS {r['max_rss_mb']:.0f} MB")
    print(f"target: event loop never blocked > {TARGET_MAX_BLOCK_MS:.0f} ms: "
          + ("met" if worst <= TARGET_MAX_BLOCK_MS else f"MISSED (worst {worst:.1f} ms)"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=500)
    p.add_argument("--processes", type=int, default=2, help="agent processes (default %(default)s)")
    p.add_argument("--interval-s", type=float, default=1.0, help="sysinfo interval of each agent (default %(default)s)")
    p.add_argument("--heartbeat-s", type=float, default=5.0, help="bus heartbeat (default %(default)s, the product's)")
    p.add_argument("--steady-s", type=float, default=30.0)
    p.add_argument("--operator-s", type=float, default=30.0)
    p.add_argument("--tick-ms", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="200 agents, 10 s phases")
    p.add_argument("--json", type=Path, help="write the figures here")
    # the child side
    p.add_argument("--fleet-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--control-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--server", help=argparse.SUPPRESS)
    p.add_argument("--server-key", help=argparse.SUPPRESS)
    p.add_argument("--token", help=argparse.SUPPRESS)
    p.add_argument("--prefix", default="p0", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.fleet_child:
        return fleet_main(args)
    if args.control_child:
        return control_main(args)
    if args.quick:
        args.agents, args.steady_s, args.operator_s = 200, 10.0, 10.0
    result = run(args)
    print_report(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
