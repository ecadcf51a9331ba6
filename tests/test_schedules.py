"""Scheduled runs on a real broker (in-process, real ZeroMQ and SQLite): a one-off schedule reaches real Curve
agents as its owner with the schedule's reason; a revoked owner's slot is skipped, paused and reported; a template
marked for approval is held each time; missed slots at start-up (skip vs once, grace window, a cron schedule an
hour behind runs once, not sixty times); who may do what, every role x every new op; every bad input refused with
what is accepted. The crash tests (broker subprocess SIGKILLed around a firing) are in test_schedule_crash.py.
"""
from __future__ import annotations

import itertools
import json
import sqlite3
import subprocess
import sys
import time

import pytest

from broker.core.envelope import ErrorCode, Kind
from broker.core.errors import RemoteError
from broker.server.registry import KeyRegistry
from broker.server.schedules import SCHEDULABLE
from conftest import wait_for

PING = {"name": "lab-ping", "command": "ping", "args": {}, "params": {"echo": {"type": "text", "default": "hi"}}}
REASON = "nightly lab check"


def schedule_args(name: str = "s1", **change) -> dict:
    request = {"name": name, "request_op": "templates.run", "args": {"name": "lab-ping", "selector": "id:lab-*", "params": {}},
               "reason": REASON, "at": time.time() + 3600}
    return {k: v for k, v in {**request, **change}.items() if v is not None}


@pytest.fixture
def world(bus):
    agents = [bus.peer(f"lab-{i}") for i in range(2)]
    operator = bus.peer("op-s", role="operator")
    bus.admin.request("templates.put", **PING)
    return bus, agents, operator


class Seen:
    """What each client received, kept polled (a client left unpolled misses heartbeats and goes offline)."""

    def __init__(self, *clients):
        self.clients, self.got = clients, {c: [] for c in clients}

    def poll(self) -> "Seen":
        for client in self.clients:
            self.got[client].extend(e for e in client.drain(100, 0.02))
        return self

    def until(self, predicate, what: str):
        return wait_for(lambda: predicate(self.poll()), 15, what=what)

    def data(self, client, kind: Kind | None = None) -> list[dict]:
        return [e.data() for e in self.got[client] if kind is None or e.kind is kind]


def test_a_one_off_schedule_runs_once_as_its_owner_with_its_reason(world):
    bus, agents, operator = world
    listener = bus.peer("audit-s", role="admin")
    listener.subscribe(["audit."])
    seen = Seen(listener, *agents)
    made = operator.request("schedules.add", **schedule_args(at=time.time() + 1.5))
    assert made["state"] == "enabled" and made["owner"] == "op-s" and made["args"]["name"] == "lab-ping"
    seen.until(lambda s: all(s.data(a, Kind.COMMAND) for a in agents), "the scheduled commands")
    for agent in agents:
        [command] = seen.data(agent, Kind.COMMAND)
        assert command["args"]["operator"]["id"] == "op-s" and command["args"]["reason"] == f"{REASON} (schedule s1)"
    shown = seen.until(lambda _: (s := operator.request("schedules.get", id="s1"))["runs"] and s, "the slot recorded")
    [slot] = shown["runs"]
    assert slot["outcome"] == f"running: run {slot['run_id']}" and shown["state"] == "done"
    [run] = operator.request("bulk.list")
    assert run["id"] == slot["run_id"] and run["sender"] == "op-s"
    audit = seen.until(lambda s: (a := s.data(listener)) and any(r["action"] == "schedules.fire" for r in a) and a,
                       "the schedules.fire audit record")
    added = [a for a in audit if a["action"] == "schedules.add"]
    assert len(added) == 1 and added[0]["reason"] == REASON and added[0]["operator_name"] == "op-s"
    assert [a["detail"]["run_id"] for a in audit if a["action"] == "schedules.fire"] == [run["id"]]
    assert [a["detail"]["id"] for a in audit if a["action"] == "bulk.start"] == [run["id"]]
    ticks = bus.admin.request("status")["counters"]["ticks"]
    wait_for(lambda: bus.admin.request("status")["counters"]["ticks"] >= ticks + 4, 15, what="four more timer passes")
    assert len(operator.request("bulk.list")) == 1  # the scheduler looked again and ran nothing


