"""Network cut: one agent's link black-holed for a while, then healed.

A real ``ems agent`` and a simulated agent streaming numbered events
through its durable outbox (``bench.durable_agents``, one agent) run in a network
namespace (``bench.netns``); the broker and the persister run on the host,
bound to the host end of the veth pair. After a lead-in the link is cut (a
silent black hole: no RST, no ICMP) for ``cut_s`` seconds. While it is cut,
an operator on the host watches the broker report the agent offline and
sends it a command, which must wait in the broker's queue. After the heal
the report says how long the agent took to come back, how long until every
event of the stream was stored, whether any event is missing or stored
twice, and how many times the command ran.

    python -m bench.netcut                       # 60 s cut, product heartbeat (5 s: offline after 15 s)
    python -m bench.netcut --cut-s 10 --heartbeat-s 1

``make chaos`` runs it from ``bench.reliability`` (scenario 5); the test
suite at a short cut (tests/test_network_cut.py). Needs root (namespaces).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from bench.chaos_store import count_stored
from bench.netns import NetNamespace
from bench.stack import ENROL_TOKEN, Proc, ServerStack
from broker.core import keys as keyfiles
from broker.core.config import timing_for
from broker.core.client import BusClient
from broker.core.config import ENROL_TOKEN_ENV, ClientConfig
from broker.core.envelope import Kind
from broker.core.errors import EmsError
from broker.cli.local_stack import operator_id

AGENT_ID = "netcut-agent"
STREAM_PREFIX = "netcut"  # the streaming agent is netcut-000
STREAM_ID = f"{STREAM_PREFIX}-000"
FINAL = ("done", "failed", "expired")


@dataclass
class NetcutReport:
    cut_s: float
    heartbeat_s: float
    peer_timeout_s: float
    events: int
    rate: float
    #: cut -> the broker publishes the agent offline (None: not before the heal)
    offline_after_s: float | None = None
    stream_offline_after_s: float | None = None
    #: heal -> the agent online again
    online_after_s: float | None = None
    stream_online_after_s: float | None = None
    #: heal -> every event of the stream stored
    backlog_after_s: float | None = None
    #: heal -> the queued command's result at the operator
    command_after_s: float | None = None
    created_during_cut: int = 0
    #: rows stored between the offline report and the heal: 0 if the cut held
    stored_during_cut: int = 0
    stored: int = 0
    missing: int = 0
    duplicated: int = 0
    frames_discarded: int = 0
    command_first_status: str = ""
    command_statuses: list[str] = field(default_factory=list)
    command_status: str = ""
    #: times the agent ran the command (its log), and re-deliveries it answered from its record
    command_runs: int = 0
    command_replays: int = 0
    command_results: int = 0
    stream_finished: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.offline_after_s is not None and self.online_after_s is not None and self.stream_finished
                and self.stored == self.events and self.missing == 0 and self.duplicated == 0
                and self.stored_during_cut == 0 and self.command_first_status == "queued"
                and self.command_status == "done" and self.command_runs == 1)


class Watcher:
    """An operator on the host: presence changes and one command's messages, timed."""

    def __init__(self, op: BusClient):
        self.op = op
        self.state: dict[str, str] = {}
        self.changed_at: dict[tuple[str, str], float] = {}
        self.cmd_id = ""
        self.statuses: list[str] = []
        self.results = 0
        self.result_at: float | None = None

    def pump(self, timeout_s: float) -> None:
        env = self.op.poll(timeout_s)
        if env is None:
            return
        now = time.monotonic()
        if env.kind is Kind.PRESENCE:
            data = env.data()
            cid, state = data.get("client_id", ""), data.get("state", "")
            self.state[cid] = state
            self.changed_at[(cid, state)] = now
        elif self.cmd_id and env.corr == self.cmd_id:
            if env.kind is Kind.COMMAND_STATUS:
                self.statuses.append(env.data().get("status", ""))
            elif env.kind is Kind.RESULT:
                self.results += 1
                self.result_at = self.result_at or now

    def since(self, cid: str, state: str, t0: float) -> float | None:
        """Seconds from ``t0`` to ``cid`` turning ``state`` (after ``t0``), or None."""
        at = self.changed_at.get((cid, state))
        return None if at is None or at < t0 else round(at - t0, 2)

    def until(self, done: Callable[[], object], deadline: float) -> bool:
        """Pump messages until ``done()`` or the deadline (monotonic)."""
        while not done():
            if time.monotonic() >= deadline:
                return False
            self.pump(min(0.1, max(0.0, deadline - time.monotonic())))
        return True


