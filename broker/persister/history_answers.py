"""What the persister answers to history requests: ``store.query``, ``store.capture``, ``store.stats``.

Who may read what is :mod:`broker.core.permissions`'s table, checked by the
broker first; this is the second line (a refusal raises :class:`Forbidden`),
the place that strips what a role may not see from each row, and the one
that audits a person's look at sensitive history.
"""
from __future__ import annotations

from collections.abc import Callable

from broker.core import bounds, permissions
from broker.core.errors import EmsError
from broker.core.store_queries import CAPTURE_PURPOSES, MAX_THUMBNAIL_ROWS
from broker.core.vocabulary import MAX_REASON_CHARS
from broker.persister.store import STATS, Store
from broker.persister.tables import view_of


class Forbidden(EmsError):
    """The requester's role may not read this (answered FORBIDDEN, a security event)."""


class HistoryAnswers:
    """Answers history requests from ``store``; ``audit(requester, action, detail)`` keeps an audit row."""

    def __init__(self, store: Store, audit: Callable[[dict, str, dict], None]):
        self.store, self.audit = store, audit

    def answer(self, op: str, args: dict, requester: dict):
        """The answer to ``op`` (``store.query``, ``store.capture``, ``store.stats``) for ``requester``
        (as the broker names them: client_id, role, name). Raises :class:`Forbidden`, ValueError and
        the bounds errors for what cannot be answered."""
        role = requester.get("role", "")
        if op == "store.query":
            kind = bounds.text(args.get("kind", ""), "kind", 32)
            self.check_readable(role, kind)
            params = {k: args[k] for k in ("client_id", "since", "until", "limit", "before_id", "order", "text", "include_deleted")
                      if k in args}
            if args.get("thumbnails"):
                return self._captures_with_thumbnails(kind, params, requester)
            return self._history(kind, params, requester, args)
        if op == "store.capture":
            self.check_readable(role, "captures")
            purpose = args.get("purpose", "view")
            if purpose not in CAPTURE_PURPOSES:
                raise ValueError(f"a capture is read to {' or '.join(CAPTURE_PURPOSES)}, not {bounds.shown(purpose)}")
            capture = self.store.get_capture(bounds.int64(args.get("id"), "id"))
            self.audit(requester, f"capture.{purpose}", {"capture_id": args["id"], "client_id": capture.get("client_id")
                                                          if capture else None, **_read_for(requester, args)})
            return capture
        if op == "store.stats":
            group_by = args.get("group_by", "kind")
            if type(group_by) is str and group_by in STATS:  # counts of one kind: as readable as the kind
                self.check_readable(role, STATS[group_by][0])
            params = {k: args[k] for k in ("client_id", "since", "until") if k in args}
            return self.store.stats(group_by, **params)
        raise ValueError(f"unknown store operation {bounds.shown(op)}")

    def _captures_with_thumbnails(self, kind: str, params: dict, requester: dict) -> list[dict]:
        """``store.query`` of captures with ``thumbnails``: every row with its
        preview (see :meth:`Store.with_thumbnails`); seeing them is audited,
        one record per answer naming the captures shown."""
        if kind != "captures":
            raise ValueError("only captures have thumbnails")
        limit = params.get("limit", 100)
        if type(limit) is int and limit > MAX_THUMBNAIL_ROWS:  # other bad limits: store.query says why
            raise ValueError(f"ask for at most {MAX_THUMBNAIL_ROWS} captures with thumbnails at a time")
        rows = self.store.with_thumbnails(self.store.query(kind, **params))
        shown = [r["id"] for r in rows if r["thumbnail"] is not None]
        if shown:
            self.audit(requester, "capture.thumbnails", {"client_id": params.get("client_id"), "capture_ids": shown})
        return rows

    def _history(self, kind: str, params: dict, requester: dict, args: dict) -> list[dict]:
        """``store.query`` rows with only the fields the requester may see;
        a person's look at sensitive history is audited (for a vouching service: the person and
        reason in ``args``, see :func:`_read_for`)."""
        role, who = requester.get("role", ""), requester.get("client_id", "")
        rows = [permissions.strip_row(role, who, kind, row) for row in self.store.query(kind, **params)]
        person = _read_for(requester, args)  # a service reading for a named person (the web) is audited too
        if kind in permissions.AUDITED_HISTORY and (role != "service" or person):
            self.audit(requester, f"history.{kind}", {"client_id": params.get("client_id"), "rows": len(rows),
                                                       "text": params.get("text") or "", **person})
        return rows

    @staticmethod
    def check_readable(role: str, kind: str) -> None:
        """Raise :class:`Forbidden` unless ``role`` may read history ``kind`` (ValueError for no such kind)."""
        view_of(kind)  # ValueError for a kind there is not
        if not permissions.may_read_history(role, kind):
            raise Forbidden(permissions.history_refusal(role, kind))


def _read_for(requester: dict, args: dict) -> dict:
    """The person a vouching service (a web bridge) reads for and why
    (``args.operator.name``, ``args.reason``), for the audit; {} otherwise."""
    person = args.get("operator")
    if requester.get("role") not in permissions.VOUCHING_ROLES or not isinstance(person, dict):
        return {}
    return {"operator_name": bounds.text(person.get("name"), "operator name", 100, empty=False),
            "via": requester.get("client_id", ""), "reason": bounds.text(args.get("reason", ""), "reason", MAX_REASON_CHARS)}
