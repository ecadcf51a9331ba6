"""The admin HTTP API's operations routes (:mod:`bridges.admin_http.ops_routes`) against a real broker and the real
listener on a random port: approvals, bulk runs, templates and target previews, each acting for the web person
named in ``X-EMS-Operator``. One service key, many people: web user A's held run is approved by web user B, never
by A; B may not cancel A's run. Every route refuses a call that names no one, bad JSON, out-of-range numbers and
unknown ids with a sentence and a hint.
"""
from __future__ import annotations

import pytest

from test_admin_http import Admin
from test_templates import PATCH

A, B = {"X-EMS-Operator": "Alice Ames"}, {"X-EMS-Operator": "Bob Berg"}
NOBODY = {"X-EMS-Operator": None}
#: every operations route with a valid body
ROUTES = [
    ("GET", "/api/approvals", None), ("POST", "/api/approvals/{id}/decide", {"approve": True, "reason": "ok"}),
    ("GET", "/api/bulk", None), ("GET", "/api/bulk/{id}", None), ("POST", "/api/bulk/{id}/cancel", {"reason": "stop"}),
    ("GET", "/api/templates", None), ("POST", "/api/templates/{id}/run", {"selector": "all", "params": {"window_h": 2},
                                                                          "reason": "patch day"}),
    ("GET", "/api/targets?selector=all", None),
]
POSTS = [r for r in ROUTES if r[0] == "POST"]
HUGE = [-1, 0, 2**63, "1", None, True, 1.5]


@pytest.fixture
def ops(bus):
    for name in ("desk-1", "desk-2", "desk-3"):
        bus.peer(name)
    bus.admin.request("templates.put", **PATCH)
    bus.admin.request("templates.put", **{**PATCH, "name": "patch-2p", "approval": True})
    admin = Admin(bus)
    yield admin.http
    admin.close()


def _run(http, template="patch", who=A, **extra):
    body = {"selector": "all", "params": {"window_h": 4}, "reason": "patch day", **extra}
    return http.call("POST", f"/api/templates/{template}/run", body, headers=who)


@pytest.mark.parametrize("method,path,body", ROUTES)
def test_every_route_needs_a_person(ops, method, path, body):
    """Tried: each route with no X-EMS-Operator. Expected: 400 naming the header, nothing done."""
    status, answer, _ = ops.call(method, path.format(id="x"), body, headers=NOBODY)
    assert status == 400 and "X-EMS-Operator is required" in answer["error"] and answer["hint"]


@pytest.mark.parametrize("method,path,body", POSTS)
@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"\xff", b'{"unknown": 1}', b'"text"'])
def test_every_post_refuses_bad_json(ops, method, path, body, raw):
    """Tried: each POST with an empty body, broken JSON, a list, non-UTF-8, an unknown field and a bare string.
    Expected: 400 with what a body must be."""
    status, answer, _ = ops.call(method, path.format(id="x"), raw=raw, headers=A)
    assert status == 400 and answer["error"], answer


@pytest.mark.parametrize("query", ["limit=-1", "limit=0", f"limit={2**63}", "limit=x", "offset=-1", f"offset={2**63}"])
@pytest.mark.parametrize("path", ["/api/approvals", "/api/bulk", "/api/bulk/some-run"])
def test_out_of_range_numbers_in_queries(ops, path, query):
    """Tried: limit and offset of -1, 0, 2^63 and text. Expected: 400 naming the range (offset 0 is fine, so the
    bulk list, which has no offset, ignores it or refuses its other values)."""
    status, answer, _ = ops.call("GET", f"{path}?{query}", headers=A)
    if query.startswith("offset") and path != "/api/bulk/some-run":
        assert status == 200
        return
    assert status == 400 and "whole number" in answer["error"], answer


@pytest.mark.parametrize("field", ["max_parallel", "canary", "halt_failure_pct", "dry_run", "params", "selector"])
@pytest.mark.parametrize("value", HUGE)
def test_run_options_out_of_range(ops, field, value):
    """Tried: each run option as -1, 0, 2^63, text, null, true and 1.5. Expected: 400 for every value outside the
    option's type and range; the ones inside it (0 canary/percentage, null percentage, 1.5 percent, dry_run true)
    are answered by the broker, never a 500."""
    status, answer, _ = _run(ops, **{field: value, "dry_run": True} if field != "dry_run" else {field: value})
    fine = {("canary", 0), ("halt_failure_pct", 0), ("halt_failure_pct", None), ("halt_failure_pct", 1.5),
            ("dry_run", True)}
    assert status == (200 if (field, value) in fine else 400), answer


