"""The admin HTTP API's routes: JSON in, JSON out, bus calls through the BusWorker.

Free of HTTP plumbing (the server module checks the Host, the token and the
body first), so every route is a small method whose docstring is its spec:

=====================================  =======================================
``GET  /api/status``                   broker status plus this listener's bus state
``GET  /api/clients``                  the accepted agents (broker ``agents``)
``POST /api/clients/<id>/reboot``      agent command ``power.reboot``
``POST /api/clients/<id>/shutdown``    agent command ``power.shutdown``
``POST /api/clients/<id>/update-check``  agent command ``update.check``
``POST /api/clients/<id>/update-apply``  agent command ``update.apply``
``GET  /api/commands/<id>``            one command's record (broker ``command.get``)
``POST /api/sync``                     "sync this server now": ``sync.now`` to the sync worker
``GET  /api/sync``                     the sync worker's status (``sync.status``), auto-sync setting included
``POST /api/sync/auto``                auto-sync on/off and its period: ``sync.auto`` to the sync worker
``POST /api/history/<kind>/access``    a person's look at audited history read elsewhere, into the bus audit
``GET  /api/approvals``                two-person approval requests, pending first (``approvals.list``)
``POST /api/approvals/<id>/decide``    approve or deny with a reason, as the person named (``approvals.decide``)
``GET  /api/bulk``                     the newest bulk runs (``bulk.list``)
``GET  /api/bulk/<id>``                one run with a page of its targets (``bulk.get``)
``POST /api/bulk/<id>/cancel``         stop a run the person started (``bulk.cancel``)
``GET  /api/templates``                command templates and their typed parameters (``templates.list``)
``POST /api/templates/<name>/run``     a template run, or its dry run (``templates.run``)
``GET  /api/targets``                  the agents a selector matches now (``targets.resolve``)
``GET  /api/inbox``, ``POST /api/inbox/read``  the person's own inbox (``inbox.list``, ``inbox.read``)
``GET  /api/alerts``, ``POST /api/alerts/<id>/ack``  alerts, acknowledged as the person (``alerts.list``, ``alerts.ack``)
``GET  /api/schedules[/<id>]``         schedules with their next run and slots (``schedules.list``, ``schedules.get``)
``GET  /api/broadcasts[/<id>]``, ``POST /api/broadcasts``  broadcasts and their receipts; send one as the person
=====================================  =======================================

The approvals-to-targets eight are :mod:`bridges.admin_http.ops_routes`, the inbox-to-broadcasts ones
:mod:`bridges.admin_http.feed_routes` (the web's Operations tab).
Errors are ``{"error": ..., "hint": ...}`` with a fitting status code.
"""
from __future__ import annotations

import concurrent.futures
import logging
import math
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from bridges.admin_http.bus_worker import BusUnavailable, BusWorker
from bridges.admin_http.config import CLIENT_ID, LOG_HINT, OPERATOR_HEADER, AdminHttpConfig
from bridges.admin_http.exchange import ApiError, Request, Response, json_object
from bridges.admin_http.feed_routes import FeedRoutes
from bridges.admin_http.ops_routes import OpsRoutes
from broker.core import errors, permissions
from broker.core.envelope import ErrorCode, new_id
from broker.core.errors import EmsError, RemoteError
from broker.core.vocabulary import auto_sync_problem, reason_too_long

log = logging.getLogger(__name__)

#: URL action -> agent command name
ACTIONS = {
    "reboot": "power.reboot",
    "shutdown": "power.shutdown",
    "update-check": "update.check",
    "update-apply": "update.apply",
}
#: keys a command's JSON body may have
BODY_KEYS = ("reason", "args", "ttl_s")
#: keys a history access's JSON body may have (the filters the person read with)
HISTORY_ACCESS_KEYS = ("reason", "client_id", "text")
#: extra time an HTTP thread gives the bus thread beyond one bus round trip
QUEUE_SLACK_S = 5.0
#: the hint when a call that acts for a person (a sync, an auto-sync change, a history read) names no one
_NAME_THE_PERSON = f"send {OPERATOR_HEADER}: Jane Doe (the audit trail records it)"
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no", "")


