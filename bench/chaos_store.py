"""Kill -9 loop: nothing acknowledged is lost, nothing is stored twice.

Simulated agents (``bench.durable_agents``, one process) stream numbered events
through a real broker into a real persister while this harness SIGKILLs
the broker, the persister and the agents' process at random moments and
restarts them. When every agent's outbox is empty (everything
acknowledged), the store must hold each (agent, number) exactly once.

    python -m bench.chaos_store                      # full size: 50 agents x 2,000 events, 10 + 10 kills
    python -m bench.chaos_store --agents 50 --events 200 --broker-kills 3 --persister-kills 3   # quick

The test suite runs it at a small size (tests/test_store_chaos.py).
"""
from __future__ import annotations

import argparse
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.stack import Proc, ServerStack


@dataclass
class ChaosReport:
    agents: int
    events_per_agent: int
    expected: int
    stored: int = 0
    missing: int = 0
    duplicated: int = 0
    broker_kills: int = 0
    persister_kills: int = 0
    agent_kills: int = 0
    seconds: float = 0.0
    finished: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.finished and self.missing == 0 and self.duplicated == 0 and self.stored == self.expected


def count_stored(store_db: Path, agents: int, events: int, prefix: str = "sim") -> tuple[int, int, int]:
    """(rows stored, missing numbers, duplicated numbers) for the chaos events
    of agents ``<prefix>-000`` ... (``bench.durable_agents --prefix``).

    An event's number is in its message id (``sim-007-00000042``); the
    body is encrypted at rest, so the raw file is read for ids only.
    """
    if not store_db.exists():  # the persister was stopped before it made its store
        return 0, agents * events, 0
    seen: dict[tuple[str, int], int] = {}
    with sqlite3.connect(f"file:{store_db}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT client_id, msg_id FROM activity_logs WHERE name='chaos'").fetchall()
    for client_id, msg_id in rows:
        seq = int(msg_id.rsplit("-", 1)[1])
        seen[(client_id, seq)] = seen.get((client_id, seq), 0) + 1
    expected = {(f"{prefix}-{i:03d}", s) for i in range(agents) for s in range(events)}
    missing = len(expected - set(seen))
    duplicated = sum(n - 1 for n in seen.values() if n > 1)
    return len(rows), missing, duplicated


def run_chaos(root: Path, agents: int = 50, events: int = 200, broker_kills: int = 3, persister_kills: int = 3,
              agent_kills: int = 1, rate: float = 2000.0, timeout_s: float = 110.0, seed: int | None = None,
              progress=None) -> ChaosReport:
    """Run the kill loop in ``root``; the report says what survived.

    If the agents' process exits on its own with an error, the run stops
    there (no kill is spent on a dead fleet) and ``report.notes`` holds its
    exit code and the last lines of ``root/logs/agents.log``."""
    rng = random.Random(seed)
    stack = ServerStack(root)
    fleet = stack.fleet("agents", agents, events, rate, timeout_s=timeout_s)
    report = ChaosReport(agents, events, agents * events)
    schedule = kill_schedule(rng, agents * events / rate, broker_kills, persister_kills, agent_kills)
    procs = {"broker": stack.broker, "persister": stack.persister, "agents": fleet}
    started = time.monotonic()
    noted = False  # the fleet's end is in the notes already
    try:
        stack.start()
        fleet.start()
        for moment, victim in schedule:
            if not wait_while_running(fleet, started + moment):
                note_fleet_end(report, fleet, f"before the {victim} kill at {moment:.1f} s")
                noted = True
                break
            procs[victim].kill()
            counter = "agent_kills" if victim == "agents" else f"{victim}_kills"
            setattr(report, counter, getattr(report, counter) + 1)
            procs[victim].start()
            if progress:
                progress(f"killed and restarted {victim} at {time.monotonic() - started:.1f} s")
        report.finished = wait_for_fleet(report, fleet, started + timeout_s, noted)
    finally:
        for proc in (fleet, stack.persister, stack.broker):
            proc.stop()
        report.seconds = time.monotonic() - started
    report.stored, report.missing, report.duplicated = count_stored(stack.store_db, agents, events)
    return report


def kill_schedule(rng: random.Random, stream_s: float, broker_kills: int, persister_kills: int,
                  agent_kills: int) -> list[tuple[float, str]]:
    """(seconds after the start, victim) for every kill, spread over the time the stream should take."""
    plan = ["broker"] * broker_kills + ["persister"] * persister_kills + ["agents"] * agent_kills
    rng.shuffle(plan)
    moments = sorted(rng.uniform(0.5, max(5.0, stream_s)) for _ in plan)
    return list(zip(moments, plan))


def wait_while_running(fleet: Proc, until: float) -> bool:
    """Wait until the monotonic time ``until``; False at once if the fleet has ended."""
    while time.monotonic() < until:
        if fleet.exited() is not None:
            return False
        time.sleep(0.05)
    return fleet.exited() is None


def wait_for_fleet(report: ChaosReport, fleet: Proc, deadline: float, noted: bool) -> bool:
    """Wait for the fleet to end by ``deadline``; True if it finished (exit 0).
    A failure is noted unless ``noted`` says it already is."""
    try:
        code = fleet.popen.wait(max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        report.notes.append(f"agents did not finish in time; the last lines of {fleet.log_path}:\n{fleet.log_tail()}")
        return False
    if code != 0 and not noted:
        note_fleet_end(report, fleet, "at the end")
    return code == 0


def note_fleet_end(report: ChaosReport, fleet: Proc, when: str) -> None:
    """Say in the report how the fleet ended on its own: the stream was done, or
    it failed (exit code and the last lines of its log)."""
    code = fleet.exited()
    if code == 0:
        report.notes.append(f"stream finished {when}")
    else:
        report.notes.append(f"the agents' process exited with code {code} {when}; "
                            f"the last lines of {fleet.log_path}:\n{fleet.log_tail()}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=50)
    p.add_argument("--events", type=int, default=2000, help="events per agent (default 2,000: 100,000 in all)")
    p.add_argument("--broker-kills", type=int, default=10)
    p.add_argument("--persister-kills", type=int, default=10)
    p.add_argument("--agent-kills", type=int, default=3)
    p.add_argument("--rate", type=float, default=5000.0, help="events per second generated, all agents together")
    p.add_argument("--timeout-s", type=float, default=900.0)
    p.add_argument("--seed", type=int)
    p.add_argument("--dir", type=Path, help="work dir (default: a temp dir, kept)")
    p.add_argument("--json", type=Path, help="write the report here")
    args = p.parse_args(argv)
    root = args.dir or Path(tempfile.mkdtemp(prefix="ems-chaos-"))
    print(f"chaos run in {root}", file=sys.stderr)
    report = run_chaos(root, args.agents, args.events, args.broker_kills, args.persister_kills, args.agent_kills,
                       args.rate, args.timeout_s, args.seed, progress=lambda m: print("  " + m, file=sys.stderr))
    print(f"expected {report.expected:,}  stored {report.stored:,}  missing {report.missing}  duplicated {report.duplicated}  "
          f"kills: broker {report.broker_kills}, persister {report.persister_kills}, agents {report.agent_kills}  "
          f"in {report.seconds:.1f} s  -> {'OK' if report.ok else 'FAILED'}")
    for note in report.notes:
        print("  note:", note)
    if args.json:
        args.json.write_text(json.dumps(asdict(report) | {"ok": report.ok}, indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
