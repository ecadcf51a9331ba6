"""The admin HTTP API's operations routes: approvals, bulk runs, templates and target previews for the web's
Operations page. Every route names the web person (``X-EMS-Operator``, required) and passes them to the broker
as the person this listener vouches for (``{"id": "web:<name>", "name": <name>}``): the broker checks the
two-person and "only its sender" rules against that person, not against this listener's one key.

=====================================  =======================================
``GET  /api/approvals``                requests (``?state=pending|approved|denied|expired|all``), pending first
``POST /api/approvals/<id>/decide``    ``{"approve": true|false, "reason": "..."}`` as the person (never the requester)
``GET  /api/bulk``                     the newest bulk runs (``?limit=1..200``)
``GET  /api/bulk/<id>``                one run with a page of its targets (``?offset=N&limit=1..500``)
``POST /api/bulk/<id>/cancel``         ``{"reason": "..."}``: stop a run the person started
``GET  /api/templates``                the command templates with their typed parameters
``POST /api/templates/<name>/run``     ``{"selector", "params", "reason", "dry_run", "max_parallel", "canary", "halt_failure_pct"}``
``GET  /api/targets?selector=...``     the agents a selector matches now (a preview: nothing is sent)
=====================================  =======================================
"""
from __future__ import annotations

import math
from typing import Any, Callable

from bridges.admin_http.config import CLIENT_ID, OPERATOR_HEADER
from bridges.admin_http.exchange import ApiError, Request, Response, json_object
from broker.core.envelope import ErrorCode
from broker.core.errors import RemoteError

STATES = ("pending", "approved", "denied", "expired", "all")
DECIDE_KEYS = ("approve", "reason")
CANCEL_KEYS = ("reason",)
RUN_KEYS = ("selector", "params", "reason", "dry_run", "max_parallel", "canary", "halt_failure_pct")
#: a run's page of targets: at most this many per answer
MAX_PAGE = 500
#: the broker lists at most this many targets of a run or a selector
MAX_TARGETS = 10_000
_ID_HINT = {"approvals": "GET /api/approvals lists the requests", "bulk": "GET /api/bulk lists the runs",
            "templates": "GET /api/templates lists the templates"}
SELECTOR_REQUIRED = "selector is required (1-1000 characters)"
SELECTOR_EXAMPLE = 'e.g. "group:lab", "tag:kiosk", "all"'
#: the hint for a value the broker refused
FIX_HINT = "fix the value the broker names and try again"
#: what to do when the broker's rules say no (409)
_CONFLICT_HINT = {"approvals": "another person decides it (never the one who asked), and only while it is pending",
                  "bulk": "through the web only the person who started a run cancels it; an admin key stops any run "
                          "(ems bulk cancel)"}


