"""What is still to be sent, kept on disk: ``DATA/alerts-outbox.db`` (SQLite, mode 0600).

One row is one message for one channel: a single notice, or a digest of
several (``why`` says why they were held). A row is

* ``held`` until ``hold_until`` (quiet hours): :meth:`DeliveryOutbox.release_held`
  folds every held row of a channel whose window has ended into ONE ``due``
  digest;
* ``due`` from ``next_try`` on: the channel's worker sends it;
* ``sent`` when the channel took it, or ``gave_up`` after the last attempt
  (kept, with the last error, for the log and the operator; sent rows are
  pruned after :data:`KEEP_SENT_S`, given-up ones never).

A row leaves ``due`` only once its channel has taken it, so a notice
survives a restart and an unreachable server; a crash in the middle of a
send may send that one message twice (at least once, never lost).

De-duplication: ``last_accepted`` remembers per channel and notice key the
fingerprint (state, severity, title) of the last notice accepted, so the
same notice told again is not queued again, while a key that resolves and
opens again is.
"""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from broker.core.sqlite_db import connect

HELD, DUE, SENT, GAVE_UP = "held", "due", "sent", "gave_up"
#: what :meth:`DeliveryOutbox.add` did with a notice
QUEUED, DUPLICATE = "queued", "duplicate"
KEEP_SENT_S = 7 * 86400.0
PRUNE_EVERY_S = 3600.0
QUIET_HOURS_WHY = "held during quiet hours"
STORM_WHY = "waiting at once"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox(
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    notices TEXT NOT NULL,
    why TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    hold_until REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    done_at REAL);
CREATE INDEX IF NOT EXISTS outbox_by_status ON outbox(channel, status, next_try);
CREATE TABLE IF NOT EXISTS last_accepted(
    channel TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    PRIMARY KEY(channel, key));
