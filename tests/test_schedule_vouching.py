"""Schedules made through a vouching service (the web through the admin API: one bus key, many people), on a real
broker with real Curve agents. The person the service names owns the schedule: its slot runs as that person (via
the service), only they (or an admin key) pause, resume or remove it, not another web person on the same key; a
service naming no one is FORBIDDEN with a security event.
"""
from __future__ import annotations

import time

import pytest

from broker.core import keys
from broker.core.envelope import ErrorCode, Kind
from broker.core.errors import RemoteError

from conftest import wait_for
from test_schedules import PING, REASON, Seen, schedule_args

#: who acts: an operator's own key, the admin key, or the service naming web person A, person B or nobody
ACTORS = ("key", "admin", "web-a", "web-b", "web-nobody")
PEOPLE = {"web-a": {"id": "web:alice", "name": "Alice Ames", "role": "operator"},
          "web-b": {"id": "web:bob", "name": "Bob Berg", "role": "operator"}}
#: who may pause / resume / remove a schedule web person A made
MAY_CHANGE = {"key": False, "admin": True, "web-a": True, "web-b": False, "web-nobody": False}


@pytest.fixture
def world(bus):
    agents = [bus.peer(f"lab-{i}") for i in range(2)]
    bus.admin.request("templates.put", **PING)
    pair = keys.generate()
    bus.admin.request("keys.add", public_key=pair.public, client_id="jane", role="operator", name="Jane Doe")
    jane = bus.client(pair, hello={"client_id": "jane"})
    service = bus.peer("admin-http", role="service")
    return bus, agents, jane, service


def _call(world, actor: str, op: str, **args):
    bus, _, jane, service = world
    if actor in ("key", "admin"):
        return (jane if actor == "key" else bus.admin).request(op, **args)
    if actor in PEOPLE:
        args["operator"] = PEOPLE[actor]
    return service.request(op, **args)


def test_a_web_persons_schedule_runs_as_them(world):
    """Tried: the service adds a one-off schedule for web person A. Expected: owned by A (owner_name), and the slot's
    commands reach the agents naming A with the service as via, with the schedule's reason; the list says how the
    slot went (``last_outcome``)."""
    bus, agents, _, service = world
    seen = Seen(*agents)
    made = service.request("schedules.add", operator=PEOPLE["web-a"], **schedule_args(at=time.time() + 1.5))
    assert (made["owner"], made["owner_name"]) == ("admin-http", "Alice Ames")
    seen.until(lambda s: all(s.data(a, Kind.COMMAND) for a in agents), "the scheduled commands")
    for agent in agents:
        [command] = seen.data(agent, Kind.COMMAND)
        assert command["args"]["operator"] == {"id": "web:alice", "name": "Alice Ames", "via": "admin-http"}
        assert command["args"]["reason"] == f"{REASON} (schedule s1)"
    [listed] = wait_for(lambda: [s for s in bus.admin.request("schedules.list") if s["last_outcome"]], 10, what="the outcome")
    assert listed["last_outcome"].startswith("running: run ") and listed["owner_name"] == "Alice Ames"


@pytest.mark.parametrize("op", ["schedules.pause", "schedules.resume", "schedules.remove"])
@pytest.mark.parametrize("actor", ACTORS)
def test_who_may_change_a_web_persons_schedule(world, actor, op):
    """Tried: every {operator key, admin key, web A (who made it), web B, web naming nobody} x {pause, resume,
    remove} on a daily schedule web person A made (paused first for resume). Expected: A and the admin key may; web B
    and the other operator are BAD_REQUEST naming the owner; naming nobody is FORBIDDEN; a refusal changes nothing."""
    bus = world[0]
    _call(world, "web-a", "schedules.add", **schedule_args(at=None, cron="@daily"))
    if op == "schedules.resume":
        _call(world, "web-a", "schedules.pause", id="s1", reason="hold on")
    before = bus.admin.request("schedules.get", id="s1")
    try:
        _call(world, actor, op, id="s1", reason="matrix")
        code = None
    except RemoteError as exc:
        code, words = exc.code, exc.detail or exc.message
    if MAY_CHANGE[actor]:
        assert code is None, (actor, op, code)
        return
    assert code == (ErrorCode.FORBIDDEN if actor == "web-nobody" else ErrorCode.BAD_REQUEST), (actor, op, code)
    if actor != "web-nobody":
        assert "only web:alice (Alice Ames, who made it) or an admin" in words
    after = bus.admin.request("schedules.get", id="s1")
    assert (after["enabled"], after["next_due"]) == (before["enabled"], before["next_due"])


def test_a_service_naming_no_one_makes_no_schedule(world):
    """Tried: the service adds a schedule naming nobody. Expected: FORBIDDEN, a security event; none made."""
    bus, _, _, service = world
    before = bus.broker.counters["security_forbidden"]
    with pytest.raises(RemoteError) as caught:
        service.request("schedules.add", **schedule_args(at=None, cron="@daily"))
    assert caught.value.code == ErrorCode.FORBIDDEN and bus.broker.counters["security_forbidden"] == before + 1
    assert bus.admin.request("schedules.list") == []