def _created(stack: ServerStack) -> int:
    path = stack.root / "agents" / STREAM_ID / "created"
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return 0


def _stored(stack: ServerStack, events: int) -> tuple[int, int, int]:
    if not stack.store_db.exists():
        return 0, events, 0
    return count_stored(stack.store_db, 1, events, prefix=STREAM_PREFIX)


def _operator(stack: ServerStack, heartbeat_s: float) -> BusClient:
    op = BusClient(ClientConfig(server=stack.bind, server_key=stack.broker_key, timing=timing_for(heartbeat_s)),
                   keyfiles.load(stack.data.keys, "operator"), hello={"client_id": operator_id()})
    op.connect()
    try:
        op.wait_ready(30)
        op.subscribe(["presence."])
    except EmsError as exc:
        op.close()
        code = stack.broker.popen.poll()
        if code is not None:
            raise EmsError(f"the broker exited with code {code}: see {stack.broker.log_path}") from exc
        raise
    return op


def _agent_proc(ns: NetNamespace, stack: ServerStack, heartbeat_s: float) -> Proc:
    """A real ``ems agent`` inside the namespace, enrolled by token."""
    argv = [sys.executable, "-m", "broker.cli.main", "agent", "--data-dir", str(stack.root / "agent"),
            "--server", stack.bind, "--server-key", str(stack.data.keys / "broker.public"),
            "--id", AGENT_ID, "--label", "network cut", "--heartbeat-s", str(heartbeat_s),
            "--access-dir", str(stack.root / "agent" / "access")]
    return Proc("agent", ns.command(argv), stack.logs / "agent.log", env={ENROL_TOKEN_ENV: ENROL_TOKEN})


