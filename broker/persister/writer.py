"""Batched, deduplicated writes: one transaction per batch.

:meth:`Writer.write_batch` takes :class:`~broker.persister.tables.Record` s,
has :class:`~broker.persister.prepare.Preparer` validate each one (rejects
are returned with a reason, never dropped silently and never abort the
batch) and writes the rest in one transaction, deduplicated by
``(client_id, msg_id)``: runs of plain inserts into one table go as one
``executemany``, the rest through their appliers
(:mod:`~broker.persister.apply`). If one record breaks the transaction the
batch is redone record by record, each in a savepoint. Disk full, read-only
or I/O errors roll the whole transaction back and raise
:class:`~broker.persister.tables.StoreUnavailable`: nothing of the batch is
written, so the caller acknowledges nothing and retries later.

Where records go
----------------
``data`` keys in brackets; all optional unless marked *:

* ``log`` -> ``client_logs`` [level, logger, message*]
* ``security`` -> ``security_events`` [event*, severity, the rest as
  detail]; ``client_id`` "" or "broker" (:data:`BROKER_IDS`) means
  the broker (or a service naming itself in ``origin``) reported it,
  and ``data["client_id"]`` is then the client it concerns (see
  :mod:`~broker.persister.schema`); other kinds refuse those ids
* ``audit`` -> ``audit_trail`` [operator*, role, action*, target,
  reason, operator_name, via, detail]; ``target``, ``reason``,
  ``operator_name`` and ``via`` default to those in detail
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
A client that is not known yet gets a ``clients`` row.
"""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Iterable

from broker.persister.apply import _Op
from broker.persister.crypto import SecurityManager
from broker.persister.prepare import Preparer
from broker.persister.tables import Rejected, Record, StoredBatch, StorePart, _NotYet, _Reject

log = logging.getLogger(__name__)

# per-record data problems SQLite reports while binding or checking
_RECORD_ERRORS = (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError, OverflowError)


class Writer(StorePart):
    """The store's writing side (see the module docstring)."""

    def __init__(self, db: sqlite3.Connection, path: Path, crypto: SecurityManager):
        super().__init__(db, path, crypto)
        self._preparer = Preparer(crypto)

    def write_batch(self, records: Iterable[Record]) -> StoredBatch:
        """Store ``records`` in one transaction, deduplicated; see :class:`StoredBatch`.

        Where each kind goes, whose operator a record names, and what counts
        as new, duplicate or waiting: the module docstring. Raises
        :class:`StoreUnavailable` (nothing written) when the database cannot
        be written.
        """
        result = StoredBatch()
        ops: list[_Op] = []
        for record in records:
            try:
                ops.append(self._preparer.prepare(record))
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