def test_a_revoked_owner_s_slot_is_skipped_reported_and_the_schedule_paused(world):
    bus, agents, operator = world
    watcher = bus.peer("sec-s", role="viewer")
    watcher.subscribe(["security."])
    seen = Seen(watcher, *agents)
    operator.request("schedules.add", **schedule_args(at=time.time() + 2))
    bus.admin.request("keys.revoke", id="op-s", reason="left the company")
    shown = seen.until(lambda _: (s := bus.admin.request("schedules.get", id="s1"))["runs"] and s, "the slot")
    assert shown["state"] == "paused" and "no longer accepted" in shown["why"]
    assert shown["runs"][0]["outcome"].startswith("skipped: the key of op-s")
    assert bus.admin.request("bulk.list") == []
    seen.until(lambda s: any(e.get("event") == "schedule_refused" and e["client_id"] == "op-s" for e in s.data(watcher)),
               "the security event")
    assert not seen.poll().data(agents[0], Kind.COMMAND)


def test_a_template_marked_for_approval_is_held_at_each_slot(world):
    bus, agents, operator = world
    bus.admin.request("templates.put", **{**PING, "approval": True})
    operator.request("schedules.add", **schedule_args(at=time.time() + 1.5))
    shown = wait_for(lambda: (s := operator.request("schedules.get", id="s1"))["runs"] and s, 10, what="the slot")
    assert shown["runs"][0]["outcome"].startswith("held: run ")
    [request] = bus.admin.request("approvals.list")
    assert request["requester"] == "op-s" and REASON in request["reason"]


def _missed(bus, **schedules) -> None:
    """Stop the broker, move each named schedule's next slot ``late`` seconds into the past, start it again."""
    bus.stop()
    with sqlite3.connect(bus.data.broker_db) as db:
        for name, late in schedules.items():
            db.execute("UPDATE schedules SET next_due = ? WHERE name = ?", (time.time() - late, name))
    bus.start()


def test_missed_slots_at_start_up_skip_runs_nothing_once_runs_once(world):
    """Three cron schedules every minute, the broker down for an hour (60 missed slots each): ``skip`` records
    the miss and waits for the next slot; ``once`` runs one time, not sixty; ``skip`` with the slot inside its
    grace window still runs."""
    bus, agents, operator = world
    for name, missed, grace in (("skipper", "skip", 60), ("oncer", "once", 60), ("graced", "skip", 600)):
        operator.request("schedules.add", **schedule_args(name, at=None, cron="* * * * *", missed=missed, grace_s=grace))
    _missed(bus, skipper=3600, oncer=3600, graced=300)
    oncer = wait_for(lambda: (s := bus.admin.request("schedules.get", id="oncer"))["runs"] and s, 15, what="the once run")
    graced = wait_for(lambda: (s := bus.admin.request("schedules.get", id="graced"))["runs"] and s, 15, what="the graced run")
    skipper = wait_for(lambda: (s := bus.admin.request("schedules.get", id="skipper"))["runs"] and s, 15, what="the miss")
    assert [r["outcome"].split(":")[0] for r in oncer["runs"]] == ["running"]
    assert [r["outcome"].split(":")[0] for r in graced["runs"]] == ["running"]
    assert [r["outcome"].split(":")[0] for r in skipper["runs"]] == ["missed"]
    for s in (oncer, graced, skipper):
        assert s["next_due"] > time.time() - 1 and s["state"] == "enabled"  # the next future slot, not a backlog
    runs = bus.admin.request("bulk.list")
    assert sorted(r["id"] for r in runs) == sorted([oncer["runs"][0]["run_id"], graced["runs"][0]["run_id"]])


