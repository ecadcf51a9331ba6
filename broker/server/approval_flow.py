"""What the broker does with held commands and runs (:mod:`broker.server.approvals`): hold, approve, deny, expire."""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from broker.core import permissions
from broker.core.envelope import Kind, new_id, pack_body, pack_header
from broker.core.vocabulary import FAILED, HELD
from broker.server import operators
from broker.server.approvals import APPROVED, DEFAULT_TTL_S, DENIED, EXPIRED, PENDING, ApprovalBook, ApprovalRequest

if TYPE_CHECKING:
    from broker.server.bulk_store import BulkRun
    from broker.server.playbook_runs import PlaybookRun
    from broker.server.peers import Peer
    from broker.server.loop import Broker

log = logging.getLogger(__name__)
_EMPTY = b""
#: approval requests that hold a whole run (payload: its id) rather than one command
_RUNS = ("bulk", "playbook")


def acting_person(registry, peer: "Peer", args: dict) -> tuple[str, str]:
    """``(id, name)`` of the person acting through ``peer``: the one a vouching service names in ``args.operator``
    (ValueError if it names none: one service key acts for many people), else the key's own."""
    if peer.role in permissions.VOUCHING_ROLES:
        stamp, problem = operators.stamp(peer.role, peer.client_id, "", args)
        if not stamp:
            raise ValueError(problem)
        return stamp["id"], stamp["name"]
    return peer.client_id, operators.person_of(registry, peer)


