"""Two-person approval: commands that wait for a second operator.

Admins name the commands that need it (``ems approvals require reboot
shutdown os.update.apply files.upload``; none by default). Such a command,
sent alone or as a bulk run, is *held*: nothing reaches an agent until an
operator who is not the requester approves it with a reason. The requester
is told ``held`` with the request's id; a single command is then queued under
the id it was sent with (so the requester's ``--wait`` sees it through), a
bulk run starts. A denial or an expiry ends it unrun; the requester gets a
failed result saying by whom and why. Both people and both reasons are in
the audit trail (``approval.request``, ``approval.approve`` / ``deny`` /
``expire``), and on the command's own audit record (``approved_by``).

"Not the requester" is checked on both the key (client id) and the person
(the name the operator stamp carries), so nobody approves their own request
through another tool or a bridge that names them. Through a vouching service
(the admin API: one key for many people) both sides are the person it names,
not its key: one web user approves another's request, never their own.

Kept in ``broker.db``: ``approval_rules`` (command names) and
``approval_requests`` (the held request, its payload sealed like the command
queue's, and its decision).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from broker.core.envelope import pack_body, unpack_body
from broker.core.sealing import KeyRing, aad
from broker.server.broker_tables import BrokerTables

PENDING, APPROVED, DENIED, EXPIRED = "pending", "approved", "denied", "expired"
KINDS = ("command", "bulk")
DEFAULT_TTL_S = 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS approval_rules (
    name     TEXT PRIMARY KEY,
    added_by TEXT NOT NULL,
    created  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS approval_requests (
    id             TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,
    name           TEXT NOT NULL,
    summary        TEXT NOT NULL,
    requester      TEXT NOT NULL,
    requester_role TEXT NOT NULL,
    requester_key  TEXT NOT NULL,
    requester_name TEXT NOT NULL,
    reason         TEXT NOT NULL,
    payload        BLOB NOT NULL,
    state          TEXT NOT NULL,
    created        REAL NOT NULL,
    expires        REAL NOT NULL,
    decided_by     TEXT NOT NULL DEFAULT '',
    decided_name   TEXT NOT NULL DEFAULT '',
    decided_reason TEXT NOT NULL DEFAULT '',
    decided_at     REAL,
    requester_person TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS approval_requests_state ON approval_requests (state, created);
"""


@dataclass
class ApprovalRequest:
    id: str
    kind: str  # command (payload: target, name, args, expires, statuses) or bulk, playbook (payload: run id)
    name: str  # the command's name
    summary: str  # what it does, for the approver: "reboot on desk-7", "reboot on 40 agents matching 'group:lab'"
    requester: str
    requester_role: str
    requester_key: str
    requester_name: str
    reason: str
    payload: dict
    state: str = PENDING
    created: float = 0.0
    expires: float = 0.0
    decided_by: str = ""
    decided_name: str = ""
    decided_reason: str = ""
    decided_at: float | None = None
    #: the person who asked: the id a vouching service named (e.g. ``web:jane``), else the requester's key
    requester_person: str = ""

    def as_dict(self) -> dict:
        """What anyone who may list approvals sees (the payload's arguments are not in it)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("payload", "requester_key")}


class ApprovalBook(BrokerTables):
    """Rules and requests (see the module docstring); the broker is the only writer."""

    SCHEMA = _SCHEMA

    def __init__(self, path: Path, keyring: KeyRing):
        super().__init__(path, keyring)
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(approval_requests)")}
        if "requester_person" not in columns:  # a broker.db from before vouched requesters
            with self._db:
                self._db.execute("ALTER TABLE approval_requests ADD COLUMN requester_person TEXT NOT NULL DEFAULT ''")
        self.rules: set[str] = {row["name"] for row in self._db.execute("SELECT name FROM approval_rules")}

    def needs(self, name: str) -> bool:
        return name in self.rules

    def set_rules(self, names: list[str], required: bool, by: str) -> list[str]:
        """Require (or stop requiring) approval for ``names``; returns those that changed."""
        changed = []
        with self._db:
            for name in names:
                if required and name not in self.rules:
                    self._db.execute("INSERT INTO approval_rules (name, added_by, created) VALUES (?, ?, ?)", (name, by, time.time()))
                    self.rules.add(name)
                    changed.append(name)
                elif not required and name in self.rules:
                    self._db.execute("DELETE FROM approval_rules WHERE name = ?", (name,))
                    self.rules.discard(name)
                    changed.append(name)
        return changed

    def add(self, request: ApprovalRequest) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO approval_requests (id, kind, name, summary, requester, requester_role, requester_key, requester_name,"
                " reason, payload, state, created, expires, requester_person) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (request.id, request.kind, request.name, request.summary, request.requester, request.requester_role,
                 request.requester_key, request.requester_name, request.reason,
                 self._keyring.encrypt(pack_body(request.payload), aad("approval_requests", "payload", request.id)),
                 request.state, request.created, request.expires, request.requester_person or request.requester))

    def decide(self, request: ApprovalRequest) -> None:
        """Record ``request``'s new state and who decided (already set on it)."""
        with self._db:
            self._db.execute("UPDATE approval_requests SET state = ?, decided_by = ?, decided_name = ?, decided_reason = ?,"
                             " decided_at = ? WHERE id = ? AND state = ?",
                             (request.state, request.decided_by, request.decided_name, request.decided_reason,
                              request.decided_at, request.id, PENDING))

    def get(self, request_id: str) -> ApprovalRequest | None:
        row = self._db.execute("SELECT * FROM approval_requests WHERE id = ?", (request_id,)).fetchone()
        return self._request(row) if row else None

    def listed(self, state: str | None, limit: int) -> list[ApprovalRequest]:
        where, params = ("WHERE state = ?", (state,)) if state else ("", ())
        rows = self._db.execute(f"SELECT * FROM approval_requests {where} ORDER BY created DESC LIMIT ?", (*params, limit))
        return [self._request(row) for row in rows]

    def due(self, now: float) -> list[ApprovalRequest]:
        rows = self._db.execute("SELECT * FROM approval_requests WHERE state = ? AND expires < ?", (PENDING, now))
        return [self._request(row) for row in rows]

    def _request(self, row) -> ApprovalRequest:
        payload = unpack_body(self._keyring.decrypt(row["payload"], aad("approval_requests", "payload", row["id"])))
        values = {key: row[key] for key in row.keys() if key != "payload"}
        values["requester_person"] = values["requester_person"] or values["requester"]
        return ApprovalRequest(**values, payload=payload)