class OpsRoutes:
    """The routes above; bus calls, reasons and errors go through the :class:`AdminApi` they belong to."""

    def __init__(self, api: Any):
        """``api``: the :class:`bridges.admin_http.api.AdminApi` these routes join (its bus, config and reason check)."""
        self.api = api

    def routes(self) -> list[tuple[str, tuple[str, ...], Callable[..., Response]]]:
        return [
            ("GET", ("api", "approvals"), self.list_approvals),
            ("POST", ("api", "approvals", "{}", "decide"), self.decide),
            ("GET", ("api", "bulk"), self.list_runs),
            ("GET", ("api", "bulk", "{}"), self.get_run),
            ("POST", ("api", "bulk", "{}", "cancel"), self.cancel_run),
            ("GET", ("api", "templates"), self.list_templates),
            ("POST", ("api", "templates", "{}", "run"), self.run_template),
            ("GET", ("api", "targets"), self.resolve_targets),
        ]

    # -- approvals -------------------------------------------------------------------
    def list_approvals(self, req: Request) -> Response:
        """``GET /api/approvals?state=pending&limit=100``: ``{"approvals": [...]}``, pending ones first, then newest
        first; each says what it would do (``summary``), who asked (``requester_name``, ``requester_person``) and
        why, when it expires, and who decided. ``state`` is one of pending (default), approved, denied, expired, all."""
        web_person(req, "lists approvals")
        state = query(req, "state", "pending")
        if state not in STATES:
            raise ApiError(400, f"state={state!r} is not a state", f"use one of {', '.join(STATES)}")
        limit = int_query(req, "limit", 100, 1, 500)
        rows = self._call("approvals.list", "approvals", state=state, limit=limit)
        rows.sort(key=lambda r: (r.get("state") != "pending", -float(r.get("created") or 0)))
        return Response(200, {"approvals": rows, "caller": req.caller})

    def decide(self, req: Request, request_id: str) -> Response:
        """``POST /api/approvals/<id>/decide`` with ``{"approve": true|false, "reason": "..."}``: approve (the held
        command is queued, the run starts) or deny (it ends unrun) as the person named, who must not be the one
        who asked: 409 with the broker's words otherwise, 404 for an unknown request. 200 with the decided request."""
        person = web_person(req, "decides")
        check_id(request_id, "a request id")
        req.audit.update(action="approvals.decide", target=request_id)
        body = json_object(req.body, DECIDE_KEYS)
        approve = body.get("approve")
        if not isinstance(approve, bool):
            raise ApiError(400, "approve: true to approve the request, false to deny it", '{"approve": true, "reason": "..."}')
        reason = req.audit["reason"] = self.api._reason(body)
        req.audit["approve"] = approve
        decided = self._call("approvals.decide", "approvals", id=request_id, approve=approve, reason=reason, operator=person)
        return Response(200, decided)

    # -- bulk runs -------------------------------------------------------------------
    def list_runs(self, req: Request) -> Response:
        """``GET /api/bulk?limit=20``: ``{"runs": [...]}``, the newest bulk runs (1-200) with their state, counts per
        status, selector and sender, without their target lists."""
        web_person(req, "lists bulk runs")
        limit = int_query(req, "limit", 20, 1, 200)
        return Response(200, {"runs": self._call("bulk.list", "bulk", limit=limit), "caller": req.caller})

    def get_run(self, req: Request, run_id: str) -> Response:
        """``GET /api/bulk/<id>?offset=0&limit=100``: one run (state, why, counts, options) with ``targets``, one page
        (``limit`` 1-500 from ``offset``) of its targets' statuses and command ids; ``count`` is all of them."""
        web_person(req, "looks at a bulk run")
        check_id(run_id, "a run id")
        offset = int_query(req, "offset", 0, 0, MAX_TARGETS)
        limit = int_query(req, "limit", 100, 1, MAX_PAGE)
        run = self._call("bulk.get", "bulk", id=run_id, limit=min(offset + limit, MAX_TARGETS))
        run["targets"] = run.get("targets", [])[offset:offset + limit]
        return Response(200, {**run, "offset": offset, "limit": limit})

    def cancel_run(self, req: Request, run_id: str) -> Response:
        """``POST /api/bulk/<id>/cancel`` with ``{"reason": "..."}``: stop the run (only the person who started it;
        409 with the broker's words for anyone else): nothing more starts, commands queued for offline agents
        expire unrun, what already runs finishes. 200 with the run as it is now."""
        person = web_person(req, "cancels a bulk run")
        check_id(run_id, "a run id")
        req.audit.update(action="bulk.cancel", target=run_id)
        reason = req.audit["reason"] = self.api._reason(json_object(req.body, CANCEL_KEYS))
        run = self._call("bulk.cancel", "bulk", id=run_id, reason=reason, operator=person)
        run["targets"] = []
        return Response(200, run)

    # -- templates and targets ------------------------------------------------------------
    def list_templates(self, req: Request) -> Response:
        """``GET /api/templates``: ``{"templates": [...]}``, each with its command, fixed args, typed ``params``
        (type text/int/number/bool/choice, required, default, min/max, max_chars, choices, help) and whether every
        run waits for a second person (``approval``)."""
        web_person(req, "lists templates")
        return Response(200, {"templates": self._call("templates.list", "templates"), "caller": req.caller})

    def run_template(self, req: Request, name: str) -> Response:
        """``POST /api/templates/<name>/run`` with ``{"selector": "group:lab", "params": {...}, "reason": "...",
        "dry_run": false, "max_parallel": 20, "canary": 0, "halt_failure_pct": null}``: a bulk run of the template
        as the person named. ``dry_run: true`` answers the targets and starts nothing (200); otherwise 202 with the
        run, whose ``state`` is ``held`` when it waits for a second person's approval. The broker's refusals (bad
        params, a bad selector) are 400 with its words."""
        person = web_person(req, f"runs template {name}")
        check_id(name, "a template name")
        req.audit.update(action="templates.run", target=name)
        body = json_object(req.body, RUN_KEYS)
        args = run_options(body)
        dry_run = args["dry_run"]
        if not dry_run:
            args["reason"] = req.audit["reason"] = self.api._reason(body)
        req.audit.update(selector=args["selector"], dry_run=dry_run)
        answer = self._call("templates.run", "templates", name=name, operator=person, **args)
        if not dry_run:
            req.audit.update(run_id=answer.get("id"), state=answer.get("state"))
            answer["targets"] = answer.get("targets", [])[:MAX_PAGE]
        return Response(200 if dry_run else 202, answer)

    def resolve_targets(self, req: Request) -> Response:
        """``GET /api/targets?selector=group:lab&limit=500``: ``{"selector", "count", "targets": [...]}``, the accepted
        agents the selector matches now (online, label, host, os, tags, groups); nothing is sent. 400 with the
        broker's words for a selector it cannot read."""
        web_person(req, "previews targets")
        selector = query(req, "selector", "")
        if not 0 < len(selector) <= 1000:
            raise ApiError(400, SELECTOR_REQUIRED, "e.g. ?selector=group:lab or ?selector=all")
        limit = int_query(req, "limit", MAX_PAGE, 0, MAX_TARGETS)
        return Response(200, self._call("targets.resolve", "", selector=selector, limit=limit))

    # -- helpers ----------------------------------------------------------------------
    def _call(self, op: str, area: str, **args) -> Any:
        """``op`` on the broker; its refusals become 404 (unknown id), 409 (a rule says no) or 400 (bad input)."""
        timeout = self.api.config.bus_timeout_s
        try:
            return self.api._bus(lambda client: client.request(op, timeout_s=timeout, **args))
        except ApiError as exc:
            cause = exc.__cause__
            if not isinstance(cause, RemoteError) or cause.code != ErrorCode.BAD_REQUEST:
                raise
            words = cause.detail or cause.message
            if words.startswith(("no approval request", "no bulk run", "no template")):
                raise ApiError(404, words, _ID_HINT.get(area, "")) from cause
            if "person" in words or "already" in words or "may cancel" in words:
                raise ApiError(409, words, _CONFLICT_HINT.get(area, "")) from cause
            raise ApiError(400, words, FIX_HINT) from cause


