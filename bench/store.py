"""Durable events/s end to end, beside a raw SQLite ceiling, in one run.

End to end means: a simulated agent puts an event in its durable outbox,
sends it through the real broker (CurveZMQ) to the real persister, which
commits it to SQLite and acknowledges it, and the agent deletes it from its
outbox. The clock runs from the moment every agent is connected until the
last acknowledgement. Beside it, in the same run and directory:

* raw ceiling: the same number of rows with one ``executemany`` per 1,000
  into a bare table with the same unique key (``bench.store_write``);
* ``Store.write_batch`` alone (no bus, no outbox), for where the time goes.

The agents start once the persister has subscribed (records sent before
would reach nobody and wait out the outbox's 10 s resend). CPU per event is
given per process: the broker and the persister over the timed run, the
simulated agents over their whole life (start-up, enrolment and putting the
events into their outboxes included).

    python -m bench.store                    # 100,000 events, 2 agent processes x 10 agents
    python -m bench.store --events 20000     # quicker

Targets (issue "Durable store"): >= 100k events/s durable and >= 50 % of the
raw ceiling. Figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

from bench.bus import thread_cpu
from bench.stack import ServerStack
from bench.store_write import bench_raw, bench_store, make_records
from broker.persister.crypto import SecurityManager


def _log_value(path: Path, word: str) -> float | None:
    for line in path.read_text().splitlines():
        if line.startswith(word + " "):
            return float(line.split()[-1])
    return None


def _wait_for_line(path: Path, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and text in path.read_text()):
        if time.monotonic() > deadline:
            raise SystemExit(f"no {text!r} in {path} within {timeout_s:.0f} s")
        time.sleep(0.05)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_end_to_end(root: Path, events: int, processes: int, agents_per_process: int, timeout_s: float) -> dict:
    stack = ServerStack(root)
    per_agent = events // (processes * agents_per_process)
    fleets = [stack.fleet(f"fleet{i}", agents_per_process, per_agent, rate=1e9, timeout_s=timeout_s, prefix=f"p{i}")
              for i in range(processes)]
    stack.start()
    servers = {"broker": stack.broker.popen.pid, "persister": stack.persister.popen.pid}
    cpu_s: dict[str, float] = {"agents": 0.0}
    try:
        _wait_for_line(stack.persister.log_path, "persister subscribed", 60)
        before = {name: sum(thread_cpu(pid).values()) for name, pid in servers.items()}
        for fleet in fleets:
            fleet.start()
        codes = []
        for fleet in fleets:  # reaped one by one: the children's CPU grows by this fleet's
            reaped = _children_cpu_s()
            codes.append(fleet.popen.wait(timeout_s + 60))
            cpu_s["agents"] += _children_cpu_s() - reaped
        cpu_s.update({name: sum(thread_cpu(pid).values()) - before[name] for name, pid in servers.items()})
    finally:
        for fleet in fleets:
            fleet.stop()
        stack.stop()
    starts = [_log_value(f.log_path, "READY") for f in fleets]
    ends = [_log_value(f.log_path, "DONE") for f in fleets]
    if any(c != 0 for c in codes) or None in starts or None in ends:
        raise SystemExit(f"the agents did not finish; see {stack.logs}")
    total = per_agent * processes * agents_per_process
    seconds = max(ends) - min(starts)
    import sqlite3

    with sqlite3.connect(f"file:{stack.store_db}?mode=ro", uri=True) as db:
        stored = db.execute("SELECT count(*) FROM activity_logs WHERE name='chaos'").fetchone()[0]
    cpu_us = {name: round(seconds_ * 1e6 / total, 1) for name, seconds_ in cpu_s.items()}
    return {"events": total, "stored": stored, "seconds": seconds, "events_per_s": total / seconds, "cpu_us_per_event": cpu_us}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--processes", type=int, default=2, help="simulated agent processes (default %(default)s)")
    p.add_argument("--agents", type=int, default=10, help="agents per process (default %(default)s)")
    p.add_argument("--timeout-s", type=float, default=600.0)
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="ems-bench-store-"))
    print(f"working in {root}", file=sys.stderr)

    print("  end to end: agents -> outbox -> broker -> persister -> SQLite -> ack ...", file=sys.stderr)
    e2e = run_end_to_end(root / "e2e", args.events, args.processes, args.agents, args.timeout_s)
    records = make_records(e2e["events"], args.processes * args.agents)
    print("  raw executemany ceiling ...", file=sys.stderr)
    raw = bench_raw(root / "raw.db", records, 1000, "NORMAL")
    print("  Store.write_batch alone ...", file=sys.stderr)
    store_timer, _ = bench_store(root / "store.db", SecurityManager(root / "keys.json"), records, 1000, "NORMAL")
    raw_rate = len(records) / raw.wall
    store_rate = len(records) / store_timer.wall
    ratio = e2e["events_per_s"] / raw_rate

    print(f"\nEMS durable store benchmark: {os.cpu_count()} cores, Python {platform.python_version()}, {e2e['events']:,} events of ~60 B, "
          f"{args.processes} agent processes x {args.agents} agents")
    rows = [
        ("durable events/s end to end (commit + ack)", f"{e2e['events_per_s']:,.0f}", f"{raw_rate:,.0f}", f"{ratio:.0%}"),
        ("  stored / sent", f"{e2e['stored']:,}/{e2e['events']:,}", "", ""),
        ("  Store.write_batch alone (no bus)", f"{store_rate:,.0f}", f"{raw_rate:,.0f}", f"{store_rate / raw_rate:.0%}"),
    ]
    print(f"{'metric':<46} {'EMS':>16} {'raw SQLite':>14} {'EMS/raw':>8}")
    for row in rows:
        print(f"{row[0]:<46} {row[1]:>16} {row[2]:>14} {row[3]:>8}")
    cpu = e2e["cpu_us_per_event"]
    print("CPU per event (us): " + ", ".join(f"{name} {us}" for name, us in cpu.items()) + f"; total {sum(cpu.values()):.1f}")
    met_rate = e2e["events_per_s"] >= 100_000
    met_ratio = ratio >= 0.5
    print("targets (from the issue):")
    print(f"  >= 100,000 durable events/s : {e2e['events_per_s']:,.0f}  {'met' if met_rate else 'MISSED'}")
    print(f"  >= 50 % of raw executemany  : {ratio:.0%}  {'met' if met_ratio else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps({"end_to_end": e2e, "raw_events_per_s": raw_rate, "store_events_per_s": store_rate,
                                         "ratio": ratio, "targets_met": {"rate": met_rate, "ratio": met_ratio}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
