"""What the store's parts share: records, errors, the query views, retention
rules, and the database plumbing (error translation, transactions).

The store is split by job: :mod:`~broker.persister.writer` (batched,
deduplicated writes, with :mod:`~broker.persister.prepare` validating and
routing each record and :mod:`~broker.persister.apply` running the
row-level updates), :mod:`~broker.persister.queries` (history, search,
stats, previews) and :mod:`~broker.persister.maintenance` (retention purge,
client deletion, key rotation). :class:`~broker.persister.store.Store`
opens the database and exposes the three.
"""
from __future__ import annotations

import contextlib
import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from broker.core import bounds
from broker.core.errors import EmsError
from broker.persister import schema
from broker.persister.crypto import SecurityManager
from broker.core.vocabulary import DONE, EXPIRED, FAILED

log = logging.getLogger(__name__)

#: Record kinds :meth:`Store.write_batch` accepts.
KINDS = ("event", "log", "security", "audit", "presence", "command_status", "quarantine")

#: ``client_id`` values that mean "the broker (or a service) reported this",
#: not an agent: such security records create no ``clients`` row.
BROKER_IDS = frozenset({"", "broker"})

#: (table, column) pairs stored encrypted; see :mod:`broker.persister.crypto`.
ENCRYPTED: tuple[tuple[str, str], ...] = (
    ("chat_messages", "body"),
    ("client_logs", "message"),
    ("file_operations", "path"),
    ("file_operations", "error"),
    ("screen_captures", "image"),
    ("capture_thumbnails", "thumbnail"),
    ("activity_logs", "data"),
)


MAX_LIMIT = 1000
#: previews made per :meth:`Store.with_thumbnails` call for captures stored
#: before previews existed (each costs about one decode of the full image)
THUMBNAIL_BACKFILL = 20
MAX_ID_CHARS = 200
PURGE_BATCH = 1000


class StoreError(EmsError):
    """The store cannot do what was asked."""


class StoreUnavailable(StoreError):
    """The database cannot be written right now (disk full, read-only, I/O).

    Nothing of the failed operation was written; retry once the cause is
    fixed. The message says what to do.
    """


# -- records ---------------------------------------------------------------------
@dataclass(slots=True)
class Record:
    """One message to store. ``client_id`` is the authenticated sender
    (empty for the broker); ``data`` is the unpacked body."""

    kind: str
    client_id: str
    msg_id: str
    ts: float
    topic: str
    data: dict


class Rejected(NamedTuple):
    """A record that was not stored, and why (unpacks as ``record, reason``)."""

    record: Any
    reason: str


@dataclass
class StoredBatch:
    """The outcome of :meth:`Store.write_batch`.

    ``durable`` lists the ``(client_id, msg_id)`` of every record that is
    now committed: ``new`` ones and ``duplicates`` that already were.
    """

    durable: list[tuple[str, str]] = field(default_factory=list)
    new: int = 0
    duplicates: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    #: updates of a record not stored yet (a chat receipt or delete that overtook
    #: its message): not written and not to be acknowledged, so the agent resends them
    waiting: list[Rejected] = field(default_factory=list)


class _Reject(Exception):
    """Internal: this record is malformed (the reason is the message)."""


class _NotYet(_Reject):
    """Internal: this record updates one the store does not hold yet."""


#: how long a chat receipt or delete may wait for its message before it is rejected for good
CHAT_UPDATE_WAIT_S = 3600.0
#: how long an agent's record about a command (capture, file operation,
#: operator's chat message) waits for the broker's record of that command,
#: which names its operator; past it, it is stored with no operator and a
#: security event ``unverified_operator`` (never with the agent's claim)
OPERATOR_WAIT_S = 600.0


# -- query views -----------------------------------------------------------------
@dataclass(frozen=True)
class _View:
    table: str
    columns: tuple[str, ...]
    ts: str
    client: str = "client_id = ?"  # SQL filter with one ? per mention
    key: str = "id"  # keyset cursor column
    key_type: type = int
    text: tuple[str, ...] = ()  # columns `text` searches
    encrypted: tuple[str, ...] = ()
    packed: tuple[str, ...] = ()  # msgpack columns
    flags: tuple[str, ...] = ()  # 0/1 columns returned as bool

    @property
    def client_params(self) -> int:
        return self.client.count("?")


def _cols(table: str, *, without: tuple[str, ...] = ()) -> tuple[str, ...]:
    return tuple(c for c in schema.columns(table) if c not in without)


#: History query kinds. Every table and column name in SQL comes from here.
VIEWS: dict[str, _View] = {
    "clients": _View(
        "clients",
        _cols("clients", without=("presence_ts", "sysinfo_ts")),
        ts="last_seen",
        key="client_id",
        key_type=str,
        text=("client_id", "label", "hostname", "logged_in_user", "os"),
        packed=("last_sysinfo",),
        flags=("online",),
    ),
    "sessions": _View("sessions", _cols("sessions"), ts="started", text=("logged_in_user", "end_reason")),
    "captures": _View(
        "screen_captures", _cols("screen_captures", without=("image",)), ts="ts", text=("operator", "format")
    ),
    "messages": _View(
        "chat_messages", _cols("chat_messages"), ts="ts", text=("body", "operator"), encrypted=("body",), flags=("deleted",)
    ),
    "fileops": _View(
        "file_operations",
        _cols("file_operations"),
        ts="ts",
        text=("path", "op", "operator", "error"),
        encrypted=("path", "error"),
        flags=("ok",),
    ),
    "logs": _View(
        "client_logs", _cols("client_logs"), ts="ts", text=("message", "logger", "level"), encrypted=("message",)
    ),
    "security": _View(
        "security_events",
        _cols("security_events"),
        ts="ts",
        client="(client_id = ? OR subject = ?)",
        text=("event", "subject", "severity", "origin"),
        packed=("detail",),
    ),
    "activity": _View(
        "activity_logs", _cols("activity_logs"), ts="ts", text=("name", "data"), encrypted=("data",), packed=("data",)
    ),
    "audit": _View(
        "audit_trail",
        _cols("audit_trail"),
        ts="ts",
        client="target = ?",
        text=("operator", "operator_name", "via", "action", "target", "reason", "role"),
        packed=("detail",),
    ),
    "metrics": _View("metrics", _cols("metrics"), ts="ts"),
    # records refused at ingest (see broker.persister.quarantine): what was kept of them
    "quarantine": _View("quarantine", _cols("quarantine"), ts="ts", text=("reason", "topic", "kind")),
    "commands": _View(
        "commands",
        _cols("commands"),
        ts="created",
        key_type=str,
        text=("name", "operator", "status"),
        packed=("args", "result"),
    ),
}


