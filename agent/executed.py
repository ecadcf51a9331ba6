"""The agent's record of executed command ids: each runs at most once.

A command id seen before is answered from this record instead of being run
again, so re-delivery after a broker or agent restart is harmless.
"""
from __future__ import annotations

import time
from pathlib import Path

from broker import sqlite_db
from broker.command_queue import EPHEMERAL_RESULTS, outcome_only
from broker.envelope import pack_body, unpack_body

_SCHEMA = """
CREATE TABLE IF NOT EXISTS executed (
    id      TEXT PRIMARY KEY,
    name    TEXT NOT NULL,
    started REAL NOT NULL,
    result  BLOB
);
"""


class ExecutedCommands:
    """Command ids this agent has started, and their results once known."""

    def __init__(self, path: Path):
        self._db = sqlite_db.connect(path, synchronous="FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def claim(self, cmd_id: str, name: str) -> bool:
        """Record that ``cmd_id`` starts now. False if it was seen before."""
        cur = self._db.execute(
            "INSERT OR IGNORE INTO executed (id, name, started) VALUES (?, ?, ?)", (cmd_id, name, time.time())
        )
        return cur.rowcount == 1

    def finish(self, cmd_id: str, result: dict) -> None:
        """Keep the result (large binary values, e.g. downloaded file data, as their size only;
        of a screen thumbnail only its outcome)."""
        row = self._db.execute("SELECT name FROM executed WHERE id=?", (cmd_id,)).fetchone()
        kept = outcome_only(result) if row is not None and row["name"] in EPHEMERAL_RESULTS else _without_bulk(result)
        self._db.execute("UPDATE executed SET result=? WHERE id=?", (pack_body(kept), cmd_id))

    def result_of(self, cmd_id: str) -> dict | None:
        """The stored result; an interrupted run reports that it was interrupted."""
        row = self._db.execute("SELECT result FROM executed WHERE id=?", (cmd_id,)).fetchone()
        if row is None:
            return None
        if row["result"] is None:
            return {"ok": False, "error": "the agent stopped while running this command; not run again"}
        return unpack_body(row["result"])

    def purge_older_than(self, seconds: float) -> int:
        return self._db.execute("DELETE FROM executed WHERE started<?", (time.time() - seconds,)).rowcount


BULK_BYTES = 64 * 1024


def _without_bulk(value):
    """``value`` with every bytes object over BULK_BYTES replaced by its size."""
    if isinstance(value, (bytes, bytearray)) and len(value) > BULK_BYTES:
        return {"omitted_bytes": len(value), "note": "not kept for re-delivery; run the command again"}
    if isinstance(value, dict):
        return {k: _without_bulk(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_bulk(v) for v in value]
    return value