class Approvals:
    """Holds what needs a second person, and lets it go when one agrees."""

    def __init__(self, broker: "Broker", book: ApprovalBook, ttl_s: float = DEFAULT_TTL_S):
        self.broker, self.book, self.ttl_s = broker, book, ttl_s

    def needs(self, name: str) -> bool:
        return self.book.needs(name)

    # -- holding -------------------------------------------------------------------------
    def hold_command(self, peer: "Peer", cmd_id: str, target: str, name: str, args: dict, expires: float,
                     statuses: bool = False) -> ApprovalRequest:
        """A single command waits under its own id; the requester is told ``held`` (and, once it runs,
        every status if it asked: ``statuses``)."""
        request = self._ask(peer, cmd_id, "command", name, f"{name} on {target}", args,
                            {"target": target, "name": name, "args": args, "expires": expires, "statuses": statuses})
        self._tell(request, Kind.COMMAND_STATUS, {"id": cmd_id, "target": target, "name": name, "status": HELD,
                                                  "operator": peer.client_id, "updated": time.time(), "approval": request.id})
        return request

    def hold_bulk(self, peer: "Peer", run: "BulkRun") -> ApprovalRequest:
        summary = f"{run.name} on {len(run.targets)} agent(s) matching {run.selector!r}"
        return self._ask(peer, new_id(), "bulk", run.name, summary, run.args, {"run_id": run.id})

    def hold_playbook(self, peer: "Peer", run: "PlaybookRun") -> ApprovalRequest:
        summary = f"playbook {run.playbook} ({len(run.steps)} step(s)) on {len(run.targets)} agent(s) matching {run.selector!r}"
        return self._ask(peer, new_id(), "playbook", run.playbook, summary, run.steps[0]["args"], {"run_id": run.id})

    def _ask(self, peer: "Peer", request_id: str, kind: str, name: str, summary: str, args: dict, payload: dict) -> ApprovalRequest:
        now = time.time()
        operator = args.get("operator") or {}  # the broker's stamp: the vouched person, else the key's own
        request = ApprovalRequest(request_id, kind, name, summary, peer.client_id, peer.role, peer.key,
                                  operator.get("name") or operators.person_of(self.broker.registry, peer),
                                  str(args.get("reason") or ""), payload, PENDING, now, now + self.ttl_s,
                                  requester_person=operator.get("id") or peer.client_id)
        self.book.add(request)
        self.broker.records.audit(peer, "approval.request", {"id": request_id, "kind": kind, "name": name, "summary": summary,
                                                             "reason": request.reason, "operator_name": request.requester_name,
                                                             "via": operator.get("via", "")})
        return request

    # -- deciding ------------------------------------------------------------------------
    def decide(self, peer: "Peer", request_id: str, approve: bool, reason: str, args: dict | None = None) -> ApprovalRequest:
        """Approve or deny a pending request as ``peer`` (or the person it vouches for in ``args``), never as the
        person who asked (same id, or same name in any case); ValueError saying why not."""
        request = self.book.get(request_id)
        if request is None:
            raise ValueError(f"no approval request {request_id!r} (ems approvals list)")
        if request.state != PENDING:
            raise ValueError(f"request {request_id} is {request.state} already")
        person_id, person = acting_person(self.broker.registry, peer, args or {})
        if person_id == request.requester_person or person.casefold() == request.requester_name.casefold():
            raise ValueError("a request is approved or denied by another person than the one who made it")
        request.state = APPROVED if approve else DENIED
        request.decided_by, request.decided_name, request.decided_reason, request.decided_at = person_id, person, reason, time.time()
        via = peer.client_id if peer.role in permissions.VOUCHING_ROLES else ""
        self.book.decide(request)
        self.broker.records.audit(peer, "approval.approve" if approve else "approval.deny", {
            "id": request.id, "kind": request.kind, "summary": request.summary, "reason": reason, "operator_name": person,
            "requester": request.requester_person, "requester_name": request.requester_name, "requester_reason": request.reason,
            "via": via})
        if approve:
            self._release(request)
        else:
            self._end(request, f"denied by {person}: {reason}")
        return request

    def expire_due(self, now: float) -> None:
        for request in self.book.due(now):
            request.state, request.decided_at, request.decided_reason = EXPIRED, now, "nobody decided in time"
            self.book.decide(request)
            self.broker.records.note(Kind.EVENT, f"audit.{request.requester}", {
                "operator": request.requester, "role": request.requester_role, "action": "approval.expire",
                "detail": {"id": request.id, "summary": request.summary}, "target": "", "reason": request.reason, "ts": now,
                "operator_name": request.requester_name, "via": ""})
            self._end(request, f"no one approved it within {self.ttl_s:g} s")

    # -- after the decision ----------------------------------------------------------------
    def _release(self, request: ApprovalRequest) -> None:
        approval = {"id": request.id, "by": request.decided_name, "reason": request.decided_reason}
        if request.kind in _RUNS:
            self._runs(request.kind).release(request.payload["run_id"], approval)
            return
        spec = request.payload
        sender = self.broker.peer_table.as_sender(request.requester, request.requester_role, request.requester_key)
        args = {**spec["args"], "approval": approval}
        if self.broker.command_router.launch(sender, request.id, spec["target"], spec["name"], args, spec["expires"],
                                             spec.get("statuses") is True) is None:
            self._end(request, f"approved, but {spec['target']} is no longer an accepted agent")

    def _end(self, request: ApprovalRequest, why: str) -> None:
        if request.kind in _RUNS:
            self._runs(request.kind).refuse(request.payload["run_id"], why)
            return
        spec = request.payload
        self._tell(request, Kind.RESULT, {"id": request.id, "target": spec["target"], "name": spec["name"], "status": FAILED,
                                          "result": {"ok": False, "error": f"not run: {why}"}})
        log.info("held command %s ended unrun: %s", request.id, why)

    def _runs(self, kind: str):
        """Where held runs of ``kind`` wait: the bulk runs or the playbook runs (both release and refuse)."""
        return self.broker.bulk if kind == "bulk" else self.broker.operations.playbooks

    def _tell(self, request: ApprovalRequest, kind: Kind, body: dict) -> None:
        """A status or result about a held command to its requester's live connections."""
        header = pack_header(kind, f"command.{request.payload.get('target', '')}", corr=request.id)
        packed = pack_body(body)
        for rid in list(self.broker.conns.get(request.requester, ())):
            self.broker.send(rid, _EMPTY, header, packed)

    def view(self, request_id: str) -> dict | None:
        """A held single command as ``command.get`` shows it (held, or how it ended unrun), else None."""
        request = self.book.get(request_id)
        if request is None or request.kind != "command" or request.state == APPROVED:
            return None
        spec = request.payload
        status = HELD if request.state == PENDING else FAILED
        why = f"{request.state} by {request.decided_name}: {request.decided_reason}" if request.state == DENIED else request.state
        return {"id": request.id, "target": spec["target"], "sender": request.requester, "name": spec["name"], "status": status,
                "created": request.created, "expires": spec["expires"], "updated": request.decided_at or request.created,
                "approval": request.as_dict(), "result": None if status == HELD else {"ok": False, "error": f"not run: {why}"}}
