"""The command round trip before and after "interim statuses only to those who asked", beside the raw relay.

For each trial a fresh EMS broker (own process, own data dir, group commit on)
runs sequential ``send_command(agent, "ping")`` + ``wait_result`` round trips
from an operator process to a minimal agent process (bench/bus.py's agent
loop), in two modes: ``before``, the operator asks for every status
(``statuses=True``: the sender gets queued, sent, delivered, done and the
RESULT, as every sender did before), and ``after``, the default (the sender
gets the ``queued`` answer and the RESULT). Beside them the raw relay echo
through a bare Python Curve forwarder (DEALER -> forwarder -> DEALER and back:
four hops through it, no EMS logic). The modes alternate which goes first
by trial. Per mode: p50 / p99 / ratio to the relay of the same trial, the
broker main thread's CPU per command, the operator process's and the agent
main thread's CPU per command (the clients' share of the floor), messages per
command through the
broker (3 in: the COMMAND, the agent's status and RESULT; out: the COMMAND
to the agent plus what the operator received, counted in the operator),
and the broker's SQLite commits per command; medians over ``--trials``.

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
    AGENT_ID, OPERATOR_ID, TARGET_COMMAND_P99_MS, Bench, Settings, _child_setup, _cpu_s, cpu_delta, ems_agent_main,
    ems_operator, machine_busy, percentiles, progress, raw_echo_server_main, raw_forwarder_main, thread_cpu,
)
from bench.latency import round_trips  # noqa: E402
from broker.core import keys as keyfiles  # noqa: E402
from broker.core.config import BrokerConfig, DataDir, RateLimit  # noqa: E402
from broker.core.errors import EmsError  # noqa: E402

#: the issue's target: command round trip p50 within this factor of the raw four-hop relay
TARGET_P50_RATIO = 1.3
#: before: the sender asks for every status (what every sender got until now); after: the default
MODES = ("before", "after")
#: messages the broker takes per command in both modes: the COMMAND, the agent's ``delivered`` and RESULT
MESSAGES_IN = 3


def broker_main(root: str, out) -> None:
    """The EMS broker alone in its process; SIGTERM stops it."""
    from broker.server.loop import Broker

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    broker = Broker(BrokerConfig(DataDir(Path(root)), bind="tcp://127.0.0.1:0", rate_limit=RateLimit.off()))
    signal.signal(signal.SIGTERM, lambda *_: broker.stop())
    threading.Thread(target=lambda: out.put(("ready", "broker", broker.endpoint if broker.wait_ready(10) else "")),
                     daemon=True).start()
    broker.run()


def operator_main(endpoint: str, server_key: str, pair, n: int, warmup: int, statuses: bool, out) -> None:
    """Sequential ping round trips, every status asked for or not; counts what the operator receives."""
    _child_setup()
    client = ems_operator(endpoint, server_key, pair)
    received = [0]
    incoming = client._incoming

    def counted(frames):
        received[0] += 1
        return incoming(frames)

    client._incoming = counted
    marks = {"cpu": 0.0, "received": 0}

    def mark(i: int) -> None:
        if i == warmup:
            marks.update(cpu=_cpu_s(), received=received[0])

    def trip(i: int) -> bool:
        try:
            status = client.send_command(AGENT_ID, "ping", {"echo": i}, timeout_s=5, statuses=statuses)
            return client.wait_result(status["id"], 5).get("status") == "done"
        except EmsError:
            return False

    trips = round_trips(trip, n, warmup, before=mark)
    out.put(("result", "operator", trips.result() | {"cpu_s": _cpu_s() - marks["cpu"],
                                                      "received": received[0] - marks["received"]}))
    client.close()


class CommandPathBench(Bench):
    """bench/bus.py's Bench, with only what the round trips need."""

    def start_broker_mode(self) -> None:
        self.broker = self.procs.start("ems-broker", broker_main, str(self.data.root), self.inbox.q)
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

    def mode(self, statuses: bool) -> dict:
        """Round trips through a fresh broker, the operator asking for every status or not: one mode's figures."""
        self.start_broker_mode()
        try:
            return self.trips(statuses)
        finally:
            self.procs.stop(self.broker)

    def trips(self, statuses: bool) -> dict:
        s = self.s
        agent = self.procs.start("ems-agent", ems_agent_main, self.endpoint, self.server_key, self.pairs[AGENT_ID], self.inbox.q)
        before = self.ems_counters()
        try:
            self.inbox.get("ready", "agent", 20)
            cpu0, agent_cpu0 = thread_cpu(self.broker.pid), thread_cpu(agent.pid)
            op = self.procs.start("ems-operator", operator_main, self.endpoint, self.server_key, self.pairs[OPERATOR_ID],
                                  s.round_trips, s.warmup, statuses, self.inbox.q)
            result = self.inbox.get("result", "operator", 30 + (s.round_trips + s.warmup) * 0.05)
            cpu1, agent_cpu1 = thread_cpu(self.broker.pid), thread_cpu(agent.pid)
            op.join(10)
            self.procs.stop(op)
        finally:
            self.procs.stop(agent)
        after = self.ems_counters()
        counters = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        commands = max(1, counters.get("commands", 0))
        stats = percentiles(result["latencies_us"])
        return {"p50_ms": stats["p50_ms"], "p99_ms": stats["p99_ms"], "max_ms": stats["max_ms"], "failures": result["failures"],
                "cpu_us_per_command": cpu_delta(cpu0, cpu1).get("python", 0.0) / commands * 1e6,
                "operator_cpu_us_per_command": result["cpu_s"] / s.round_trips * 1e6,
                "agent_cpu_us_per_command": cpu_delta(agent_cpu0, agent_cpu1).get("python", 0.0) / commands * 1e6,
                "messages_per_command": MESSAGES_IN + 1 + result["received"] / s.round_trips,
                "to_sender_per_command": result["received"] / s.round_trips,
                "commits_per_command": counters.get("db_commits", 0) / commands}


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
            out[mode] = bench.mode(mode == "before")
        finally:
            bench.procs.stop_all()
        progress(f"  {mode}: p50 {out[mode]['p50_ms']:.3f} ms, p99 {out[mode]['p99_ms']:.3f} ms, "
                 f"{out[mode]['cpu_us_per_command']:.0f} us broker CPU, {out[mode]['messages_per_command']:.2f} messages per command")
    return out


