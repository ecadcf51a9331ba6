"""The command path with and without group commit, beside the raw four-hop relay, in one run.

For each trial a fresh EMS broker (own process, own data dir) runs sequential
``send_command(agent, "ping")`` + ``wait_result`` round trips from an operator
process to a minimal agent process (bench/bus.py's children), once with
``BrokerConfig.group_commit`` off (each SQLite statement its own commit: the
path before broker/server/group_commit.py) and once on; beside them the raw
relay echo through a bare Python Curve forwarder (DEALER -> forwarder ->
DEALER and back: four hops through it, no EMS logic). Modes alternate within a
trial so that a busy machine weighs on both. Per mode it reports p50 / p99 /
ratio to the relay, the broker main thread's CPU per command and its SQLite
commits and statements per command (the broker's own ``db_commits`` /
``db_writes`` counters over ``commands``); medians over ``--trials``.

    python -m bench.command_path            # 3 trials of 1,000 round trips per mode (about 1 minute)
    python -m bench.command_path --quick    # 3 trials of 300
"""
from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # `python bench/command_path.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bus import (  # noqa: E402
    TARGET_COMMAND_P99_MS, Bench, Settings, machine_busy, percentiles, progress, raw_echo_server_main, raw_forwarder_main,
)
from broker.core import keys as keyfiles  # noqa: E402
from broker.core.config import BrokerConfig, DataDir, RateLimit  # noqa: E402

#: the issue's target: command round trip p50 within this factor of the raw four-hop relay
TARGET_P50_RATIO = 1.3
MODES = ("off", "on")


def broker_main(root: str, out, group_commit: bool) -> None:
    """The EMS broker alone in its process, group commit on or off; SIGTERM stops it."""
    from broker.server.loop import Broker

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    broker = Broker(BrokerConfig(DataDir(Path(root)), bind="tcp://127.0.0.1:0", rate_limit=RateLimit.off(),
                                 group_commit=group_commit))
    signal.signal(signal.SIGTERM, lambda *_: broker.stop())
    threading.Thread(target=lambda: out.put(("ready", "broker", broker.endpoint if broker.wait_ready(10) else "")),
                     daemon=True).start()
    broker.run()


class CommandPathBench(Bench):
    """bench/bus.py's Bench, with only what the round trips need."""

    def start_broker_mode(self, group_commit: bool) -> None:
        self.broker = self.procs.start("ems-broker", broker_main, str(self.data.root), self.inbox.q, group_commit)
        self.endpoint = self.inbox.get("ready", "broker", 20)
        if not self.endpoint:
            raise RuntimeError("the broker did not start")
        self.server_key = keyfiles.load(self.data.keys, "broker").public

    def start_relay(self) -> None:
        import zmq

        public, secret = zmq.curve_keypair()
        self.raw_public = public
        defaults = BrokerConfig(self.data)
        self.forwarder = self.procs.start("raw-forwarder", raw_forwarder_main, public, secret, defaults.send_hwm,
                                          defaults.receive_hwm, defaults.batch, self.inbox.q, "forwarder", True)
        self.forwarder_endpoint = self.inbox.get("ready", "forwarder", 20)
        self.echo = self.procs.start("raw-echo", raw_echo_server_main, public, secret, self.inbox.q)
        self.echo_endpoint = self.inbox.get("ready", "echo", 20)

    def mode(self, group_commit: bool) -> dict:
        """Round trips through a fresh broker with group commit on or off: the figures of one mode."""
        self.start_broker_mode(group_commit)
        try:
            self.command_rtt()
        finally:
            self.procs.stop(self.broker)
        cmd = self.results["command_rtt"]
        counters = cmd["broker_counters"]
        commands = max(1, counters.get("commands", 0))
        return {"p50_ms": cmd["p50_ms"], "p99_ms": cmd["p99_ms"], "max_ms": cmd["max_ms"], "failures": cmd["failures"],
                "cpu_us_per_command": cmd["broker_cpu_s"].get("python", 0.0) / commands * 1e6,
                "commits_per_command": counters.get("db_commits", 0) / commands,
                "statements_per_command": counters.get("db_writes", 0) / commands}


def trial(settings: Settings, workdir: Path, first: str) -> dict:
    """One trial: the relay, then both modes (``first`` first), each on a fresh data dir."""
    out = {}
    order = (first, *[m for m in MODES if m != first])
    relay_bench = CommandPathBench(settings, workdir / "relay")
    try:
        relay_bench.prepare_ems()
        relay_bench.start_relay()
        relay_bench.raw_rtt()
        out["relay"] = relay_bench.results["raw_echo_relay"]
    finally:
        relay_bench.procs.stop_all()
    for mode in order:
        bench = CommandPathBench(settings, workdir / mode)
        try:
            bench.prepare_ems()
            out[mode] = bench.mode(mode == "on")
        finally:
            bench.procs.stop_all()
        progress(f"  group commit {mode}: p50 {out[mode]['p50_ms']:.3f} ms, p99 {out[mode]['p99_ms']:.3f} ms, "
                 f"{out[mode]['cpu_us_per_command']:.0f} us CPU, {out[mode]['commits_per_command']:.2f} commits per command")
    return out


