"""Two-person rules through a vouching service (the admin API: one bus key acting for many web people), on a
real broker with real Curve clients. The requester and the decider are the person the service names, not its
key: web user A approves web user B's request (same key), never their own; a person's own key and the web
naming the same person (name in any case) are one person; a service that names nobody decides nothing. The
same for cancelling a bulk run: only the person who started it (or an admin key).
"""
from __future__ import annotations

import sqlite3

import pytest

from broker.core import keys
from broker.core.errors import RemoteError
from broker.core.sealing import KeyRing
from broker.server.approvals import ApprovalBook, ApprovalRequest
from broker.server.command_queue import QUEUE_KEYS_FILE

REASON = "kernel patch"
#: who acts: an operator's own key, or the service vouching for web person A or B
ACTORS = ("key", "web-a", "web-b")
PEOPLE = {"web-a": {"id": "web:alice", "name": "Alice Ames"}, "web-b": {"id": "web:bob", "name": "Bob Berg"}}


@pytest.fixture
def world(bus):
    bus.peer("desk-7")
    pair = keys.generate()
    bus.admin.request("keys.add", public_key=pair.public, client_id="jane", role="operator", name="Jane Doe")
    jane = bus.client(pair, hello={"client_id": "jane"})
    service = bus.peer("admin-http", role="service")
    bus.admin.request("approvals.require", names=["reboot"])
    return bus, jane, service


def _as(world, actor: str) -> tuple:
    """(client, extra request args) for ``actor``."""
    _, jane, service = world
    return (jane, {}) if actor == "key" else (service, {"operator": PEOPLE[actor]})


def _request(world, actor: str) -> str:
    client, extra = _as(world, actor)
    first = client.send_command("desk-7", "reboot", {"reason": REASON, **extra})
    assert first["status"] == "held"
    return first["id"]


@pytest.mark.parametrize("decider", ACTORS)
@pytest.mark.parametrize("requester", ACTORS)
def test_who_may_decide_whose_request(world, requester, decider):
    """Tried: every {own key, web person A, web person B} asking x every one of them approving. Expected: allowed
    exactly when the two are different people, even though A and B share one service key; the decision names
    the person, and the requester recorded is the person too."""
    request_id = _request(world, requester)
    client, extra = _as(world, decider)
    if requester == decider:
        with pytest.raises(RemoteError, match="another person than the one who made it"):
            client.request("approvals.decide", id=request_id, approve=True, reason="looked at it", **extra)
        [still] = world[0].admin.request("approvals.list")
        assert still["id"] == request_id and still["state"] == "pending"
        return
    decided = client.request("approvals.decide", id=request_id, approve=True, reason="looked at it", **extra)
    assert decided["state"] == "approved"
    assert decided["requester_person"] == ("jane" if requester == "key" else PEOPLE[requester]["id"])
    assert decided["decided_by"] == ("jane" if decider == "key" else PEOPLE[decider]["id"])
    assert decided["decided_name"] == ("Jane Doe" if decider == "key" else PEOPLE[decider]["name"])


def test_the_web_naming_the_keys_person_in_another_case_is_the_same_person(world):
    """Tried: Jane asks with her own key, then the web (vouching) approves as "JANE DOE" under another id.
    Expected: refused, the request stays pending: her name is her, whichever tool she uses."""
    request_id = _request(world, "key")
    _, _, service = world
    with pytest.raises(RemoteError, match="another person"):
        service.request("approvals.decide", id=request_id, approve=True, reason="mine",
                        operator={"id": "web:jd", "name": "JANE DOE"})


@pytest.mark.parametrize("operator", [None, {}, {"name": ""}, "Bob", {"name": "x" * 500}, {"name": "two\nlines"}])
def test_a_service_that_names_nobody_decides_nothing(world, operator):
    """Tried: the service deciding with no person, an empty one, a bare string, a 500-character or two-line name.
    Expected: refused saying it must name a person; the request stays pending."""
    request_id = _request(world, "web-a")
    _, _, service = world
    extra = {} if operator is None else {"operator": operator}
    with pytest.raises(RemoteError, match="only for a person it names"):
        service.request("approvals.decide", id=request_id, approve=False, reason="no", **extra)
    assert world[0].admin.request("approvals.list")[0]["state"] == "pending"


def _start_run(world, actor: str) -> str:
    client, extra = _as(world, actor)
    run = client.request("bulk.start", selector="desk-7", name="ping", args={"reason": REASON, **extra})
    return run["id"]


@pytest.mark.parametrize("canceller", (*ACTORS, "admin"))
@pytest.mark.parametrize("starter", ACTORS)
def test_who_may_cancel_whose_bulk_run(world, starter, canceller):
    """Tried: every {own key, web A, web B} starting a run x every one of them and an admin key cancelling it.
    Expected: the person who started it and the admin may, anyone else is refused (A may not cancel B's run
    through the shared service key), and the run's reason names the person who cancelled."""
    run_id = _start_run(world, starter)
    if canceller == "admin":
        client, extra = world[0].admin, {}
    else:
        client, extra = _as(world, canceller)
    if canceller not in ("admin", starter):
        with pytest.raises(RemoteError, match="who started it"):
            client.request("bulk.cancel", id=run_id, reason="stop", **extra)
        return
    run = client.request("bulk.cancel", id=run_id, reason="stop", **extra)
    who = {"key": "Jane Doe", "admin": "admin", **{k: v["name"] for k, v in PEOPLE.items()}}[canceller]
    assert (run["state"], run["why"]) == ("cancelled", f"cancelled by {who}: stop")


def test_a_broker_db_from_before_vouched_requesters_keeps_its_pending_requests(tmp_path):
    """Tried: an approval_requests table without the requester_person column (a broker.db of the previous release)
    holding a pending request. Expected: opening it adds the column; the old request's person is its requester's
    key, so the key-based rule still holds for it; a new request keeps its own person."""
    db = tmp_path / "broker.db"
    ring = KeyRing(tmp_path / "keys" / QUEUE_KEYS_FILE)
    book = ApprovalBook(db, ring)
    book.add(ApprovalRequest("old-1", "command", "reboot", "reboot on desk-7", "jane", "operator", "k", "Jane Doe", "r",
                             {"target": "desk-7"}, "pending", 1.0, 2.0))
    book.close()
    with sqlite3.connect(db) as conn:  # back to the old schema
        conn.execute("ALTER TABLE approval_requests DROP COLUMN requester_person")
    book = ApprovalBook(db, ring)
    assert book.get("old-1").requester_person == "jane"
    book.add(ApprovalRequest("new-1", "bulk", "reboot", "reboot on 3", "admin-http", "service", "k", "Ann", "r",
                             {"run_id": "x"}, "pending", 3.0, 4.0, requester_person="web:Ann"))
    assert [(r.id, r.requester_person) for r in book.listed("pending", 10)] == [("new-1", "web:Ann"), ("old-1", "jane")]
    book.close()
