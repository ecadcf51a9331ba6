"""The inbox: every notice, for every person who may see it, read/unread and archived per person.

A notice is kept once (table ``inbox``); each person's marks (read, archived) are kept
per client id (``inbox_marks``), so an operator's inbox is every notice their role may
see that they have not archived. Alerts are for viewers and up; approval requests
for operators and admins, and never for the person who asked (its end is for them too). The inbox is one
*sink* of the alerts service: :meth:`Inbox.notify` and :meth:`Inbox.flush`, like any
delivery.
"""
from __future__ import annotations

import json
import sqlite3

from broker.alerts.notices import APPROVAL, OPENED, Notice

SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL,
    rule TEXT NOT NULL, severity TEXT NOT NULL, title TEXT NOT NULL, text TEXT NOT NULL, target TEXT NOT NULL,
    details TEXT NOT NULL, requester TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS inbox_marks (
    person TEXT NOT NULL, item INTEGER NOT NULL, read_at REAL, archived_at REAL, PRIMARY KEY (person, item));
"""
#: roles with an inbox, and the notice kinds each sees
KINDS_SEEN = {"viewer": ("alert",), "operator": ("alert", APPROVAL), "admin": ("alert", APPROVAL)}
MAX_LIST = 500
#: notices older than this leave every inbox (seconds)
RETENTION_S = 90 * 86400.0
_FILTERS = """FROM inbox i LEFT JOIN inbox_marks m ON m.item = i.id AND m.person = :person
WHERE i.kind IN (SELECT value FROM json_each(:kinds)) AND i.requester != :person"""


class Inbox:
    """Per-person inboxes in the alerts service's database (``conn``)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        conn.executescript(SCHEMA)
        self._next_purge = 0.0

    # -- the sink ---------------------------------------------------------------------------
    def notify(self, notice: Notice) -> None:
        """Keep ``notice`` for every person who may see it."""
        asking = notice.kind == APPROVAL and notice.state == OPENED  # the one who asks is not asked
        requester = str(notice.details.get("requester", "")) if asking else ""
        self.conn.execute(
            "INSERT INTO inbox (ts, kind, key, state, rule, severity, title, text, target, details, requester)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (notice.ts, notice.kind, notice.key, notice.state, notice.rule, notice.severity, notice.title, notice.text,
             notice.target, json.dumps(notice.details, default=str), requester))

    def flush(self, now: float) -> None:
        """Nothing waits (each notice is written as it comes); once an hour, old notices go."""
        if now < self._next_purge:
            return
        self._next_purge = now + 3600.0
        old = "SELECT id FROM inbox WHERE ts < ?"
        self.conn.execute(f"DELETE FROM inbox_marks WHERE item IN ({old})", (now - RETENTION_S,))
        self.conn.execute("DELETE FROM inbox WHERE ts < ?", (now - RETENTION_S,))

    # -- a person's view --------------------------------------------------------------------
    @staticmethod
    def _who(requester: dict) -> dict:
        role = requester.get("role")
        if role not in KINDS_SEEN:
            raise PermissionError(f"role {role or '?'} has no inbox")
        return {"person": str(requester.get("client_id", "")), "kinds": json.dumps(KINDS_SEEN[role])}

    def listing(self, requester: dict, unread: bool = False, archived: bool = False, limit: int = 100) -> list[dict]:
        """The requester's own notices, newest first: unread only, or the archived ones instead."""
        who = self._who(requester)
        extra = " AND m.archived_at IS NOT NULL" if archived else " AND m.archived_at IS NULL"
        if unread:
            extra += " AND m.read_at IS NULL"
        rows = self.conn.execute(f"SELECT i.*, m.read_at, m.archived_at {_FILTERS}{extra} ORDER BY i.id DESC LIMIT :limit",
                                 {**who, "limit": min(limit, MAX_LIST)})
        return [{**dict(r), "details": json.loads(r["details"]), "read": r["read_at"] is not None} for r in rows]

    def mark(self, requester: dict, ids: list[int] | None, now: float, archive: bool = False) -> int:
        """Mark the requester's notices ``ids`` (None: all of them) read, and archived with ``archive``; how many changed."""
        who = self._who(requester)
        column = "archived_at" if archive else "read_at"
        mine = f"SELECT i.id {_FILTERS} AND m.{column} IS NULL"
        params: dict = {**who, "now": now}
        if ids is not None:
            mine += " AND i.id IN (SELECT value FROM json_each(:ids))"
            params["ids"] = json.dumps(ids)
        found = [r[0] for r in self.conn.execute(mine, params)]
        for item in found:
            self.conn.execute("INSERT OR IGNORE INTO inbox_marks (person, item) VALUES (?, ?)", (who["person"], item))
            self.conn.execute(f"UPDATE inbox_marks SET read_at = COALESCE(read_at, :now), {column} = :now"
                              " WHERE person = :person AND item = :item", {"now": now, "person": who["person"], "item": item})
        return len(found)

    def count(self, requester: dict) -> dict:
        """How many notices the requester has (not archived), and how many of them are unread."""
        who = self._who(requester)
        row = self.conn.execute(f"SELECT COUNT(*) AS total, SUM(m.read_at IS NULL) AS unread {_FILTERS}"
                                " AND m.archived_at IS NULL", who).fetchone()
        return {"total": row["total"], "unread": row["unread"] or 0}
