"""The alerts service's request ops, each checking the requester the broker stamped.

``alerts.list`` (viewer; ``all``: history, suppressed alerts too), ``alerts.rules``
(viewer), ``alerts.rule_put`` / ``alerts.rule_remove`` (admin, with a reason),
``alerts.ack`` (operator, with a reason), ``inbox.list`` / ``inbox.read`` /
``inbox.count`` (a person's own inbox). The requester is a key's person, or a person a vouching service
(the web) names: the broker stamps them (``client_id`` like ``web:<name>``, a role of at most operator, ``via``)
and their inbox is kept under that id. Who may call what is
:data:`broker.core.permissions.REQUEST_OPS`, checked here a second time.

A service cannot write the bus's audit trail (services do not publish ``audit.*``):
rule changes and acknowledgements are recorded, named, in alerts.db's ``audit``
table and in the service's log.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from broker.alerts import rules as rule_checks
from broker.core import bounds, permissions

if TYPE_CHECKING:
    from broker.alerts.service import AlertService

log = logging.getLogger(__name__)
MAX_ROWS = 500
MAX_ID = 2**62


class Forbidden(Exception):
    """The requester's role may not call the op (the broker checks first; this is the second line)."""


def _reason(args: dict) -> str:
    reason = bounds.text(args.get("reason", ""), "reason", 500).strip()
    if not reason:
        raise bounds.BoundsError("a reason is required (--reason '...'): it is kept with your name")
    return reason


def _known(args: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(str(k)[:40] for k in args if k not in allowed)
    if unknown:
        raise bounds.BoundsError(f"unknown argument(s) {', '.join(unknown)}; this op takes {', '.join(allowed) or 'none'}")


class AlertOps:
    """Answer one forwarded request for ``service``."""

    def __init__(self, service: "AlertService"):
        self.service = service
        self.table: dict[str, Callable[[dict, dict], object]] = {
            "alerts.list": self.alerts_list, "alerts.rules": self.alerts_rules, "alerts.rule_put": self.rule_put,
            "alerts.rule_remove": self.rule_remove, "alerts.ack": self.ack,
            "inbox.list": self.inbox_list, "inbox.read": self.inbox_read, "inbox.count": self.inbox_count,
        }

    def answer(self, op, args: dict, requester: dict):
        """The result of ``op``; Forbidden, or a ValueError (BoundsError, RuleError) saying what is wrong."""
        if op not in self.table:
            raise bounds.BoundsError(f"the alerts service does not answer {bounds.shown(op)}")
        role = requester.get("role")
        if not permissions.may_request(role if type(role) is str else "", op):
            raise Forbidden(permissions.refusal(role if type(role) is str else "?", f"call {op}"))
        return self.table[op](args, requester)

    def alerts_list(self, args: dict, requester: dict) -> list[dict]:
        """Open alerts, newest first (``all``: every alert, suppressed and resolved too; ``target``: one agent's)."""
        _known(args, ("all", "limit", "target"))
        everything = bounds.boolean(args.get("all", False), "all")
        limit = bounds.limit(args.get("limit"), "limit", 100, 1, MAX_ROWS)
        return self.service.book.listing(everything, limit, bounds.text(args.get("target", ""), "target"))

    def alerts_rules(self, args: dict, requester: dict) -> list[dict]:
        """Every rule, as kept."""
        _known(args, ())
        return [r.as_dict() for r in self.service.book.rules()]

    def rule_put(self, args: dict, requester: dict) -> dict:
        """Add or replace a rule (``rule``: its fields, checked whole) with a reason; recorded, named."""
        _known(args, ("rule", "reason"))
        reason = _reason(args)
        rule = rule_checks.check(args.get("rule"))
        service = self.service
        service.book.put_rule(rule, str(requester.get("client_id", "?")), service.engine.clock())
        self._audit(requester, "alerts.rule_put", {"rule": rule.as_dict(), "reason": reason})
        service.emit(service.engine.reload_rules())
        return rule.as_dict()

    def rule_remove(self, args: dict, requester: dict) -> dict:
        """Remove a rule by ``name`` with a reason (its live alerts resolve); recorded, named."""
        _known(args, ("name", "reason"))
        reason = _reason(args)
        name = bounds.text(args.get("name"), "name", 40, empty=False)
        if not self.service.book.remove_rule(name):
            raise bounds.BoundsError(f"no rule {name!r} (ems alerts rules lists them)")
        self._audit(requester, "alerts.rule_remove", {"name": name, "reason": reason})
        self.service.emit(self.service.engine.reload_rules())
        return {"removed": name}

    def ack(self, args: dict, requester: dict) -> dict:
        """Acknowledge a live alert by ``id`` with a reason, named (a security alert resolves by it)."""
        _known(args, ("id", "reason"))
        reason = _reason(args)
        alert_id = bounds.int64(args.get("id"), "id", 1, MAX_ID)
        alert, notices = self.service.engine.ack(alert_id, requester, reason)
        self._audit(requester, "alerts.ack", {"id": alert_id, "rule": alert["rule"], "target": alert["target"], "reason": reason})
        self.service.emit(notices)
        return alert

    def inbox_list(self, args: dict, requester: dict) -> list[dict]:
        """The requester's own inbox, newest first (``unread`` only; ``archived`` ones instead)."""
        _known(args, ("unread", "archived", "limit"))
        return self.service.inbox.listing(requester, bounds.boolean(args.get("unread", False), "unread"),
                                          bounds.boolean(args.get("archived", False), "archived"),
                                          bounds.limit(args.get("limit"), "limit", 100, 1, MAX_ROWS))

    def inbox_read(self, args: dict, requester: dict) -> dict:
        """Mark the requester's notices read (``ids``, or ``all``: true); ``archive``: archived too."""
        _known(args, ("ids", "all", "archive"))
        everything = bounds.boolean(args.get("all", False), "all")
        ids = args.get("ids")
        if everything == (ids is not None):
            raise bounds.BoundsError("give ids (a list of inbox ids) or all: true, one of the two")
        if ids is not None:
            if type(ids) is not list or not 0 < len(ids) <= MAX_ROWS:
                raise bounds.BoundsError(f"ids must be a list of 1 to {MAX_ROWS} inbox ids")
            ids = [bounds.int64(i, "ids[]", 1, MAX_ID) for i in ids]
        archive = bounds.boolean(args.get("archive", False), "archive")
        marked = self.service.inbox.mark(requester, ids, self.service.engine.clock(), archive)
        return {"marked": marked, **self.service.inbox.count(requester)}

    def inbox_count(self, args: dict, requester: dict) -> dict:
        """How many notices the requester has, and how many are unread."""
        _known(args, ())
        return self.service.inbox.count(requester)

    def _audit(self, requester: dict, action: str, detail: dict) -> None:
        """Record ``action`` named; a person a service vouches for is kept with that service (``via``)."""
        if requester.get("via"):
            detail = {**detail, "via": str(requester["via"])}
        self.service.book.audit(requester, action, detail, self.service.engine.clock())
        self.service.record_in_audit_trail(requester, action, detail)
        log.info("audit: %s (%s, %s) %s %s", requester.get("name") or "?", requester.get("client_id", "?"),
                 requester.get("role", "?"), action, detail)
