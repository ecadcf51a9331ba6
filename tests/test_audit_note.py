"""``audit.note``: a service's record of what a person did through it lands in the bus's audit trail, named.

Tried: a service recording under a name it provides (kept, with the person, the reason and the service as
``via``); under a name it does not provide or the broker's own (``keys.accept``), from a service that provides
nothing; every non-service role (FORBIDDEN); a person that is not a map, has no name or a 10,000-character
one; a detail that is not a map or is nested too deep; and the alerts service's acknowledgement of an alert
reaching an admin's audit feed with the person who acknowledged it and why.
"""
from __future__ import annotations

import pytest

from broker.core.client import BusClient
from broker.core.envelope import ErrorCode
from broker.core.errors import RemoteError
from conftest import wait_for


def _nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"x": value}
    return value


def _service(bus, client_id: str, provides: list[str]) -> BusClient:
    pair = bus.enrol(client_id, "service")
    return bus.client(pair, hello={"client_id": client_id, "provides": provides})


def _audit(listener, action: str) -> list[dict]:
    seen = listener.__dict__.setdefault("seen", [])

    def found():
        seen.extend(e.data() for e in listener.drain(100, 0.05))
        return [a for a in seen if a["action"] == action]
    return wait_for(found, 10, interval_s=0, what=f"the {action} audit record")


@pytest.fixture
def listener(bus):
    ears = bus.peer("audit-ears", role="admin")
    ears.subscribe(["audit."])
    return ears


def test_a_service_records_its_own_action_named_with_the_person(bus, listener):
    desk = _service(bus, "helpdesk", ["helpdesk"])
    answer = desk.request("audit.note", action="helpdesk.close", person={"id": "web:ada", "name": "Ada Admin"},
                          detail={"ticket": 81, "reason": "solved by phone", "target": "desk-7"})
    assert answer == {"recorded": "helpdesk.close"}
    [record] = _audit(listener, "helpdesk.close")
    assert (record["operator_name"], record["via"], record["operator"]) == ("Ada Admin", "helpdesk", "helpdesk")
    assert record["reason"] == "solved by phone" and record["target"] == "desk-7"
    assert record["detail"]["operator_id"] == "web:ada" and record["detail"]["ticket"] == 81


@pytest.mark.parametrize("provides, action", [(["helpdesk"], "keys.accept"), (["helpdesk"], "alerts.ack"), ([], "helpdesk.close"),
                                              (["helpdesk"], "helpdesk"), (["helpdesk"], "")])
def test_a_service_cannot_record_what_is_not_its_own(bus, provides, action):
    desk = _service(bus, "helpdesk", provides)
    with pytest.raises(RemoteError) as refused:
        desk.request("audit.note", action=action, person={"name": "Ada Admin"})
    assert refused.value.code is ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("role", ["viewer", "operator", "admin", "agent"])
def test_no_one_but_a_service_may_note(bus, role):
    peer = bus.peer(f"not-a-service-{role}", role=role)
    with pytest.raises(RemoteError) as refused:
        peer.request("audit.note", action="helpdesk.close", person={"name": "Mallory"})
    assert refused.value.code is ErrorCode.FORBIDDEN


@pytest.mark.parametrize("args, words", [
    ({"person": "Ada"}, "person must be a map"),
    ({"person": {"id": "web:ada"}}, "person.name"),
    ({"person": {"name": "A" * 10_000}}, "person.name"),
    ({"person": {"name": "Ada", "id": 7}}, "person.id"),
    ({"person": {"name": "Ada"}, "detail": ["not", "a", "map"]}, "detail must be a map"),
    ({"person": {"name": "Ada"}, "detail": _nested(40)}, "detail"),
])
def test_bad_notes_get_a_clear_error_and_record_nothing(bus, listener, args, words):
    desk = _service(bus, "helpdesk", ["helpdesk"])
    with pytest.raises(RemoteError) as refused:
        desk.request("audit.note", action="helpdesk.close", **args)
    assert refused.value.code is ErrorCode.BAD_REQUEST and words in str(refused.value)
    assert [e for e in listener.drain(100, 0.3) if e.data().get("action") == "helpdesk.close"] == []


def test_an_alert_acknowledged_through_the_alerts_service_is_in_the_audit_trail(bus, listener, tmp_path):
    from broker.core.envelope import Kind
    from test_alerts import RunningAlerts

    alerts = RunningAlerts(bus, tmp_path / "alerts.db")
    try:
        agent = bus.peer("desk-7")
        agent.publish(Kind.EVENT, "sysinfo", {"hostname": "desk-7", "disk_percent": 97.0, "disk_percent_mount": "/"})
        omar = bus.peer("omar", role="operator")
        [alert] = wait_for(lambda: omar.request("alerts.list"), 10, what="the disk alert")
        omar.request("alerts.ack", id=alert["id"], reason="cleanup booked")
        [record] = _audit(listener, "alerts.ack")
        assert (record["via"], record["reason"], record["target"]) == ("alerts", "cleanup booked", "desk-7")
        assert record["operator_name"] == "omar" and record["detail"]["operator_id"] == "omar"
    finally:
        alerts.stop()