"""


@dataclass(frozen=True)
class OutboxRow:
    """One message for one channel as the outbox keeps it."""

    id: int
    channel: str
    notices: list[dict]
    why: str
    status: str
    attempts: int
    next_try: float
    last_error: str


class DeliveryOutbox:
    """The durable queue between :meth:`Dispatcher.notify` and the channel workers (thread-safe)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._db = connect(self.path)
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._pruned_at = float("-inf")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One writer at a time, all or nothing (the connection is in autocommit mode)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def add(self, channel: str, notice: dict, now: float, hold_until: float | None = None, dedupe: bool = True) -> str:
        """Queue ``notice`` for ``channel`` (held until ``hold_until`` if given): QUEUED, HELD or DUPLICATE."""
        fingerprint = json.dumps([notice["state"], notice["severity"], notice["title"]])
        with self._transaction():
            if dedupe:
                seen = self._db.execute("SELECT fingerprint FROM last_accepted WHERE channel=? AND key=?",
                                        (channel, notice["key"])).fetchone()
                if seen and seen[0] == fingerprint:
                    return DUPLICATE
                self._db.execute("INSERT OR REPLACE INTO last_accepted(channel, key, fingerprint) VALUES (?,?,?)",
                                 (channel, notice["key"], fingerprint))
            status = DUE if hold_until is None else HELD
            self._db.execute("INSERT INTO outbox(channel, notices, status, hold_until, next_try, created) "
                             "VALUES (?,?,?,?,?,?)", (channel, _dump([notice]), status, hold_until, now, now))
        return QUEUED if status == DUE else HELD

    def release_held(self, now: float) -> list[str]:
        """Fold each channel's held rows whose window has ended into one due digest; the channels released.

        Also forgets sent rows older than :data:`KEEP_SENT_S` (at most once an hour).
        """
        if now - self._pruned_at > PRUNE_EVERY_S:
            self._pruned_at = now
            with self._transaction():
                self._db.execute("DELETE FROM outbox WHERE status=? AND done_at<?", (SENT, now - KEEP_SENT_S))
        if not self._any("SELECT 1 FROM outbox WHERE status=? AND hold_until<=? LIMIT 1", (HELD, now)):
            return []
        with self._transaction():
            rows = self._db.execute("SELECT id, channel, notices FROM outbox WHERE status=? AND hold_until<=? "
                                    "ORDER BY id", (HELD, now)).fetchall()
            return self._fold(rows, QUIET_HOURS_WHY, now)

    def collapse_storm(self, channel: str, over: int, now: float) -> bool:
        """More than ``over`` single notices due on ``channel``: they become one digest (True if so)."""
        if not self._any("SELECT 1 FROM outbox WHERE channel=? AND status=? AND why='' LIMIT 1 OFFSET ?",
                         (channel, DUE, over)):
            return False  # a read only: nothing to write on the usual tick
        with self._transaction():
            rows = self._db.execute("SELECT id, channel, notices FROM outbox WHERE channel=? AND status=? "
                                    "AND why='' ORDER BY id", (channel, DUE)).fetchall()
            return bool(self._fold(rows, STORM_WHY, now)) if len(rows) > over else False

    def _any(self, sql: str, args: tuple) -> bool:
        with self._lock:
            return self._db.execute(sql, args).fetchone() is not None

    def _fold(self, rows: list, why: str, now: float) -> list[str]:
        """Replace ``rows`` by one due digest per channel (inside the caller's transaction)."""
        by_channel: dict[str, list] = {}
        for row in rows:
            by_channel.setdefault(row["channel"], []).append(row)
        for channel, group in by_channel.items():
            notices = [notice for row in group for notice in json.loads(row["notices"])]
            self._db.executemany("DELETE FROM outbox WHERE id=?", [(row["id"],) for row in group])
            self._db.execute("INSERT INTO outbox(channel, notices, why, status, next_try, created) VALUES (?,?,?,?,?,?)",
                             (channel, _dump(notices), why, DUE, now, now))
        return list(by_channel)

    def due(self, channel: str, now: float, limit: int = 20) -> list[OutboxRow]:
        """The oldest rows of ``channel`` due at ``now``."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM outbox WHERE channel=? AND status=? AND next_try<=? ORDER BY id LIMIT ?",
                                    (channel, DUE, now, limit)).fetchall()
        return [_row(r) for r in rows]

    def mark_sent(self, row_id: int, now: float) -> None:
        with self._transaction():
            self._db.execute("UPDATE outbox SET status=?, attempts=attempts+1, done_at=? WHERE id=?", (SENT, now, row_id))

    def mark_failed(self, row_id: int, error: str, next_try: float | None, now: float) -> None:
        """Count a failed attempt: try again at ``next_try``, or give up (and keep the row) when None."""
        with self._transaction():
            if next_try is None:
                self._db.execute("UPDATE outbox SET status=?, attempts=attempts+1, last_error=?, done_at=? WHERE id=?",
                                 (GAVE_UP, error[:1000], now, row_id))
            else:
                self._db.execute("UPDATE outbox SET attempts=attempts+1, last_error=?, next_try=? WHERE id=?",
                                 (error[:1000], next_try, row_id))

    def rows(self, channel: str | None = None, status: str | None = None) -> list[OutboxRow]:
        """Every row (of ``channel``, with ``status``), oldest first: for status views and tests."""
        sql, args = "SELECT * FROM outbox WHERE 1=1", []
        if channel is not None:
            sql, args = sql + " AND channel=?", args + [channel]
        if status is not None:
            sql, args = sql + " AND status=?", args + [status]
        with self._lock:
            return [_row(r) for r in self._db.execute(sql + " ORDER BY id", args).fetchall()]

    def waiting_by_channel(self) -> dict[str, int]:
        """How many rows each channel has still to send (held or due)."""
        with self._lock:
            return {r[0]: r[1] for r in self._db.execute(
                "SELECT channel, COUNT(*) FROM outbox WHERE status IN (?, ?) GROUP BY channel", (HELD, DUE))}

    def counts(self) -> dict[str, int]:
        """How many rows are in each status."""
        with self._lock:
            return {r[0]: r[1] for r in self._db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status")}


def _dump(notices: list[dict]) -> str:
    return json.dumps(notices, sort_keys=True, default=str)


def _row(r) -> OutboxRow:
    return OutboxRow(id=r["id"], channel=r["channel"], notices=json.loads(r["notices"]), why=r["why"],
                     status=r["status"], attempts=r["attempts"], next_try=r["next_try"], last_error=r["last_error"])
