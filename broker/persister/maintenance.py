"""Store maintenance: retention purge, deleting a client, hiding a chat
message, and re-encrypting every sealed value with the current key.

Each works in short transactions (purge and rotation in batches), so the
persister's writes are never held up for long, and an interrupted purge or
rotation resumes where it stopped.
"""
from __future__ import annotations

import logging
import math
import sqlite3
import time
from typing import Callable

from broker.persister import schema
from broker.persister.crypto import TamperedValue, aad_for
from broker.persister.tables import ENCRYPTED, PURGE_BATCH, RETENTION, StorePart

log = logging.getLogger(__name__)


class Maintenance(StorePart):
    """The store's upkeep (see the module docstring)."""

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