def test_pause_resume_and_remove_are_the_owner_s_or_an_admin_s_and_audited(world):
    bus, _, operator = world
    other = bus.peer("op-other", role="operator")
    listener = bus.peer("audit-p", role="admin")
    listener.subscribe(["audit."])
    operator.request("schedules.add", **schedule_args(at=None, cron="@daily"))
    for op in ("schedules.pause", "schedules.resume", "schedules.remove"):
        with pytest.raises(RemoteError) as refused:
            other.request(op, id="s1", reason="not mine")
        assert refused.value.code == ErrorCode.BAD_REQUEST and "only op-s" in str(refused.value)
    assert operator.request("schedules.pause", id="s1", reason="lab closed")["state"] == "paused"
    assert bus.admin.request("schedules.resume", id="s1", reason="lab open")["state"] == "enabled"
    assert "args" not in other.request("schedules.get", id="s1")  # the op's arguments: its owner's and admins'
    assert operator.request("schedules.remove", id="s1", reason="done")["removed"] is True
    assert operator.request("schedules.list") == []
    actions = [(e.data()["action"], e.data()["reason"]) for e in listener.drain(100, 0.5)]
    assert [a for a in actions if a[0].startswith("schedules.")] == [
        ("schedules.add", REASON), ("schedules.pause", "lab closed"), ("schedules.resume", "lab open"), ("schedules.remove", "done")]


NEW_OPS = {
    "schedules.add": schedule_args("matrix"), "schedules.list": {}, "schedules.get": {"id": "matrix"},
    "schedules.pause": {"id": "no-such", "reason": "matrix"}, "schedules.resume": {"id": "no-such", "reason": "matrix"},
    "schedules.remove": {"id": "no-such", "reason": "matrix"},
}
MAY = {"viewer": {"schedules.list", "schedules.get"}, "operator": set(NEW_OPS), "admin": set(NEW_OPS),
       "service": {"schedules.list", "schedules.get"}, "agent": set()}


@pytest.mark.parametrize("role,op", list(itertools.product(MAY, NEW_OPS)))
def test_every_role_x_every_schedule_op(world, role, op):
    """Allowed: answered (or BAD_REQUEST for a made-up id); refused: FORBIDDEN with a security event."""
    bus, _, _ = world
    peer = bus.peer(f"{role}-{op.replace('.', '-')}", role=role)
    before = bus.broker.counters["security_forbidden"]
    try:
        peer.request(op, **NEW_OPS[op])
        code = None
    except RemoteError as exc:
        code = exc.code
    if op in MAY[role]:
        assert code in (None, ErrorCode.BAD_REQUEST), (role, op, code)
    else:
        assert code == ErrorCode.FORBIDDEN and bus.broker.counters["security_forbidden"] == before + 1


BAD = [
    ({"cron": "61 * * * *", "at": None}, "cron minute: 61"), ({"cron": "* * *", "at": None}, "5 fields"),
    ({"cron": "* * * * *"}, "exactly one of cron"), ({"at": None}, "exactly one of cron"),
    ({"at": -1}, "in the future"), ({"at": 0}, "in the future"), ({"at": 2**63}, "at must be"),
    ({"at": float("nan")}, "at must be"), ({"at": "tomorrow"}, "not a time"), ({"at": "2001-01-01 09:00"}, "in the future"),
    ({"grace_s": -1}, "grace_s"), ({"grace_s": 2**63}, "grace_s"), ({"grace_s": "5"}, "grace_s"),
    ({"missed": "twice"}, "missed must be one of skip, once"), ({"tz": "Mars/Base"}, "unknown time zone"),
    ({"reason": None}, "reason must be a string"), ({"reason": "  "}, "needs a reason"),
    ({"request_op": "keys.revoke"}, "request_op must be one of templates.run, bulk.start"), ({"name": ""}, "name"),
    ({"args": [1]}, "args must be a map"), ({"args": {"name": "no-such", "selector": "all"}}, "no template 'no-such'"),
    ({"args": {"name": "lab-ping", "selector": "nobody"}}, "no accepted agent"),
    ({"args": {"name": "lab-ping", "selector": "all", "max_parallel": 0}}, "max_parallel"),
    ({"args": {"name": "lab-ping", "selector": "all", "max_parallel": -1}}, "max_parallel"),
    ({"args": {"name": "lab-ping", "selector": "all", "max_parallel": 2**63}}, "64-bit"),
    ({"args": {"name": "lab-ping", "selector": "all", "max_parallel": 2**63 - 1}}, "max_parallel"),
]


