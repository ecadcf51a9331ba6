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

At rest
-------
What a command carries is often private: chat text (``chat.send``), file
contents (``files.download`` results, ``files.upload`` arguments), what
was typed in a support session (``input``). So, per field:

* ``args`` are sealed (:mod:`broker.core.sealing`, AES-256-GCM bound to the
  command id and column): they must survive a restart until the command is
  final (at most once needs the queued command, not a copy in the agent),
  and afterwards the console's chat history and ``command.get`` show them.
  Once final, what nobody reads back is dropped: the arguments of
  :data:`TRANSIENT_ARGS` entirely, bulk bytes (an upload's data) by size.
* ``result`` is sealed: it must reach an operator who was offline when it
  came (``unsent_results``), and the admin API and ``ems send --wait``
  fetch it later with ``command.get``; :data:`EPHEMERAL_RESULTS` keep only
  their outcome.
* ids, target, sender, name, status and times stay plain: the queue
  routes, expires and lists on them.

The key file is ``keys/queue-keys.json`` beside ``broker.db`` (0600, key
id in every value so it can rotate). Values an older EMS left in clear are
sealed on open (and the plain copies wiped from the file and its WAL).
"""
from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.core import sqlite_db
from broker.core.envelope import pack_body, unpack_body
from broker.core.sealing import KeyRing, TamperedValue, aad, is_sealed
from broker.server.group_commit import GroupCommit
from broker.core.vocabulary import (  # noqa: F401  (statuses re-exported for the broker's modules)
    BULK_BYTES,
    DELIVERED,
    DONE,
    EPHEMERAL_RESULTS,
    EXPIRED,
    FAILED,
    FINAL,
    OPEN,
    QUEUED,
    SENT,
    STATUS_RANK,
    outcome_only,
    without_bulk,
)

log = logging.getLogger(__name__)

#: commands whose arguments are erased once final (remote input: keys and
#: text an operator typed into the user's session) and whose life is short
TRANSIENT_ARGS = frozenset({"input"})
TRANSIENT_TTL_S = 10.0
#: rows of :data:`EPHEMERAL_RESULTS` commands are deleted this long after they
#: became final (nobody asks about a tile's picture later; several a second
#: would pile up)
EPHEMERAL_KEEP_S = 600.0
_EPHEMERAL_SQL = "name IN (%s)" % ", ".join(f"'{name}'" for name in sorted(EPHEMERAL_RESULTS))
#: the queue's key file, in the keys folder beside broker.db
QUEUE_KEYS_FILE = "queue-keys.json"
#: the one key of a stored value that does not decrypt, read back
UNREADABLE = "unreadable"

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


def final_args(name: str, args: Any) -> Any:
    """What is kept of a final command's arguments: nothing of what was typed in
    a support session (:data:`TRANSIENT_ARGS`), bulk bytes (an upload's data) by size."""
    if name in TRANSIENT_ARGS:
        return {"redacted": True}
    return without_bulk(args)


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
    #: its sender asked to be told every status (kept in memory only: after a restart, the answer and the result)
    statuses_wanted: bool = False

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


class CommandQueue:
    """Commands and their status, in the ``commands`` table of ``broker.db``.

    Open commands (not yet final) are also kept in memory, so the broker's
    hot path reads nothing from disk; every change is still written first.
    WAL checkpoints are left to :meth:`checkpoint` (called from the
    broker's timer), never paid in the middle of a command. With a ``group``
    (:mod:`broker.server.group_commit`) changes are committed with the
    broker's pass; commands changed since are kept in memory until then.
    """

    def __init__(self, path: Path, keyring: KeyRing | None = None, group: GroupCommit | None = None):
        self._keyring = keyring or KeyRing(Path(path).parent / "keys" / QUEUE_KEYS_FILE, purpose="command queue")
        self._db = sqlite_db.connect(path, auto_checkpoint=False)
        self._group = group
        #: final commands whose last change waits for the group's commit (read from here until then)
        self._unflushed: dict[str, Command] = {}
        if group is not None:
            group.on_commit(self._unflushed.clear)
        self._db.executescript(_SCHEMA)
        self._seal_legacy()
        rows = self._db.execute("SELECT * FROM commands WHERE status IN (?, ?, ?) ORDER BY created, id", OPEN)
        self._open: dict[str, Command] = {r["id"]: self._from_row(r) for r in rows}
        self._fail_unreadable()

    @property
    def keyring(self) -> KeyRing:
        """The key ring the queue seals with (bulk runs seal their arguments with it too)."""
        return self._keyring

    # -- sealing -------------------------------------------------------------
    def _seal(self, cmd_id: str, column: str, value: Any) -> bytes | None:
        if value is None:
            return None
        return self._keyring.encrypt(pack_body(value), aad("commands", column, cmd_id))

    def _unseal(self, cmd_id: str, column: str, blob: bytes | None) -> Any:
        """A stored value; one that does not open is logged and read as ``{"unreadable": why}``."""
        if blob is None:
            return None
        if not is_sealed(blob):
            return unpack_body(blob)  # left in clear by an older EMS (sealed on the next open)
        try:
            return unpack_body(self._keyring.decrypt(blob, aad("commands", column, cmd_id)))
        except TamperedValue as exc:
            log.error("command %s: its %s cannot be read: %s", cmd_id, column, exc)
            return {UNREADABLE: f"the stored {column} cannot be decrypted: {exc}"}

    def _from_row(self, row) -> Command:
        cmd_id = row["id"]
        return Command(
            id=cmd_id,
            target=row["target"],
            sender=row["sender"],
            name=row["name"],
            args=self._unseal(cmd_id, "args", row["args"]),
            status=row["status"],
            created=row["created"],
            expires=row["expires"],
            updated=row["updated"],
            result=self._unseal(cmd_id, "result", row["result"]),
            result_sent=bool(row["result_sent"]),
        )

    def _fail_unreadable(self) -> None:
        """An open command whose arguments do not decrypt (key file lost or replaced, row
        tampered with) is never delivered: it fails, and its sender is told why."""
        for cmd in [c for c in self._open.values() if set(c.args) == {UNREADABLE}]:
            self.advance(cmd, FAILED, {"ok": False, "error": f"not run: {cmd.args[UNREADABLE]}"})

    def _seal_legacy(self) -> None:
        """Seal arguments and results an older EMS stored in clear, and wipe the clear copies."""
        rows = self._db.execute(
            "SELECT id, args, result FROM commands WHERE substr(args, 1, 1) != x'01'"
            " OR (result IS NOT NULL AND substr(result, 1, 1) != x'01')"
        ).fetchall()
        if not rows:
            return
        sealed = [(*(row[c] if is_sealed(row[c]) else self._seal(row["id"], c, self._unseal(row["id"], c, row[c]))
                     for c in ("args", "result")), row["id"]) for row in rows]
        sqlite_db.overwrite(self._db, "UPDATE commands SET args=?, result=? WHERE id=?", sealed)
        log.warning("sealed the arguments and results of %d commands that an older EMS kept in clear in %s",
                    len(rows), self._db.execute("PRAGMA database_list").fetchone()[2])

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
        if cmd_id in self._open or cmd_id in self._unflushed or \
                self._db.execute("SELECT 1 FROM commands WHERE id=?", (cmd_id,)).fetchone() is not None:
            return None
        now = time.time()
        try:
            self._write(
                "INSERT INTO commands (id, target, sender, name, args, status, created, expires, updated)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (cmd_id, target, sender, name, self._seal(cmd_id, "args", args), QUEUED, now, expires, now),
            )
        except sqlite3.IntegrityError:  # written by another process since
            return None
        cmd = Command(cmd_id, target, sender, name, args, QUEUED, now, expires, now)
        self._open[cmd_id] = cmd
        return cmd

    def get(self, cmd_id: str) -> Command | None:
        cmd = self._open.get(cmd_id) or self._unflushed.get(cmd_id)
        if cmd is not None:
            return cmd
        row = self._db.execute("SELECT * FROM commands WHERE id=?", (cmd_id,)).fetchone()
        return self._from_row(row) if row else None

    def open_for(self, target: str) -> list[Command]:
        """Commands still to deliver to ``target``, oldest first."""
        return sorted((c for c in self._open.values() if c.target == target), key=lambda c: (c.created, c.id))

    def unsent_results(self, sender: str) -> list[Command]:
        """Finished commands whose outcome has not yet reached ``sender``."""
        self._sync()
        rows = self._db.execute(
            "SELECT * FROM commands WHERE sender=? AND result_sent=0 AND status IN (?, ?, ?) ORDER BY updated",
            (sender, DONE, FAILED, EXPIRED),
        )
        return [self._from_row(r) for r in rows]

    def recent(self, target: str | None = None, limit: int = 50, names: tuple[str, ...] = ()) -> list[Command]:
        """The newest ``limit`` commands, for one ``target`` and only ``names`` if given."""
        self._sync()
        where, params = [], []
        if target:
            where.append("target=?")
            params.append(target)
        if names:
            where.append(f"name IN ({','.join('?' * len(names))})")
            params.extend(names)
        sql = "SELECT * FROM commands" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._db.execute(sql + " ORDER BY created DESC LIMIT ?", (*params, limit))
        return [self._from_row(r) for r in rows]

    def advance(self, cmd: Command, status: str, result: Any = None, result_sent: bool = False, promise: bool = True) -> bool:
        """Move ``cmd`` forward to ``status``; False if that would go back. ``promise=False``: its write
        may wait for a later commit (an agent's answer: see :mod:`broker.server.group_commit`)."""
        if cmd.status in FINAL or STATUS_RANK[status] < STATUS_RANK[cmd.status]:
            return False
        if status == cmd.status and result is None:
            return False
        cmd.status, cmd.updated = status, time.time()
        if result is not None:
            cmd.result = outcome_only(result) if cmd.name in EPHEMERAL_RESULTS and status in FINAL else result
        cmd.result_sent = cmd.result_sent or result_sent
        if status not in FINAL:
            return True  # sent / delivered: kept in memory only (see the module docstring)
        kept = final_args(cmd.name, cmd.args)
        changed_args = kept != cmd.args
        cmd.args = kept
        self._write("UPDATE commands SET status=?, updated=?, result=?, result_sent=?" + (", args=?" if changed_args else "") + " WHERE id=?",
                    (status, cmd.updated, self._seal(cmd.id, "result", cmd.result), int(cmd.result_sent),
                     *((self._seal(cmd.id, "args", kept),) if changed_args else ()), cmd.id), promise)
        self._open.pop(cmd.id, None)
        self._remember(cmd)
        return True

    def mark_result_sent(self, cmd: Command) -> None:
        cmd.result_sent = True
        self._write("UPDATE commands SET result_sent=1 WHERE id=?", (cmd.id,), promise=False)
        self._remember(cmd)

    def _write(self, sql: str, params: tuple, promise: bool = True) -> None:
        """A change: with the group's pass (its commit), else committed now."""
        if self._group is None:
            self._db.execute(sql, params)
        else:
            self._group.write(sql, params, promise)

    def _remember(self, cmd: Command) -> None:
        if self._group is not None and self._group.enabled:
            self._unflushed[cmd.id] = cmd

    def _sync(self) -> None:
        """Commit what waits for the group, before a query that must see it."""
        if self._group is not None:
            self._group.commit_writes()

    def due_to_expire(self, now: float) -> list[Command]:
        return [c for c in self._open.values() if c.expires < now]

    def counts(self) -> dict[str, int]:
        self._sync()
        return {r[0]: r[1] for r in self._db.execute("SELECT status, count(*) FROM commands GROUP BY status")}