class AdminApi:
    """Routes requests to handlers that call the bus through a :class:`BusWorker`."""

    def __init__(self, worker: BusWorker, config: AdminHttpConfig):
        self.worker = worker
        self.config = config
        # (method, path pattern, handler); "{}" matches one path segment
        self.routes: list[tuple[str, tuple[str, ...], Callable[..., Response]]] = [
            ("GET", ("api", "status"), self.status),
            ("GET", ("api", "clients"), self.list_clients),
            ("POST", ("api", "clients", "{}", "{}"), self.client_action),
            ("GET", ("api", "commands", "{}"), self.get_command),
            ("POST", ("api", "sync"), self.sync_now),
            ("GET", ("api", "sync"), self.sync_status),
            ("POST", ("api", "sync", "auto"), self.sync_auto),
            ("POST", ("api", "history", "{}", "access"), self.history_access),
        ]
        self.routes += OpsRoutes(self).routes() + FeedRoutes(self).routes()

    def handle(self, req: Request) -> Response:
        """Answer one request; raises :class:`ApiError` for every refusal."""
        segments = [unquote(s) for s in req.path.strip("/").split("/")]
        allowed = []
        for method, pattern, handler in self.routes:
            params = _match(pattern, segments)
            if params is None:
                continue
            if method == req.method:
                return handler(req, *params)
            allowed.append(method)
        if allowed:
            raise ApiError(405, f"{req.method} is not allowed on {req.path}", f"use {' or '.join(allowed)}",
                           headers={"Allow": ", ".join(allowed)})
        raise ApiError(404, f"no such endpoint: {req.path}",
                       "endpoints: GET /api/status, GET /api/clients, POST /api/clients/<id>/{"
                       + ",".join(ACTIONS) + "}, GET /api/commands/<id>, GET|POST /api/sync, POST /api/sync/auto, POST /api/history/<kind>/access, "
                       "GET /api/approvals, GET /api/bulk, GET /api/templates, GET /api/targets (and their POSTs)")

    # -- routes ------------------------------------------------------------------
    def status(self, req: Request) -> Response:
        """``GET /api/status``: the broker's status (agents, counters, commands) and the listener's bus connection."""
        def job(client):
            listener = {"client_id": client.client_id, "role": client.role, "state": client.state, "server": client.config.server}
            return {"listener": listener, **client.request("status", timeout_s=self.config.bus_timeout_s)}
        return Response(200, self._bus(job))

    def list_clients(self, req: Request) -> Response:
        """``GET /api/clients``: ``{"clients": [...]}``, every accepted agent with its state and last contact."""
        agents = self._bus(lambda client: client.request("agents", timeout_s=self.config.bus_timeout_s))
        return Response(200, {"clients": agents})

    def client_action(self, req: Request, target: str, action: str) -> Response:
        """``POST /api/clients/<id>/<action>`` with ``{"reason": "...", "args": {...}, "ttl_s": N}``.

        Sends the agent command for ``action`` (see :data:`ACTIONS`) with the
        reason and the person (``X-EMS-Operator``) in its args; answers 202 with the command id
        and its first status at once. ``?wait=1`` (optionally
        ``&timeout_s=N``) waits for the outcome instead: 200 with the
        result, or 504 with the id if it has not come in time. ``reason`` is
        required; ``args`` are passed on to the agent; ``ttl_s`` is how long
        the command may wait for an offline agent.
        """
        name = ACTIONS.get(action)
        if name is None:
            raise ApiError(404, f"no such action: {action}", f"actions: {', '.join(ACTIONS)}")
        req.audit.update(action=name, target=target)
        body = _json_object(req.body)
        reason = self._reason(body)
        req.audit["reason"] = reason
        extra = body.get("args", {})
        if not isinstance(extra, dict):
            raise ApiError(400, "args must be a JSON object", 'e.g. {"reason": "...", "args": {"delay_s": 60}}')
        ttl_s = self._ttl(body)
        wait, wait_s = self._wait(req.query)
        if req.caller == CLIENT_ID:
            raise ApiError(400, f"{OPERATOR_HEADER} is required: name the person behind this {action}",
                           f"send {OPERATOR_HEADER}: Jane Doe (the user is told who, and the audit trail records it)")
        # set last: a body's args cannot override who asked and why; the broker keeps
        # the person this listener vouches for and records the listener as "via"
        args = {**extra, "reason": reason, "operator": {"id": req.caller, "name": req.caller}}
        cmd_id = new_id()

        def job(client):
            first = client.send_command(target, name, args, ttl_s=ttl_s, timeout_s=self.config.bus_timeout_s, cmd_id=cmd_id)
            return first, (self.worker.watch(cmd_id, wait_s + QUEUE_SLACK_S) if wait else None)

        try:
            first, outcome = self._bus(job, not_found={ErrorCode.UNKNOWN_TARGET},
                                       not_found_hint="GET /api/clients lists the accepted clients")
        except ApiError as exc:
            if exc.status == 504:  # the broker may have queued it all the same
                req.audit["command_id"] = cmd_id
                exc.extra["id"] = cmd_id
                exc.hint = f"it may have been queued all the same: GET /api/commands/{cmd_id} tells"
            raise
        req.audit.update(command_id=cmd_id, command_status=first.get("status"))
        if outcome is None:
            return Response(202, {**first, "via": CLIENT_ID, "caller": req.caller})
        try:
            result = outcome.result(wait_s)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            status = req.audit["command_status"] = self._status_of(cmd_id, first.get("status"))
            raise ApiError(504, f"no result from {target} within {wait_s:g} s",
                           f"the command carries on (an offline agent gets it until it expires); "
                           f"GET /api/commands/{cmd_id} shows its status", extra={"id": cmd_id, "status": status}) from None
        except BusUnavailable as exc:
            raise ApiError(502, str(exc), f"GET /api/commands/{cmd_id} shows its status later", extra={"id": cmd_id}) from exc
        req.audit["command_status"] = result.get("status")
        return Response(200, result)

    def get_command(self, req: Request, cmd_id: str) -> Response:
        """``GET /api/commands/<id>``: the command's record (status queued/sent/delivered/done/failed/expired, args, result)."""
        if not 0 < len(cmd_id) <= 64:
            raise ApiError(400, "a command id is 1-64 characters")
        req.audit["command_id"] = cmd_id
        record = self._bus(lambda client: client.request("command.get", timeout_s=self.config.bus_timeout_s, id=cmd_id),
                           not_found={ErrorCode.BAD_REQUEST}, not_found_hint="command ids come from POST /api/clients/<id>/<action>")
        req.audit["command_status"] = record.get("status") if isinstance(record, dict) else None
        return Response(200, record)

    def sync_now(self, req: Request) -> Response:
        """``POST /api/sync`` with ``{"reason": "..."}``: ask the sync worker for a full snapshot now.

        Answers 202 with the worker's reply (``{"started": true, ...}``) at
        once; the progress is in ``sync.status`` (``python -m
        bridges.server_info``). 503 when no sync worker is connected.
        ``X-EMS-Operator`` names the person (required), as for the actions.
        """
        req.audit["action"] = "sync.now"
        reason = req.audit["reason"] = self._reason(_json_object(req.body))
        if req.caller == CLIENT_ID:
            raise ApiError(400, f"{OPERATOR_HEADER} is required: name the person who asks for the sync",
                           _NAME_THE_PERSON)
        answer = self._sync_request("sync.now", reason=reason, operator={"id": req.caller, "name": req.caller})
        return Response(202, {**(answer if isinstance(answer, dict) else {"answer": answer}), "caller": req.caller})

    def sync_status(self, req: Request) -> Response:
        """``GET /api/sync``: the sync worker's ``sync.status`` as it answers now (last syncs, progress, and
        ``auto``: ``{"enabled", "every_s", "next_in_s"}``). 503 when no sync worker is connected."""
        return Response(200, self._sync_request("sync.status"))

    def sync_auto(self, req: Request) -> Response:
        """``POST /api/sync/auto`` with ``{"reason": "...", "args": {"enabled": true, "every_s": 600}}``: turn the
        sync worker's automatic full snapshots on or off and set their period (60 s to a week). Answers 200
        with the setting the worker now runs with (read back from it). ``X-EMS-Operator`` is required."""
        req.audit["action"] = "sync.auto"
        body = _json_object(req.body)
        reason = req.audit["reason"] = self._reason(body)
        setting = body.get("args")
        req.audit["setting"] = setting
        problem = auto_sync_problem(setting)
        if problem:
            raise ApiError(400, problem, 'e.g. {"reason": "...", "args": {"enabled": true, "every_s": 600}}')
        if req.caller == CLIENT_ID:
            raise ApiError(400, f"{OPERATOR_HEADER} is required: name the person who changes auto-sync",
                           _NAME_THE_PERSON)
        answer = self._sync_request("sync.auto", reason=reason, operator={"id": req.caller, "name": req.caller}, **setting)
        return Response(200, {"auto": answer, "caller": req.caller})

    def history_access(self, req: Request, kind: str) -> Response:
        """``POST /api/history/<kind>/access`` with ``{"reason": "...", "client_id": "...", "text": "..."}``.

        For a person who reads audited history (``captures``, ``messages``,
        ``fileops``, ...) somewhere the bus does not see, e.g. the web view
        reading MySQL: the persister writes ``history.<kind>`` into the bus
        audit trail with the person (``X-EMS-Operator``, required), this
        listener as ``via``, the reason and the filters, as it does for a look
        through the bus. Nothing of the history is read or answered (an empty
        time window: the audit's ``rows`` is 0). 201 ``{"audited": "history.<kind>", "caller": ...}``.
        """
        if kind not in permissions.AUDITED_HISTORY:
            raise ApiError(404, f"no audited history kind {kind!r}", f"kinds: {', '.join(sorted(permissions.AUDITED_HISTORY))}")
        req.audit.update(action=f"history.{kind}")
        body = _json_object(req.body, HISTORY_ACCESS_KEYS)
        reason = req.audit["reason"] = self._reason(body)
        filters = {key: body[key][:200] for key in ("client_id", "text") if isinstance(body.get(key), str) and body[key]}
        req.audit.update(filters)
        if req.caller == CLIENT_ID:
            raise ApiError(400, f"{OPERATOR_HEADER} is required: name the person who reads {kind}", _NAME_THE_PERSON)
        now = time.time()
        self._bus(lambda client: client.request(
            "store.query", timeout_s=self.config.bus_timeout_s, kind=kind, since=now, until=now, limit=1,
            reason=reason, operator={"id": req.caller, "name": req.caller}, **filters))
        return Response(201, {"audited": f"history.{kind}", "caller": req.caller, "reason": reason, **filters})

    # -- helpers -------------------------------------------------------------------
    def _sync_request(self, op: str, **args) -> Any:
        """``op`` to the sync worker; 503 when none is connected."""
        try:
            return self._bus(lambda client: client.request(op, timeout_s=self.config.bus_timeout_s, **args))
        except ApiError as exc:
            if isinstance(exc.__cause__, RemoteError) and exc.__cause__.code == ErrorCode.UNAVAILABLE:
                raise ApiError(503, "sync worker not running", "`ems up` starts it (unless --no-web)") from exc
            raise

    def _bus(self, job, not_found: frozenset | set = frozenset(), not_found_hint: str = "") -> Any:
        """Run ``job`` on the bus thread; bus failures become ApiErrors (404/502/504)."""
        try:
            return self.worker.run(job, self.config.bus_timeout_s + QUEUE_SLACK_S)
        except RemoteError as exc:
            if exc.code in not_found:
                raise ApiError(404, exc.detail or exc.message, not_found_hint) from exc
            if exc.code == ErrorCode.FORBIDDEN:
                raise ApiError(502, f"the broker refused the admin listener: {exc}",
                               "its bus key (admin-http) needs the role service: see `ems keys list`") from exc
            raise ApiError(502, f"the broker answered: {exc}", "see the broker log (DATA/logs/broker.log)") from exc
        except BusUnavailable as exc:
            raise ApiError(502, str(exc), f"is the broker running? `ems up` starts it; {LOG_HINT}") from exc
        except errors.TimeoutError as exc:
            raise ApiError(504, str(exc), "the broker is slow or unreachable; try again") from exc
        except EmsError as exc:
            raise ApiError(502, f"bus error: {exc}", LOG_HINT) from exc

    def _status_of(self, cmd_id: str, fallback: str | None) -> str | None:
        """The command's current status, or ``fallback`` if the broker cannot say."""
        try:
            record = self._bus(lambda client: client.request("command.get", timeout_s=self.config.bus_timeout_s, id=cmd_id))
        except ApiError:
            return fallback
        return record.get("status", fallback) if isinstance(record, dict) else fallback

    def _reason(self, body: dict) -> str:
        """The body's reason, checked by the broker's rule (:func:`broker.core.vocabulary.reason_problem`)."""
        reason = body.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise ApiError(400, "a reason is required", 'send {"reason": "why this is done"}: the user is shown it '
                                                        "and it goes into the audit trail")
        reason = reason.strip()
        if len(reason) > self.config.max_reason_chars:
            raise ApiError(400, reason_too_long(self.config.max_reason_chars))
        return reason

    def _ttl(self, body: dict) -> float:
        ttl_s = body.get("ttl_s", self.config.command_ttl_s)
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, (int, float)) or not math.isfinite(ttl_s) \
                or not 0 < ttl_s <= self.config.command_ttl_max_s:
            raise ApiError(400, f"ttl_s must be a number of seconds in (0, {self.config.command_ttl_max_s:g}]")
        return float(ttl_s)

    def _wait(self, query: dict[str, list[str]]) -> tuple[bool, float]:
        """``?wait=1`` and ``?timeout_s=N``."""
        value = (query.get("wait") or [""])[-1].lower()
        if value not in _TRUE + _FALSE:
            raise ApiError(400, f"wait={value!r}: use wait=1 or wait=0")
        wait_s = self.config.wait_default_s
        if "timeout_s" in query:
            try:
                wait_s = float(query["timeout_s"][-1])
            except ValueError:
                wait_s = math.nan
            if not math.isfinite(wait_s) or not 0 < wait_s <= self.config.wait_max_s:
                raise ApiError(400, f"timeout_s must be a number of seconds in (0, {self.config.wait_max_s:g}]")
        return value in _TRUE, wait_s


def _match(pattern: tuple[str, ...], segments: list[str]) -> list[str] | None:
    """The ``{}`` segments if ``segments`` fit ``pattern``, else None."""
    if len(pattern) != len(segments):
        return None
    params = []
    for expected, actual in zip(pattern, segments):
        if expected == "{}":
            if not actual:
                return None
            params.append(actual)
        elif expected != actual:
            return None
    return params


def _json_object(body: bytes | None, allowed: tuple[str, ...] = BODY_KEYS) -> dict:
    """The body as a JSON object with only ``allowed`` keys (a command's by default); ApiError 400 otherwise."""
    return json_object(body, allowed)
