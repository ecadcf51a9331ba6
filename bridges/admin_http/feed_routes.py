"""The admin HTTP API's inbox, alerts, schedules and broadcasts routes, for the web's Operations tab. Every route
names the web person (``X-EMS-Operator``, required; ``X-EMS-Role`` their web role): the broker stamps that person
(``web:<name>``, at most operator) as the one asking, so each web person has their own inbox
(:mod:`broker.server.requests`), and an acknowledgement or a broadcast names them with this listener as ``via``.

=====================================  =======================================
``GET  /api/inbox``                    the person's own notices (``?unread=1``, ``?limit=1..500``) and counts
``POST /api/inbox/read``               ``{"ids": [..]}`` or ``{"all": true}``: marked read (``"archive": true`` too)
``GET  /api/alerts``                   open alerts (``?all=1``: history, suppressed ones with their reason too)
``POST /api/alerts/<id>/ack``          ``{"reason": "..."}``: acknowledged as the person (operators)
``GET  /api/schedules``                every schedule with its next run and state
``GET  /api/schedules/<id>``           one schedule with its newest slots and how each went
``POST /api/schedules``                ``{"name", "template", "params", "selector", "cron"|"at", "tz", "missed", "reason"}``
``POST /api/schedules/<id>/<action>``  ``pause``, ``resume`` or ``remove`` with ``{"reason": "..."}`` (its owner)
``GET  /api/broadcasts``               the newest broadcasts with their counts
``GET  /api/broadcasts/<id>``          one broadcast with each recipient's delivered / read times
``POST /api/broadcasts``               ``{"selector", "text", "reason"}``: a chat message to many agents, as the person
=====================================  =======================================

A schedule the web makes is the named person's: each slot runs as them (via this listener's key), and only they
(or an admin key) pause, resume or remove it (:mod:`broker.server.request_ops.schedules`).
"""
from __future__ import annotations

from typing import Any, Callable

from bridges.admin_http.exchange import ApiError, Request, Response, json_object
from bridges.admin_http.ops_routes import (
    FIX_HINT,
    RUN_KEYS,
    SELECTOR_EXAMPLE,
    SELECTOR_REQUIRED,
    check_id,
    int_query,
    query,
    run_options,
    web_person,
)
from broker.core.envelope import ErrorCode
from broker.core.errors import RemoteError

READ_KEYS = ("ids", "all", "archive")
ACK_KEYS = ("reason",)
BROADCAST_KEYS = ("selector", "text", "reason")
#: a schedule of a template run: its name and when, and the run's own fields (RUN_KEYS but dry_run)
SCHEDULE_KEYS = ("name", "template", "cron", "at", "tz", "missed", *(k for k in RUN_KEYS if k != "dry_run"))
SCHEDULE_ACTIONS = ("pause", "resume", "remove")
#: alert ids the alerts service keeps (broker.alerts.ops.MAX_ID)
MAX_ALERT_ID = 2**62
#: rows listed at most (broker.alerts.ops.MAX_ROWS)
MAX_IDS = 500
MAX_TEXT = 10_000
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no", "")
_NOT_FOUND = ("no open alert", "no schedule", "no broadcast")
_ID_HINT = {"alerts": "GET /api/alerts?all=1 lists the alerts", "schedules": "GET /api/schedules lists them",
            "broadcasts": "GET /api/broadcasts lists them"}


