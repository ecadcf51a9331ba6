"""Bulk runs on a real broker with 200 simulated agents in their own process (bench/command_fleet.py: real
CurveZMQ DEALERs answering each command like an agent in power dry run, 20 % of them failing): a reboot that
halts at its failure threshold with nothing started after it, a run that goes to the end with the pace kept,
a canary, a dry run that sends nothing, a cancel that expires what waits for offline agents, a run that
outlives a broker restart with no target run twice, and every bad option refused with what is allowed.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from broker.core import keys
from broker.core.envelope import ErrorCode
from broker.core.errors import RemoteError
from conftest import wait_for

N = 200
FAILING = {f"sim-{i:03d}" for i in range(N) if i % 5 == 3}  # 20 %, spread evenly
REASON = {"reason": "monthly patch window"}


class Fleet:
    """``n`` agents enrolled on ``bus`` and run by bench.command_fleet in a child process (stopped by pid)."""

    def __init__(self, bus, tmp_path, n: int = N, work_s: float = 0.05, running: int | None = None):
        self.ids = [f"sim-{i:03d}" for i in range(n)]
        pairs = []
        for client_id in self.ids:
            pair = keys.generate()
            bus.admin.request("keys.add", public_key=pair.public, client_id=client_id, role="agent")
            pairs.append([client_id, pair.public, pair.secret])
        self.live = self.ids[:running if running is not None else n]
        key_file = tmp_path / "fleet-keys.json"
        key_file.write_text(json.dumps([p for p in pairs if p[0] in self.live]))
        self.log = tmp_path / "fleet.out"
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.command_fleet", "--keys", str(key_file), "--server", bus.endpoint,
                 f"--server-key={bus.server_key}", "--fail", ",".join(sorted(FAILING)), "--work-s", str(work_s),
                 "--heartbeat-s", "0.5", "--report-s", "0.2"], stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: set(self.live) <= set(bus.broker.online) or self.process.poll() is not None, 60,
                 what=f"{len(self.live)} simulated agents online")
        assert self.process.poll() is None, self.log.read_text()[-2000:]

    def report(self) -> dict:
        lines = [line for line in self.log.read_text().splitlines() if line.startswith("{")]
        return json.loads(lines[-1])

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def fleet(bus, tmp_path):
    fleet = Fleet(bus, tmp_path)
    yield fleet
    fleet.close()


def ended(client, run_id: str, seen: list | None = None) -> dict:
    """Poll the run until nothing of it is open; every answer on the way goes to ``seen``."""
    def over():
        answer = client.request("bulk.get", id=run_id)
        if seen is not None:
            seen.append(answer)
        return answer if not answer["counts"].get("launched") and (answer["state"] != "running"
                                                                     or not answer["counts"].get("waiting")) else None
    return wait_for(over, 120, interval_s=0.05, what=f"bulk run {run_id} to end")


def test_a_bulk_reboot_halts_at_its_failure_threshold_and_starts_nothing_after(bus, fleet):
    operator = bus.peer("op-bulk", role="operator")
    listener = bus.peer("audit-bulk", role="admin")
    listener.subscribe(["audit."])
    run = operator.request("bulk.start", selector="id:sim-*", name="reboot", args=REASON, max_parallel=10,
                           halt_failure_pct=15)
    assert run["count"] == N and run["state"] == "running"
    final = ended(operator, run["id"])
    counts = final["counts"]
    finished = counts.get("done", 0) + counts.get("failed", 0)
    assert final["state"] == "halted" and "failed (more than 15 %)" in final["why"]
    assert counts.get("failed", 0) * 100 > 15 * finished  # halted past the threshold ...
    assert counts.get("skipped", 0) == N - finished > 0  # ... and what had not started never did
    commands = operator.request("command.list", limit=1000)
    launched = {c["target"] for c in commands if c["name"] == "reboot"}
    assert launched == {t["client_id"] for t in final["targets"] if t["status"] in ("done", "failed")}
    assert all(c["args"]["reason"] == "monthly patch window" and c["args"]["operator"]["id"] == "op-bulk" for c in commands)
    wait_for(lambda: fleet.report()["ran"] == finished, 10, what="the fleet's count of commands run")
    audit = [e.data() for e in listener.drain(5000, 0.5)]
    start = [a for a in audit if a["action"] == "bulk.start"]
    assert len(start) == 1 and start[0]["detail"]["count"] == N and start[0]["reason"] == "monthly patch window"
    assert sum(a["action"] == "command" for a in audit) == finished  # every command audited, in the operator's name


def test_a_run_goes_to_the_end_within_its_pace_and_does_not_flood_its_sender(bus, fleet):
    operator = bus.peer("op-pace", role="operator")
    run = operator.request("bulk.start", selector="all", name="os.update.check", max_parallel=15)
    seen = []
    final = ended(operator, run["id"], seen)
    assert final["state"] == "finished" and final["counts"] == {"done": N - len(FAILING), "failed": len(FAILING)}
    assert max(answer["counts"].get("launched", 0) for answer in seen) <= 15
    assert len(seen) > 3  # the pace was looked at while the run went, not only at its end
    streamed = [e for e in operator.drain(10_000, 0.3) if e.topic.startswith("command.")]
    assert streamed == []  # per-command statuses and results are not pushed to the sender of a run


def test_a_canary_runs_alone_first(bus, fleet):
    operator = bus.peer("op-canary", role="operator")
    run = operator.request("bulk.start", selector="all&!tag:none", name="os.update.check", canary=3, max_parallel=50)
    first = operator.request("bulk.get", id=run["id"])
    assert first["counts"].get("launched", 0) + first["counts"].get("done", 0) + first["counts"].get("failed", 0) <= 3
    assert ended(operator, run["id"])["state"] == "finished"


def test_a_dry_run_lists_targets_and_sends_nothing(bus, fleet):
    operator = bus.peer("op-dry", role="operator")
    answer = operator.request("bulk.start", selector="sim-000,sim-001,nobody", name="reboot", args=REASON, dry_run=True)
    assert answer["dry_run"] is True and answer["count"] == 2
    assert [t["client_id"] for t in answer["targets"]] == ["sim-000", "sim-001"]
    assert operator.request("command.list") == [] and operator.request("bulk.list") == []


def test_cancel_stops_what_has_not_started_and_expires_what_waits_for_offline_agents(bus, tmp_path):
    fleet = Fleet(bus, tmp_path, n=20, work_s=3.0, running=15)  # five agents enrolled but offline
    try:
        operator = bus.peer("op-cancel", role="operator")
        other = bus.peer("op-other", role="operator")
        run = operator.request("bulk.start", selector="all", name="os.update.check", max_parallel=18)
        assert [t["status"] for t in run["targets"]].count("launched") == 18  # online ones first, then 3 offline
        with pytest.raises(RemoteError) as refused:
            other.request("bulk.cancel", id=run["id"])
        assert refused.value.code == ErrorCode.BAD_REQUEST and "only op-cancel" in str(refused.value)
        cancelled = operator.request("bulk.cancel", id=run["id"], reason="wrong window")
        assert cancelled["state"] == "cancelled" and "wrong window" in cancelled["why"]
        final = ended(operator, run["id"])
        by_status = {}
        for t in final["targets"]:
            by_status.setdefault(t["status"], set()).add(t["client_id"])
        assert by_status["cancelled"] == set(fleet.ids[15:])  # 3 queued for offline agents + 2 never launched
        assert by_status["done"] | by_status.get("failed", set()) == set(fleet.ids[:15])  # what ran finished
        queued = [c for c in operator.request("command.list", limit=100) if c["target"] in fleet.ids[15:]]
        assert len(queued) == 3 and all(c["status"] == "expired" and "cancelled" in c["result"]["error"] for c in queued)
    finally:
        fleet.close()


def test_a_run_outlives_a_broker_restart_and_no_target_runs_twice(bus, tmp_path):
    fleet = Fleet(bus, tmp_path, n=60, work_s=0.3)
    try:
        operator = bus.peer("op-restart", role="operator")
        run = operator.request("bulk.start", selector="all", name="os.update.check", max_parallel=10)
        wait_for(lambda: operator.request("bulk.get", id=run["id"])["counts"].get("done", 0) >= 10, 30, what="a first part")
        bus.stop()
        bus.start()
        wait_for(lambda: set(fleet.ids) <= set(bus.broker.online), 60, what="the fleet back")
        final = ended(bus.admin, run["id"])
        assert final["state"] == "finished" and sum(final["counts"].values()) == 60
        assert final["counts"].get("done", 0) + final["counts"].get("failed", 0) == 60
        wait_for(lambda: fleet.report()["ran"] == 60, 10, what="the fleet's count")  # each ran once, re-deliveries answered
    finally:
        fleet.close()


BAD = [
    ({"max_parallel": -1}, "max_parallel"), ({"max_parallel": 0}, "max_parallel"), ({"max_parallel": 2**63}, "max_parallel"),
    ({"max_parallel": "5"}, "max_parallel"), ({"canary": -1}, "canary"), ({"canary": 2**63}, "canary"),
    ({"halt_failure_pct": -1}, "halt_failure_pct"), ({"halt_failure_pct": 101}, "halt_failure_pct"),
    ({"halt_failure_pct": "ten"}, "halt_failure_pct"), ({"ttl_s": 0}, "ttl_s"), ({"ttl_s": 2**63}, "ttl_s"),
    ({"selector": ""}, "selector"), ({"selector": "colour:red"}, "unknown key"), ({"selector": "nobody"}, "no accepted agent"),
    ({"args": [1]}, "args must be a map"), ({"name": ""}, "name"), ({"name": "x" * 65}, "name"),
]


@pytest.mark.parametrize("change,needle", BAD)
def test_bad_options_are_refused_with_what_is_allowed_and_start_nothing(bus, change, needle):
    bus.peer("sim-000")
    operator = bus.peer("op-bad", role="operator")
    request = {"selector": "all", "name": "os.update.check", **change}
    with pytest.raises(RemoteError) as refused:
        operator.request("bulk.start", **request)
    assert refused.value.code == ErrorCode.BAD_REQUEST and needle in str(refused.value)
    assert operator.request("bulk.list") == [] and operator.request("command.list") == []


def test_an_access_command_needs_a_reason_in_bulk_too(bus):
    bus.peer("sim-000")
    operator = bus.peer("op-reason", role="operator")
    with pytest.raises(RemoteError) as refused:
        operator.request("bulk.start", selector="all", name="files.list", args={"path": "/tmp"})
    assert refused.value.code == ErrorCode.REASON_REQUIRED
    assert operator.request("bulk.list") == []


def test_the_cli_previews_runs_and_follows_to_the_end(bus, tmp_path):
    fleet = Fleet(bus, tmp_path, n=12)
    try:
        from broker.core.profile import Profile, save

        save(bus.data, Profile(server=bus.endpoint, server_key=bus.server_key, key_name="admin", client_id="admin"))

        def ems(*argv):
            return subprocess.run([sys.executable, "-m", "broker.cli.main", *argv, "--data-dir", str(bus.data.root)],
                                  capture_output=True, text=True, timeout=120)
        dry = ems("send", "id:sim-00*", "reboot", "--reason", "test", "--dry-run", "--canary", "2")
        assert dry.returncode == 0 and "would go to 10 agent(s)" in dry.stdout and "the first 2 alone" in dry.stdout
        assert "nothing was sent" in dry.stdout
        done = ems("send", "all", "os.update.check", "--max-parallel", "4", "--wait")
        assert done.returncode == 1, done.stderr  # two of the twelve fail (sim-003, sim-008)
        assert "10 done" in done.stdout and "2 failed" in done.stdout and "sim-003" in done.stdout
        assert "os.update.check on 12" in done.stderr  # the progress bar
        listed = ems("bulk", "list", "--json")
        assert json.loads(listed.stdout)[0]["counts"] == {"done": 10, "failed": 2}
    finally:
        fleet.close()