def view_of(kind: Any) -> _View:
    """The view of history ``kind`` (a key of :data:`VIEWS`); ValueError naming the kinds there are."""
    if type(kind) is not str or kind not in VIEWS:
        raise ValueError(f"unknown history kind {bounds.shown(kind)}; one of {', '.join(VIEWS)}")
    return VIEWS[kind]


#: stats(group_by): (query kind whose filters apply, grouped column).
STATS: dict[str, tuple[str, str]] = {
    "log_level": ("logs", "level"),
    "log_logger": ("logs", "logger"),
    "security_event": ("security", "event"),
    "security_severity": ("security", "severity"),
    "security_origin": ("security", "origin"),
    "activity_name": ("activity", "name"),
    "audit_action": ("audit", "action"),
    "audit_operator": ("audit", "operator"),
    "audit_person": ("audit", "operator_name"),
    "command_status": ("commands", "status"),
    "command_name": ("commands", "name"),
    "chat_status": ("messages", "status"),
    "fileop_op": ("fileops", "op"),
    "client_os": ("clients", "os"),
    "client_online": ("clients", "online"),
    "activity_client": ("activity", "client_id"),
}

#: purge(retention): kind -> (table, age column, extra condition).
RETENTION: dict[str, tuple[str, str, str]] = {
    "captures": ("screen_captures", "ts", ""),
    "messages": ("chat_messages", "ts", ""),
    "fileops": ("file_operations", "ts", ""),
    "logs": ("client_logs", "ts", ""),
    "activity": ("activity_logs", "ts", ""),
    "metrics": ("metrics", "ts", ""),
    "security": ("security_events", "ts", ""),
    "audit": ("audit_trail", "ts", ""),
    "quarantine": ("quarantine", "ts", ""),
    "sessions": ("sessions", "ended", "ended IS NOT NULL AND "),
    "commands": ("commands", "updated", f"status IN ('{DONE}', '{FAILED}', '{EXPIRED}') AND "),
    # a client offline for longer than this goes, with everything about it
    "clients": ("clients", "last_seen", "online = 0 AND "),
}


# sqlite3 primary result codes that mean "cannot write here now"
_UNAVAILABLE_ADVICE = {
    sqlite3.SQLITE_FULL: "the disk holding {path} is full: free space or shorten retention, then retry",
    sqlite3.SQLITE_READONLY: "{path} is read-only: check its permissions, owner and mount, then retry",
    sqlite3.SQLITE_IOERR: "disk I/O error on {path}: check the disk and the system log, then retry",
    sqlite3.SQLITE_CANTOPEN: "cannot open {path} or its journal: check the directory's permissions and free space",
    sqlite3.SQLITE_BUSY: "{path} is locked by another process: retry shortly",
    sqlite3.SQLITE_LOCKED: "{path} is locked by another connection: retry shortly",
}
_UNAVAILABLE_TEXT = (
    ("database or disk is full", sqlite3.SQLITE_FULL),
    ("readonly", sqlite3.SQLITE_READONLY),
    ("disk i/o error", sqlite3.SQLITE_IOERR),
    ("database is locked", sqlite3.SQLITE_BUSY),
)


@contextlib.contextmanager
def guard(path: Path, action: str) -> Iterator[None]:
    """Turn "cannot write here" SQLite errors into StoreUnavailable (advice names ``path``)."""
    try:
        yield
    except sqlite3.DatabaseError as exc:  # record-level errors are handled before
        code = _primary_code(exc)
        if code in _UNAVAILABLE_ADVICE:
            advice = _UNAVAILABLE_ADVICE[code].format(path=path)
            log.error("store unavailable: cannot %s: %s (%s)", action, exc, advice)
            raise StoreUnavailable(f"cannot {action}: {exc}; {advice}") from exc
        raise StoreError(f"cannot {action}: {exc}") from exc


class StorePart:
    """One job of the store (writing, querying, maintenance) on a connection
    the :class:`~broker.persister.store.Store` opened; driven by one thread."""

    def __init__(self, db: sqlite3.Connection, path: Path, crypto: SecurityManager):
        self._db = db
        self.path = path
        self.crypto = crypto

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
            cur.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def _errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        return guard(self.path, action)

    def _rollback(self) -> None:
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error as exc:  # SQLite may have rolled back already
                log.warning("rollback failed: %s", exc)


def _primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF
    text = str(exc).lower()
    for fragment, fallback in _UNAVAILABLE_TEXT:
        if fragment in text:
            return fallback
    return None