@pytest.mark.parametrize("change,needle", BAD)
def test_bad_schedules_are_refused_with_what_is_accepted(world, change, needle):
    """Tried: each bad field (bad cron, -1/0/2^63/nan, a time in the past, an unknown template or zone, no
    reason, an op not schedulable): BAD_REQUEST naming it, and nothing stored or run."""
    bus, _, operator = world
    with pytest.raises(RemoteError) as refused:
        operator.request("schedules.add", **schedule_args(**change))
    assert refused.value.code == ErrorCode.BAD_REQUEST and needle in str(refused.value), str(refused.value)
    assert operator.request("schedules.list") == [] and operator.request("bulk.list") == []


@pytest.mark.parametrize("limit", [-1, 0, 2**63, "5"])
def test_limits_are_bounded(world, limit):
    bus, _, operator = world
    operator.request("schedules.add", **schedule_args())
    for op, args in (("schedules.list", {}), ("schedules.get", {"id": "s1"})):
        try:
            answer = operator.request(op, limit=limit, **args)
        except RemoteError as exc:
            assert limit in ("5", 2**63) and exc.code == ErrorCode.BAD_REQUEST and "limit must be an integer" in str(exc)
            continue
        assert limit in (-1, 0) and (len(answer) == 1 if op == "schedules.list" else answer["name"] == "s1")


def test_a_name_is_taken_once(world):
    _, _, operator = world
    operator.request("schedules.add", **schedule_args())
    with pytest.raises(RemoteError) as taken:
        operator.request("schedules.add", **schedule_args())
    assert "exists already" in str(taken.value)


def test_a_scheduled_playbook_runs_its_first_step_on_each_target_with_the_schedules_reason(world):
    """``playbooks.run`` as the schedulable op (at most once across a crash: not a stored bulk run)."""
    bus, agents, operator = world
    assert not SCHEDULABLE["playbooks.run"].bulk
    bus.admin.request("playbooks.put", name="lab-check", steps=[{"template": PING["name"]}])
    seen = Seen(*agents)
    operator.request("schedules.add", **schedule_args("check", request_op="playbooks.run", at=time.time() + 1.5,
                                                      args={"name": "lab-check", "selector": "id:lab-*"}))
    for agent in agents:
        seen.until(lambda s, a=agent: s.data(a, Kind.COMMAND), f"the scheduled playbook's step at {agent}")
        [command] = seen.data(agent, Kind.COMMAND)
        assert command["name"] == PING["command"] and command["args"]["reason"] == f"{REASON} (schedule check)"
    [slot] = operator.request("schedules.get", id=operator.request("schedules.list")[0]["id"])["runs"]
    assert slot["run_id"] and operator.request("playbooks.get", id=slot["run_id"])["playbook"] == "lab-check"


def test_a_scheduled_bulk_command_carries_the_schedule_s_reason(world):
    """``bulk.start`` as the schedulable op: the reason goes into the command's arguments (an access command
    needs one), and the command reaches the agent."""
    bus, agents, operator = world
    seen = Seen(*agents)
    operator.request("schedules.add", **schedule_args("files", request_op="bulk.start", at=time.time() + 1.5,
                                                      args={"name": "files.list", "args": {"path": "/tmp"}, "selector": "lab-0"}))
    seen.until(lambda s: s.data(agents[0], Kind.COMMAND), "the scheduled command")
    [command] = seen.data(agents[0], Kind.COMMAND)
    assert command["name"] == "files.list" and command["args"]["reason"] == f"{REASON} (schedule files)"