class FeedRoutes:
    """The routes above; bus calls, reasons and errors go through the :class:`AdminApi` they belong to."""

    def __init__(self, api: Any):
        """``api``: the :class:`bridges.admin_http.api.AdminApi` these routes join (its bus, config and reason check)."""
        self.api = api

    def routes(self) -> list[tuple[str, tuple[str, ...], Callable[..., Response]]]:
        return [
            ("GET", ("api", "inbox"), self.inbox),
            ("POST", ("api", "inbox", "read"), self.inbox_read),
            ("GET", ("api", "alerts"), self.alerts),
            ("POST", ("api", "alerts", "{}", "ack"), self.ack),
            ("GET", ("api", "schedules"), self.schedules),
            ("GET", ("api", "schedules", "{}"), self.schedule),
            ("POST", ("api", "schedules"), self.add_schedule),
            ("POST", ("api", "schedules", "{}", "{}"), self.change_schedule),
            ("GET", ("api", "broadcasts"), self.broadcasts),
            ("GET", ("api", "broadcasts", "{}"), self.broadcast),
            ("POST", ("api", "broadcasts"), self.send_broadcast),
        ]

    # -- the person's inbox ------------------------------------------------------------
    def inbox(self, req: Request) -> Response:
        """``GET /api/inbox?unread=0&limit=100``: ``{"items": [...], "total", "unread"}``, the person's own notices,
        newest first (alerts for every role; approval requests for operators and admins, never their own), each
        with ``read``."""
        person = web_person(req, "reads their inbox")
        unread = _flag(req, "unread")
        limit = int_query(req, "limit", 100, 1, MAX_IDS)
        items = self._call("inbox.list", "inbox", unread=unread, limit=limit, operator=person)
        counts = self._call("inbox.count", "inbox", operator=person)
        return Response(200, {"items": items, **counts, "caller": req.caller})

    def inbox_read(self, req: Request) -> Response:
        """``POST /api/inbox/read`` with ``{"ids": [1, 2]}`` or ``{"all": true}`` (``"archive": true`` archives them
        too): the person's notices marked read; ``{"marked", "total", "unread"}``. Another person's ids are not
        theirs and are not marked (``marked`` says how many were)."""
        person = web_person(req, "marks their inbox")
        args = json_object(req.body, READ_KEYS)  # the alerts service checks the values and says what is wrong
        req.audit.update(action="inbox.read", target=str(args.get("ids", "all"))[:200])
        return Response(200, self._call("inbox.read", "inbox", operator=person, **args))

    # -- alerts ---------------------------------------------------------------------------
    def alerts(self, req: Request) -> Response:
        """``GET /api/alerts?all=0&limit=100``: ``{"alerts": [...]}``, open alerts newest first; ``all=1``: every alert,
        resolved and suppressed ones too (``suppressed`` says why: an ordered reboot, ...)."""
        web_person(req, "lists alerts")
        everything = _flag(req, "all")
        limit = int_query(req, "limit", 100, 1, MAX_IDS)
        return Response(200, {"alerts": self._call("alerts.list", "alerts", all=everything, limit=limit), "caller": req.caller})

    def ack(self, req: Request, alert_id: str) -> Response:
        """``POST /api/alerts/<id>/ack`` with ``{"reason": "..."}``: the open alert acknowledged as the person (their
        web role must be operator or admin: 403 otherwise); a security alert resolves by it. 404 for no open alert."""
        person = web_person(req, "acknowledges an alert")
        number = _alert_id(alert_id)
        req.audit.update(action="alerts.ack", target=str(number))
        reason = req.audit["reason"] = self.api._reason(json_object(req.body, ACK_KEYS))
        return Response(200, self._call("alerts.ack", "alerts", id=number, reason=reason, operator=person))

    # -- schedules and broadcasts ----------------------------------------------------------------
    def schedules(self, req: Request) -> Response:
        """``GET /api/schedules?limit=200``: ``{"schedules": [...]}`` by name, each with its owner, when (cron or
        at, zone), ``next_due_text``, state (enabled, paused, done) and why it is paused."""
        web_person(req, "lists schedules")
        limit = int_query(req, "limit", 200, 1, 1000)
        return Response(200, {"schedules": self._call("schedules.list", "schedules", limit=limit), "caller": req.caller})

    def schedule(self, req: Request, schedule_id: str) -> Response:
        """``GET /api/schedules/<id or name>``: one schedule with ``runs``, its newest slots (when, run id, outcome)."""
        web_person(req, "looks at a schedule")
        check_id(schedule_id, "a schedule id")
        return Response(200, self._call("schedules.get", "schedules", id=schedule_id, limit=int_query(req, "limit", 20, 1, 200)))

    def add_schedule(self, req: Request) -> Response:
        """``POST /api/schedules`` with ``{"name": "nightly", "template": "patch", "params": {...}, "selector": "group:lab",
        "cron": "0 2 * * *"`` or ``"at": "2026-12-24 18:00"``, ``"tz": "Europe/Berlin", "missed": "skip"|"once",
        "reason": "..."}`` (and the run's max_parallel, canary, halt_failure_pct): a schedule of the template, owned
        by the person; the run is tried as a dry run first (a bad template, parameter or selector is 400 now). 201."""
        person = web_person(req, "adds a schedule")
        body = json_object(req.body, SCHEDULE_KEYS)
        run = {k: v for k, v in run_options(body).items() if k != "dry_run"}
        template = body.get("template")
        if not isinstance(template, str) or not 0 < len(template) <= 64:
            raise ApiError(400, "template is required: the name of a command template", "GET /api/templates lists them")
        args = {k: body[k] for k in ("name", "cron", "at", "tz", "missed") if body.get(k) not in (None, "")}
        args["reason"] = req.audit["reason"] = self.api._reason(body)
        req.audit.update(action="schedules.add", target=str(args.get("name", ""))[:64], template=template)
        made = self._call("schedules.add", "schedules", request_op="templates.run", args={"name": template, **run},
                          operator=person, **args)
        return Response(201, made)

    def change_schedule(self, req: Request, schedule_id: str, action: str) -> Response:
        """``POST /api/schedules/<id>/pause|resume|remove`` with ``{"reason": "..."}``: only the person who made it
        (or an admin key) may; 409 with the broker's words for anyone else. 200 with the schedule (or ``removed``)."""
        person = web_person(req, f"changes a schedule ({action})")
        check_id(schedule_id, "a schedule id")
        if action not in SCHEDULE_ACTIONS:
            raise ApiError(404, f"no schedule action {action[:40]!r}", f"use one of {', '.join(SCHEDULE_ACTIONS)}")
        req.audit.update(action=f"schedules.{action}", target=schedule_id)
        reason = req.audit["reason"] = self.api._reason(json_object(req.body, ACK_KEYS))
        return Response(200, self._call(f"schedules.{action}", "schedules", id=schedule_id, reason=reason, operator=person))

    def broadcasts(self, req: Request) -> Response:
        """``GET /api/broadcasts?limit=20``: ``{"broadcasts": [...]}``, the newest, with counts per status."""
        web_person(req, "lists broadcasts")
        limit = int_query(req, "limit", 20, 1, 200)
        return Response(200, {"broadcasts": self._call("broadcast.list", "broadcasts", limit=limit), "caller": req.caller})

    def broadcast(self, req: Request, broadcast_id: str) -> Response:
        """``GET /api/broadcasts/<id>``: one broadcast with its text, reason and each recipient's status and
        delivered / read times (the web shows text and recipients to operators and admins only)."""
        web_person(req, "looks at a broadcast")
        check_id(broadcast_id, "a broadcast id")
        return Response(200, self._call("broadcast.get", "broadcasts", id=broadcast_id))

    def send_broadcast(self, req: Request) -> Response:
        """``POST /api/broadcasts`` with ``{"selector": "group:lab", "text": "...", "reason": "..."}``: one chat
        message to every agent the selector matches, as the person (202 with the broadcast). Preview the recipients
        first with ``GET /api/targets?selector=...``."""
        person = web_person(req, "sends a broadcast")
        body = json_object(req.body, BROADCAST_KEYS)
        selector, text = body.get("selector"), body.get("text")
        if not isinstance(selector, str) or not 0 < len(selector.strip()) <= 1000:
            raise ApiError(400, SELECTOR_REQUIRED, SELECTOR_EXAMPLE)
        if not isinstance(text, str) or not 0 < len(text.strip()) <= MAX_TEXT:
            raise ApiError(400, f"text is required (1-{MAX_TEXT} characters): the message the users see")
        reason = req.audit["reason"] = self.api._reason(body)
        req.audit.update(action="broadcast.send", selector=selector.strip(), chars=len(text))
        sent = self._call("broadcast.send", "broadcasts", selector=selector.strip(), text=text, reason=reason, operator=person)
        req.audit["target"] = sent.get("id", "")
        return Response(202, sent)

    # -- helpers ----------------------------------------------------------------------
    def _call(self, op: str, area: str, **args) -> Any:
        """``op`` on the broker; its refusals become 404 (unknown id), 403 (the person's role) or 400 (bad input)."""
        timeout = self.api.config.bus_timeout_s
        try:
            return self.api._bus(lambda client: client.request(op, timeout_s=timeout, **args))
        except ApiError as exc:
            cause = exc.__cause__
            if not isinstance(cause, RemoteError):
                raise
            words = cause.detail or cause.message
            if cause.code == ErrorCode.UNAVAILABLE:
                raise ApiError(503, words, "`ems up` starts the alerts service; try again in a moment") from cause
            if cause.code == ErrorCode.FORBIDDEN:
                raise ApiError(403, words, "an operator or admin web role does this") from cause
            if cause.code != ErrorCode.BAD_REQUEST:
                raise
            if words.startswith(_NOT_FOUND):
                raise ApiError(404, words, _ID_HINT.get(area, "")) from cause
            if words.startswith("only "):
                raise ApiError(409, words, "only the person who made it (or an admin key: ems schedule) changes it") from cause
            raise ApiError(400, words, FIX_HINT) from cause


def _flag(req: Request, key: str) -> bool:
    text = query(req, key, "0").strip().lower()
    if text not in _TRUE + _FALSE:
        raise ApiError(400, f"{key}={text[:40]!r}: use 1 or 0")
    return text in _TRUE


def _alert_id(text: str) -> int:
    """An alert id from the path: a whole number from 1 to 2^62; 400 otherwise."""
    if not (text.isascii() and text.isdigit() and len(text) <= 20 and 0 < int(text) <= MAX_ALERT_ID):
        raise ApiError(400, f"the alert id must be a whole number from 1 to {MAX_ALERT_ID}, not {text[:40]!r}",
                       _ID_HINT["alerts"])
    return int(text)
