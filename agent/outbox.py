"""The agent's durable outbox: records stay on disk until the store has them.

Events, logs and security events are the "at least once, deduplicated"
traffic of the design brief. The agent puts every such record here first,
sends what :meth:`Outbox.due` hands it, and deletes a record only when the
persister's ACK says it is committed. Records sent but not acknowledged
within ``resend_after_s`` are sent again (the store deduplicates by agent
and message id, so a resend is harmless); :meth:`Outbox.requeue_all` makes
everything due at once after a reconnect.

Durability
----------
One SQLite file per agent (it must not be shared with other tables; the
outbox holds an exclusive lock on it while open), opened through
:func:`broker.sqlite_db.connect`: WAL journal, ``synchronous=NORMAL``.
A record is committed when :meth:`Outbox.put` returns, so it survives the
agent being killed or crashing (the kernel still has the write). A power
loss may lose the last few transactions; those records were never
acknowledged by the server either, so they are lost, not stored twice,
and ``synchronous=FULL`` would cost an fsync on every put for that case.

At rest
-------
A record's body (chat text, file-operation records with paths, log lines)
is sealed with the agent's local key (:mod:`agent.local_keys`), bound to
its message id, from :meth:`Outbox.put` until the ack deletes it; kind,
topic, class and times stay plain for the queue's own work. A file written
by an older agent (schema 1, bodies in clear) is sealed on open, and the
clear copies wiped. Sizes and limits count the body as given.

Priority classes and the full-outbox policy
-------------------------------------------
Every record has a class (:class:`Priority`):

* ``security``: every ``Kind.SECURITY`` record, and only those;
* ``important``: log records at WARNING and above (:func:`log_priority`),
  command-related events; the caller says so;
* ``routine``: everything else (periodic telemetry such as sysinfo,
  DEBUG/INFO logs). The default for ``Kind.EVENT`` and ``Kind.LOG``.

The outbox holds at most ``max_records`` records and ``max_bytes`` bytes
(body + topic + :data:`RECORD_OVERHEAD_BYTES` per record, close to the space
a record takes in the file). When adding records would exceed either limit,
the outbox, counting the records being added, drops:

1. the oldest ``routine`` records first,
2. then the oldest ``important`` records,
3. never a ``security`` record.

If the outbox holds only security records and is still full, a new security
record is stored anyway, over the limit (logged as an error), rather than
lost; a new routine or important record is refused: :class:`OutboxFull`.
Every dropped or refused record is counted per class;
:meth:`Outbox.take_drop_report` returns and resets the counts gathered since
the last call (they are kept in the file, so a restart does not lose them),
for the agent to send as one ``outbox_overflow`` security event.
"""
from __future__ import annotations

import enum
import logging
import operator
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from agent.local_keys import local_keyring
from broker import sqlite_db
from broker.envelope import BAD_MSG_ID, DEFAULT_MAX_BODY_BYTES, Kind, is_msg_id, new_id
from broker.errors import EmsError
from broker.sealing import KeyRing, TamperedValue, aad

log = logging.getLogger(__name__)

MiB = 1024 * 1024
#: Per-record allowance for id, columns and index entries in ``max_bytes``.
RECORD_OVERHEAD_BYTES = 80
#: Schema version kept in ``PRAGMA user_version`` (2: bodies sealed).
SCHEMA_VERSION = 2
#: Overflow is logged at most this often (the log may itself be shipped).
_OVERFLOW_LOG_INTERVAL_S = 60.0
#: Ids per ``IN (...)`` list on ack.
_ID_CHUNK = 500


class OutboxError(EmsError):
    """The outbox file cannot be opened, read or written."""

    def __init__(self, message: str, path: Path | None = None):
        super().__init__(message)
        self.path = path


class OutboxCorrupt(OutboxError):
    """The outbox file is not a readable SQLite database (or not an outbox)."""


class OutboxFull(OutboxError):
    """Routine or important records refused: the outbox holds only security records.

    ``stored`` lists the ids of the records of the same call that were kept
    (security records are never refused); ``refused`` counts the others.
    """

    def __init__(self, message: str, path: Path, stored: list[str], refused: int):
        super().__init__(message, path)
        self.stored = stored
        self.refused = refused


class Priority(enum.IntEnum):
    """Record classes, in the order the full-outbox policy drops them."""

    ROUTINE = 0
    IMPORTANT = 1
    SECURITY = 2

    @property
    def label(self) -> str:
        return self.name.lower()