def test_the_cli_adds_lists_shows_pauses_resumes_and_removes(world):
    bus, _, _ = world
    from broker.core.profile import Profile, save

    save(bus.data, Profile(server=bus.endpoint, server_key=bus.server_key, key_name="admin", client_id="admin"))

    def ems(*argv):
        return subprocess.run([sys.executable, "-m", "broker.cli.main", "schedule", *argv, "--data-dir", str(bus.data.root)],
                              capture_output=True, text=True, timeout=60)
    added = ems("add", "nightly", "lab-ping", "id:lab-*", "--cron", "30 2 * * *", "--tz", "Europe/Berlin", "--param",
                "echo=hello", "--reason", "nightly check", "--missed", "once", "--max-parallel", "5", "--json")
    assert added.returncode == 0, added.stderr
    made = json.loads(added.stdout)
    assert (made["cron"], made["tz"], made["missed"], made["args"]["params"], made["args"]["max_parallel"]) == (
        "30 2 * * *", "Europe/Berlin", "once", {"echo": "hello"}, 5)
    assert made["next_due_text"].endswith(("02:30 CET", "02:30 CEST"))
    once = ems("add", "once", "lab-ping", "all", "--at", "2031-01-02 03:04", "--reason", "far ahead")
    assert once.returncode == 0 and "next: 2031-01-02 03:04 UTC" in once.stdout, once.stderr
    listed = ems("list")
    assert "nightly" in listed.stdout and "cron '30 2 * * *'" in listed.stdout and "lab-ping on 'id:lab-*'" in listed.stdout
    assert "once at 2031-01-02 03:04 UTC" in listed.stdout
    assert ems("pause", "nightly", "--reason", "lab closed").stdout.count("paused") >= 1
    assert "enabled" in ems("resume", "nightly", "--reason", "lab open").stdout
    assert "removed" in ems("remove", "once", "--reason", "not needed").stdout
    shown = json.loads(ems("show", "nightly", "--json").stdout)
    assert shown["name"] == "nightly" and shown["runs"] == []
    for argv, needle in ((("add", "x", "lab-ping", "all", "--cron", "@daily"), "needs --reason"),
                         (("add", "x", "lab-ping", "all", "--reason", "r"), "--cron EXPR"),
                         (("add", "x", "lab-ping", "all", "--cron", "99 * * * *", "--reason", "r"), "cron minute: 99"),
                         (("pause", "nightly"), "needs --reason"), (("add", "x", "--cron", "@daily", "--reason", "r"), "NAME TEMPLATE SELECTOR")):
        bad = ems(*argv)
        assert bad.returncode != 0 and needle in bad.stderr, (argv, bad.stderr)
    assert "--missed skip" in ems("--help").stdout and "grace" in ems("--help").stdout
    bus.admin.request("playbooks.put", name="lab-check", steps=[{"template": "lab-ping"}])
    playbook = json.loads(ems("add", "pb", "lab-check", "id:lab-*", "--playbook", "--cron", "@weekly", "--reason", "weekly",
                              "--max-parallel", "3", "--json").stdout)
    assert (playbook["op"], playbook["args"]) == ("playbooks.run", {"name": "lab-check", "selector": "id:lab-*", "params": {},
                                                                    "max_parallel": 3})
    told = ems("add", "note", "Lunch at noon", "id:lab-*", "--broadcast", "--at", "2031-01-02 03:04", "--reason", "canteen")
    assert told.returncode == 0 and "broadcast 'Lunch at noon' to 'id:lab-*'" in told.stdout, told.stderr
    assert ems("add", "x", "y", "all", "--playbook", "--broadcast", "--cron", "@daily", "--reason", "r").returncode == 2


def test_an_owner_demoted_to_viewer_is_not_run_for_and_the_schedule_paused(world):
    """Tried: the owner's key becomes a viewer's (the registry changed while the broker was down) before the
    slot: the slot is skipped with the refusal's wording, a security event counted, the schedule paused."""
    bus, _, operator = world
    operator.request("schedules.add", **schedule_args(at=time.time() + 2))
    bus.stop()
    registry = KeyRegistry(bus.data.broker_db)
    record = registry.accepted_by_client("op-s")
    registry.add(record.public_key, "op-s", "viewer")
    registry.close()
    bus.start()
    shown = wait_for(lambda: (s := bus.admin.request("schedules.get", id="s1"))["runs"] and s, 15, what="the slot")
    assert shown["runs"][0]["outcome"].startswith("skipped: role viewer may not call templates.run")
    assert shown["state"] == "paused" and bus.broker.counters["security_schedule_refused"] == 1
    assert bus.admin.request("bulk.list") == []


HOSTILE = [-1, 0, 2**63 - 1, 2**63, -(2**63), float("inf"), float("nan"), "1", "", "\x00", "x" * 5000, None, [], {}, True,
           b"\x00", [[[["deep"]]]], {"a": {"b": 1}}, "9999-12-31 23:59", "0001-01-01 00:00", "2030-01-01T00:00+14:00"]
