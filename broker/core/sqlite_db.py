"""Opening SQLite databases the same way everywhere.

WAL journal with ``synchronous=NORMAL``: a committed transaction survives
the process being killed (SIGKILL, crash); the last few transactions may be
lost on power failure. That is the deliberate trade for the broker's key
registry and command queue; the event store documents its own choice.

Every database file is private (0600) before SQLite opens it, so that its
``-wal`` and ``-shm`` files, which SQLite creates with the database file's
own mode, are private too (:func:`broker.core.private_files.private_db`).
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from broker.core.private_files import private_db


def connect(path: Path, synchronous: str = "NORMAL", auto_checkpoint: bool = True) -> sqlite3.Connection:
    """Open ``path`` in WAL mode with foreign keys on and a busy timeout.

    ``auto_checkpoint=False`` leaves WAL checkpoints to the caller (see
    :func:`checkpoint`), so that a latency-sensitive loop never pays for one
    in the middle of a request.
    """
    private_db(path)
    conn = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={_checked_sync(synchronous)}")
    conn.execute("PRAGMA foreign_keys=ON")
    if not auto_checkpoint:
        conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


def checkpoint(conn: sqlite3.Connection) -> None:
    """Copy the WAL back into the database without blocking writers (PASSIVE)."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


def _checked_sync(value: str) -> str:
    allowed = ("OFF", "NORMAL", "FULL", "EXTRA")
    if value.upper() not in allowed:
        raise ValueError(f"synchronous must be one of {allowed}")
    return value.upper()


def overwrite(conn: sqlite3.Connection, sql: str, rows: list[tuple]) -> None:
    """Run ``sql`` for each of ``rows`` in one transaction so that the values it
    replaces leave no copy behind: freed space is zeroed (``secure_delete``) and
    the WAL is checkpointed and truncated. For rare rewrites (sealing values an
    older version kept in clear), not for the hot path."""
    conn.execute("PRAGMA secure_delete=ON")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(sql, rows)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.execute("PRAGMA secure_delete=OFF")
