"""The broker's durable command queue.

A command lives here from the moment an operator sends it until its result
has reached that operator. Status moves forward only::

    queued -> sent -> delivered -> done | failed
    queued | sent | delivered -> expired

A new command is committed before its sender is told it is queued, and a
final status (with the result) is committed when it is reached, so a
command survives a broker killed at any moment. The intermediate statuses
``sent`` and ``delivered`` are kept in memory only: they change nothing
about what happens after a restart (every open command is re-delivered
when its agent returns, and the agent's own record of executed command ids
makes that harmless), and skipping their commits halves the SQLite work
per command. After a broker restart an open command reads as ``queued``
until it moves on.
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker import sqlite_db
from broker.envelope import pack_body, unpack_body

QUEUED, SENT, DELIVERED, DONE, FAILED, EXPIRED = "queued", "sent", "delivered", "done", "failed", "expired"
#: commands whose arguments are erased once final (remote input: keys and
#: text an operator typed into the user's session) and whose life is short
TRANSIENT_ARGS = frozenset({"input"})
TRANSIENT_TTL_S = 10.0
#: commands whose result is for now only (a screen thumbnail for a console
#: tile): once final, only their outcome is kept (see :func:`outcome_only`),
#: here and in the agent's record of executed commands
EPHEMERAL_RESULTS = frozenset({"thumbnail"})
#: ... and their rows are deleted this long after they became final (nobody
#: asks about a tile's picture later; several a second would pile up)
EPHEMERAL_KEEP_S = 600.0
_EPHEMERAL_SQL = "name IN (%s)" % ", ".join(f"'{name}'" for name in sorted(EPHEMERAL_RESULTS))
FINAL = frozenset({DONE, FAILED, EXPIRED})
OPEN = (QUEUED, SENT, DELIVERED)
_ORDER = {QUEUED: 0, SENT: 1, DELIVERED: 2, DONE: 3, FAILED: 3, EXPIRED: 3}

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS commands (
    id        TEXT PRIMARY KEY,
    target    TEXT NOT NULL,
    sender    TEXT NOT NULL,
    name      TEXT NOT NULL,
    args      BLOB NOT NULL,
    status    TEXT NOT NULL,
    created   REAL NOT NULL,
    expires   REAL NOT NULL,
    updated   REAL NOT NULL,
    result    BLOB,
    result_sent INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS commands_open ON commands (target, status, created);
CREATE INDEX IF NOT EXISTS commands_unsent ON commands (sender, result_sent);
CREATE INDEX IF NOT EXISTS commands_ephemeral ON commands (updated) WHERE {_EPHEMERAL_SQL};
"""


def outcome_only(result: Any) -> Any:
    """What is kept of an :data:`EPHEMERAL_RESULTS` result: ok and error, not the output."""
    if not isinstance(result, dict):
        return result
    kept = {k: result[k] for k in ("ok", "error") if k in result}
    return kept | {"omitted": "the output of this command is not kept"}


@dataclass
class Command:
    id: str
    target: str
    sender: str
    name: str
    args: dict
    status: str
    created: float
    expires: float
    updated: float
    result: Any = None
    result_sent: bool = False

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "target": self.target,
            "sender": self.sender,
            "name": self.name,
            "args": self.args,
            "status": self.status,
            "created": self.created,
            "expires": self.expires,
            "updated": self.updated,
            "result": self.result,
        }


def _from_row(row) -> Command:
    return Command(
        id=row["id"],
        target=row["target"],
        sender=row["sender"],
        name=row["name"],
        args=unpack_body(row["args"]),
        status=row["status"],
        created=row["created"],
        expires=row["expires"],
        updated=row["updated"],
        result=unpack_body(row["result"]) if row["result"] is not None else None,
        result_sent=bool(row["result_sent"]),
    )