def log_priority(levelno: int) -> Priority:
    """The class of a log record: WARNING and above are important."""
    return Priority.IMPORTANT if levelno >= logging.WARNING else Priority.ROUTINE


_DEFAULT_CLASS = {Kind.EVENT: Priority.ROUTINE, Kind.LOG: Priority.ROUTINE, Kind.SECURITY: Priority.SECURITY}
_EVICTABLE = (Priority.ROUTINE, Priority.IMPORTANT)


@dataclass(slots=True)
class OutboxRecord:
    """One stored record, as :meth:`Outbox.due` hands it to the sender."""

    msg_id: str
    kind: Kind
    topic: str
    body: bytes
    priority: Priority
    created: float
    sent_at: float | None
    attempts: int


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS outbox (
        seq      INTEGER PRIMARY KEY,
        msg_id   TEXT NOT NULL,
        kind     INTEGER NOT NULL,
        topic    TEXT NOT NULL,
        body     BLOB NOT NULL,
        priority INTEGER NOT NULL,
        created  REAL NOT NULL,
        size     INTEGER NOT NULL,
        sent_at  REAL,
        attempts INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS outbox_msg_id ON outbox (msg_id)",
    # the overflow policy picks the oldest record of a class
    "CREATE INDEX IF NOT EXISTS outbox_priority ON outbox (priority)",
    # in-flight count and stale records; records not yet sent (NULL) cost nothing here
    "CREATE INDEX IF NOT EXISTS outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL",
    # records never sent, oldest first, without walking past those in flight
    "CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (seq) WHERE sent_at IS NULL",
    """CREATE TABLE IF NOT EXISTS drops (
        priority   INTEGER PRIMARY KEY,
        unreported INTEGER NOT NULL DEFAULT 0,
        total      INTEGER NOT NULL DEFAULT 0
    )""",
    "INSERT OR IGNORE INTO drops (priority) VALUES (0), (1), (2)",
)
_TABLES = {"outbox", "drops"}
_INSERT = "INSERT INTO outbox (msg_id, kind, topic, body, priority, created, size) VALUES (?, ?, ?, ?, ?, ?, ?)"
_COLUMNS = "msg_id, kind, topic, body, priority, created, sent_at, attempts"
# due records: never sent, or sent at least resend_after_s ago (or in the future).
# Each walks its own index (O(records returned), however many are in flight).
_UNSENT = f"SELECT seq, {_COLUMNS} FROM outbox INDEXED BY outbox_unsent WHERE sent_at IS NULL ORDER BY seq LIMIT ?"
_STALE = f"SELECT seq, {_COLUMNS} FROM outbox INDEXED BY outbox_sent_at WHERE sent_at<=? OR sent_at>? ORDER BY seq LIMIT ?"
_KIND_OF = {int(k): k for k in Kind}
_PRIORITY_OF = tuple(Priority)  # indexed by value
_seq_of = operator.itemgetter(0)
# row tuple positions (see _INSERT)
_ID, _BODY, _PRIO, _SIZE = 0, 3, 4, 6
#: associated data of a sealed body: this prefix, then its message id (the last
#: part, so it needs no length)
_AAD = aad("outbox", "body") + b":"


