"""The broker's journal: its own records, kept until the store has them.

Agents keep their records in an outbox until the persister acknowledges
them; the broker's own records (the audit trail of operator actions,
presence changes, security events it detects) get the same promise here.
Each is appended to the ``journal`` table of ``broker.db`` when it is
made (and published live as before); the persister pulls the journal with
``journal.read``, commits what it got, then calls ``journal.ack`` with the
last sequence number, which deletes up to it. A record published live and
read again from the journal has the same message id, so the store keeps it
once.

The journal is bounded: past ``max_rows`` the oldest presence records go
first (they are also summarised in the key registry's ``last_seen``), then
the oldest of any kind; every drop is counted.

With a ``group`` (:mod:`broker.server.group_commit`) an appended record is
committed with the broker's pass, in the same transaction as the command it
is about; reading or trimming the journal commits what waits first.
"""
from __future__ import annotations

from pathlib import Path

from broker.core import sqlite_db
from broker.server.group_commit import GroupCommit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    kind   INTEGER NOT NULL,
    topic  TEXT NOT NULL,
    header BLOB NOT NULL,
    body   BLOB NOT NULL
);
"""


class Journal:
    """Broker-made records awaiting the store, in ``broker.db``."""

    def __init__(self, path: Path, max_rows: int = 1_000_000, presence_kind: int | None = None, group: GroupCommit | None = None):
        self._db = sqlite_db.connect(path, auto_checkpoint=False)  # the broker checkpoints broker.db
        self._group = group
        self._db.executescript(_SCHEMA)
        self.max_rows = max_rows
        self.presence_kind = presence_kind
        self.dropped = 0
        self._rows = self._db.execute("SELECT count(*) FROM journal").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __len__(self) -> int:
        return self._rows

    def append(self, kind: int, topic: str, header: bytes, body: bytes) -> None:
        """Keep one record (committed when this returns, or with the group's pass)."""
        if self._rows >= self.max_rows:
            self._make_room()
        sql, params = "INSERT INTO journal (kind, topic, header, body) VALUES (?, ?, ?, ?)", (kind, topic, header, body)
        if self._group is None:
            self._db.execute(sql, params)
        else:
            self._group.write(sql, params)
        self._rows += 1

    def _sync(self) -> None:
        if self._group is not None:
            self._group.commit_writes()

    def read(self, limit: int = 1000) -> list[tuple[int, bytes, bytes]]:
        """The oldest ``limit`` records as (seq, header, body)."""
        self._sync()
        rows = self._db.execute("SELECT seq, header, body FROM journal ORDER BY seq LIMIT ?", (max(1, min(limit, 10_000)),))
        return [(r["seq"], r["header"], r["body"]) for r in rows]

    def ack(self, upto_seq: int) -> int:
        """Delete every record up to ``upto_seq``: the store has committed them."""
        self._sync()
        deleted = self._db.execute("DELETE FROM journal WHERE seq<=?", (int(upto_seq),)).rowcount
        self._rows -= deleted
        return deleted

    def _make_room(self) -> None:
        """Drop the oldest presence records, then the oldest of any kind."""
        self._sync()
        excess = self._rows - self.max_rows + 1
        gone = 0
        if self.presence_kind is not None:
            gone = self._db.execute(
                "DELETE FROM journal WHERE seq IN (SELECT seq FROM journal WHERE kind=? ORDER BY seq LIMIT ?)",
                (self.presence_kind, excess),
            ).rowcount
        if gone < excess:
            gone += self._db.execute(
                "DELETE FROM journal WHERE seq IN (SELECT seq FROM journal ORDER BY seq LIMIT ?)", (excess - gone,)
            ).rowcount
        self._rows -= gone
        self.dropped += gone
