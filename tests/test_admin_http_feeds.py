"""The admin HTTP API's inbox, alerts, schedules and broadcasts routes (:mod:`bridges.admin_http.feed_routes`)
against a real broker, a real alerts service and the real listener on a random port. One service key, many
people: web user A's inbox is A's (B's marks are B's), an acknowledgement names the person, a web viewer may not
acknowledge; a broadcast names its sender. Every route refuses a call that names no one, bad JSON, out-of-range
numbers and unknown ids with a sentence and a hint.
"""
from __future__ import annotations

import pytest

from broker.core.envelope import Kind

from conftest import wait_for
from test_admin_http import Admin
from test_alerts import RunningAlerts
from test_templates import PATCH

A = {"X-EMS-Operator": "Alice Ames", "X-EMS-Role": "operator"}
B = {"X-EMS-Operator": "Bob Berg", "X-EMS-Role": "operator"}
VIEWER = {"X-EMS-Operator": "Vera Viewer", "X-EMS-Role": "viewer"}
NOBODY = {"X-EMS-Operator": None}
ROUTES = [
    ("GET", "/api/inbox", None), ("POST", "/api/inbox/read", {"all": True}),
    ("GET", "/api/alerts", None), ("POST", "/api/alerts/{id}/ack", {"reason": "seen"}),
    ("GET", "/api/schedules", None), ("GET", "/api/schedules/{id}", None),
    ("POST", "/api/schedules", {"name": "n", "template": "patch", "selector": "all", "params": {"window_h": 2},
                                "cron": "@daily", "reason": "nightly"}),
    ("POST", "/api/schedules/{id}/pause", {"reason": "hold"}),
    ("GET", "/api/broadcasts", None), ("GET", "/api/broadcasts/{id}", None),
    ("POST", "/api/broadcasts", {"selector": "all", "text": "hello", "reason": "notice"}),
]
POSTS = [r for r in ROUTES if r[0] == "POST"]


@pytest.fixture
def feeds(bus, tmp_path):
    running = RunningAlerts(bus, tmp_path / "alerts.db")
    bus.admin.request("alerts.rule_put", rule={"name": "cpu-now", "kind": "cpu", "threshold": 50, "clear_s": 0},
                      reason="test: fire at once")
    bus.peer("desk-1").publish(Kind.EVENT, "sysinfo", {"cpu_percent": 99.0})
    wait_for(lambda: bus.admin.request("alerts.list"), what="the alert")
    admin = Admin(bus)
    yield admin.http
    admin.close()
    running.stop()


def _alert_id(http) -> int:
    return http.call("GET", "/api/alerts", headers=A)[1]["alerts"][0]["id"]


@pytest.mark.parametrize("method,path,body", ROUTES)
def test_every_route_needs_a_person(feeds, method, path, body):
    """Tried: each route with no X-EMS-Operator. Expected: 400 naming the header, nothing done."""
    status, answer, _ = feeds.call(method, path.format(id="1"), body, headers=NOBODY)
    assert status == 400 and "X-EMS-Operator is required" in answer["error"] and answer["hint"]


@pytest.mark.parametrize("role", ["root", "Admin!", "service"])
def test_an_unknown_web_role_is_refused(feeds, role):
    """Tried: X-EMS-Role root, a mangled word and service. Expected: 400 naming the roles it takes."""
    status, answer, _ = feeds.call("GET", "/api/inbox", headers={**A, "X-EMS-Role": role})
    assert status == 400 and "viewer, operator, admin" in answer["error"]


@pytest.mark.parametrize("method,path,body", POSTS)
@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"\xff", b'{"unknown": 1}', b'"text"'])
def test_every_post_refuses_bad_json(feeds, method, path, body, raw):
    """Tried: each POST with an empty body, broken JSON, a list, non-UTF-8, an unknown field and a bare string.
    Expected: 400 with what a body must be."""
    status, answer, _ = feeds.call(method, path.format(id="1"), raw=raw, headers=A)
    assert status == 400 and answer["error"], answer


@pytest.mark.parametrize("value", [-1, 0, 2**63, "1", None, True, 1.5])
def test_out_of_range_ids(feeds, value):
    """Tried: alert ids in the path and inbox ids in the body of -1, 0, 2^63, text, null, true and 1.5. Expected: 400
    naming the range or the type (a path's "1" is the number 1: the open alert, acknowledged); nothing is marked."""
    status, answer, _ = feeds.call("POST", f"/api/alerts/{value}/ack", {"reason": "x"}, headers=A)
    assert status == (200 if str(value) == "1" else 400), answer
    status, answer, _ = feeds.call("POST", "/api/inbox/read", {"ids": [value]}, headers=A)
    assert status == 400 and "ids[]" in answer["error"], answer
    assert feeds.call("GET", "/api/inbox", headers=A)[1]["unread"] == 1