FIGURES = ("p50_ms", "p99_ms", "max_ms", "cpu_us_per_command", "operator_cpu_us_per_command", "agent_cpu_us_per_command",
           "messages_per_command",
           "to_sender_per_command", "commits_per_command")


def summarise(trials: list[dict]) -> dict:
    """Medians over the trials, per mode, with the ratio to the relay of the same trial."""
    med = statistics.median
    summary: dict = {"relay_p50_ms": med([t["relay"]["p50_ms"] for t in trials]),
                     "relay_p99_ms": med([t["relay"]["p99_ms"] for t in trials]),
                     "relay_p50_ms_range": (min(t["relay"]["p50_ms"] for t in trials), max(t["relay"]["p50_ms"] for t in trials))}
    for mode in MODES:
        row = {key: med([t[mode][key] for t in trials]) for key in FIGURES}
        ratios = [t[mode]["p50_ms"] / t["relay"]["p50_ms"] for t in trials if t["relay"]["p50_ms"]]
        row["p50_ratio"] = med(ratios)
        row["p50_ratio_range"] = (min(ratios), max(ratios))
        for key in ("p50_ms", "p99_ms", "cpu_us_per_command"):
            row[f"{key}_range"] = (min(t[mode][key] for t in trials), max(t[mode][key] for t in trials))
        row["failures"] = sum(t[mode]["failures"] for t in trials)
        summary[mode] = row
    return summary


def print_report(summary: dict, trials: int, settings: Settings, busy: float) -> None:
    before, after = summary["before"], summary["after"]
    print(f"\ncommand round trip, {settings.round_trips} pings x {trials} trials (medians; machine {busy:.0f} % busy at start)")
    print(f"{'':44} {'before (all statuses)':>22} {'after (answer+result)':>22}")
    rows = [
        ("p50 (ms)", "p50_ms", "{:.3f}"),
        ("p99 (ms)", "p99_ms", "{:.3f}"),
        ("max (ms)", "max_ms", "{:.3f}"),
        ("p50 / raw relay p50", "p50_ratio", "{:.2f}x"),
        ("broker main-thread CPU per command (us)", "cpu_us_per_command", "{:.0f}"),
        ("operator process CPU per command (us)", "operator_cpu_us_per_command", "{:.0f}"),
        ("agent main-thread CPU per command (us)", "agent_cpu_us_per_command", "{:.0f}"),
        ("broker messages per command (in + out)", "messages_per_command", "{:.2f}"),
        ("  of them to the sender", "to_sender_per_command", "{:.2f}"),
        ("SQLite commits per command", "commits_per_command", "{:.2f}"),
        ("failed round trips (all trials)", "failures", "{}"),
    ]
    for label, key, fmt in rows:
        print(f"{label:44} {fmt.format(before[key]):>22} {fmt.format(after[key]):>22}")
    for label, key in (("p50 range over trials (ms)", "p50_ms_range"), ("p99 range over trials (ms)", "p99_ms_range"),
                       ("p50 / relay range over trials", "p50_ratio_range")):
        print(f"{label:44} {'%.3f-%.3f' % before[key]:>22} {'%.3f-%.3f' % after[key]:>22}")
    print(f"raw four-hop relay echo: p50 {summary['relay_p50_ms']:.3f} ms "
          f"({'%.3f-%.3f' % summary['relay_p50_ms_range']}), p99 {summary['relay_p99_ms']:.3f} ms (4 messages through the forwarder)")
    print("targets (from the issue), after:")
    print(f"  p50 within {TARGET_P50_RATIO}x of the raw relay: {after['p50_ratio']:.2f}x  "
          f"{'met' if after['p50_ratio'] <= TARGET_P50_RATIO else 'MISSED'}")
    print(f"  p99 <= {TARGET_COMMAND_P99_MS} ms: {after['p99_ms']:.3f} ms  {'met' if after['p99_ms'] <= TARGET_COMMAND_P99_MS else 'MISSED'}")


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
