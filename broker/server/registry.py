"""The key registry: who may connect, as what, like ``salt-key``.

Every Curve public key the broker has seen is a row: its state (pending,
accepted, rejected, revoked), its role and the client id it is bound to.
The broker's ZAP handler and its message dispatch both ask this registry;
the in-memory index is the source of truth while the broker runs (the broker
is the registry's only writer), and every change is committed first.

Two more tables make revocation hold:

- ``key_claims``: every (client id, key) pair a key ever claimed, so that
  revoking an id reaches every key that claimed it, even one that later
  claimed another id while pending;
- ``blocked_ids``: client ids revoked by an admin. No key is accepted for a
  blocked id (manually, by token or by ``keys.add``) until an admin lifts
  the block; the revoked keys stay revoked for ever.
"""
from __future__ import annotations

import re
import sqlite3
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Iterator
from pathlib import Path

from broker.core import sqlite_db
from broker.core.config import ROLES
from broker.core.errors import EmsError

PENDING, ACCEPTED, REJECTED, REVOKED = "pending", "accepted", "rejected", "revoked"
#: agent ids become topic segments (event.<id>.<name>): no dots, no spaces
AGENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
STATES = (PENDING, ACCEPTED, REJECTED, REVOKED)
#: what a pending key that claimed no id is listed as: ``pending-<key prefix>``
PLACEHOLDER_PREFIX = "pending-"

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
CREATE TABLE IF NOT EXISTS key_claims (
    client_id  TEXT NOT NULL,
    public_key TEXT NOT NULL,
    first_seen REAL NOT NULL,
    PRIMARY KEY (client_id, public_key)
);
CREATE TABLE IF NOT EXISTS blocked_ids (
    client_id  TEXT PRIMARY KEY,
    blocked_by TEXT NOT NULL,
    reason     TEXT NOT NULL DEFAULT '',
    created    REAL NOT NULL
);
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
    #: the address a pending key first came from (enrolment caps are per source)
    source: str = ""
    #: the person behind an operator's key ("Jane Doe"): what notices, the
    #: access log and the audit trail name (``ems keys add --name``, ``ems keys name``)
    name: str = ""

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
            "source": self.source,
            "name": self.name,
        }


