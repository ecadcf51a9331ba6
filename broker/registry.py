"""The key registry: who may connect, as what, like ``salt-key``.

Every Curve public key the broker has seen is a row: its state (pending,
accepted, rejected, revoked), its role and the client id it is bound to.
The broker's ZAP handler and its message dispatch both ask this registry;
the in-memory index is the source of truth while the broker runs (the broker
is the registry's only writer), and every change is committed first.
"""
from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from broker import sqlite_db
from broker.config import ROLES
from broker.errors import EmsError

PENDING, ACCEPTED, REJECTED, REVOKED = "pending", "accepted", "rejected", "revoked"
#: agent ids become topic segments (event.<id>.<name>): no dots, no spaces
AGENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
STATES = (PENDING, ACCEPTED, REJECTED, REVOKED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    public_key TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    role       TEXT NOT NULL,
    state      TEXT NOT NULL,
    label      TEXT NOT NULL DEFAULT '',
    hostname   TEXT NOT NULL DEFAULT '',
    created    REAL NOT NULL,
    updated    REAL NOT NULL,
    last_seen  REAL
);
CREATE INDEX IF NOT EXISTS keys_client ON keys (client_id);
"""


class RegistryError(EmsError):
    """A key operation that cannot be done (unknown id, ambiguous prefix...)."""


@dataclass
class KeyRecord:
    public_key: str
    client_id: str
    role: str
    state: str
    label: str = ""
    hostname: str = ""
    created: float = 0.0
    updated: float = 0.0
    last_seen: float | None = None

    def as_dict(self) -> dict:
        return {
            "public_key": self.public_key,
            "client_id": self.client_id,
            "role": self.role,
            "state": self.state,
            "label": self.label,
            "hostname": self.hostname,
            "created": self.created,
            "updated": self.updated,
            "last_seen": self.last_seen,
        }


class KeyRegistry:
    """Key states backed by the ``keys`` table of ``broker.db``."""

    def __init__(self, path: Path):
        self._db = sqlite_db.connect(path, auto_checkpoint=False)  # the broker checkpoints broker.db
        self._db.executescript(_SCHEMA)
        self._by_key: dict[str, KeyRecord] = {}
        self._accepted: dict[str, KeyRecord] = {}  # client id -> its live key
        for row in self._db.execute("SELECT * FROM keys"):
            self._index(KeyRecord(**dict(row)))

    def close(self) -> None:
        self._db.close()

    # -- lookups -----------------------------------------------------------
    def get(self, public_key: str) -> KeyRecord | None:
        return self._by_key.get(public_key)

    def all(self) -> list[KeyRecord]:
        return sorted(self._by_key.values(), key=lambda r: (r.state, r.role, r.client_id))

    def accepted_by_client(self, client_id: str) -> KeyRecord | None:
        return self._accepted.get(client_id)

    def pending_count(self) -> int:
        return sum(1 for r in self._by_key.values() if r.state == PENDING)

    def find(self, ident: str) -> KeyRecord:
        """Resolve a CLI id: a client id, a full key or a unique key prefix.

        A client id that names both an accepted key and a pending
        re-enrolment resolves to the pending one (that is what an operator
        accepts or rejects).
        """
        by_client = [r for r in self._by_key.values() if r.client_id == ident]
        if by_client:
            pending = [r for r in by_client if r.state == PENDING]
            if len(pending) == 1:
                return pending[0]
            live = [r for r in by_client if r.state == ACCEPTED]
            if len(live) == 1:
                return live[0]
            if len(by_client) == 1:
                return by_client[0]
        matches = [r for r in self._by_key.values() if r.public_key.startswith(ident)] if len(ident) >= 6 else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1 or len(by_client) > 1:
            raise RegistryError(f"{ident!r} is ambiguous: give more of the public key")
        raise RegistryError(f"no key or client id {ident!r}; see `ems keys list`")

    # -- changes -----------------------------------------------------------
    def add(self, public_key: str, client_id: str, role: str, state: str = ACCEPTED, label: str = "") -> KeyRecord:
        """Register a key directly (local set-up and ``ems keys add``)."""
        if role not in ROLES:
            raise RegistryError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        if role == "agent" and not AGENT_ID.match(client_id):
            raise RegistryError(f"agent id {client_id!r} must be 1-64 letters, digits, '-' or '_'")
        if state not in STATES:
            raise RegistryError(f"unknown state {state!r}")
        now = time.time()
        record = self._by_key.get(public_key)
        if record is None:
            record = KeyRecord(public_key, client_id, role, state, label, "", now, now)
        else:
            record.client_id, record.role, record.state, record.updated = client_id, role, state, now
            record.label = label or record.label
        if state == ACCEPTED:
            self._retire_others(record)
        self._save(record)
        return record

    def note_pending(self, public_key: str, client_id: str = "", label: str = "", hostname: str = "") -> KeyRecord:
        """Record an unknown key as pending, or refresh a pending key's claims."""
        now = time.time()
        if client_id and not AGENT_ID.match(client_id):
            client_id = ""  # a claim that cannot be a topic segment is not taken
        record = self._by_key.get(public_key)
        if record is None:
            placeholder = "pending-" + "".join(c if c.isalnum() else "_" for c in public_key[:8])
            record = KeyRecord(public_key, client_id or placeholder, "agent", PENDING, label, hostname, now, now)
        elif record.state == PENDING:
            record.client_id = client_id or record.client_id
            record.label = label or record.label
            record.hostname = hostname or record.hostname
            record.updated = now
        else:
            return record
        self._save(record)
        return record

    def set_state(self, record: KeyRecord, state: str) -> KeyRecord:
        if state not in STATES:
            raise RegistryError(f"unknown state {state!r}")
        record.state, record.updated = state, time.time()
        if state == ACCEPTED:
            self._retire_others(record)
        self._save(record)
        return record

    def set_label(self, record: KeyRecord, label: str) -> None:
        record.label, record.updated = label, time.time()
        self._save(record)

    def set_hostname(self, record: KeyRecord, hostname: str) -> None:
        """What the client reported as its host name (shown beside the label)."""
        record.hostname, record.updated = hostname, time.time()
        self._save(record)

    def touch(self, record: KeyRecord, when: float) -> None:
        """Remember when a client was last seen (called on presence changes)."""
        record.last_seen = when
        self._db.execute("UPDATE keys SET last_seen=? WHERE public_key=?", (when, record.public_key))

    def _retire_others(self, record: KeyRecord) -> None:
        """Accepting a new key for a client id revokes the key it replaces."""
        for other in self._by_key.values():
            if other is not record and other.client_id == record.client_id and other.state == ACCEPTED:
                other.state, other.updated = REVOKED, time.time()
                self._save(other)

    def _index(self, record: KeyRecord) -> None:
        """Keep the in-memory indexes in step (only pending keys change client id)."""
        self._by_key[record.public_key] = record
        if record.state == ACCEPTED:
            self._accepted[record.client_id] = record
        elif self._accepted.get(record.client_id) is record:
            del self._accepted[record.client_id]

    def _save(self, record: KeyRecord) -> None:
        self._index(record)
        try:
            self._db.execute(
                "INSERT INTO keys (public_key, client_id, role, state, label, hostname, created, updated, last_seen)"
                " VALUES (:public_key, :client_id, :role, :state, :label, :hostname, :created, :updated, :last_seen)"
                " ON CONFLICT(public_key) DO UPDATE SET client_id=excluded.client_id, role=excluded.role,"
                " state=excluded.state, label=excluded.label, hostname=excluded.hostname,"
                " updated=excluded.updated, last_seen=excluded.last_seen",
                record.as_dict(),
            )
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot write key registry: {exc}") from exc