def _command_runs(log_path: Path, cmd_id: str) -> tuple[int, int]:
    """(runs, re-deliveries answered from the record) of ``cmd_id`` in the agent's log."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return text.count(f"command {cmd_id} (ping) by "), text.count(f"command {cmd_id} (ping) was run before")


def run_netcut(root: Path, cut_s: float = 60.0, heartbeat_s: float = 5.0, rate: float = 50.0, lead_s: float = 3.0,
               settle_s: float = 90.0, progress: Callable[[str], None] | None = None) -> NetcutReport:
    """Cut the agents' link for ``cut_s`` seconds; see the module docstring.

    ``heartbeat_s`` is the broker's (offline after 3 silent intervals);
    ``settle_s`` bounds every wait after the heal.
    """
    say = progress or (lambda _msg: None)
    events = int(rate * (lead_s + cut_s))  # the stream runs until about the heal
    report = NetcutReport(cut_s, heartbeat_s, timing_for(heartbeat_s).peer_timeout_s, events, rate)
    started = time.monotonic()
    with NetNamespace.create() as ns:
        say(f"namespace {ns.name}: agents at {ns.ns_address}, broker at {ns.host_address}")
        stack = ServerStack(root, heartbeat_s=heartbeat_s, host=ns.host_address)
        agent = _agent_proc(ns, stack, heartbeat_s)
        stream = stack.fleet("stream", 1, events, rate, heartbeat_s=heartbeat_s, timeout_s=lead_s + cut_s + settle_s + 60,
                             prefix=STREAM_PREFIX)
        stream.argv = ns.command(stream.argv)
        op = watch = None
        try:
            stack.start()
            op = _operator(stack, heartbeat_s)
            watch = Watcher(op)
            agent.start()
            stream.start()
            if not watch.until(lambda: watch.state.get(AGENT_ID) == watch.state.get(STREAM_ID) == "online",
                               time.monotonic() + 60):
                raise EmsError(f"the agents in the namespace did not come online within 60 s: see {stack.logs}")
            lead_end = time.monotonic() + lead_s
            watch.until(lambda: time.monotonic() >= lead_end and _stored(stack, events)[0] > 0, lead_end + 30)

            created_at_cut = _created(stack)
            ns.cut()
            t_cut = time.monotonic()
            say(f"link cut ({created_at_cut} events created so far); peer timeout {report.peer_timeout_s:g} s")
            heal_at = t_cut + cut_s
            watch.until(lambda: watch.state.get(AGENT_ID) == "offline", heal_at)
            report.offline_after_s = watch.since(AGENT_ID, "offline", t_cut)
            stored_at_offline = _stored(stack, events)[0]
            say(f"offline after {report.offline_after_s} s; sending a command to the cut-off agent")
            status = op.send_command(AGENT_ID, "ping", {"echo": "netcut"}, timeout_s=10)
            watch.cmd_id = status["id"]
            report.command_first_status = status.get("status", "")
            watch.until(lambda: False, heal_at)  # the cut itself: keep watching until it ends
            report.stream_offline_after_s = watch.since(STREAM_ID, "offline", t_cut)
            report.stored_during_cut = _stored(stack, events)[0] - stored_at_offline
            report.created_during_cut = _created(stack) - created_at_cut

            ns.heal()
            t_heal = time.monotonic()
            report.frames_discarded = ns.discarded()
            say(f"healed after {t_heal - t_cut:.1f} s ({report.created_during_cut} events created during the cut)")
            give_up = t_heal + settle_s
            watch.until(lambda: watch.state.get(AGENT_ID) == "online", give_up)
            report.online_after_s = watch.since(AGENT_ID, "online", t_heal)
            watch.until(lambda: _stored(stack, events)[1] == 0, give_up)
            if _stored(stack, events)[1] == 0:
                report.backlog_after_s = round(time.monotonic() - t_heal, 2)
            watch.until(lambda: watch.results > 0, give_up)
            report.command_after_s = None if watch.result_at is None else round(watch.result_at - t_heal, 2)
            report.stream_online_after_s = watch.since(STREAM_ID, "online", t_heal)
            try:
                report.stream_finished = stream.popen.wait(max(1.0, give_up - time.monotonic())) == 0
            except subprocess.TimeoutExpired:  # not every event was acknowledged in time
                report.notes.append("the streaming agent had unacknowledged events at the end")
            report.command_status = op.request("command.get", id=watch.cmd_id)["status"]
            watch.until(lambda: False, time.monotonic() + 2 * heartbeat_s)  # a late duplicate would show here
            report.command_statuses = list(watch.statuses)
            report.command_results = watch.results
        finally:
            if op is not None:
                op.close()
            stream.stop()
            agent.stop()
            stack.stop()
            report.seconds = round(time.monotonic() - started, 1)
    report.stored, report.missing, report.duplicated = _stored(stack, events)
    if watch is not None and watch.cmd_id:
        report.command_runs, report.command_replays = _command_runs(agent.log_path, watch.cmd_id)
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cut-s", type=float, default=60.0, help="how long the link stays cut (default %(default)s)")
    p.add_argument("--heartbeat-s", type=float, default=5.0,
                   help="broker heartbeat; the agent is offline after 3 silent intervals (default %(default)s)")
    p.add_argument("--rate", type=float, default=50.0, help="numbered events per second from the streaming agent")
    p.add_argument("--dir", type=Path, help="work dir (default: a temp dir, kept)")
    p.add_argument("--json", type=Path, help="write the report here")
    args = p.parse_args(argv)
    root = args.dir or Path(tempfile.mkdtemp(prefix="ems-netcut-"))
    print(f"network cut run in {root}", file=sys.stderr)
    report = run_netcut(root, args.cut_s, args.heartbeat_s, args.rate, progress=lambda m: print("  " + m, file=sys.stderr))
    print(json.dumps(asdict(report) | {"ok": report.ok}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(asdict(report) | {"ok": report.ok}, indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