@pytest.mark.parametrize("body,words", [({}, "give ids"), ({"ids": [1], "all": True}, "give ids"), ({"ids": []}, "1 to 500"),
                                        ({"ids": "1"}, "1 to 500"), ({"all": "yes"}, "all"), ({"all": True, "archive": 1}, "archive")])
def test_bad_inbox_marks_say_what_is_wrong(feeds, body, words):
    """Tried: neither ids nor all, both, an empty list, a string for ids, text and a number for the flags. Expected:
    400 with the alerts service's words; nothing marked."""
    status, answer, _ = feeds.call("POST", "/api/inbox/read", body, headers=A)
    assert status == 400 and words in answer["error"], answer
    assert feeds.call("GET", "/api/inbox", headers=A)[1]["unread"] == 1


@pytest.mark.parametrize("query", ["limit=-1", "limit=0", f"limit={2**63}", "limit=x", "unread=maybe", "all=2"])
@pytest.mark.parametrize("path", ["/api/inbox", "/api/alerts", "/api/schedules", "/api/broadcasts"])
def test_out_of_range_queries(feeds, path, query):
    """Tried: limit -1, 0, 2^63 and text, and flags that are neither 1 nor 0. Expected: 400 for every value a route
    reads; a flag a route does not read is ignored (200)."""
    status, answer, _ = feeds.call("GET", f"{path}?{query}", headers=A)
    reads = query.startswith("limit") or (query.startswith("unread") and path == "/api/inbox") or \
        (query.startswith("all") and path == "/api/alerts")
    assert status == (400 if reads else 200), answer


@pytest.mark.parametrize("path,words", [("/api/alerts/987654/ack", "no open alert"),
                                        ("/api/schedules/nope", "no schedule"), ("/api/broadcasts/nope", "no broadcast")])
def test_unknown_ids_are_404(feeds, path, words):
    """Tried: an alert, schedule and broadcast id nobody has. Expected: 404 with the broker's words and a hint."""
    status, answer, _ = feeds.call("POST" if path.endswith("ack") else "GET", path, {"reason": "x"} if
                                   path.endswith("ack") else None, headers=A)
    assert status == 404 and words in answer["error"] and answer["hint"]


def test_each_web_person_has_their_own_inbox(feeds):
    """Tried: A marks everything read; B lists. Expected: A has 0 unread, B still 1; B marking A's id by number marks
    it for B only (an inbox id names a notice, the marks are per person)."""
    [item] = feeds.call("GET", "/api/inbox", headers=A)[1]["items"]
    assert feeds.call("POST", "/api/inbox/read", {"all": True}, headers=A)[1] == {"marked": 1, "total": 1, "unread": 0}
    assert feeds.call("GET", "/api/inbox?unread=1", headers=A)[1]["items"] == []
    assert feeds.call("GET", "/api/inbox", headers=B)[1]["unread"] == 1
    assert feeds.call("POST", "/api/inbox/read", {"ids": [item["id"]]}, headers=B)[1]["unread"] == 0


def test_a_viewer_reads_but_may_not_acknowledge(feeds):
    """Tried: a web viewer lists alerts and its inbox, then acknowledges. Expected: the lists answer; the
    acknowledgement is 403 with the broker's words, and the alert stays unacknowledged."""
    assert feeds.call("GET", "/api/inbox", headers=VIEWER)[0] == 200
    alert_id = _alert_id(feeds)
    status, answer, _ = feeds.call("POST", f"/api/alerts/{alert_id}/ack", {"reason": "mine"}, headers=VIEWER)
    assert status == 403 and "viewer may not" in answer["error"]
    assert not feeds.call("GET", "/api/alerts", headers=A)[1]["alerts"][0].get("acked_by")


def test_an_acknowledgement_names_the_person(feeds):
    """Tried: A acknowledges with a reason; then without one. Expected: 200 naming web:Alice Ames; no reason: 400."""
    alert_id = _alert_id(feeds)
    assert feeds.call("POST", f"/api/alerts/{alert_id}/ack", {"reason": " "}, headers=A)[0] == 400
    status, acked, _ = feeds.call("POST", f"/api/alerts/{alert_id}/ack", {"reason": "looking at it"}, headers=A)
    assert status == 200 and acked["acked_by"] == "web:Alice Ames" and acked["acked_name"] == "Alice Ames"


