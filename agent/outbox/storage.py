"""The outbox's file: its schema and statements, opening (lock, check, migrate) and SQLite errors
turned into :class:`~agent.outbox.records.OutboxError` s that say what to do.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from agent.outbox.records import OutboxCorrupt, OutboxError, Priority
from broker.core.envelope import Kind


#: Schema version kept in ``PRAGMA user_version`` (2: bodies sealed).
SCHEMA_VERSION = 2


SCHEMA = (
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
TABLES = {"outbox", "drops"}
INSERT = "INSERT INTO outbox (msg_id, kind, topic, body, priority, created, size) VALUES (?, ?, ?, ?, ?, ?, ?)"
COLUMNS = "msg_id, kind, topic, body, priority, created, sent_at, attempts"
# due records: never sent, or sent at least resend_after_s ago (or in the future).
# Each walks its own index (O(records returned), however many are in flight).
UNSENT = f"SELECT seq, {COLUMNS} FROM outbox INDEXED BY outbox_unsent WHERE sent_at IS NULL ORDER BY seq LIMIT ?"
STALE = f"SELECT seq, {COLUMNS} FROM outbox INDEXED BY outbox_sent_at WHERE sent_at<=? OR sent_at>? ORDER BY seq LIMIT ?"
KIND_OF = {int(k): k for k in Kind}
PRIORITY_OF = tuple(Priority)  # indexed by value


def open_file(db: sqlite3.Connection, path: Path) -> tuple[int, list[int], list[int]]:
    """Lock ``db`` for this process, check it is an outbox and bring its schema up to date.

    Returns the schema version found, and the records and bytes per class.
    Raises :class:`OutboxError` for a newer agent's file and
    :class:`OutboxCorrupt` for a file that holds other tables.
    """
    records, sizes = [0, 0, 0], [0, 0, 0]
    # One writer, one process: counters live in memory, so nobody else may write.
    db.execute("PRAGMA locking_mode=EXCLUSIVE")
    db.execute("BEGIN IMMEDIATE")
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise OutboxError(
            f"the outbox {path} was written by a newer EMS agent (schema {version}, "
            f"this agent knows {SCHEMA_VERSION}); upgrade this agent or move the file aside",
            path,
        )
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    foreign = tables - TABLES
    if foreign:
        raise OutboxCorrupt(
            f"{path} holds other tables ({', '.join(sorted(foreign))}); the outbox needs a "
            "file of its own (for example outbox.db in the agent's data directory)",
            path,
        )
    for statement in SCHEMA:
        db.execute(statement)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    for prio, count, size in db.execute("SELECT priority, count(*), total(size) FROM outbox GROUP BY priority"):
        records[prio] = count
        sizes[prio] = int(size)
    db.execute("COMMIT")
    return version, records, sizes


def failure(path: Path, action: str, exc: sqlite3.Error) -> OutboxError:
    """An OutboxError that says what went wrong with the file and what to do."""
    name = getattr(exc, "sqlite_errorname", "") or ""
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