class Outbox:
    """A durable queue of records waiting for the store's acknowledgement.

    Safe to share between threads (one lock); one process per file: the
    file stays locked while open, and a second opener gets an
    :class:`OutboxError` (after ``sqlite_db.connect``'s 10 s busy wait).
    """

    def __init__(
        self,
        path: Path,
        max_records: int = 200_000,
        max_bytes: int = 256 * MiB,
        resend_after_s: float = 10.0,
        window: int = 5_000,
        clock: Callable[[], float] = time.time,
        keyring: KeyRing | None = None,
    ):
        if max_records < 1 or max_bytes < 1 or window < 1 or resend_after_s <= 0:
            raise ValueError("max_records, max_bytes, window and resend_after_s must be positive")
        self.path = Path(path)
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.resend_after_s = resend_after_s
        self.window = window
        self._clock = clock
        self._keyring = keyring or local_keyring(self.path)
        self._lock = threading.Lock()
        self._count = [0, 0, 0]  # records per Priority
        self._bytes = [0, 0, 0]
        self._next_overflow_log = float("-inf")
        self._db: sqlite3.Connection | None = None
        try:
            self._db = sqlite_db.connect(self.path)
            self._open()
        except (sqlite3.Error, OutboxError) as exc:
            if self._db is not None:
                self._db.close()
            if isinstance(exc, OutboxError):
                raise
            raise self._failure("open", exc) from exc

    def _open(self) -> None:
        db = self._db
        # One writer, one process: counters live in memory, so nobody else may write.
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        db.execute("BEGIN IMMEDIATE")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise OutboxError(
                f"the outbox {self.path} was written by a newer EMS agent (schema {version}, "
                f"this agent knows {SCHEMA_VERSION}); upgrade this agent or move the file aside",
                self.path,
            )
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        foreign = tables - _TABLES
        if foreign:
            raise OutboxCorrupt(
                f"{self.path} holds other tables ({', '.join(sorted(foreign))}); the outbox needs a "
                "file of its own (for example outbox.db in the agent's data directory)",
                self.path,
            )
        for statement in _SCHEMA:
            db.execute(statement)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        for prio, count, size in db.execute("SELECT priority, count(*), total(size) FROM outbox GROUP BY priority"):
            self._count[prio] = count
            self._bytes[prio] = int(size)
        db.execute("COMMIT")
        if version < SCHEMA_VERSION and sum(self._count):
            self._seal_clear_bodies()
        log.debug("outbox %s open: %d records, %d bytes", self.path, sum(self._count), sum(self._bytes))

    def _seal_clear_bodies(self) -> None:
        """Seal the bodies an older agent kept in clear (schema 1), wiping the clear copies."""
        rows = self._db.execute("SELECT msg_id, body, seq FROM outbox").fetchall()
        sqlite_db.overwrite(self._db, "UPDATE outbox SET body=? WHERE seq=?",
                            [(self._seal(body, msg_id), seq) for msg_id, body, seq in rows])
        log.warning("outbox %s: sealed %d records an older agent kept in clear", self.path, len(rows))

    def _sealed(self, rows: list[tuple]) -> list[tuple]:
        """``rows`` with their bodies sealed, each bound to its message id."""
        sealed = self._keyring.encrypt_many([(row[_BODY], _AAD + row[_ID].encode()) for row in rows])
        return [(r[0], r[1], r[2], body, r[4], r[5], r[6]) for r, body in zip(rows, sealed)]  # body is _BODY

    def _seal(self, body: bytes, msg_id: str) -> bytes:
        return self._keyring.encrypt(body, _AAD + msg_id.encode())

    def _unseal(self, body: bytes, msg_id: str) -> bytes:
        try:
            return self._keyring.decrypt(body, _AAD + msg_id.encode())
        except TamperedValue as exc:
            raise OutboxCorrupt(f"the outbox {self.path}: record {msg_id} cannot be decrypted ({exc}); "
                                "was the agent's keys/local-keys.json replaced?", self.path) from exc

    def close(self) -> None:
        """Close the file. Everything put so far is already committed."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- adding ---------------------------------------------------------

    def put(self, kind: Kind, topic: str, body: bytes, priority: Priority | str | None = None) -> str:
        """Store one record; it is durable when this returns. Its new message id.

        On a full outbox a new routine record may itself be the oldest
        routine record, and so the one dropped (counted like any drop).
        """
        return self.put_many([(kind, topic, body, priority)])[0]

    def put_many(self, items: Iterable[tuple]) -> list[str]:
        """Store ``(kind, topic, body[, priority[, msg_id]])`` items in one transaction.

        An item may bring its own message id (a generator that must not
        create the same record twice across its own restarts); an id already
        in the outbox is then skipped, and not returned.

        Returns their message ids, in order. When the outbox is full the
        policy in the module docstring applies, to the outbox as it would
        be with the whole batch added (a batch's own routine records can be
        dropped by it). If routine or important items are refused,
        :class:`OutboxFull` is raised after the rest of the batch (its
        security records) is committed; ``exc.stored`` has their ids.
        Raises :class:`OutboxError` if the disk is full; nothing stored
        before is lost then, and nothing of this batch is stored.
        """
        now = self._clock()
        items = list(items)
        rows = self._sealed([_row(item, now) for item in items])
        if not rows:
            return []
        with self._lock:
            db = self._conn()
            if any(len(item) > 4 for item in items):  # caller-chosen ids: a repeat is stored once
                rows = self._without_stored(db, rows)
                if not rows:
                    return []
            added_bytes = sum(row[_SIZE] for row in rows)
            fits = (
                sum(self._count) + len(rows) <= self.max_records and sum(self._bytes) + added_bytes <= self.max_bytes
            )
            if fits:
                with self._transaction("put"):
                    db.executemany(_INSERT, rows)
                for row in rows:
                    self._count[row[_PRIO]] += 1
                    self._bytes[row[_PRIO]] += row[_SIZE]
                return [row[_ID] for row in rows]
            return self._put_overflowing(rows, added_bytes, now)

    def _put_overflowing(self, rows: list[tuple], added_bytes: int, now: float) -> list[str]:
        """Add ``rows`` to a full outbox, dropping by class then age."""
        db = self._db
        excess_n = sum(self._count) + len(rows) - self.max_records
        excess_b = sum(self._bytes) + added_bytes - self.max_bytes
        evict_old: list[tuple[int, int, int]] = []  # (seq, priority, size) of stored records
        evict_new: set[int] = set()  # indexes into rows
        with self._transaction("put"):
            for prio in _EVICTABLE:
                if excess_n <= 0 and excess_b <= 0:
                    break
                cur = db.execute("SELECT seq, size FROM outbox WHERE priority=? ORDER BY seq", (prio,))
                for seq, size in cur:
                    if excess_n <= 0 and excess_b <= 0:
                        break
                    evict_old.append((seq, prio, size))
                    excess_n, excess_b = excess_n - 1, excess_b - size
                cur.close()
                for i, row in enumerate(rows):
                    if excess_n <= 0 and excess_b <= 0:
                        break
                    if row[_PRIO] == prio:
                        evict_new.add(i)
                        excess_n, excess_b = excess_n - 1, excess_b - row[_SIZE]
            new_nonsecurity = sum(1 for row in rows if row[_PRIO] != Priority.SECURITY)
            remaining_nonsecurity = (
                self._count[Priority.ROUTINE] + self._count[Priority.IMPORTANT] - len(evict_old)
                + new_nonsecurity - len(evict_new)
            )
            refused = bool(evict_new) and remaining_nonsecurity == 0
            lost = [0, 0, 0]
            for _seq, prio, _size in evict_old:
                lost[prio] += 1
            for i in evict_new:
                lost[rows[i][_PRIO]] += 1
            kept = [row for i, row in enumerate(rows) if i not in evict_new]
            db.executemany("DELETE FROM outbox WHERE seq=?", [(seq,) for seq, _p, _s in evict_old])
            db.executemany(_INSERT, kept)
            db.executemany(
                "UPDATE drops SET unreported=unreported+?, total=total+? WHERE priority=?",
                [(n, n, prio) for prio, n in enumerate(lost) if n],
            )
        for _seq, prio, size in evict_old:
            self._count[prio] -= 1
            self._bytes[prio] -= size
        for row in kept:
            self._count[row[_PRIO]] += 1
            self._bytes[row[_PRIO]] += row[_SIZE]
        over = excess_n > 0 or excess_b > 0
        self._log_overflow(lost, refused, over, now)
        if refused:
            raise OutboxFull(
                f"the outbox {self.path} is full and holds only security records "
                f"({self._count[Priority.SECURITY]} records, {self._bytes[Priority.SECURITY]} bytes); "
                f"{len(evict_new)} routine/important records refused. The agent must reach the server to drain it.",
                self.path,
                [row[_ID] for row in kept],
                len(evict_new),
            )
        return [row[_ID] for row in rows]

    def _log_overflow(self, lost: list[int], refused: bool, over: bool, now: float) -> None:
        if over:  # security records are never dropped, so this is always worth an error
            log.error(
                "outbox %s is full of security records (%d records, %d bytes): kept the new ones over the limit",
                self.path, sum(self._count), sum(self._bytes),
            )
        if not any(lost) or now < self._next_overflow_log:
            return
        self._next_overflow_log = now + _OVERFLOW_LOG_INTERVAL_S
        log.warning(
            "outbox %s is full (limits %d records, %d bytes): %s %d routine and %d important records "
            "(further drops are counted, not logged, for %.0f s)",
            self.path, self.max_records, self.max_bytes, "refused or dropped" if refused else "dropped",
            lost[Priority.ROUTINE], lost[Priority.IMPORTANT], _OVERFLOW_LOG_INTERVAL_S,
        )

    def _without_stored(self, db: sqlite3.Connection, rows: list[tuple]) -> list[tuple]:
        """Drop rows whose caller-chosen id is already in the outbox (or twice in the batch)."""
        ids = [row[_ID] for row in rows]
        stored: set[str] = set()
        with self._guard("check stored ids"):
            for start in range(0, len(ids), _ID_CHUNK):
                chunk = ids[start : start + _ID_CHUNK]
                marks = ",".join("?" * len(chunk))
                stored.update(r[0] for r in db.execute(f"SELECT msg_id FROM outbox WHERE msg_id IN ({marks})", chunk))
        fresh = []
        for row in rows:
            if row[_ID] not in stored:
                stored.add(row[_ID])
                fresh.append(row)
        return fresh

    def take_drop_report(self) -> dict[str, int]:
        """Records dropped or refused per class since the last call; resets them."""
        with self._lock, self._transaction("take the drop report"):
            db = self._conn()
            report = {Priority(prio).label: n for prio, n in db.execute("SELECT priority, unreported FROM drops")}
            db.execute("UPDATE drops SET unreported=0 WHERE unreported!=0")
        return report

    # -- sending ----------------------------------------------------------

    def due(self, limit: int = 500) -> list[OutboxRecord]:
        """Records to send now, oldest first.

        Never sent, or sent more than ``resend_after_s`` ago without an ack
        (or at a time in the future: the clock was set back). At most
        ``limit``, and at most ``window`` minus the records in flight (sent
        less than ``resend_after_s`` ago). Call :meth:`mark_sent` with the
        ids actually handed to the bus.
        """
        now = self._clock()
        stale = now - self.resend_after_s
        with self._lock, self._guard("read due records"):
            db = self._conn()
            credit = limit
            if sum(self._count) > self.window:  # with fewer records than the window, it cannot bind
                inflight = db.execute("SELECT count(*) FROM outbox WHERE sent_at>? AND sent_at<=?", (stale, now)).fetchone()[0]
                credit = min(limit, self.window - inflight)
            if credit <= 0:
                return []
            rows = db.execute(_UNSENT, (credit,)).fetchall()
            stale_rows = db.execute(_STALE, (stale, now, credit)).fetchall()
        if stale_rows:
            rows = sorted(rows + stale_rows, key=_seq_of)[:credit]
        return [OutboxRecord(r[1], _KIND_OF[r[2]], r[3], self._unseal(r[4], r[1]), _PRIORITY_OF[r[5]], r[6], r[7], r[8])
                for r in rows]

    def mark_sent(self, msg_ids: Iterable[str]) -> None:
        """Record that these ids were handed to the bus now (unknown ids are ignored)."""
        now = self._clock()
        ids = list(dict.fromkeys(msg_ids))
        with self._lock, self._transaction("mark records sent"):
            db = self._conn()
            for start in range(0, len(ids), _ID_CHUNK):
                chunk = ids[start : start + _ID_CHUNK]
                marks = ",".join("?" * len(chunk))
                db.execute(f"UPDATE outbox SET sent_at=?, attempts=attempts+1 WHERE msg_id IN ({marks})", (now, *chunk))

    def ack(self, msg_ids: Iterable[str]) -> int:
        """Delete records the store has committed. The number deleted.

        Unknown ids (already acknowledged, dropped, or never ours) are
        ignored: acks may arrive twice.
        """
        ids = list(dict.fromkeys(msg_ids))
        deleted: list[tuple[int, int]] = []
        with self._lock:
            db = self._conn()
            with self._transaction("delete acknowledged records"):
                for start in range(0, len(ids), _ID_CHUNK):
                    chunk = ids[start : start + _ID_CHUNK]
                    marks = ",".join("?" * len(chunk))
                    deleted += db.execute(
                        f"DELETE FROM outbox WHERE msg_id IN ({marks}) RETURNING priority, size", chunk
                    ).fetchall()
            for prio, size in deleted:
                self._count[prio] -= 1
                self._bytes[prio] -= size
        return len(deleted)

    def requeue_all(self) -> int:
        """Make every unacknowledged record due now (after a reconnect). How many had been sent."""
        with self._lock, self._transaction("requeue records"):
            return self._conn().execute("UPDATE outbox SET sent_at=NULL WHERE sent_at IS NOT NULL").rowcount

    # -- looking --------------------------------------------------------

    @property
    def pending(self) -> int:
        """Records stored (sent or not) awaiting an ack; no disk access."""
        return sum(self._count)

    def stats(self) -> dict[str, Any]:
        """Counts for status displays.

        ``pending``: records stored (sent or not) awaiting an ack;
        ``inflight``: those sent less than ``resend_after_s`` ago;
        ``bytes``: their size as the limits count it; ``by_class``: records
        per class; ``dropped``: records dropped or refused per class over the
        life of this file; ``oldest_age_s``: age of the oldest record (None
        when empty).
        """
        now = self._clock()
        with self._lock, self._guard("read statistics"):
            db = self._conn()
            inflight = db.execute(
                "SELECT count(*) FROM outbox WHERE sent_at>? AND sent_at<=?", (now - self.resend_after_s, now)
            ).fetchone()[0]
            oldest = db.execute("SELECT created FROM outbox ORDER BY seq LIMIT 1").fetchone()
            dropped = {Priority(prio).label: n for prio, n in db.execute("SELECT priority, total FROM drops")}
            return {
                "pending": sum(self._count),
                "inflight": inflight,
                "bytes": sum(self._bytes),
                "by_class": {prio.label: self._count[prio] for prio in Priority},
                "dropped": dropped,
                "oldest_age_s": None if oldest is None else max(0.0, now - oldest[0]),
                "max_records": self.max_records,
                "max_bytes": self.max_bytes,
            }

    # -- plumbing ---------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise OutboxError(f"the outbox {self.path} is closed", self.path)
        return self._db

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Turn SQLite errors into OutboxError, rolling back what is open."""
        try:
            yield
        except sqlite3.Error as exc:
            self._rollback()
            raise self._failure(action, exc) from exc
        except BaseException:
            self._rollback()
            raise

    @contextmanager
    def _transaction(self, action: str) -> Iterator[None]:
        with self._guard(action):
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            yield
            db.execute("COMMIT")

    def _rollback(self) -> None:
        db = self._db
        if db is not None and db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error as exc:  # SQLite may have rolled back already
                log.debug("rollback after a failure: %s", exc)

    def _failure(self, action: str, exc: sqlite3.Error) -> OutboxError:
        """An OutboxError that says what went wrong with the file and what to do."""
        name = getattr(exc, "sqlite_errorname", "") or ""
        path = self.path
        if name in ("SQLITE_NOTADB",) or name.startswith("SQLITE_CORRUPT"):
            return OutboxCorrupt(
                f"the agent's outbox {path} is not a readable SQLite database ({exc}). Stop the agent, "
                f"move the file aside (mv {path} {path}.corrupt, and its -wal and -shm files if present) "
                "and start the agent again: it creates an empty outbox. Records the server had not "
                f"acknowledged are only in the old file; `sqlite3 {path}.corrupt .recover` may retrieve some.",
                path,
            )
        if name == "SQLITE_FULL":
            return OutboxError(
                f"could not {action} in the outbox {path}: the disk is full ({exc}). Records already "
                "in the outbox are kept; free space on that disk and the agent carries on.",
                path,
            )
        if name in ("SQLITE_BUSY", "SQLITE_LOCKED") or name.startswith("SQLITE_BUSY"):
            return OutboxError(
                f"the outbox {path} is in use by another process (is another EMS agent running "
                "with the same data directory?)",
                path,
            )
        if name.startswith(("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_AUTH")):
            return OutboxError(
                f"could not {action} in the outbox {path} ({exc}): check that its directory exists, "
                "that the agent's user may read and write it, and that the disk is healthy",
                path,
            )
        return OutboxError(f"could not {action} in the outbox {path}: {exc}", path)