@pytest.mark.parametrize("method,path,body", [r for r in ROUTES if "{id}" in r[1]])
def test_unknown_ids_are_404(ops, method, path, body):
    """Tried: each route that takes an id with one the broker never made. Expected: 404 saying so, with where the
    ids are listed."""
    status, answer, _ = ops.call(method, path.format(id="no-such-thing"), body, headers=A)
    assert status == 404 and "no-such-thing" in answer["error"] and answer["hint"].startswith("GET /api/"), answer


@pytest.mark.parametrize("method,path,body", [r for r in ROUTES if "{id}" in r[1]])
def test_ids_longer_than_64_are_400(ops, method, path, body):
    status, answer, _ = ops.call(method, path.format(id="x" * 65), body, headers=A)
    assert status == 400 and "1-64" in answer["error"]


def test_one_web_person_approves_anothers_run_never_their_own(ops):
    """Alice runs a template that needs approval: 202, held. Listed pending first with her as the requester. She
    may not approve it (409, the broker's words); Bob approves it with a reason and the run starts."""
    status, run, _ = _run(ops, "patch-2p")
    assert status == 202 and run["state"] == "held", run
    status, listed, _ = ops.call("GET", "/api/approvals?state=all", headers=B)
    assert status == 200
    [request] = [r for r in listed["approvals"] if r["state"] == "pending"]
    assert listed["approvals"][0] is not None and listed["approvals"][0]["state"] == "pending"
    assert (request["requester_person"], request["requester_name"]) == ("web:Alice Ames", "Alice Ames")
    status, refused, _ = ops.call("POST", f"/api/approvals/{request['id']}/decide", {"approve": True, "reason": "mine"},
                                  headers=A)
    assert status == 409 and "another person" in refused["error"], refused
    status, decided, _ = ops.call("POST", f"/api/approvals/{request['id']}/decide",
                                  {"approve": True, "reason": "change 81 checked"}, headers=B)
    assert status == 200 and decided["state"] == "approved" and decided["decided_name"] == "Bob Berg"
    status, now, _ = ops.call("GET", f"/api/bulk/{run['id']}", headers=A)
    assert now["state"] != "held" and now["why"].startswith("approved by Bob Berg")
    status, again, _ = ops.call("POST", f"/api/approvals/{request['id']}/decide", {"approve": False, "reason": "x"},
                                headers=B)
    assert status == 409 and "already" in again["error"]


def test_only_the_starter_cancels_a_run_and_pages_list_its_targets(ops):
    """Alice's run (three targets, one at a time): Bob's cancel is refused (409); a page of one target from offset
    1 is the second target; Alice cancels with a reason and the run says who and why."""
    status, run, _ = _run(ops, max_parallel=1)
    assert status == 202 and run["count"] == 3
    status, refused, _ = ops.call("POST", f"/api/bulk/{run['id']}/cancel", {"reason": "not yours"}, headers=B)
    assert status == 409 and "who started it" in refused["error"]
    status, page, _ = ops.call("GET", f"/api/bulk/{run['id']}?offset=1&limit=1", headers=B)
    assert status == 200 and [t["client_id"] for t in page["targets"]] == ["desk-2"] and page["count"] == 3
    status, cancelled, _ = ops.call("POST", f"/api/bulk/{run['id']}/cancel", {"reason": "wrong window"}, headers=A)
    assert status == 200 and cancelled["state"] == "cancelled"
    assert cancelled["why"] == "cancelled by Alice Ames: wrong window"
    status, runs, _ = ops.call("GET", "/api/bulk", headers=B)
    assert runs["runs"][0]["id"] == run["id"] and runs["runs"][0]["state"] == "cancelled"


def test_a_dry_run_and_a_preview_list_targets_and_start_nothing(ops):
    """A dry run needs no reason and answers the targets; the selector preview lists them with what was tested;
    a selector the broker cannot read is a 400 with its words; nothing was started."""
    status, dry, _ = ops.call("POST", "/api/templates/patch/run", {"selector": "desk-1,desk-2", "dry_run": True,
                                                                   "params": {"window_h": 1}}, headers=A)
    assert status == 200 and dry["dry_run"] is True and [t["client_id"] for t in dry["targets"]] == ["desk-1", "desk-2"]
    status, preview, _ = ops.call("GET", "/api/targets?selector=id:desk-*", headers=A)
    assert status == 200 and preview["count"] == 3 and preview["targets"][0]["online"] is True
    status, bad, _ = ops.call("GET", "/api/targets?selector=desk-*", headers=A)
    assert status == 400 and bad["error"]
    status, params, _ = _run(ops, params={"window_h": 99})
    assert status == 400 and "window_h" in params["error"]
    assert ops.call("GET", "/api/bulk", headers=A)[1]["runs"] == []
    status, templates, _ = ops.call("GET", "/api/templates", headers=A)
    assert [t["name"] for t in templates["templates"]] == ["patch", "patch-2p"]
    assert templates["templates"][0]["params"]["window_h"]["type"] == "int"