def test_a_broadcast_is_sent_as_the_person_and_listed(feeds, bus):
    """Tried: A sends a broadcast to all; bad selector/text; a schedule made by an operator key is listed.
    Expected: 202 naming A as the person, listed with its recipients; empty text or selector: 400."""
    assert feeds.call("POST", "/api/broadcasts", {"selector": "all", "text": " ", "reason": "r"}, headers=A)[0] == 400
    assert feeds.call("POST", "/api/broadcasts", {"selector": "", "text": "t", "reason": "r"}, headers=A)[0] == 400
    status, sent, _ = feeds.call("POST", "/api/broadcasts", {"selector": "all", "text": "Fire drill at 3", "reason": "drill"},
                                 headers=A)
    assert status == 202 and sent["person"] == "Alice Ames" and sent["count"] == 1
    listed = feeds.call("GET", "/api/broadcasts", headers=B)[1]["broadcasts"]
    assert [b["id"] for b in listed] == [sent["id"]]
    one = feeds.call("GET", f"/api/broadcasts/{sent['id']}", headers=B)[1]
    assert [r["client_id"] for r in one["recipients"]] == ["desk-1"]
    bus.admin.request("templates.put", **PATCH)
    bus.admin.request("schedules.add", name="nightly", request_op="templates.run", reason="patch night", cron="0 2 * * *",
                      args={"name": "patch", "selector": "all", "params": {"window_h": 2}})
    [schedule] = feeds.call("GET", "/api/schedules", headers=A)[1]["schedules"]
    assert schedule["name"] == "nightly" and schedule["next_due_text"] and schedule["last_outcome"] == ""
    assert feeds.call("GET", f"/api/schedules/{schedule['id']}", headers=A)[1]["runs"] == []


NIGHTLY = {"name": "nightly", "template": "patch", "selector": "all", "params": {"window_h": 2}, "cron": "0 2 * * *",
           "tz": "Europe/Berlin", "missed": "once", "reason": "patch night"}


@pytest.mark.parametrize("change,status,words", [
    ({"cron": "61 * * * *"}, 400, "minute"), ({"cron": None, "at": "2001-01-01 10:00"}, 400, "future"),
    ({"at": "2031-01-01 10:00"}, 400, "exactly one of cron"), ({"tz": "Mars/Olympus"}, 400, "Mars/Olympus"),
    ({"missed": "twice"}, 400, "missed"), ({"template": "no-such"}, 400, "no template"), ({"template": 7}, 400, "template"),
    ({"params": {"window_h": 99}}, 400, "window_h"), ({"selector": ""}, 400, "selector"), ({"reason": ""}, 400, "reason"),
    ({"max_parallel": 2**63}, 400, "max_parallel"), ({"name": ""}, 400, "name"),
])
def test_bad_schedules_are_refused_with_what_is_wrong(feeds, bus, change, status, words):
    """Tried: a cron field out of range, a past time, both cron and at, an unknown zone, missed policy, template,
    a parameter out of range, no selector, no reason, 2^63 pacing, no name. Expected: 400 naming it; nothing made."""
    bus.admin.request("templates.put", **PATCH)
    body = {k: v for k, v in {**NIGHTLY, **change}.items() if v is not None}
    got, answer, _ = feeds.call("POST", "/api/schedules", body, headers=A)
    assert got == status and words.lower() in answer["error"].lower(), answer
    assert bus.admin.request("schedules.list") == []


def test_a_web_schedule_is_the_persons_to_pause_resume_and_remove(feeds, bus):
    """Tried: A adds a schedule; B pauses it; A pauses, resumes and removes it; an unknown action. Expected: 201 owned
    by Alice Ames; B is 409 with who may; A's changes answer 200; unknown action 404."""
    bus.admin.request("templates.put", **PATCH)
    status, made, _ = feeds.call("POST", "/api/schedules", NIGHTLY, headers=A)
    assert status == 201 and made["owner_name"] == "Alice Ames" and made["next_due_text"].endswith(("CET", "CEST"))
    status, answer, _ = feeds.call("POST", f"/api/schedules/{made['id']}/pause", {"reason": "mine now"}, headers=B)
    assert status == 409 and "web:Alice Ames" in answer["error"]
    assert feeds.call("POST", f"/api/schedules/{made['id']}/explode", {"reason": "x"}, headers=A)[0] == 404
    assert feeds.call("POST", f"/api/schedules/{made['id']}/pause", {"reason": "freeze"}, headers=A)[1]["state"] == "paused"
    assert feeds.call("POST", f"/api/schedules/{made['id']}/resume", {"reason": "thaw"}, headers=A)[1]["state"] == "enabled"
    assert feeds.call("POST", f"/api/schedules/{made['id']}/remove", {"reason": "done"}, headers=A)[1]["removed"] is True
    assert bus.admin.request("schedules.list") == []
