"""The store's change log: what changed, in commit order, for the sync worker.

``change_log`` holds one row per live row of each table in :data:`SYNCED`
(and one *tombstone* per deleted row): ``(seq, tbl, row_key, deleted)``.
SQLite triggers keep it, in the same transaction as the change itself, so
no writer can forget to: an insert or update of a row moves that row's
entry to a new ``seq`` (``AUTOINCREMENT``: never reused, always growing);
a delete (a retention purge, a client removed with its cascade, which
fires the children's triggers) turns it into a tombstone with a new
``seq``. Reading the entries of one table with ``seq`` above a watermark
therefore gives every row inserted or updated since, and every row
deleted since, each once (:mod:`broker.persister.changes`).

Tombstones are dropped once the sync worker has read past them
(:func:`forget_tombstones`); a sync that fell further behind than that
takes a full snapshot, which removes in MySQL whatever the store no longer
has.

The migration that creates the log numbers every row already stored, so a
store from before it is synced whole, in key order.
"""
from __future__ import annotations

import sqlite3

#: Synced table -> its key column (the row id the sync worker keys MySQL rows by).
SYNCED: dict[str, str] = {
    "clients": "client_id",
    "sessions": "id",
    "screen_captures": "id",
    "chat_messages": "id",
    "file_operations": "id",
    "security_events": "id",
    "client_logs": "id",
    "metrics": "id",
    "audit_trail": "id",
    "commands": "id",
}

_TABLE = """CREATE TABLE IF NOT EXISTS change_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tbl TEXT NOT NULL,
    row_key NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    UNIQUE (tbl, row_key)
)"""
#: (tbl, rowid) order: one table's entries by seq, straight from the index
_INDEX = "CREATE INDEX IF NOT EXISTS change_log_tbl ON change_log (tbl)"


def _trigger(table: str, key: str, event: str) -> str:
    row, deleted = ("OLD", 1) if event == "DELETE" else ("NEW", 0)
    # delete then insert (never INSERT OR REPLACE: an outer INSERT OR IGNORE would turn it into IGNORE);
    # ``+NEW.id`` has no affinity, so the comparison with row_key (none) can use the unique index
    # (with NEW.id's INTEGER affinity it cannot: a scan per write, slower with every row)
    return (
        f"CREATE TRIGGER IF NOT EXISTS change_log_{table}_{event.lower()} AFTER {event} ON {table} BEGIN\n"
        f"  DELETE FROM change_log WHERE tbl = '{table}' AND row_key = +{row}.{key};\n"
        f"  INSERT INTO change_log (tbl, row_key, deleted) VALUES ('{table}', {row}.{key}, {deleted});\n"
        f"END"
    )


def migration_sql() -> str:
    """The log, its triggers, and an entry for every row already stored."""
    statements = [_TABLE, _INDEX]
    for table, key in SYNCED.items():
        statements += [_trigger(table, key, event) for event in ("INSERT", "UPDATE", "DELETE")]
        statements.append(
            f"INSERT OR IGNORE INTO change_log (tbl, row_key, deleted) SELECT '{table}', {key}, 0 FROM {table} ORDER BY rowid"
        )
    return ";\n".join(statements) + ";\n"


def forget_tombstones(conn: sqlite3.Connection, upto: dict[str, int]) -> int:
    """Drop the tombstones of each table at or below its watermark in ``upto``
    (the sync worker has them); return how many went."""
    gone = 0
    for table, seq in upto.items():
        if table in SYNCED and type(seq) is int and seq > 0:
            gone += conn.execute("DELETE FROM change_log WHERE tbl = ? AND seq <= ? AND deleted = 1", (table, seq)).rowcount
    return gone