FIELDS = ["name", "request_op", "args", "reason", "cron", "at", "tz", "missed", "grace_s"]


def test_each_field_of_a_valid_schedule_made_hostile_is_a_bad_request_never_internal(world):
    """Tried: a valid ``schedules.add`` with each field in turn set to each hostile value (int64 edges, inf,
    nan, NUL, 5,000 characters, containers, bytes, times at the ends of the calendar): answered or BAD_REQUEST,
    never INTERNAL; the broker still answers."""
    bus, _, operator = world
    codes = set()
    for i, (field, value) in enumerate(itertools.product(FIELDS, HOSTILE)):
        request = {**schedule_args(f"h{i}", at=None, cron="@daily"), field: value}
        if field == "at":
            request.pop("cron")
        try:
            operator.request("schedules.add", **request)
            codes.add(None)
        except RemoteError as exc:
            codes.add(exc.code)
    assert codes <= {None, ErrorCode.BAD_REQUEST}, codes
    assert bus.broker.counters.get("internal_errors", 0) == 0
    assert bus.admin.request("status")["broker"]["peers"] >= 3


def test_a_slot_is_taken_once_and_old_slots_are_pruned(tmp_path, monkeypatch):
    """The store alone (real SQLite): a second claim of a slot already taken (a stale copy of the schedule,
    as a second broker on the same file would hold) is refused and records nothing; only the newest slots stay."""
    from broker.core.sealing import KeyRing
    from broker.server import schedule_store

    monkeypatch.setattr(schedule_store, "KEEP_SLOTS", 5)
    store = schedule_store.ScheduleStore(tmp_path / "broker.db", KeyRing(tmp_path / "keys.json"))
    try:
        schedule = schedule_store.Schedule("s-id", "every-minute", "op", "operator", "key", "Op", "templates.run",
                                           {"name": "t", "selector": "all"}, "* * * * *", None, "UTC", "skip", 60, "r", 600.0)
        store.add(schedule)
        stale = schedule_store.Schedule(**schedule.__dict__)
        assert store.claim(schedule, 660.0, "run-1", 601.0)
        assert not store.claim(stale, 660.0, "run-2", 601.5)  # slot 600 is taken already
        assert [(r.slot, r.run_id) for r in store.runs("s-id", 10)] == [(600.0, "run-1")]
        for _ in range(10):
            assert store.claim(schedule, schedule.next_due + 60, "run", schedule.next_due)
        assert [r.slot for r in store.runs("s-id", 100)] == [1200.0, 1140.0, 1080.0, 1020.0, 960.0]
        assert store.get("every-minute").args == {"name": "t", "selector": "all"}  # sealed at rest, opened on read
        assert not [f for f in tmp_path.glob("broker.db*") if b"selector" in f.read_bytes()]
    finally:
        store.close()


def test_a_scheduled_broadcast_reaches_every_target_and_is_tracked(world):
    """``broadcast.send`` as the schedulable op ("optionally scheduled"): each agent gets its chat message, and the
    slot names the broadcast whose receipts ``broadcast.get`` tracks."""
    bus, agents, operator = world
    seen = Seen(*agents)
    operator.request("schedules.add", **schedule_args("notice", request_op="broadcast.send", at=time.time() + 1.5,
                                                      args={"selector": "id:lab-*", "text": "Maintenance at noon"}))
    assert seen.poll().data(agents[0], Kind.COMMAND) == []  # adding it tried it as a dry run: nothing was sent
    for agent in agents:
        seen.until(lambda s, a=agent: s.data(a, Kind.COMMAND), f"the scheduled broadcast at {agent}")
    [slot] = wait_for(lambda: [r for r in operator.request("schedules.get", id="notice")["runs"]
                               if r["outcome"] != "attempted"], 15, what="the slot's outcome")
    seen.poll()
    for agent in agents:
        [command] = seen.data(agent, Kind.COMMAND)  # one message each: the slot's, and no other
        assert command["name"] == "chat.send" and command["args"]["text"] == "Maintenance at noon"
    assert len(operator.request("broadcast.list")) == 1
    shown = operator.request("broadcast.get", id=slot["run_id"])
    assert shown["reason"] == f"{REASON} (schedule notice)" and len(shown["recipients"]) == 2