class CommandQueue:
    """Commands and their status, in the ``commands`` table of ``broker.db``.

    Open commands (not yet final) are also kept in memory, so the broker's
    hot path reads nothing from disk; every change is still written first.
    WAL checkpoints are left to :meth:`checkpoint` (called from the
    broker's timer), never paid in the middle of a command.
    """

    def __init__(self, path: Path):
        self._db = sqlite_db.connect(path, auto_checkpoint=False)
        self._db.executescript(_SCHEMA)
        rows = self._db.execute("SELECT * FROM commands WHERE status IN (?, ?, ?) ORDER BY created, id", OPEN)
        self._open: dict[str, Command] = {r["id"]: _from_row(r) for r in rows}

    def close(self) -> None:
        self._db.close()

    def checkpoint(self) -> None:
        """Forget old :data:`EPHEMERAL_RESULTS` commands, then checkpoint the WAL (the broker's timer)."""
        self.purge_ephemeral()
        sqlite_db.checkpoint(self._db)

    def purge_ephemeral(self, now: float | None = None) -> int:
        """Delete final ephemeral commands last changed over EPHEMERAL_KEEP_S ago; how many."""
        cutoff = (time.time() if now is None else now) - EPHEMERAL_KEEP_S
        return self._db.execute(f"DELETE FROM commands WHERE {_EPHEMERAL_SQL} AND updated < ? AND status IN (?, ?, ?)",
                                (cutoff, DONE, FAILED, EXPIRED)).rowcount

    def add(self, cmd_id: str, target: str, sender: str, name: str, args: dict, expires: float) -> Command | None:
        """Queue a new command; None if ``cmd_id`` exists already."""
        now = time.time()
        try:
            self._db.execute(
                "INSERT INTO commands (id, target, sender, name, args, status, created, expires, updated)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (cmd_id, target, sender, name, pack_body(args), QUEUED, now, expires, now),
            )
        except sqlite3.IntegrityError:
            return None
        cmd = Command(cmd_id, target, sender, name, args, QUEUED, now, expires, now)
        self._open[cmd_id] = cmd
        return cmd

    def get(self, cmd_id: str) -> Command | None:
        cmd = self._open.get(cmd_id)
        if cmd is not None:
            return cmd
        row = self._db.execute("SELECT * FROM commands WHERE id=?", (cmd_id,)).fetchone()
        return _from_row(row) if row else None

    def open_for(self, target: str) -> list[Command]:
        """Commands still to deliver to ``target``, oldest first."""
        return sorted((c for c in self._open.values() if c.target == target), key=lambda c: (c.created, c.id))

    def unsent_results(self, sender: str) -> list[Command]:
        """Finished commands whose outcome has not yet reached ``sender``."""
        rows = self._db.execute(
            "SELECT * FROM commands WHERE sender=? AND result_sent=0 AND status IN (?, ?, ?) ORDER BY updated",
            (sender, DONE, FAILED, EXPIRED),
        )
        return [_from_row(r) for r in rows]

    def recent(self, target: str | None = None, limit: int = 50, names: tuple[str, ...] = ()) -> list[Command]:
        """The newest ``limit`` commands, for one ``target`` and only ``names`` if given."""
        where, params = [], []
        if target:
            where.append("target=?")
            params.append(target)
        if names:
            where.append(f"name IN ({','.join('?' * len(names))})")
            params.extend(names)
        sql = "SELECT * FROM commands" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._db.execute(sql + " ORDER BY created DESC LIMIT ?", (*params, limit))
        return [_from_row(r) for r in rows]

    def advance(self, cmd: Command, status: str, result: Any = None, result_sent: bool = False) -> bool:
        """Move ``cmd`` forward to ``status``; False if that would go back."""
        if cmd.status in FINAL or _ORDER[status] < _ORDER[cmd.status]:
            return False
        if status == cmd.status and result is None:
            return False
        cmd.status, cmd.updated = status, time.time()
        if result is not None:
            cmd.result = outcome_only(result) if cmd.name in EPHEMERAL_RESULTS and status in FINAL else result
        cmd.result_sent = cmd.result_sent or result_sent
        if status not in FINAL:
            return True  # sent / delivered: kept in memory only (see the module docstring)
        self._db.execute(
            "UPDATE commands SET status=?, updated=?, result=?, result_sent=? WHERE id=?",
            (status, cmd.updated, pack_body(cmd.result) if cmd.result is not None else None, int(cmd.result_sent), cmd.id),
        )
        if cmd.name in TRANSIENT_ARGS:  # what was typed in a support session is not kept
            cmd.args = {"redacted": True}
            self._db.execute("UPDATE commands SET args=? WHERE id=?", (pack_body(cmd.args), cmd.id))
        self._open.pop(cmd.id, None)
        return True

    def mark_result_sent(self, cmd: Command) -> None:
        cmd.result_sent = True
        self._db.execute("UPDATE commands SET result_sent=1 WHERE id=?", (cmd.id,))

    def due_to_expire(self, now: float) -> list[Command]:
        return [c for c in self._open.values() if c.expires < now]

    def counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self._db.execute("SELECT status, count(*) FROM commands GROUP BY status")}
