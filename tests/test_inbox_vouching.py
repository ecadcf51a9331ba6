"""Inboxes and acknowledgements through a vouching service (the admin API: one bus key acting for many web
people), on a real broker with a real alerts service. The broker stamps the person the service names as the
requester (``web:<name>``, a role of at most operator, the service as ``via``), so each web person has their
own inbox; a service naming nobody is refused, and so is one naming a key's client id or claiming more than
operator for an op that needs it.
"""
from __future__ import annotations

import pytest

from broker.core import keys, permissions
from broker.core.envelope import ErrorCode, Kind
from broker.core.errors import RemoteError

from conftest import wait_for
from test_alerts import RunningAlerts

#: who acts: an operator's own key, or the admin API's service key naming person A, person B or nobody
ACTORS = ("key", "web-a", "web-b", "web-nobody")
PEOPLE = {"web-a": {"id": "web:alice", "name": "Alice Ames", "role": "operator"},
          "web-b": {"id": "web:bob", "name": "Bob Berg", "role": "operator"}}
#: the inbox each actor's marks are kept under
INBOX_OF = {"key": "jane", "web-a": "web:alice", "web-b": "web:bob"}


@pytest.fixture
def world(bus, tmp_path):
    pair = keys.generate()
    bus.admin.request("keys.add", public_key=pair.public, client_id="jane", role="operator", name="Jane Doe")
    jane = bus.client(pair, hello={"client_id": "jane"})
    service = bus.peer("admin-http", role="service")
    running = RunningAlerts(bus, tmp_path / "alerts.db")
    bus.admin.request("alerts.rule_put", rule={"name": "cpu-now", "kind": "cpu", "threshold": 50, "clear_s": 0},
                      reason="test: fire at once")
    bus.peer("desk-1").publish(Kind.EVENT, "sysinfo", {"cpu_percent": 99.0})
    [alert] = wait_for(lambda: [a for a in bus.admin.request("alerts.list") if a["rule"] == "cpu-now"], what="the alert")
    yield bus, jane, service, running, alert
    running.stop()


def _call(world, actor: str, op: str, **args):
    _, jane, service, _, _ = world
    if actor == "key":
        return jane.request(op, **args)
    if actor in PEOPLE:
        args["operator"] = PEOPLE[actor]
    return service.request(op, **args)


def _code(call) -> int | None:
    try:
        call()
    except RemoteError as exc:
        return exc.code
    return None


@pytest.mark.parametrize("actor", ACTORS)
def test_inbox_list_is_the_named_persons_own(world, actor):
    """Tried: each of {own key, web A, web B, web naming nobody} lists its inbox after A read everything.
    Expected: A's notices are read, everyone else's still unread (one inbox each although A and B share a key);
    the service naming nobody is FORBIDDEN (a service has no inbox) with a security event."""
    _call(world, "web-a", "inbox.read", all=True)
    if actor == "web-nobody":
        assert _code(lambda: _call(world, actor, "inbox.list")) == ErrorCode.FORBIDDEN
        return
    [notice] = _call(world, actor, "inbox.list")
    assert notice["rule"] == "cpu-now"
    assert notice["read"] is (actor == "web-a")
    marks = world[3].service.book.conn.execute("SELECT DISTINCT person FROM inbox_marks").fetchall()
    assert [m[0] for m in marks] == ["web:alice"]


@pytest.mark.parametrize("reader", ACTORS)
def test_inbox_read_marks_only_the_named_persons_inbox(world, reader):
    """Tried: each actor marks its inbox read (all: true). Expected: its own count goes to 0 unread, every other
    actor's stays at 1; naming nobody is FORBIDDEN and marks nothing."""
    if reader == "web-nobody":
        assert _code(lambda: _call(world, reader, "inbox.read", all=True)) == ErrorCode.FORBIDDEN
    else:
        assert _call(world, reader, "inbox.read", all=True) == {"marked": 1, "total": 1, "unread": 0}
    for other in ("key", "web-a", "web-b"):
        assert _call(world, other, "inbox.count")["unread"] == (0 if other == reader else 1), other


@pytest.mark.parametrize("actor", ACTORS)
def test_alerts_ack_names_the_person_and_the_service(world, actor):
    """Tried: each actor acknowledges the open alert with a reason. Expected: the alert names the person
    (their id and name, not the service key); the alerts service's audit keeps the service as ``via``;
    naming nobody is FORBIDDEN and the alert stays unacknowledged."""
    bus, _, _, running, alert = world
    if actor == "web-nobody":
        assert _code(lambda: _call(world, actor, "alerts.ack", id=alert["id"], reason="seen")) == ErrorCode.FORBIDDEN
        assert not bus.admin.request("alerts.list")[0].get("acked_by")
        return
    acked = _call(world, actor, "alerts.ack", id=alert["id"], reason="seen it")
    assert acked["acked_by"] == INBOX_OF[actor]
    assert acked["acked_name"] == ("Jane Doe" if actor == "key" else PEOPLE[actor]["name"])
    [row] = [r for r in running.service.book.audit_rows() if r["action"] == "alerts.ack"]
    assert row["person_id"] == INBOX_OF[actor] and row["role"] == "operator"
    assert row["detail"].get("via", "") == ("" if actor == "key" else "admin-http")


@pytest.mark.parametrize("claimed,may_ack", [("viewer", False), ("operator", True), ("admin", True), (None, False),
                                             ("root", False)])
def test_the_role_claimed_for_a_person_is_at_most_operator(world, claimed, may_ack):
    """Tried: the service names a person with role viewer, operator, admin, none, or a made-up one, and lists the
    inbox and acknowledges. Expected: a viewer (and no or an unknown claim: the least role) may list but not
    acknowledge (FORBIDDEN); an admin claim is cut to operator (may acknowledge, recorded as operator)."""
    _, _, service, running, alert = world
    person = {"id": "web:carol", "name": "Carol", **({"role": claimed} if claimed else {})}
    assert [n["rule"] for n in service.request("inbox.list", operator=person)] == ["cpu-now"]
    code = _code(lambda: service.request("alerts.ack", id=alert["id"], reason="mine", operator=person))
    assert code == (None if may_ack else ErrorCode.FORBIDDEN)
    if may_ack:
        [row] = [r for r in running.service.book.audit_rows() if r["action"] == "alerts.ack"]
        assert row["role"] == permissions.vouched_role(claimed) == "operator"


@pytest.mark.parametrize("operator,words", [
    ({"id": "jane", "name": "Jane Doe"}, "a key's client id"),
    ({"name": ""}, "for a person it names"),
    ({"name": "two\nlines"}, "one line"),
    ("Bob", "for a person it names"),
])
def test_a_bad_or_borrowed_person_is_refused(world, operator, words):
    """Tried: the service names a key's client id (to read that key's inbox), an empty name, a two-line name and
    a bare string. Expected: BAD_REQUEST saying what is wrong; nothing is marked."""
    _, _, service, running, _ = world
    with pytest.raises(RemoteError, match=words) as caught:
        service.request("inbox.read", all=True, operator=operator)
    assert caught.value.code == ErrorCode.BAD_REQUEST
    assert running.service.book.conn.execute("SELECT COUNT(*) FROM inbox_marks").fetchone()[0] == 0


def test_other_forwarded_ops_still_see_the_service(world):
    """Tried: the service lists alerts (not a person's op) naming nobody. Expected: answered as before."""
    _, _, service, _, alert = world
    assert [a["id"] for a in service.request("alerts.list")] == [alert["id"]]
