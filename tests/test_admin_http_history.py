"""``POST /api/history/<kind>/access``: a person's look at audited history read outside the bus (the web view
reads MySQL) lands in the bus audit trail with the person, the reason and the filters — a real broker, a real
persister and the listener on a random port."""
from __future__ import annotations

import pytest

from conftest import wait_for
from test_admin_http import Admin
from test_persister_bus import RunningPersister


@pytest.fixture
def admin(bus):
    a = Admin(bus)
    yield a
    a.close()


def _history_audit(bus, kind: str) -> list[dict]:
    rows = bus.admin.request("store.query", kind="audit", limit=100)
    return [r for r in rows if r["action"] == f"history.{kind}"]


def test_a_web_look_is_audited_with_the_person_reason_and_filters(bus, admin, tmp_path):
    persister = RunningPersister(bus, tmp_path)
    try:
        status, answer, _ = admin.http.call("POST", "/api/history/messages/access",
                                            {"reason": "ticket 4711: harassment complaint", "client_id": "pc-7"},
                                            headers={"X-EMS-Operator": "Otto Operator"})
        assert status == 201, answer
        assert answer == {"audited": "history.messages", "caller": "Otto Operator",
                          "reason": "ticket 4711: harassment complaint", "client_id": "pc-7"}
        rows = wait_for(lambda: _history_audit(bus, "messages"), 10, interval_s=0.1, what="the history audit row")
        detail = rows[0]["detail"]
        assert (detail["operator_name"], detail["via"], detail["reason"]) == (
            "Otto Operator", "admin-http", "ticket 4711: harassment complaint")
        assert detail["client_id"] == "pc-7" and detail["rows"] == 0
        calls = [c for c in admin.audit() if c["method"] == "POST"]
        assert calls[-1]["action"] == "history.messages" and calls[-1]["caller"] == "Otto Operator"
    finally:
        persister.stop()


def test_refusals(bus, admin):
    http = admin.http
    status, answer, _ = http.call("POST", "/api/history/logs/access", {"reason": "why"})
    assert status == 404 and "captures" in answer["hint"]  # logs are not audited history
    status, answer, _ = http.call("POST", "/api/history/messages/access", {})
    assert status == 400 and answer["error"] == "a reason is required"
    status, answer, _ = http.call("POST", "/api/history/messages/access", {"reason": "why"},
                                  headers={"X-EMS-Operator": None})
    assert status == 400 and "X-EMS-Operator is required" in answer["error"]
    status, answer, _ = http.call("GET", "/api/history/messages/access")
    assert status == 405