def _row(item: tuple, now: float) -> tuple:
    """Check one ``(kind, topic, body[, priority[, msg_id]])`` item; its row for _INSERT (body in clear)."""
    kind, topic, body, *rest = item
    priority = rest[0] if rest else None
    msg_id = rest[1] if len(rest) > 1 else None
    if msg_id is not None and not is_msg_id(msg_id):
        raise ValueError(BAD_MSG_ID)
    default = _DEFAULT_CLASS.get(kind)
    if default is None:
        raise ValueError(f"the outbox holds EVENT, LOG and SECURITY records, not {kind!r}")
    if priority is None:
        priority = default
    else:
        try:
            priority = Priority[priority.upper()] if type(priority) is str else Priority(priority)
        except (KeyError, ValueError):
            raise ValueError(f"unknown priority class {priority!r}") from None
        if (priority == Priority.SECURITY) != (default == Priority.SECURITY):
            raise ValueError("the security class is for Kind.SECURITY records, and only for them")
    if type(topic) is not str or not topic:
        raise ValueError("topic must be a non-empty string")
    if type(body) is not bytes:
        body = bytes(body)
    if len(body) > DEFAULT_MAX_BODY_BYTES:
        raise ValueError(f"body of {len(body)} bytes exceeds the bus limit of {DEFAULT_MAX_BODY_BYTES}")
    return (msg_id or new_id(), int(kind), topic, body, int(priority), now, len(body) + len(topic) + RECORD_OVERHEAD_BYTES)