class KeyRegistry:
    """Key states backed by the ``keys``, ``key_claims`` and ``blocked_ids``
    tables of ``broker.db``. ``clock`` is wall-clock time (injectable in tests)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time):
        self.clock = clock
        self._db = sqlite_db.connect(path, auto_checkpoint=False)  # the broker checkpoints broker.db
        self._db.executescript(_SCHEMA)
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(keys)")}
        for column in _ADDED_COLUMNS:  # columns newer than the table: added, old rows kept
            if column not in columns:
                self._db.execute(f"ALTER TABLE keys ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")
        self._db.execute("INSERT OR IGNORE INTO key_claims SELECT client_id, public_key, created FROM keys")
        self._by_key: dict[str, KeyRecord] = {}
        self._accepted: dict[str, KeyRecord] = {}  # client id -> its live key
        self._claimants: dict[str, set[str]] = {}  # client id -> every key that ever claimed it
        self._pending_source: dict[str, str] = {}  # pending key -> its source
        self._pending_per_source: Counter = Counter()
        for row in self._db.execute("SELECT client_id, public_key FROM key_claims"):
            self._claimants.setdefault(row["client_id"], set()).add(row["public_key"])
        for row in self._db.execute("SELECT * FROM keys"):
            self._index(KeyRecord(**dict(row)))
        self._blocked = {row["client_id"]: dict(row) for row in self._db.execute("SELECT * FROM blocked_ids")}

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
        return len(self._pending_source)

    def pending_from(self, source: str) -> int:
        """How many keys are pending that came from ``source``."""
        return self._pending_per_source.get(source, 0)

    def pending(self, created_before: float | None = None) -> list[KeyRecord]:
        """Pending keys, optionally only those created before a wall-clock time."""
        keys = [self._by_key[k] for k in self._pending_source]
        return [r for r in keys if created_before is None or r.created < created_before]

    def claimants(self, client_id: str) -> list[KeyRecord]:
        """Every key that ever claimed ``client_id`` (whatever it claims now)."""
        return [self._by_key[k] for k in sorted(self._claimants.get(client_id, ())) if k in self._by_key]

    def holders(self, client_id: str) -> list[KeyRecord]:
        """The keys bound to ``client_id`` now, in any state."""
        return [r for r in self.claimants(client_id) if r.client_id == client_id]

    def is_known(self, client_id: str, except_key: str = "") -> bool:
        """Whether ``client_id`` was ever admitted: a key other than ``except_key``
        holds it accepted or revoked. (Pending and rejected claims are only
        claims: anyone may make them, so they never make an id known.)"""
        return any(r.state in (ACCEPTED, REVOKED) and r.public_key != except_key for r in self.holders(client_id))

    def blocked(self, client_id: str) -> dict | None:
        """The block on ``client_id`` (who, why, when), or None."""
        return self._blocked.get(client_id)

    def blocked_ids(self) -> list[dict]:
        return sorted(self._blocked.values(), key=lambda b: b["client_id"])

    def find(self, ident: str) -> KeyRecord:
        """Resolve a CLI id: a client id, a full key or a unique key prefix.

        A client id that names both an accepted key and a pending
        re-enrolment resolves to the pending one (that is what an operator
        accepts or rejects); two pending keys claiming it are ambiguous, so
        an operator never acts on the wrong one by name.
        """
        by_client = self.holders(ident)
        if by_client:
            pending = [r for r in by_client if r.state == PENDING]
            live = [r for r in by_client if r.state == ACCEPTED]
            if len(pending) == 1:
                return pending[0]
            if not pending and len(live) == 1:
                return live[0]
            if len(by_client) == 1:
                return by_client[0]
        matches = [r for r in self._by_key.values() if r.public_key.startswith(ident)] if len(ident) >= 6 else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1 or len(by_client) > 1:
            raise RegistryError(f"{ident!r} is ambiguous ({len(matches) or len(by_client)} keys): give more of the public key")
        raise RegistryError(f"no key or client id {ident!r}; see `ems keys list`")

    # -- changes -----------------------------------------------------------
    def add(self, public_key: str, client_id: str, role: str, state: str = ACCEPTED, label: str = "",
            name: str = "") -> KeyRecord:
        """Register a key directly (local set-up and ``ems keys add``)."""
        if role not in ROLES:
            raise RegistryError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        if role == "agent" and not AGENT_ID.match(client_id):
            raise RegistryError(f"agent id {client_id!r} must be 1-64 letters, digits, '-' or '_'")
        if state not in STATES:
            raise RegistryError(f"unknown state {state!r}")
        now = self.clock()
        record = self._by_key.get(public_key)
        if record is None:
            record = KeyRecord(public_key, client_id, role, state, label, "", now, now, name=name)
        else:
            if self._accepted.get(record.client_id) is record:
                del self._accepted[record.client_id]
            record.client_id, record.role, record.state, record.updated = client_id, role, state, now
            record.label = label or record.label
            record.name = name or record.name
        if state == ACCEPTED:
            self._retire_others(record)
        self._save(record)
        return record

    def note_pending(self, public_key: str, client_id: str = "", label: str = "", hostname: str = "",
                     source: str = "") -> KeyRecord:
        """Record an unknown key as pending, or refresh a pending key's claims."""
        now = self.clock()
        if client_id and not AGENT_ID.match(client_id):
            client_id = ""  # a claim that cannot be a topic segment is not taken
        record = self._by_key.get(public_key)
        if record is None:
            record = KeyRecord(public_key, client_id or placeholder_id(public_key), "agent", PENDING, label, hostname,
                               now, now, source=source)
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
        record.state, record.updated = state, self.clock()
        if state == ACCEPTED:
            self._retire_others(record)
        self._save(record)
        return record

    def set_states(self, records: Iterable[KeyRecord], state: str) -> list[tuple[KeyRecord, str]]:
        """Move many keys to ``state`` (never ``accepted``) in one transaction;
        returns each changed record with the state it had."""
        if state not in STATES or state == ACCEPTED:
            raise RegistryError(f"cannot set {state!r} in bulk")
        now = self.clock()
        changed = [(replace(r, state=state, updated=now), r.state) for r in records if r.state != state]
        self._save_many([r for r, _ in changed])
        return changed

    def block(self, client_id: str, blocked_by: str, reason: str = "") -> dict:
        """Block ``client_id``: no key is accepted for it until :meth:`unblock`."""
        row = {"client_id": client_id, "blocked_by": blocked_by, "reason": reason, "created": self.clock()}
        self._write("INSERT OR REPLACE INTO blocked_ids (client_id, blocked_by, reason, created)"
                    " VALUES (:client_id, :blocked_by, :reason, :created)", row)
        self._blocked[client_id] = row
        return row

    def unblock(self, client_id: str) -> dict | None:
        """Lift the block on ``client_id``; returns the block lifted, or None."""
        self._write("DELETE FROM blocked_ids WHERE client_id=?", (client_id,))
        return self._blocked.pop(client_id, None)

    def revoke_client(self, client_id: str, blocked_by: str, reason: str = "") -> list[tuple[KeyRecord, str]]:
        """Revoke every key that ever claimed ``client_id`` and block the id;
        returns each key revoked now with the state it had."""
        with self._transaction():
            changed = self.set_states(self.claimants(client_id), REVOKED)
            self.block(client_id, blocked_by, reason)
        return changed

    def set_label(self, record: KeyRecord, label: str) -> None:
        record.label, record.updated = label, self.clock()
        self._save(record)

    def set_name(self, record: KeyRecord, name: str) -> None:
        """The display name of the person behind ``record`` (``""``: none, the client id is shown)."""
        record.name, record.updated = name, self.clock()
        self._save(record)

    def set_hostname(self, record: KeyRecord, hostname: str) -> None:
        """What the client reported as its host name (shown beside the label)."""
        record.hostname, record.updated = hostname, self.clock()
        self._save(record)

    def touch(self, record: KeyRecord, when: float) -> None:
        """Remember when a client was last seen (called on presence changes)."""
        record.last_seen = when
        self._db.execute("UPDATE keys SET last_seen=? WHERE public_key=?", (when, record.public_key))

    def _retire_others(self, record: KeyRecord) -> None:
        """Accepting a new key for a client id revokes the key it replaces."""
        for other in self.holders(record.client_id):
            if other is not record and other.state == ACCEPTED:
                other.state, other.updated = REVOKED, self.clock()
                self._save(other)

    def _index(self, record: KeyRecord) -> None:
        """Keep the in-memory indexes in step (only pending keys change client id)."""
        key, cid = record.public_key, record.client_id
        old = self._by_key.get(key)
        if old is not None and self._accepted.get(old.client_id) is not None and self._accepted[old.client_id].public_key == key:
            del self._accepted[old.client_id]
        self._by_key[key] = record
        self._claimants.setdefault(cid, set()).add(key)
        if record.state == ACCEPTED:
            self._accepted[cid] = record
        source = self._pending_source.pop(key, None)
        if source is not None:
            self._pending_per_source[source] -= 1
            if self._pending_per_source[source] <= 0:
                del self._pending_per_source[source]
        if record.state == PENDING:
            self._pending_source[key] = record.source
            self._pending_per_source[record.source] += 1

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        if self._db.in_transaction:  # nested: the outer one commits
            yield
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _write(self, sql: str, params) -> None:
        try:
            self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise _write_failed(exc) from exc

    def _save(self, record: KeyRecord) -> None:
        self._save_many([record])

    def _save_many(self, records: list[KeyRecord]) -> None:
        """Commit ``records`` (and their claims) in one transaction, then index them."""
        if not records:
            return
        rows = [r.as_dict() for r in records]
        try:
            with self._transaction():
                self._db.executemany(_UPSERT, rows)
                self._db.executemany("INSERT OR IGNORE INTO key_claims (client_id, public_key, first_seen)"
                                     " VALUES (:client_id, :public_key, :updated)", rows)
        except sqlite3.Error as exc:
            raise _write_failed(exc) from exc
        for record in records:
            self._index(record)


#: ``keys`` columns added after the first release (text, default ''), in order
_ADDED_COLUMNS = ("source", "name")

_UPSERT = (
    "INSERT INTO keys (public_key, client_id, role, state, label, hostname, created, updated, last_seen, source, name)"
    " VALUES (:public_key, :client_id, :role, :state, :label, :hostname, :created, :updated, :last_seen, :source, :name)"
    " ON CONFLICT(public_key) DO UPDATE SET client_id=excluded.client_id, role=excluded.role,"
    " state=excluded.state, label=excluded.label, hostname=excluded.hostname, name=excluded.name,"
    " updated=excluded.updated, last_seen=excluded.last_seen"
)


def _write_failed(exc: sqlite3.Error) -> RegistryError:
    return RegistryError(f"cannot write key registry: {exc}")


def placeholder_id(public_key: str) -> str:
    """The id a pending key that claimed none is listed under (never enrollable)."""
    return PLACEHOLDER_PREFIX + "".join(c if c.isalnum() else "_" for c in public_key[:8])
