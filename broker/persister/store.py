"""The persister's durable store: batched writes, history queries, retention.

:class:`Store` is the storage library only; the bus side (subscribing,
acknowledging message ids to agents, answering history requests) wraps it.
It is meant to be driven by one thread; open one ``Store`` per thread.

Durability
----------
The database runs in WAL mode with ``synchronous=NORMAL`` by default: a
batch that :meth:`Store.write_batch` returned from survives the persister
being killed (SIGKILL, crash, OOM); after a power loss or kernel panic the
last few committed batches may be missing. That is the default because an
agent keeps every record in its outbox until the persister acknowledges it,
and the persister acknowledges after ``write_batch`` returns: records lost
to a power cut are only safe if the acknowledgement was lost with them,
which NORMAL does not promise. ``synchronous="FULL"`` (one fsync per
commit) makes an acknowledged batch survive power loss too, at a throughput
cost; choose it where acknowledged-means-on-disk matters more than speed.

Writes
------
:meth:`Store.write_batch` takes :class:`Record` s, validates each one
(rejects are returned with a reason, never dropped silently and never abort
the batch) and writes the rest in one transaction, deduplicated by
``(client_id, msg_id)``. Disk full, read-only or I/O errors roll the whole
transaction back and raise :class:`StoreUnavailable`: nothing of the batch
is written, so the caller acknowledges nothing and retries later.

Which fields are encrypted and why is described in
:mod:`broker.persister.crypto`; where rows go is in :meth:`Store.write_batch`.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import math
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple

from broker import bounds, sqlite_db
from broker.command_queue import DELIVERED, DONE, EXPIRED, FAILED, QUEUED, SENT
from broker.envelope import pack_body, unpack_body
from broker.errors import EmsError
from broker.persister import schema
from broker.persister.crypto import SecurityManager, TamperedValue, aad_for
from broker.persister.thumbnails import ThumbnailError, make_thumbnail

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

#: Event names with their own table; any other event goes to activity_logs.
_EVENT_ROUTES = {
    "sysinfo": "_prepare_sysinfo",
    "capture": "_prepare_capture",
    "chat": "_prepare_chat",
    "fileop": "_prepare_fileop",
}

MAX_LIMIT = 1000
#: previews made per :meth:`Store.with_thumbnails` call for captures stored
#: before previews existed (each costs about one decode of the full image)
THUMBNAIL_BACKFILL = 20
MAX_ID_CHARS = 200
PURGE_BATCH = 1000

_COMMAND_RANK = {QUEUED: 0, SENT: 1, DELIVERED: 2, DONE: 3, FAILED: 3, EXPIRED: 3}
_CHAT_RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}


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


@dataclass(slots=True)
class _Op:
    """A validated record, ready to apply inside the batch transaction."""

    record: Record
    client: str | None  # client row this record needs (None: no clients row)
    apply: Callable[[sqlite3.Cursor], bool] | None  # True if it stored something new; None: the plain INSERT below
    sql: str | None = None  # a plain INSERT OR IGNORE: runs of them are batched
    params: tuple = ()

    def run(self, cur: sqlite3.Cursor) -> bool:
        """Apply this record inside the open transaction; True if it stored something new."""
        if self.apply is None:
            return _insert_new(self.sql, self.params, cur)
        return self.apply(cur)


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
        text=("operator", "action", "target", "reason", "role"),
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
# the types record.data's keys may have
_STR_ONLY = frozenset({str})
# per-record data problems SQLite reports while binding or checking
_RECORD_ERRORS = (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError, OverflowError)


class Store:
    """The persister's SQLite database.

    ``path`` is the database file; ``crypto`` seals the encrypted fields;
    ``synchronous`` is ``NORMAL`` (default) or ``FULL`` (see the module
    docstring). Opening migrates the schema to the latest version.
    """

    def __init__(self, path: Path, crypto: SecurityManager, synchronous: str = "NORMAL"):
        self.path = Path(path)
        self.crypto = crypto
        #: record kind -> the method that validates and routes it
        self._preparers: dict[str, Callable[[Record], _Op]] = {kind: getattr(self, f"_prepare_{kind}") for kind in KINDS}
        with self._errors("open the store"):
            self._db = sqlite_db.connect(self.path, synchronous)
        try:
            with self._errors("migrate the store"):
                schema.migrate(self._db)
        except BaseException:
            self._db.close()
            raise

    @property
    def connection(self) -> sqlite3.Connection:
        """The underlying connection (maintenance, PRAGMAs and tests)."""
        return self._db

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # == writes ==================================================================
    def write_batch(self, records: Iterable[Record]) -> StoredBatch:
        """Store ``records`` in one transaction, deduplicated; see :class:`StoredBatch`.

        Where records go (``data`` keys in brackets; all optional unless
        marked *):

        * ``log`` -> ``client_logs`` [level, logger, message*]
        * ``security`` -> ``security_events`` [event*, severity, the rest as
          detail]; ``client_id`` "" or "broker" (:data:`BROKER_IDS`) means
          the broker (or a service naming itself in ``origin``) reported it,
          and ``data["client_id"]`` is then the client it concerns (see
          :mod:`~broker.persister.schema`); other kinds refuse those ids
        * ``audit`` -> ``audit_trail`` [operator*, role, action*, target,
          reason, detail]; ``target``/``reason`` default to those in detail
        * ``presence`` -> ``sessions`` and ``clients.online`` [state*
          online|offline, reason, info {user, hostname, os, version, label}]
        * ``command_status`` -> ``commands`` [id*, status*, name, operator,
          args, result, created]; status only moves forward
        * ``event`` on ``event.<client>.<name>``: ``sysinfo`` -> ``metrics``
          and the ``clients`` row [hostname, os, os_version, logged_in_user,
          version, cpu_percent, memory_percent, disk_percent]; ``capture``
          -> ``screen_captures`` [width, height, quality, format, image*,
          command] and its preview (or why there is none) in
          ``capture_thumbnails``; ``chat`` -> ``chat_messages`` [body*, direction in|out,
          command (out), in_reply_to (in), status] or, with ``ref`` (a stored message's msg_id), a
          status change / soft delete of it [status, deleted]; ``fileop`` ->
          ``file_operations`` [op*, path*, size, ok, error, command]; any
          other name -> ``activity_logs`` (data stored whole).

        The ``operator`` of a capture, a file operation or an operator's
        chat message is the sender of the ``command`` it reports on, from
        the broker's record of that command (``command_status``), never
        from the agent's body; until that record is here the agent's record
        is *waiting*, and after :data:`OPERATOR_WAIT_S` it is stored with
        no operator beside an ``unverified_operator`` security event. An
        employee's reply is addressed to the operator of the message it
        answers (``in_reply_to``), or to nobody named.

        Presence, command status and chat status changes count as *new*
        when they changed something and as *duplicates* when they did not.
        A chat receipt or delete whose message is not stored yet is
        *waiting* (not written, not to be acknowledged: it is resent) for up
        to :data:`CHAT_UPDATE_WAIT_S`, then rejected.
        A client that is not known yet gets a ``clients`` row. Raises
        :class:`StoreUnavailable` (nothing written) when the database cannot
        be written.
        """
        result = StoredBatch()
        ops: list[_Op] = []
        for record in records:
            try:
                ops.append(self._prepare(record))
            except _Reject as exc:
                result.rejected.append(Rejected(record, str(exc)))
        if not ops:
            return self._report(result)
        with self._errors("write the batch"):
            try:
                self._write_fast(ops, result)
            except (_Reject, *_RECORD_ERRORS) as exc:
                # one record broke the transaction: redo, isolating each one
                log.debug("batch retried record by record: %s", exc)
                kept = len(result.rejected)
                result.durable.clear()
                result.new = result.duplicates = 0
                del result.rejected[kept:]
                self._write_isolated(ops, result)
        return self._report(result)

    @staticmethod
    def _report(result: StoredBatch) -> StoredBatch:
        """One log line per batch; the caller gets every reject in the result."""
        if result.rejected:
            first = result.rejected[0]
            log.info(
                "%d record(s) rejected; first: %s %r from %r: %s",
                len(result.rejected),
                getattr(first.record, "kind", "?"),
                getattr(first.record, "msg_id", "?"),
                getattr(first.record, "client_id", "?"),
                first.reason,
            )
        return result

    def _write_fast(self, ops: list[_Op], result: StoredBatch) -> None:
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            self._ensure_clients(cur, ops)
            start = 0
            while start < len(ops):
                op = ops[start]
                if op.sql is None:
                    self._count(result, op, op.run(cur))
                    start += 1
                    continue
                # consecutive plain inserts into one table: one executemany
                end = start + 1
                while end < len(ops) and ops[end].sql == op.sql:
                    end += 1
                cur.executemany(op.sql, [o.params for o in ops[start:end]])
                result.durable += [(o.record.client_id, o.record.msg_id) for o in ops[start:end]]
                result.new += cur.rowcount
                result.duplicates += end - start - cur.rowcount
                start = end
            cur.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def _write_isolated(self, ops: list[_Op], result: StoredBatch) -> None:
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            for op in ops:
                cur.execute("SAVEPOINT record")
                try:
                    self._ensure_clients(cur, [op])
                    is_new = op.run(cur)
                except (_Reject, *_RECORD_ERRORS) as exc:
                    cur.execute("ROLLBACK TO record")
                    cur.execute("RELEASE record")
                    (result.waiting if isinstance(exc, _NotYet) else result.rejected).append(Rejected(op.record, str(exc)))
                    continue
                cur.execute("RELEASE record")
                self._count(result, op, is_new)
            cur.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    @staticmethod
    def _count(result: StoredBatch, op: _Op, is_new: bool) -> None:
        result.durable.append((op.record.client_id, op.record.msg_id))
        if is_new:
            result.new += 1
        else:
            result.duplicates += 1

    @staticmethod
    def _ensure_clients(cur: sqlite3.Cursor, ops: list[_Op]) -> None:
        """Create missing ``clients`` rows; widen ``first_seen``/``last_seen``.

        A command status is news about the broker's queue, not a sighting
        of the agent: it only creates the row if there is none.
        """
        seen: dict[str, list[float]] = {}
        mentioned: list[_Op] = []
        for op in ops:
            if op.client is not None and op.record.kind == "command_status":
                mentioned.append(op)
            elif op.client is not None:
                ts = op.record.ts
                span = seen.get(op.client)
                if span is None:
                    seen[op.client] = [ts, ts]
                elif ts < span[0]:
                    span[0] = ts
                elif ts > span[1]:
                    span[1] = ts
        for client_id, (first, last) in seen.items():
            cur.execute(
                "INSERT INTO clients (client_id, first_seen, last_seen) VALUES (?, ?, ?)"
                " ON CONFLICT(client_id) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen),"
                " first_seen = min(first_seen, excluded.first_seen)",
                (client_id, first, last),
            )
        for op in mentioned:
            cur.execute(
                "INSERT OR IGNORE INTO clients (client_id, first_seen, last_seen) VALUES (?, ?, ?)",
                (op.client, op.record.ts, op.record.ts),
            )

    def _rollback(self) -> None:
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error as exc:  # SQLite may have rolled back already
                log.warning("rollback failed: %s", exc)

    # -- validation and routing ---------------------------------------------------
    def _prepare(self, record: Record) -> _Op:
        if not isinstance(record, Record):
            raise _Reject(f"not a Record but {type(record).__name__}")
        kind, client_id, msg_id, ts = record.kind, record.client_id, record.msg_id, record.ts
        prepare = self._preparers.get(kind) if type(kind) is str else None
        if prepare is None:
            raise _Reject(f"unknown kind {kind!r}")
        if type(client_id) is not str or len(client_id) > MAX_ID_CHARS:
            raise _Reject("client_id must be a string of up to 200 chars")
        if type(msg_id) is not str or not 0 < len(msg_id) <= MAX_ID_CHARS:
            raise _Reject("msg_id must be a non-empty string of up to 200 chars")
        if type(ts) not in (int, float) or not math.isfinite(ts) or ts < 0:
            raise _Reject("ts must be a finite, non-negative number")
        if type(record.topic) is not str:
            raise _Reject("topic must be a string")
        if type(record.data) is not dict or not _STR_ONLY.issuperset(map(type, record.data)):
            raise _Reject("data must be a dict with string keys")
        if client_id in BROKER_IDS and kind not in ("security", "audit", "quarantine"):
            raise _Reject(f"{kind} records need a client_id")
        return prepare(record)

    def _seal(self, table: str, column: str, record: Record, value: bytes) -> bytes:
        return self.crypto.encrypt(value, aad_for(table, column, record.client_id, record.msg_id))

    def _insert(self, record: Record, table: str, values: dict[str, Any], client: str | None = None) -> _Op:
        sql, params = _insert_sql(table, tuple(values)), tuple(values.values())
        return _Op(record, client, None, sql, params)

    def _prepare_log(self, r: Record) -> _Op:
        d = r.data
        message = _text(d, "message", required=True)
        values = {
            "client_id": r.client_id,
            "msg_id": r.msg_id,
            "ts": r.ts,
            "level": _text(d, "level") or "INFO",
            "logger": _text(d, "logger") or "",
            "message": self._seal("client_logs", "message", r, message.encode()),
        }
        return self._insert(r, "client_logs", values, r.client_id)

    def _prepare_security(self, r: Record) -> _Op:
        d = r.data
        event = _text(d, "event", required=True)
        severity = _text(d, "severity")
        rest = {k: v for k, v in d.items() if k not in ("event", "severity")}
        if r.client_id not in BROKER_IDS:
            origin, client_id, subject = "agent", r.client_id, None
            # an agent cannot say it is the broker or speak of another client: what it claims stays its claim
            claimed = {k: rest.pop(k) for k in ("origin", "client_id", "subject") if k in rest}
            if claimed:
                rest["claimed"] = claimed
        else:
            origin, client_id, subject = _text(d, "origin") or "broker", None, _text(d, "client_id") or None
        values = {
            "origin": origin,
            "client_id": client_id,
            "subject": subject,
            "msg_id": r.msg_id,
            "ts": r.ts,
            "event": event,
            "severity": severity,
            "detail": _pack(rest) if rest else None,
        }
        return self._insert(r, "security_events", values, client_id)

    def _prepare_audit(self, r: Record) -> _Op:
        d = r.data
        detail = d.get("detail")
        in_detail = detail if isinstance(detail, dict) else {}
        target = _text(d, "target") or (in_detail.get("client_id") if type(in_detail.get("client_id")) is str else None)
        reason = _text(d, "reason") or (in_detail.get("reason") if type(in_detail.get("reason")) is str else None)
        values = {
            "source": r.client_id,
            "msg_id": r.msg_id,
            "ts": r.ts,
            "operator": _text(d, "operator", required=True),
            "role": _text(d, "role"),
            "action": _text(d, "action", required=True),
            "target": target or None,
            "reason": reason or None,
            "detail": _pack(detail) if detail is not None else None,
        }
        return self._insert(r, "audit_trail", values)

    def _prepare_quarantine(self, r: Record) -> _Op:
        """What is kept of a record refused at ingest (no clients row: it proves nothing about a machine)."""
        d = r.data
        values = {
            "client_id": r.client_id,
            "msg_id": r.msg_id,
            "ts": r.ts,
            "kind": _text(d, "kind", required=True),
            "topic": r.topic,
            "size": _integer(d, "size"),
            "reason": _text(d, "reason", required=True),
            "sha256": _text(d, "sha256"),
        }
        return self._insert(r, "quarantine", values)

    def _prepare_presence(self, r: Record) -> _Op:
        d = r.data
        state = _text(d, "state", required=True)
        if state not in ("online", "offline"):
            raise _Reject(f"presence state must be online or offline, not {state!r}")
        reason = _text(d, "reason")
        info = d.get("info") or {}
        if type(info) is not dict:
            raise _Reject("presence info must be a dict")
        facts = {
            "logged_in_user": _text(info, "user"),
            "hostname": _text(info, "hostname"),
            "os": _text(info, "os"),
            "version": _text(info, "version"),
        }
        if state == "online":
            return _Op(r, r.client_id, functools.partial(_apply_online, r, facts, _text(info, "label")))
        return _Op(r, r.client_id, functools.partial(_apply_offline, r, reason))

    def _prepare_command_status(self, r: Record) -> _Op:
        d = r.data
        status = _text(d, "status", required=True)
        if status not in _COMMAND_RANK:
            raise _Reject(f"unknown command status {status!r}")
        created = _number(d, "created")
        values = {
            "id": _text(d, "id", required=True),
            "client_id": r.client_id,
            "operator": _text(d, "operator") or _text(d, "sender"),
            "name": _text(d, "name") or "",
            "args": _pack(d["args"]) if d.get("args") is not None else None,
            "status": status,
            "created": r.ts if created is None else created,
            "updated": r.ts,
            "result": _pack(d["result"]) if d.get("result") is not None else None,
        }
        return _Op(r, r.client_id, functools.partial(_apply_command_status, values))

    def _prepare_event(self, r: Record) -> _Op:
        prefix = f"event.{r.client_id}."
        if not r.topic.startswith(prefix) or len(r.topic) == len(prefix):
            raise _Reject(f"event topic {r.topic!r} is not event.{r.client_id}.<name>")
        name = r.topic[len(prefix) :]
        if name in _EVENT_ROUTES:
            return getattr(self, _EVENT_ROUTES[name])(r)
        values = {
            "client_id": r.client_id,
            "msg_id": r.msg_id,
            "ts": r.ts,
            "name": name,
            "data": self._seal("activity_logs", "data", r, _pack(r.data)),
        }
        return self._insert(r, "activity_logs", values, r.client_id)

    def _prepare_sysinfo(self, r: Record) -> _Op:
        d = r.data
        facts = {key: _text(d, key) for key in ("hostname", "os", "os_version", "logged_in_user", "version")}
        metrics = {key: _number(d, key) for key in ("cpu_percent", "memory_percent", "disk_percent")}
        return _Op(r, r.client_id, functools.partial(_apply_sysinfo, r, facts, metrics, _pack(d)))

    def _prepare_capture(self, r: Record) -> _Op:
        d = r.data
        image = d.get("image")
        if not isinstance(image, (bytes, bytearray)) or not image:
            raise _Reject("capture image must be non-empty bytes")
        thumbnail, why_not = _thumbnail(bytes(image))  # here: outside the write transaction
        sealed = self._seal("capture_thumbnails", "thumbnail", r, thumbnail) if thumbnail is not None else None
        values = {
            "client_id": r.client_id,
            "msg_id": r.msg_id,
            "ts": r.ts,
            "width": _integer(d, "width"),
            "height": _integer(d, "height"),
            "quality": _integer(d, "quality"),
            "format": _text(d, "format"),
            "image": self._seal("screen_captures", "image", r, bytes(image)),
        }
        preview = functools.partial(_insert_preview, (r.client_id, r.msg_id), (sealed, why_not))
        return _Op(r, r.client_id, functools.partial(_apply_stamped, r, "screen_captures", values, preview))

    def _prepare_chat(self, r: Record) -> _Op:
        d = r.data
        status = _text(d, "status")
        if status is not None and status not in _CHAT_RANK:
            raise _Reject(f"unknown chat status {status!r}")
        ref = _text(d, "ref")
        if ref is not None:
            deleted = d.get("deleted")
            if deleted is not None and type(deleted) is not bool:
                raise _Reject("chat 'deleted' must be a boolean")
            if status is None and not deleted:
                raise _Reject("a chat update needs a status or deleted=true")
            return _Op(r, r.client_id, functools.partial(_apply_chat_update, r, ref, status, bool(deleted)))
        body = _text(d, "body", required=True)
        direction = _text(d, "direction") or "in"
        if direction not in ("in", "out"):
            raise _Reject(f"chat direction must be in or out, not {direction!r}")
        values = {
            "client_id": r.client_id,
            "msg_id": r.msg_id,
            "ts": r.ts,
            "direction": direction,
            "body": self._seal("chat_messages", "body", r, body.encode()),
            "status": status or ("delivered" if direction == "in" else "queued"),
            "status_ts": r.ts,
        }
        if direction == "out":  # an operator's message: who sent it is the broker's word, not the agent's
            return _Op(r, r.client_id, functools.partial(_apply_stamped, r, "chat_messages", values, None))
        # the employee's reply: ``operator`` is whom it answers, from the stored message it replies to
        return _Op(r, r.client_id, functools.partial(_apply_reply, r, values, _text(d, "in_reply_to")))

    def _prepare_fileop(self, r: Record) -> _Op:
        d = r.data
        ok = d.get("ok", True)
        if type(ok) is not bool:
            raise _Reject("fileop 'ok' must be a boolean")
        error = _text(d, "error")
        values = {
            "client_id": r.client_id,
            "msg_id": r.msg_id,
            "ts": r.ts,
            "op": _text(d, "op", required=True),
            "path": self._seal("file_operations", "path", r, _text(d, "path", required=True).encode()),
            "size": _integer(d, "size"),
            "ok": int(ok),
            "error": self._seal("file_operations", "error", r, error.encode()) if error is not None else None,
        }
        return _Op(r, r.client_id, functools.partial(_apply_stamped, r, "file_operations", values, None))

    # == queries =================================================================
    def query(
        self,
        kind: str,
        client_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        before_id: int | str | None = None,
        order: str = "desc",
        text: str | None = None,
        include_deleted: bool = False,
    ) -> list[dict]:
        """History of one ``kind`` (a key of :data:`VIEWS`), as dicts.

        Filters: ``client_id`` (audit: the target; security: reporter or
        subject), ``since <= ts < until`` (epoch seconds), ``text``
        (case-insensitive substring of the kind's text columns, encrypted
        ones included). Rows come in storage order (``id``; ``client_id``
        for clients), newest first for ``order="desc"``. To page, pass the
        last row's ``id`` (clients: ``client_id``) as ``before_id``: the
        next page continues after it in the chosen order. Chat messages
        that were deleted (soft deletes: the row stays, ``deleted`` true)
        are left out unless ``include_deleted``.

        Encrypted fields come back decrypted; one that does not decrypt
        raises :class:`TamperedValue` naming the table and row. Captures
        come without their image: see :meth:`get_capture`.
        """
        view = _view(kind)
        order_sql = _order(order)
        limit = _limit(limit)
        where, params = self._filters(view, client_id, since, until)
        if before_id is not None:
            before_id = _key(view, before_id)
            where.append(f"{view.key} {'<' if order_sql == 'DESC' else '>'} ?")
            params.append(before_id)
        bounds.boolean(include_deleted, "include_deleted")
        if view.table == "chat_messages" and not include_deleted:
            where.append("deleted = 0")
        needle = _needle(view, text)
        plain_search = needle is not None and not set(view.text) & set(view.encrypted)
        if plain_search:
            where.append("(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in view.text) + ")")
            params += [f"%{_escape_like(needle)}%"] * len(view.text)
        sql = (
            f"SELECT {', '.join(view.columns)} FROM {view.table}"
            f"{' WHERE ' + ' AND '.join(where) if where else ''}"
            f" ORDER BY {view.key} {order_sql} LIMIT ?"
        )
        with self._errors(f"query {kind}"):
            if needle is None or plain_search:
                rows = self._db.execute(sql, (*params, limit)).fetchall()
                return [self._row(view, row) for row in rows]
            return self._search(view, where, params, order_sql, limit, needle)

    def _search(self, view: _View, where: list[str], params: list, order_sql: str, limit: int, needle: str) -> list[dict]:
        """Text search over encrypted columns: decrypt in chunks, filter here."""
        found: list[dict] = []
        chunk = max(limit, 200)
        cursor_sql = f"{view.key} {'<' if order_sql == 'DESC' else '>'} ?"
        base = f"SELECT {', '.join(view.columns)} FROM {view.table}"
        last = None
        while len(found) < limit:
            clauses = where + ([cursor_sql] if last is not None else [])
            page_sql = (
                f"{base}{' WHERE ' + ' AND '.join(clauses) if clauses else ''}"
                f" ORDER BY {view.key} {order_sql} LIMIT ?"
            )
            rows = self._db.execute(page_sql, (*params, *([last] if last is not None else []), chunk)).fetchall()
            for row in rows:
                item = self._row(view, row)
                if any(_contains(item.get(c), needle) for c in view.text):
                    found.append(item)
                    if len(found) == limit:
                        break
            if len(rows) < chunk:
                break
            last = rows[-1][view.key]
        return found

    def with_thumbnails(self, captures: list[dict]) -> list[dict]:
        """``captures`` rows (from :meth:`query`) with ``thumbnail`` (JPEG
        bytes, or None) and ``thumbnail_error`` (why there is none, or None).

        A preview that does not decrypt is reported on its row, not raised:
        one damaged value must not hide every other capture. Captures stored
        before previews existed get one now (at most
        :data:`THUMBNAIL_BACKFILL` per call; it is kept for next time).
        """
        ids = [row["id"] for row in captures if type(row.get("id")) is int]
        found: dict[int, tuple[bytes | None, str | None]] = {}
        with self._errors("read capture previews"):
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                rows = self._db.execute(
                    f"SELECT id, client_id, msg_id, thumbnail, error FROM capture_thumbnails"
                    f" WHERE id IN ({', '.join('?' * len(chunk))})", chunk
                ).fetchall()
                for row in rows:
                    found[row["id"]] = self._open_preview(row)
        missing = [i for i in ids if i not in found]
        found.update(self._backfill_previews(missing[:THUMBNAIL_BACKFILL]))
        later = (None, "no preview yet: refresh to make the next ones")
        out = []
        for row in captures:
            thumbnail, why_not = found.get(row.get("id"), later)
            out.append(dict(row, thumbnail=thumbnail, thumbnail_error=why_not))
        return out

    def _open_preview(self, row: sqlite3.Row) -> tuple[bytes | None, str | None]:
        if row["thumbnail"] is None:
            return None, row["error"] or "no preview"
        try:
            return self._open("capture_thumbnails", "thumbnail", row), None
        except TamperedValue as exc:
            return None, f"the preview cannot be decrypted: {exc}"

    def _backfill_previews(self, ids: list[int]) -> dict[int, tuple[bytes | None, str | None]]:
        """Make (and keep) the previews of captures stored without one."""
        if not ids:
            return {}
        with self._errors("read captures"):
            rows = self._db.execute(
                f"SELECT id, client_id, msg_id, image FROM screen_captures WHERE id IN ({', '.join('?' * len(ids))})", ids
            ).fetchall()
        made: dict[int, tuple[bytes | None, str | None]] = {}
        keep = []
        for row in rows:
            try:
                image = self._open("screen_captures", "image", row)
            except TamperedValue as exc:  # not kept: the right key file may come back
                made[row["id"]] = (None, f"the image cannot be decrypted: {exc}")
                continue
            thumbnail, why_not = _thumbnail(image)
            aad = aad_for("capture_thumbnails", "thumbnail", row["client_id"], row["msg_id"])
            sealed = self.crypto.encrypt(thumbnail, aad) if thumbnail is not None else None
            keep.append((row["id"], row["client_id"], row["msg_id"], sealed, why_not))
            made[row["id"]] = (thumbnail, why_not)
        try:
            with self._errors("keep capture previews"), self._transaction() as cur:
                cur.executemany(
                    "INSERT OR IGNORE INTO capture_thumbnails (id, client_id, msg_id, thumbnail, error) VALUES (?, ?, ?, ?, ?)", keep
                )
        except StoreError as exc:  # shown now, made again next time
            log.warning("capture previews not kept: %s", exc)
        return made

    def get_capture(self, capture_id: int) -> dict | None:
        """One screen capture with its decrypted ``image``, or None."""
        bounds.int64(capture_id, "capture id")
        with self._errors("read a capture"):
            row = self._db.execute("SELECT * FROM screen_captures WHERE id = ?", (capture_id,)).fetchone()
        if row is None:
            return None
        item = dict(row)
        item["image"] = self._open("screen_captures", "image", row)
        return item

    def stats(
        self, group_by: str, client_id: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[dict]:
        """Row counts grouped by ``"kind"`` (rows per history kind) or one of
        :data:`STATS`: ``[{"key", "count"}]``, largest first.
        ``client_id``/``since``/``until`` filter as in :meth:`query`."""
        if group_by == "kind":
            return self._kind_counts(client_id, since, until)
        if type(group_by) is not str or group_by not in STATS:
            raise ValueError(f"cannot group by {bounds.shown(group_by)}; one of kind, {', '.join(STATS)}")
        kind, column = STATS[group_by]
        view = VIEWS[kind]
        where, params = self._filters(view, client_id, since, until)
        sql = (
            f"SELECT {column} AS key, count(*) AS count FROM {view.table}"
            f"{' WHERE ' + ' AND '.join(where) if where else ''}"
            f" GROUP BY {column} ORDER BY count DESC, key"
        )
        with self._errors("compute stats"):
            return [dict(row) for row in self._db.execute(sql, params)]

    def _kind_counts(self, client_id, since, until) -> list[dict]:
        counts = []
        with self._errors("compute stats"):
            for kind, view in VIEWS.items():
                where, params = self._filters(view, client_id, since, until)
                sql = f"SELECT count(*) FROM {view.table}{' WHERE ' + ' AND '.join(where) if where else ''}"
                counts.append({"key": kind, "count": self._db.execute(sql, params).fetchone()[0]})
        return sorted(counts, key=lambda c: (-c["count"], c["key"]))

    @staticmethod
    def _filters(view: _View, client_id, since, until) -> tuple[list[str], list]:
        where: list[str] = []
        params: list = []
        if client_id is not None:
            where.append(view.client)
            params += [bounds.text(client_id, "client_id", MAX_ID_CHARS)] * view.client_params
        for name, value, op in (("since", since, ">="), ("until", until, "<")):
            if value is None:
                continue
            where.append(f"{view.ts} {op} ?")
            params.append(bounds.epoch(value, name))
        return where, params

    def _row(self, view: _View, row: sqlite3.Row) -> dict:
        item = dict(row)
        for column in view.encrypted:
            if item[column] is not None:
                item[column] = self._open(view.table, column, row)
        for column in view.packed:
            if item[column] is not None:
                item[column] = unpack_body(item[column])
        for column in view.flags:
            item[column] = bool(item[column])
        return item

    def _open(self, table: str, column: str, row: sqlite3.Row) -> Any:
        aad = aad_for(table, column, row["client_id"], row["msg_id"])
        try:
            plain = self.crypto.decrypt(row[column], aad)
        except TamperedValue as exc:
            raise TamperedValue(f"{table} row {row['id']} ({column}): {exc}") from exc
        return plain if column in ("image", "data", "thumbnail") else plain.decode()

    # == maintenance ===============================================================
    def purge(self, retention: dict[str, float], now: float | None = None) -> dict[str, int]:
        """Delete rows older than ``retention[kind]`` seconds, in batches.

        Kinds are the keys of :data:`RETENTION`. Sessions go once ended,
        commands once final, clients once offline (with every row about
        them, by cascade). Returns the rows deleted per kind.
        """
        now = time.time() if now is None else now
        if type(now) not in (int, float) or not math.isfinite(now):
            raise ValueError("now must be a number")
        for kind, seconds in retention.items():
            if kind not in RETENTION:
                raise ValueError(f"no retention for {kind!r}; one of {', '.join(RETENTION)}")
            if type(seconds) not in (int, float) or not math.isfinite(seconds) or seconds < 0:
                raise ValueError(f"retention for {kind} must be a non-negative number of seconds")
        deleted: dict[str, int] = {}
        for kind, seconds in retention.items():
            table, column, condition = RETENTION[kind]
            sql = (
                f"DELETE FROM {table} WHERE rowid IN"
                f" (SELECT rowid FROM {table} WHERE {condition}{column} < ? LIMIT ?)"
            )
            deleted[kind] = 0
            while True:
                with self._errors(f"purge {kind}"), self._transaction() as cur:
                    count = cur.execute(sql, (now - seconds, PURGE_BATCH)).rowcount
                deleted[kind] += count
                if count < PURGE_BATCH:
                    break
            if deleted[kind]:
                log.info("purged %d %s older than %.0f s", deleted[kind], kind, seconds)
        return deleted

    def delete_client(self, client_id: str) -> dict[str, int]:
        """Delete a client and every row about it; return rows per table.

        Deletes the children explicitly before the client, in one
        transaction, so it is complete whether or not the tables cascade.
        The audit trail and broker security events that name the client
        are kept. Callers audit the deletion themselves.
        """
        if type(client_id) is not str:
            raise ValueError("client_id must be a string")
        with self._errors("delete a client"), self._transaction() as cur:
            counts = delete_client_rows(cur, client_id)
        log.info("deleted client %s (%d rows)", client_id, sum(counts.values()))
        return counts

    def soft_delete_message(self, message_id: int) -> bool:
        """Hide a chat message from history (the row stays); False if unknown."""
        if type(message_id) is not int:
            raise ValueError("message id must be an int")
        with self._errors("delete a message"), self._transaction() as cur:
            return cur.execute("UPDATE chat_messages SET deleted = 1 WHERE id = ?", (message_id,)).rowcount == 1

    def rotate_encryption(self, batch_size: int = 500, progress: Callable[[int, int], None] | None = None) -> int:
        """Re-encrypt every encrypted value with the current key; return how many changed.

        Works in batches of ``batch_size`` rows, one transaction each, and
        calls ``progress(done, total)`` after each batch. Values already
        sealed with the current key are left alone, so an interrupted
        rotation resumes where it stopped. A value that does not decrypt
        stops the rotation with :class:`TamperedValue` naming the row.
        """
        if type(batch_size) is not int or batch_size < 1:
            raise ValueError("batch_size must be a positive int")
        current = self.crypto.current_key_id
        with self._errors("prepare key rotation"):
            ceilings = {
                (table, column): self._db.execute(
                    f"SELECT max(id), count(*) FROM {table} WHERE {column} IS NOT NULL"
                ).fetchone()
                for table, column in ENCRYPTED
            }
        total = sum(count for _, count in ceilings.values())
        done = changed = 0
        for (table, column), (top, _) in ceilings.items():
            last = 0
            while top is not None and last < top:
                with self._errors(f"rotate keys in {table}"):
                    rows = self._db.execute(
                        f"SELECT id, client_id, msg_id, {column} FROM {table}"
                        f" WHERE id > ? AND id <= ? AND {column} IS NOT NULL ORDER BY id LIMIT ?",
                        (last, top, batch_size),
                    ).fetchall()
                if not rows:
                    break
                updates = []
                for row in rows:
                    aad = aad_for(table, column, row["client_id"], row["msg_id"])
                    try:
                        if self.crypto.key_id_of(row[column]) == current:
                            continue
                        plain = self.crypto.decrypt(row[column], aad)
                    except TamperedValue as exc:
                        raise TamperedValue(f"{table} row {row['id']} ({column}): {exc}") from exc
                    updates.append((self.crypto.encrypt(plain, aad), row["id"], row[column]))
                if updates:
                    with self._errors(f"rotate keys in {table}"), self._transaction() as cur:
                        cur.executemany(f"UPDATE {table} SET {column} = ? WHERE id = ? AND {column} = ?", updates)
                changed += len(updates)
                done += len(rows)
                last = rows[-1]["id"]
                if progress is not None:
                    progress(done, total)
        log.info("re-encrypted %d of %d values with key %s", changed, total, current)
        return changed

    # -- plumbing -------------------------------------------------------------------
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

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn "cannot write here" SQLite errors into StoreUnavailable."""
        try:
            yield
        except sqlite3.DatabaseError as exc:  # record-level errors are handled before
            code = _primary_code(exc)
            if code in _UNAVAILABLE_ADVICE:
                advice = _UNAVAILABLE_ADVICE[code].format(path=self.path)
                log.error("store unavailable: cannot %s: %s (%s)", action, exc, advice)
                raise StoreUnavailable(f"cannot {action}: {exc}; {advice}") from exc
            raise StoreError(f"cannot {action}: {exc}") from exc


def delete_client_rows(cur: sqlite3.Cursor, client_id: str) -> dict[str, int]:
    """Delete ``client_id``'s rows from every child table, then the client.

    Children first, so this is complete and satisfies the foreign keys
    whether or not the schema cascades (a legacy database included). Runs
    in the caller's transaction; returns rows deleted per table.
    """
    counts = {
        table: cur.execute(f"DELETE FROM {table} WHERE client_id = ?", (client_id,)).rowcount
        for table in schema.CHILD_TABLES
    }
    counts["clients"] = cur.execute("DELETE FROM clients WHERE client_id = ?", (client_id,)).rowcount
    return counts


# -- appliers (run inside the batch transaction) --------------------------------------
def _insert_new(sql: str, params: tuple, cur: sqlite3.Cursor) -> bool:
    cur.execute(sql, params)
    return cur.rowcount == 1


def _insert_preview(row_key: tuple[str, str], preview: tuple[bytes | None, str | None], cur: sqlite3.Cursor) -> None:
    """A capture's (encrypted) preview or why there is none, under the capture's id (just inserted)."""
    cur.execute(
        "INSERT INTO capture_thumbnails (id, client_id, msg_id, thumbnail, error) VALUES (?, ?, ?, ?, ?)",
        (cur.lastrowid, *row_key, *preview),
    )


def _apply_stamped(r: Record, table: str, values: dict, then: Callable[[sqlite3.Cursor], None] | None,
                   cur: sqlite3.Cursor) -> bool:
    """Insert an agent's record about a command with ``operator`` stamped from
    the broker's record of that command (see :func:`_command_operator`),
    then run ``then`` on a new row."""
    operator = _command_operator(r, cur)
    row = {**values, "operator": operator}
    cur.execute(_insert_sql(table, tuple(row)), tuple(row.values()))
    if cur.rowcount != 1:
        return False
    if then is not None:
        then(cur)
    if operator is None:
        _mark_unverified(r, table, cur)
    return True


def _apply_reply(r: Record, values: dict, in_reply_to: str | None, cur: sqlite3.Cursor) -> bool:
    """An employee's reply, addressed to the operator of the stored message
    it answers (``in_reply_to``, this agent's), or to nobody named."""
    row = None
    if in_reply_to is not None:
        row = cur.execute("SELECT operator FROM chat_messages WHERE client_id = ? AND msg_id = ? AND direction = 'out'",
                          (r.client_id, in_reply_to)).fetchone()
    stamped = {**values, "operator": row["operator"] if row is not None else None}
    cur.execute(_insert_sql("chat_messages", tuple(stamped)), tuple(stamped.values()))
    return cur.rowcount == 1


def _command_operator(r: Record, cur: sqlite3.Cursor) -> str | None:
    """Who sent the command ``r`` reports on (``data["command"]``, addressed to
    ``r``'s agent), as the broker recorded it. Not known yet: :class:`_NotYet`
    (resent later) until :data:`OPERATOR_WAIT_S`, then None. What the body
    says about the operator is never used."""
    command = r.data.get("command")
    if type(command) is not str or not 0 < len(command) <= MAX_ID_CHARS:
        return None
    row = cur.execute("SELECT operator FROM commands WHERE id = ? AND client_id = ?", (command, r.client_id)).fetchone()
    if row is not None and row["operator"]:
        return row["operator"]
    if time.time() - r.ts < OPERATOR_WAIT_S:
        raise _NotYet(f"command {command!r} to {r.client_id!r} not known yet: its operator cannot be named")
    return None


def _mark_unverified(r: Record, table: str, cur: sqlite3.Cursor) -> None:
    """A security event beside a row stored with no operator: nobody vouches for who did it."""
    detail = {"table": table, "msg_id": r.msg_id, "command": r.data.get("command") if type(r.data.get("command")) is str else None,
              "detail": "no command of this agent's names the operator: stored with operator NULL"}
    cur.execute(
        "INSERT OR IGNORE INTO security_events (origin, client_id, subject, msg_id, ts, event, severity, detail)"
        " VALUES ('persister', NULL, ?, ?, ?, 'unverified_operator', 'warning', ?)",
        (r.client_id, f"unverified:{r.client_id}:{r.msg_id}", r.ts, _pack(detail)),
    )


def _apply_online(r: Record, facts: dict, label: str | None, cur: sqlite3.Cursor) -> bool:
    cur.execute(
        "INSERT OR IGNORE INTO sessions (client_id, msg_id, started, logged_in_user) VALUES (?, ?, ?, ?)",
        (r.client_id, r.msg_id, r.ts, facts["logged_in_user"]),
    )
    if cur.rowcount == 0:
        return False
    session = cur.lastrowid
    # an earlier session whose offline never arrived ends where this one starts
    cur.execute(
        "UPDATE sessions SET ended = ?, end_reason = 'superseded'"
        " WHERE client_id = ? AND ended IS NULL AND started <= ? AND id != ?",
        (r.ts, r.client_id, r.ts, session),
    )
    # a late (replayed) online: a newer session already exists
    newer = cur.execute(
        "SELECT min(started) FROM sessions WHERE client_id = ? AND started > ?", (r.client_id, r.ts)
    ).fetchone()[0]
    if newer is not None:
        cur.execute("UPDATE sessions SET ended = ?, end_reason = 'superseded' WHERE id = ?", (newer, session))
    cur.execute(
        "UPDATE clients SET online = 1, presence_ts = ?, logged_in_user = coalesce(?, logged_in_user),"
        " hostname = coalesce(?, hostname), os = coalesce(?, os), version = coalesce(?, version),"
        " label = CASE WHEN label = '' THEN coalesce(?, '') ELSE label END"
        " WHERE client_id = ? AND (presence_ts IS NULL OR presence_ts <= ?)",
        (r.ts, facts["logged_in_user"], facts["hostname"], facts["os"], facts["version"], label, r.client_id, r.ts),
    )
    return True


def _apply_offline(r: Record, reason: str | None, cur: sqlite3.Cursor) -> bool:
    if cur.execute(
        "SELECT 1 FROM sessions WHERE client_id = ? AND end_msg_id = ?", (r.client_id, r.msg_id)
    ).fetchone():
        return False
    latest = cur.execute(
        "SELECT id, end_msg_id FROM sessions WHERE client_id = ? AND started <= ? ORDER BY started DESC, id DESC LIMIT 1",
        (r.client_id, r.ts),
    ).fetchone()
    if latest is not None and latest["end_msg_id"] is None:
        cur.execute(
            "UPDATE sessions SET ended = ?, end_reason = ?, end_msg_id = ? WHERE id = ?",
            (r.ts, reason or "offline", r.msg_id, latest["id"]),
        )
    cur.execute(
        "UPDATE clients SET online = 0, presence_ts = ? WHERE client_id = ? AND (presence_ts IS NULL OR presence_ts <= ?)",
        (r.ts, r.client_id, r.ts),
    )
    return True


def _apply_command_status(values: dict, cur: sqlite3.Cursor) -> bool:
    row = cur.execute("SELECT client_id, status, result FROM commands WHERE id = ?", (values["id"],)).fetchone()
    if row is None:
        names = ", ".join(values)
        cur.execute(f"INSERT INTO commands ({names}) VALUES ({', '.join('?' * len(values))})", tuple(values.values()))
        return True
    if row["client_id"] != values["client_id"]:
        raise _Reject(f"command {values['id']} belongs to {row['client_id']}, not {values['client_id']}")
    if values["operator"] is not None:  # the broker's record of its sender, whenever it arrives
        cur.execute("UPDATE commands SET operator = ? WHERE id = ? AND operator IS NULL", (values["operator"], values["id"]))
    old, new = _COMMAND_RANK[row["status"]], _COMMAND_RANK[values["status"]]
    if new <= old:
        # same stage (or a second final status): only a missing result is news
        if values["result"] is None or row["result"] is not None:
            return False
        cur.execute(
            "UPDATE commands SET result = ?, updated = ? WHERE id = ?",
            (values["result"], values["updated"], values["id"]),
        )
        return True
    cur.execute(
        "UPDATE commands SET status = ?, updated = ?, result = coalesce(?, result),"
        " name = CASE WHEN name = '' THEN ? ELSE name END, operator = coalesce(operator, ?),"
        " args = coalesce(args, ?) WHERE id = ?",
        (
            values["status"],
            values["updated"],
            values["result"],
            values["name"],
            values["operator"],
            values["args"],
            values["id"],
        ),
    )
    return True


def _apply_sysinfo(r: Record, facts: dict, metrics: dict, packed: bytes, cur: sqlite3.Cursor) -> bool:
    cur.execute(
        "INSERT OR IGNORE INTO metrics (client_id, msg_id, ts, cpu_percent, memory_percent, disk_percent)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (r.client_id, r.msg_id, r.ts, metrics["cpu_percent"], metrics["memory_percent"], metrics["disk_percent"]),
    )
    if cur.rowcount == 0:
        return False
    cur.execute(
        "UPDATE clients SET hostname = coalesce(?, hostname), os = coalesce(?, os),"
        " os_version = coalesce(?, os_version), logged_in_user = coalesce(?, logged_in_user),"
        " version = coalesce(?, version), last_sysinfo = ?, sysinfo_ts = ?"
        " WHERE client_id = ? AND (sysinfo_ts IS NULL OR sysinfo_ts <= ?)",
        (
            facts["hostname"],
            facts["os"],
            facts["os_version"],
            facts["logged_in_user"],
            facts["version"],
            packed,
            r.ts,
            r.client_id,
            r.ts,
        ),
    )
    return True


def _apply_chat_update(r: Record, ref: str, status: str | None, deleted: bool, cur: sqlite3.Cursor) -> bool:
    row = cur.execute(
        "SELECT id, status, deleted FROM chat_messages WHERE client_id = ? AND msg_id = ?", (r.client_id, ref)
    ).fetchone()
    if row is None:
        why = f"no chat message {ref!r} from {r.client_id!r} to update"
        if time.time() - r.ts < CHAT_UPDATE_WAIT_S:  # it may still be on its way (resent later)
            raise _NotYet(why + " yet")
        raise _Reject(why)
    changed = False
    if status is not None and _CHAT_RANK[status] > _CHAT_RANK[row["status"]]:
        cur.execute("UPDATE chat_messages SET status = ?, status_ts = ? WHERE id = ?", (status, r.ts, row["id"]))
        changed = True
    if deleted and not row["deleted"]:
        cur.execute("UPDATE chat_messages SET deleted = 1 WHERE id = ?", (row["id"],))
        changed = True
    return changed


# -- small helpers ----------------------------------------------------------------
def _thumbnail(image: bytes) -> tuple[bytes | None, str | None]:
    """(preview JPEG, None) or (None, why there is none)."""
    try:
        return make_thumbnail(image), None
    except ThumbnailError as exc:
        return None, str(exc)


@functools.lru_cache(maxsize=64)
def _insert_sql(table: str, names: tuple[str, ...]) -> str:
    return f"INSERT OR IGNORE INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"


def _text(data: dict, key: str, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise _Reject(f"data[{key!r}] is missing")
        return None
    if type(value) is not str:
        raise _Reject(f"data[{key!r}] must be a string, not {type(value).__name__}")
    return value


def _number(data: dict, key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if type(value) not in (int, float) or not math.isfinite(value):
        raise _Reject(f"data[{key!r}] must be a finite number, not {type(value).__name__}")
    return float(value)


def _integer(data: dict, key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if type(value) is not int or not -(2**63) <= value < 2**63:
        raise _Reject(f"data[{key!r}] must be a 64-bit integer, not {type(value).__name__}")
    return value


def _pack(value: Any) -> bytes:
    try:
        return pack_body(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _Reject(f"data cannot be stored as msgpack: {exc}") from None


def _view(kind: str) -> _View:
    if type(kind) is not str or kind not in VIEWS:
        raise ValueError(f"unknown history kind {bounds.shown(kind)}; one of {', '.join(VIEWS)}")
    return VIEWS[kind]


def _order(order: str) -> str:
    if type(order) is not str or order.lower() not in ("asc", "desc"):
        raise ValueError(f"order must be 'asc' or 'desc', not {bounds.shown(order)}")
    return order.upper()


def _limit(limit: int) -> int:
    """An int64 limit clamped to 1..MAX_LIMIT (so -1 is 1 row, not SQLite's "no limit")."""
    return bounds.limit(limit, "limit", 100, 1, MAX_LIMIT)


def _key(view: _View, before_id: Any) -> int | str:
    """A paging cursor: an int64 row id, or (clients, commands) a plain id string."""
    if view.key_type is int:
        return bounds.int64(before_id, "before_id")
    return bounds.text(before_id, "before_id", MAX_ID_CHARS)


#: longest ``text`` to search for
MAX_NEEDLE_CHARS = 200


def _needle(view: _View, text: str | None) -> str | None:
    """The text to search for, or None. A NUL is refused: SQLite's LIKE
    stops reading its pattern there, so "\\0" would match every row."""
    if text is None or text == "":
        return None
    bounds.text(text, "text", MAX_NEEDLE_CHARS)
    if not view.text:
        raise ValueError(f"{view.table} has no text to search")
    return text


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _contains(value: Any, needle: str) -> bool:
    """Case-insensitive substring search through strings, lists and dicts,
    without recursion and bounded (see :func:`broker.bounds.iter_strings`)."""
    folded = needle.casefold()
    return any(folded in s.casefold() for s in bounds.iter_strings(value))


def _primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF
    text = str(exc).lower()
    for fragment, fallback in _UNAVAILABLE_TEXT:
        if fragment in text:
            return fallback
    return None