def web_person(req: Request, what: str) -> dict:
    """The person this listener vouches for (with the web role ``X-EMS-Role`` claims for them, which the broker cuts
    to at most operator); 400 when the call names no one."""
    if req.caller == CLIENT_ID:
        raise ApiError(400, f"{OPERATOR_HEADER} is required: name the person who {what}",
                       f"send {OPERATOR_HEADER}: Jane Doe (the broker checks the two-person rules against them)")
    person = {"id": f"web:{req.caller}", "name": req.caller}
    return {**person, "role": req.role} if req.role else person


def check_id(value: str, what: str) -> None:
    if not 0 < len(value) <= 64:
        raise ApiError(400, f"{what} is 1-64 characters")


def query(req: Request, key: str, default: str) -> str:
    return (req.query.get(key) or [default])[-1]


def int_query(req: Request, key: str, default: int, low: int, high: int) -> int:
    text = query(req, key, str(default)).strip()
    if not text.isdigit() or not low <= int(text) <= high:
        raise ApiError(400, f"{key}={text[:40]!r}: a whole number from {low} to {high}")
    return int(text)


def run_options(body: dict) -> dict:
    """A template run's selector, params, dry run and pacing from ``body``, each checked; ApiError 400 otherwise."""
    selector = body.get("selector")
    if not isinstance(selector, str) or not 0 < len(selector.strip()) <= 1000:
        raise ApiError(400, SELECTOR_REQUIRED, SELECTOR_EXAMPLE)
    params = body.get("params", {})
    if not isinstance(params, dict):
        raise ApiError(400, "params must be a JSON object", 'e.g. {"params": {"delay_s": 60}}')
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ApiError(400, "dry_run must be true or false")
    args = {"selector": selector.strip(), "params": params, "dry_run": dry_run,
            "max_parallel": _whole(body, "max_parallel", 20, 1, 1000), "canary": _whole(body, "canary", 0, 0, 1000)}
    pct = body.get("halt_failure_pct")
    if pct is not None:
        if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not math.isfinite(pct) or not 0 <= pct <= 100:
            raise ApiError(400, "halt_failure_pct must be a percentage from 0 to 100 (or null for none)")
        args["halt_failure_pct"] = pct
    return args


def _whole(body: dict, key: str, default: int, low: int, high: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(400, f"{key} must be a whole number from {low} to {high}")
    return value
