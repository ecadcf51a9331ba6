"""Playbooks: the condition language (every operator, versions, kinds that do not compare, and input that tries
to be code refused), definitions checked, every role x every playbooks op on a real broker, bad input refused
with what is allowed, and end to end with simulated agents (bench/command_fleet.py, a fifth of them failing):
a 3-step playbook whose step 2 runs only where step 1 failed, per-target step statuses asserted, every step
audited; a run that outlives a broker restart with no step run twice; a run held for approval; a cancel; the CLI.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from broker.core.envelope import ErrorCode
from broker.core.errors import RemoteError
from broker.core.playbooks import PlaybookError, check_playbook, compare, parse_when, short_result
from conftest import wait_for
from test_bulk import FAILING, Fleet

REASON = "monthly patch window"
TEMPLATES = [
    {"name": "check", "command": "os.update.check", "params": {"channel": {"type": "choice", "choices": ["stable", "beta"]}}},
    {"name": "repair", "command": "os.update.repair", "params": {"deep": {"type": "bool", "default": False}}},
    {"name": "apply", "command": "os.update.apply", "params": {"window_h": {"type": "int", "min": 1, "max": 72, "required": True}}},
]
PATCH = {"name": "patch", "description": "check; repair where the check failed; apply where it passed",
         "steps": [{"template": "check", "params": {"channel": "stable"}},
                   {"template": "repair", "when": "failed", "params": {"deep": True}},
                   {"template": "apply", "when": 'result.output.would == "os.update.check"'}]}


# -- the condition language ------------------------------------------------------------------
@pytest.mark.parametrize("left,op,right,expected", [
    (0, "==", 0, True), (1, "==", 0, False), (1, "!=", 0, True), (0, "!=", 0, False),
    (1, "<", 2, True), (2, "<", 2, False), (2, "<=", 2, True), (3, "<=", 2, False),
    (3, ">", 2, True), (2, ">", 2, False), (2, ">=", 2, True), (1, ">=", 2, False), (1.5, "<", 2, True),
    ("2.3", "<", "2.10", True), ("2.10", ">", "2.9.1", True), ("2.3", "==", "2.3", True), ("b", ">", "a", True),
    ("abc", "==", "abc", True), ("abc", "!=", "abd", True), (True, "==", True, True), (True, "!=", False, True),
    (True, "<", False, False), (1, "==", True, False), ("1", "==", 1, False), (None, "==", 0, False), ([1], "==", 1, False),
])
def test_every_operator_compares_values_of_one_kind(left, op, right, expected):
    """Numbers with numbers, text with text (dotted numbers as versions), booleans only by (in)equality; mixed kinds false."""
    assert compare(left, op, right) is expected


@pytest.mark.parametrize("when,done,result,expected", [
    (None, True, {}, True), ("ok", False, {}, False), ("failed", False, {}, True), ("failed", True, {}, False),
    ("always", False, {}, True), ("always", True, {}, True), ("result.exit_code == 0", False, {"exit_code": 0}, True),
    ("result.exit_code==0", True, {"exit_code": 3}, False), ("result.exit_code == 0", True, {}, False),
    ('result.output.version < "2.3"', True, {"output": {"version": "2.2.9"}}, True),
    ('result.output.version < "2.3"', True, {"output": "2.2"}, False), ("result.ok == true", True, {"ok": True}, True),
    ("result.load >= -1.5", True, {"load": -1.5}, True), ("result.__class__ == 1", True, {}, None),
])
def test_conditions_read_the_previous_steps_outcome_and_result(when, done, result, expected):
    """Keywords look at the status, comparisons at a field of the result (a missing field is false); dunder names are refused."""
    if expected is None:
        with pytest.raises(PlaybookError):
            parse_when(when)
        return
    assert parse_when(when).holds(done, result) is expected


@pytest.mark.parametrize("when", [
    '__import__("os").system("id")', "result.exit_code == __import__('os')", "(ok)", "((result.a == 1))",
    "result.a == (1)", "ok or failed", "result.a == 1 and result.b == 2", "result.a = 1", "result.a === 1",
    "result.a in [1]", "result == 1", "result.a == 1; ok", "result.a.b.c.d.e.f.g.h.i == 1", "result.a == 1e5",
    'result.a == "x" * 100', "result.a == 99999999999999999999", 'result.a == "' + "x" * 150 + '"', "x" * 10_000,
    "", "OK", "result.a == 'single'", 'result.a == "tab\there"', 5, ["ok"], {"ok": True}, True,
])
def test_anything_else_is_refused_never_evaluated(when):
    """Injection attempts, nested parens, boolean operators, other quoting, huge strings and non-strings: refused."""
    with pytest.raises(PlaybookError) as refused:
        parse_when(when)
    assert "when" in str(refused.value)


@pytest.mark.parametrize("name,steps,needle", [
    ("has space", [{"template": "check"}], "playbook name"), ("x" * 65, [{"template": "check"}], "playbook name"),
    ("p", [], "1 to 20 steps"), ("p", [{"template": "check"}] * 21, "1 to 20 steps"), ("p", "check", "1 to 20 steps"),
    ("p", [{"template": "check", "when": "failed"}], "step 1: nothing runs before it"),
    ("p", [{"template": "check"}, {"template": "repair", "when": "sometimes"}], "step 2: when"),
    ("p", [{"template": "check", "evil": 1}], "step 1: a map"), ("p", [{"template": ""}], "step 1: template"),
    ("p", [{"template": "check", "params": [1]}], "step 1: params"), ("p", [7], "step 1: a map"),
])
def test_bad_definitions_are_refused_naming_the_step(name, steps, needle):
    with pytest.raises(PlaybookError) as refused:
        check_playbook(name, steps)
    assert needle in str(refused.value)


def test_a_kept_result_is_short():
    """Two levels of scalars, text cut: what a condition can read, never a whole output."""
    kept = short_result({"ok": True, "output": {"text": "x" * 5000, "deep": {"no": 1}, "n": 3}, "blob": b"\x00", "list": [1]})
    assert kept == {"ok": True, "output": {"text": "x" * 200, "n": 3}}


# -- on a real broker ---------------------------------------------------------------------------
def define(bus) -> None:
    for template in TEMPLATES:
        bus.admin.request("templates.put", **template)
    bus.admin.request("playbooks.put", **PATCH)


ROLES = ("viewer", "operator", "admin", "service", "agent")
EXPECTED = {  # written out by hand: the specification
    "viewer": {"playbooks.list", "playbooks.get"},
    "operator": {"playbooks.list", "playbooks.get", "playbooks.run", "playbooks.cancel"},
    "admin": {"playbooks.list", "playbooks.get", "playbooks.run", "playbooks.cancel", "playbooks.put", "playbooks.remove"},
    "service": {"playbooks.list", "playbooks.get"},
    "agent": set(),
}
CALLS = {"playbooks.list": {}, "playbooks.put": PATCH, "playbooks.remove": {"name": "no-such"},
         "playbooks.run": {"name": "patch", "selector": "sim-000", "reason": "matrix", "params": {"window_h": 1}, "dry_run": True},
         "playbooks.get": {"id": "no-such-run"}, "playbooks.cancel": {"id": "no-such-run"}}


def test_every_role_x_every_playbooks_op(bus):
    """Each role calls each op with harmless arguments: FORBIDDEN exactly where the table above says so."""
    define(bus)
    bus.peer("sim-000")
    peers = {role: bus.peer(f"{role}-pb", role=role) for role in ROLES}
    seen = {}
    for role, op in [(r, o) for r in ROLES for o in CALLS]:
        try:
            peers[role].request(op, **CALLS[op])
            allowed = True
        except RemoteError as error:
            allowed = error.code != ErrorCode.FORBIDDEN
        seen.setdefault(role, set()).update({op} if allowed else set())
    assert {role: seen.get(role, set()) for role in ROLES} == EXPECTED
    assert bus.admin.request("command.list") == []  # the dry runs started nothing


BAD = [
    ({"max_parallel": -1}, "max_parallel"), ({"max_parallel": 0}, "max_parallel"), ({"max_parallel": 2**63}, "max_parallel"),
    ({"ttl_s": 0}, "ttl_s"), ({"ttl_s": 2**63}, "ttl_s"), ({"reason": None}, "reason: say why"), ({"reason": ""}, "reason: say why"),
    ({"reason": "   "}, "reason: say why"), ({"reason": 5}, "reason"), ({"name": "nope"}, "no playbook 'nope'"),
    ({"params": {"window_h": -1}}, "from 1 to 72"), ({"params": {"window_h": 2**63}}, "64-bit"),
    ({"params": {"window_h": 0}}, "from 1 to 72"), ({"params": {}}, "step 3 (apply): parameter 'window_h' (int) is required"),
    ({"params": {"window_h": 2, "colour": "red"}}, "takes parameter(s) colour"), ({"params": [1]}, "params: a map"),
    ({"selector": "nobody"}, "no accepted agent"), ({"selector": ""}, "selector"),
]


@pytest.mark.parametrize("change,needle", BAD)
def test_bad_runs_are_refused_with_what_is_allowed_and_start_nothing(bus, change, needle):
    """-1, 0 and 2^63 as pace, expiry and parameter; a missing, empty or blank reason; unknown playbooks and parameters."""
    define(bus)
    bus.peer("sim-000")
    operator = bus.peer("op-bad", role="operator")
    request = {"name": "patch", "selector": "all", "reason": REASON, "params": {"window_h": 2}, **change}
    request = {k: v for k, v in request.items() if v is not None}
    with pytest.raises(RemoteError) as refused:
        operator.request("playbooks.run", **request)
    assert refused.value.code == ErrorCode.BAD_REQUEST and needle in str(refused.value)
    assert operator.request("command.list") == []


@pytest.mark.parametrize("steps,needle", [
    ([{"template": "nope"}], "step 1: no template 'nope'"), ([{"template": "apply", "params": {"window_h": 0}}], "from 1 to 72"),
    ([{"template": "check"}, {"template": "apply", "params": {"colour": 1}}], "step 2: template apply takes no parameter(s) colour"),
    ([{"template": "check", "when": "result.x == __import__"}], "step 1: when"),
])
def test_bad_definitions_are_refused_by_the_broker(bus, steps, needle):
    define(bus)
    with pytest.raises(RemoteError) as refused:
        bus.admin.request("playbooks.put", name="bad", steps=steps)
    assert refused.value.code == ErrorCode.BAD_REQUEST and needle in str(refused.value)
    assert [p["name"] for p in bus.admin.request("playbooks.list")] == ["patch"]


def ended(client, run_id: str, listener=None, audit: list | None = None, seen: list | None = None) -> dict:
    """Poll the run until nothing of it is open; audit records reaching ``listener`` meanwhile go to ``audit``,
    each answer on the way to ``seen``."""
    def over():
        if listener is not None:
            audit.extend(e.data() for e in listener.drain(1000, 0.01) if e.topic.startswith("audit."))
        answer = client.request("playbooks.get", id=run_id)
        if seen is not None:
            seen.append(answer)
        return answer if answer["state"] not in ("running", "held") and not answer["counts"].get("active") else None
    return wait_for(over, 120, interval_s=0.05, what=f"playbook run {run_id} to end")


def assert_per_target(final: dict, ids: list[str]) -> None:
    """Passing targets: check done, repair skipped, apply done; failing ones: check and repair failed, then stopped."""
    by_id = {t["client_id"]: t for t in final["targets"]}
    assert set(by_id) == set(ids)
    for client_id, target in by_id.items():
        statuses = [s["status"] for s in target["steps"]]
        if client_id in FAILING:
            expected = ("stopped", ["failed", "failed", "not run"], "stopped at step 2 (failed)")
            assert (target["state"], statuses, target["why"]) == expected, client_id
        else:
            assert (target["state"], statuses) == ("finished", ["done", "skipped", "done"]), client_id


def test_three_steps_where_step_two_runs_only_where_step_one_failed(bus, tmp_path):
    define(bus)
    fleet = Fleet(bus, tmp_path, n=20)
    try:
        operator = bus.peer("op-pb", role="operator")
        listener = bus.peer("audit-pb", role="admin")
        listener.subscribe(["audit."])
        run = operator.request("playbooks.run", name="patch", selector="id:sim-*", params={"window_h": "4"}, reason=REASON,
                               max_parallel=6)
        assert run["state"] == "running" and run["count"] == 20
        audit, seen = [], []
        final = ended(operator, run["id"], listener, audit, seen)  # read as it comes: a subscriber that falls behind loses records
        assert final["state"] == "finished" and final["counts"] == {"finished": 16, "stopped": 4}
        assert max(answer["counts"].get("active", 0) for answer in seen) <= 6 and len(seen) > 3  # the pace, looked at on the way
        assert_per_target(final, fleet.ids)
        commands = {c["id"]: c for c in operator.request("command.list", limit=1000)}
        for target in final["targets"]:
            for number, step in enumerate(target["steps"], 1):
                if step["command_id"]:
                    args = commands[step["command_id"]]["args"]
                    stamp = (args["playbook"], args["playbook_step"], args["reason"], args["operator"]["id"])
                    assert stamp == ("patch", number, REASON, "op-pb")
        apply_args = next(c["args"] for c in commands.values() if c["name"] == "os.update.apply")
        assert apply_args["window_h"] == 4 and next(c["args"]["deep"] for c in commands.values() if c["name"] == "os.update.repair")
        wait_for(lambda: audit.extend(e.data() for e in listener.drain(5000, 0.2) if e.topic.startswith("audit."))
                 or sum(a["action"] == "playbooks.step" for a in audit) >= len(commands), 20, what="every step's audit record")
        steps = [a for a in audit if a["action"] == "playbooks.step"]
        assert len(steps) == 16 * 2 + 4 * 2 == len(commands)
        assert all(a["reason"] == REASON and a["operator_name"] == "op-pb" and a["detail"]["playbook"] == "patch" for a in steps)
        assert {(a["target"], a["detail"]["step"]) for a in steps} == {
            (t["client_id"], n) for t in final["targets"] for n, s in enumerate(t["steps"], 1) if s["command_id"]}
        assert [a["detail"]["count"] for a in audit if a["action"] == "playbooks.run"] == [20]
        viewer = bus.peer("viewer-pb", role="viewer")
        seen = viewer.request("playbooks.get", id=run["id"])
        assert "args" not in seen and "reason" not in seen and all("result" not in s for t in seen["targets"] for s in t["steps"])
        assert operator.request("playbooks.get", id=run["id"])["targets"][0]["steps"][0]["result"]["ok"] in (True, False)
    finally:
        fleet.close()


def test_a_run_outlives_a_broker_restart_and_no_step_runs_twice(bus, tmp_path):
    define(bus)
    fleet = Fleet(bus, tmp_path, n=30, work_s=0.3)
    try:
        operator = bus.peer("op-restart", role="operator")
        run = operator.request("playbooks.run", name="patch", selector="all", params={"window_h": 2}, reason=REASON, max_parallel=5)
        wait_for(lambda: operator.request("playbooks.get", id=run["id"])["counts"].get("finished", 0) >= 3, 60, what="a first part")
        bus.stop()
        bus.start()
        wait_for(lambda: set(fleet.ids) <= set(bus.broker.online), 60, what="the fleet back")
        final = ended(bus.admin, run["id"])
        assert final["state"] == "finished"
        assert_per_target(final, fleet.ids)
        wait_for(lambda: fleet.report()["ran"] == 30 * 2, 20, what="the fleet's count")  # two steps each, each ran once
    finally:
        fleet.close()


def test_a_dry_run_shows_targets_x_steps_and_sends_nothing(bus):
    define(bus)
    for client_id in ("sim-000", "sim-001"):
        bus.peer(client_id)
    operator = bus.peer("op-dry", role="operator")
    answer = operator.request("playbooks.run", name="patch", selector="sim-000,sim-001,nobody", params={"window_h": 3},
                              reason=REASON, dry_run=True)
    assert answer["dry_run"] is True and [t["client_id"] for t in answer["targets"]] == ["sim-000", "sim-001"]
    assert [(s["number"], s["command"], s["when"]) for s in answer["steps"]] == [
        (1, "os.update.check", "ok"), (2, "os.update.repair", "failed"), (3, "os.update.apply", PATCH["steps"][2]["when"])]
    assert operator.request("command.list") == []


def test_a_step_that_needs_approval_holds_the_whole_run(bus, tmp_path):
    define(bus)
    bus.admin.request("templates.put", **{**TEMPLATES[2], "approval": True})
    fleet = Fleet(bus, tmp_path, n=5)
    try:
        operator = bus.peer("op-held", role="operator")
        run = operator.request("playbooks.run", name="patch", selector="all", params={"window_h": 2}, reason=REASON)
        assert run["state"] == "held" and "another operator approves it" in run["why"]
        assert operator.request("command.list") == []  # not even step 1 ran
        [request] = bus.admin.request("approvals.list")
        assert request["kind"] == "playbook" and "(3 step(s)) on 5 agent(s)" in request["summary"]
        bus.admin.request("approvals.decide", id=request["id"], approve=True, reason="ok for the lab")
        final = ended(operator, run["id"])
        assert_per_target(final, fleet.ids)
        assert all(c["args"]["approval"]["by"] == "admin" for c in operator.request("command.list", limit=100))
    finally:
        fleet.close()


def test_a_held_run_outlives_a_restart_and_a_denied_one_starts_nothing(bus, tmp_path):
    define(bus)
    bus.admin.request("approvals.require", names=["os.update.repair"])  # the approval rules name step 2's command
    fleet = Fleet(bus, tmp_path, n=5)
    try:
        operator = bus.peer("op-held2", role="operator")
        first = operator.request("playbooks.run", name="patch", selector="all", params={"window_h": 2}, reason=REASON)
        second = operator.request("playbooks.run", name="patch", selector="all", params={"window_h": 2}, reason="again")
        assert first["state"] == second["state"] == "held"
        bus.stop()
        bus.start()
        wait_for(lambda: set(fleet.ids) <= set(bus.broker.online), 60, what="the fleet back")
        requests = {r["reason"]: r["id"] for r in bus.admin.request("approvals.list")}
        assert set(requests) == {REASON, "again"}
        bus.admin.request("approvals.decide", id=requests["again"], approve=False, reason="once is enough")
        denied = ended(operator, second["id"])
        assert denied["state"] == "cancelled" and "once is enough" in denied["why"]
        assert all(t["state"] == "cancelled" for t in denied["targets"])
        bus.admin.request("approvals.decide", id=requests[REASON], approve=True, reason="ok")
        assert_per_target(ended(operator, first["id"]), fleet.ids)
        assert {c["args"]["reason"] for c in operator.request("command.list", limit=100)} == {REASON}
    finally:
        fleet.close()


def test_cancel_stops_what_has_not_started(bus, tmp_path):
    define(bus)
    fleet = Fleet(bus, tmp_path, n=10, work_s=3.0, running=6)  # four enrolled but offline
    try:
        operator = bus.peer("op-cancel", role="operator")
        other = bus.peer("op-other", role="operator")
        run = operator.request("playbooks.run", name="patch", selector="all", params={"window_h": 2}, reason=REASON, max_parallel=8)
        with pytest.raises(RemoteError) as refused:
            other.request("playbooks.cancel", id=run["id"])
        assert "only op-cancel" in str(refused.value)
        cancelled = operator.request("playbooks.cancel", id=run["id"], reason="wrong window")
        assert cancelled["state"] == "cancelled" and "wrong window" in cancelled["why"]
        final = ended(operator, run["id"])
        by_id = {t["client_id"]: t for t in final["targets"]}
        for client_id in fleet.ids[6:]:  # two queued for offline agents (expired unrun), two never started
            assert by_id[client_id]["state"] == "cancelled" and by_id[client_id]["steps"][0]["status"] in ("expired", "not run")
        for client_id in fleet.ids[:6]:  # step 1 was running: it finished, nothing followed it
            assert by_id[client_id]["state"] == "cancelled" and by_id[client_id]["steps"][0]["status"] in ("done", "failed")
            assert [s["status"] for s in by_id[client_id]["steps"][1:]] == ["not run", "not run"]
    finally:
        fleet.close()


def test_the_cli_adds_runs_with_a_progress_bar_shows_and_removes(bus, tmp_path):
    define(bus)
    fleet = Fleet(bus, tmp_path, n=10)
    try:
        from broker.core.profile import Profile, save

        save(bus.data, Profile(server=bus.endpoint, server_key=bus.server_key, key_name="admin", client_id="admin"))

        def ems(*argv):
            return subprocess.run([sys.executable, "-m", "broker.cli.main", "playbook", *argv, "--data-dir", str(bus.data.root)],
                                  capture_output=True, text=True, timeout=120)
        book = tmp_path / "quick.json"
        book.write_text(json.dumps({"name": "quick", "steps": [{"template": "check"}, {"template": "repair", "when": "always"}]}))
        added = ems("add", str(book))
        assert added.returncode == 0 and "playbook quick: 2 step(s)" in added.stdout, added.stderr
        assert "quick" in ems("list").stdout and "repair [always]" in ems("list").stdout
        assert ems("run", "quick", "all").returncode == 2 and "--reason" in ems("run", "quick", "all").stderr
        dry = ems("run", "patch", "id:sim-00*", "--param", "window_h=3", "--reason", "test", "--dry-run")
        assert dry.returncode == 0 and "would go to 10 agent(s)" in dry.stdout and "result.output.would" in dry.stdout
        done = ems("run", "patch", "all", "--param", "window_h=3", "--reason", "test", "--max-parallel", "3", "--wait")
        assert done.returncode == 1, done.stderr  # two of the ten stop at step 2 (sim-003, sim-008)
        assert "playbook patch on 10" in done.stderr and "stopped at step 2" in done.stdout  # the bar, then the table
        run_id = done.stderr.split("playbook run ")[1].split(":")[0]
        shown = json.loads(ems("show", run_id, "--json").stdout)
        assert shown["counts"] == {"finished": 8, "stopped": 2}
        followed = ems("show", run_id, "--follow")
        assert followed.returncode == 1 and "1:check" in followed.stdout and "sim-003" in followed.stdout
        late = ems("cancel", run_id, "--reason", "too late", "--json")  # nothing left to stop: the run as it ended
        assert late.returncode == 1 and json.loads(late.stdout)["state"] == "finished"
        assert ems("bad-action").returncode == 2 and ems("show").returncode == 2
        assert ems("remove", "quick").returncode == 0 and "quick" not in ems("list").stdout
        broken = ems("add", "--from-json", "{not json")
        assert broken.returncode == 2 and "not JSON" in broken.stderr
    finally:
        fleet.close()