def summarise(trials: list[dict]) -> dict:
    """Medians over the trials, per mode, with the ratio to the relay of the same trial."""
    def med(values: list[float]) -> float:
        return statistics.median(values)

    summary: dict = {"relay_p50_ms": med([t["relay"]["p50_ms"] for t in trials]),
                     "relay_p99_ms": med([t["relay"]["p99_ms"] for t in trials])}
    for mode in MODES:
        row = {key: med([t[mode][key] for t in trials]) for key in
               ("p50_ms", "p99_ms", "max_ms", "cpu_us_per_command", "commits_per_command", "statements_per_command")}
        ratios = [t[mode]["p50_ms"] / t["relay"]["p50_ms"] for t in trials if t["relay"]["p50_ms"]]
        row["p50_ratio"] = med(ratios)
        row["p50_ratio_range"] = (min(ratios), max(ratios))
        row["p50_ms_range"] = (min(t[mode]["p50_ms"] for t in trials), max(t[mode]["p50_ms"] for t in trials))
        row["failures"] = sum(t[mode]["failures"] for t in trials)
        summary[mode] = row
    return summary


def print_report(summary: dict, trials: int, settings: Settings, busy: float) -> None:
    off, on = summary["off"], summary["on"]
    print(f"\ncommand round trip, {settings.round_trips} pings x {trials} trials (medians; machine {busy:.0f} % busy at start)")
    print(f"{'':42} {'group commit off':>18} {'group commit on':>18}")
    rows = [
        ("p50 (ms)", "p50_ms", "{:.3f}"),
        ("p99 (ms)", "p99_ms", "{:.3f}"),
        ("max (ms)", "max_ms", "{:.3f}"),
        ("p50 / raw relay p50", "p50_ratio", "{:.2f}x"),
        ("broker main-thread CPU per command (us)", "cpu_us_per_command", "{:.0f}"),
        ("SQLite commits per command", "commits_per_command", "{:.2f}"),
        ("SQLite statements per command", "statements_per_command", "{:.2f}"),
        ("failed round trips (all trials)", "failures", "{}"),
    ]
    for label, key, fmt in rows:
        print(f"{label:42} {fmt.format(off[key]):>18} {fmt.format(on[key]):>18}")
    print(f"{'p50 range over trials (ms)':42} {'%.3f-%.3f' % off['p50_ms_range']:>18} {'%.3f-%.3f' % on['p50_ms_range']:>18}")
    print(f"raw four-hop relay echo: p50 {summary['relay_p50_ms']:.3f} ms, p99 {summary['relay_p99_ms']:.3f} ms")
    print("targets (from the issue), group commit on:")
    print(f"  p50 within {TARGET_P50_RATIO}x of the raw relay: {on['p50_ratio']:.2f}x  {'met' if on['p50_ratio'] <= TARGET_P50_RATIO else 'MISSED'}")
    print(f"  p99 <= {TARGET_COMMAND_P99_MS} ms: {on['p99_ms']:.3f} ms  {'met' if on['p99_ms'] <= TARGET_COMMAND_P99_MS else 'MISSED'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/command_path.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="300 round trips per mode and trial instead of 1,000")
    p.add_argument("--trials", type=int, default=3, help="trials (each: relay, then both modes, alternating which goes first)")
    p.add_argument("--round-trips", type=int, metavar="N", help="round trips per mode and trial")
    p.add_argument("--json", metavar="PATH", help="write every figure as JSON to PATH")
    args = p.parse_args(argv)
    if args.trials < 1 or (args.round_trips is not None and args.round_trips < 1):
        p.error("--trials and --round-trips must be at least 1")
    settings = Settings(round_trips=args.round_trips or (300 if args.quick else 1000), warmup=50 if args.quick else 100)
    busy = machine_busy() * 100
    results = []
    with tempfile.TemporaryDirectory(prefix="ems-bench-cmd-") as tmp:
        for i in range(args.trials):
            progress(f"trial {i + 1} of {args.trials}")
            results.append(trial(settings, Path(tmp) / str(i), MODES[i % 2]))
    summary = summarise(results)
    print_report(summary, args.trials, settings, busy)
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "trials": results, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                                              indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
