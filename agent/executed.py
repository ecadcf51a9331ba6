"""The agent's record of executed command ids: each runs at most once.

A command id seen before is answered from this record instead of being run
again, so re-delivery after a broker or agent restart is harmless.

Results are kept (for re-answering) sealed with the agent's local key
(:mod:`agent.local_keys`), bound to their command id; bulk bytes (a
downloaded file's data) only as their size, a thumbnail only as its
outcome. Results an older agent stored in clear are sealed on open.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from agent.local_keys import local_keyring
from broker.core import sqlite_db
from broker.core.envelope import pack_body, unpack_body
from broker.core.sealing import KeyRing, TamperedValue, aad, is_sealed
from broker.core.vocabulary import EPHEMERAL_RESULTS, outcome_only, without_bulk

log = logging.getLogger(__name__)

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

    def __init__(self, path: Path, keyring: KeyRing | None = None):
        self._keyring = keyring or local_keyring(path)
        self._db = sqlite_db.connect(path, synchronous="FULL")
        self._db.executescript(_SCHEMA)
        self._seal_legacy()

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
        kept = outcome_only(result) if row is not None and row["name"] in EPHEMERAL_RESULTS else without_bulk(result)
        self._db.execute("UPDATE executed SET result=? WHERE id=?", (self._seal(cmd_id, kept), cmd_id))

    def result_of(self, cmd_id: str) -> dict | None:
        """The stored result; an interrupted run reports that it was interrupted."""
        row = self._db.execute("SELECT result FROM executed WHERE id=?", (cmd_id,)).fetchone()
        if row is None:
            return None
        if row["result"] is None:
            return {"ok": False, "error": "the agent stopped while running this command; not run again"}
        return self._unseal(cmd_id, row["result"])

    def purge_older_than(self, seconds: float) -> int:
        return self._db.execute("DELETE FROM executed WHERE started<?", (time.time() - seconds,)).rowcount

    # -- sealing -----------------------------------------------------------------------
    def _seal(self, cmd_id: str, value) -> bytes:
        return self._keyring.encrypt(pack_body(value), aad("executed", "result", cmd_id))

    def _unseal(self, cmd_id: str, blob: bytes) -> dict:
        if not is_sealed(blob):
            return unpack_body(blob)  # an older agent's clear record (sealed on the next open)
        try:
            return unpack_body(self._keyring.decrypt(blob, aad("executed", "result", cmd_id)))
        except TamperedValue as exc:
            log.error("the recorded result of command %s cannot be read: %s", cmd_id, exc)
            return {"ok": False, "error": f"this command ran before, but its recorded result cannot be read ({exc}); not run again"}

    def _seal_legacy(self) -> None:
        """Seal results an older agent kept in clear, and wipe the clear copies."""
        rows = self._db.execute("SELECT id, result FROM executed WHERE result IS NOT NULL AND substr(result, 1, 1) != x'01'").fetchall()
        if not rows:
            return
        sqlite_db.overwrite(self._db, "UPDATE executed SET result=? WHERE id=?",
                            [(self._seal(r["id"], unpack_body(r["result"])), r["id"]) for r in rows])
        log.warning("sealed %d command results an older agent kept in clear", len(rows))
