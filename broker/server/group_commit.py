"""Group commit: one durable write of ``broker.db`` per loop pass, and nothing said before it.

The command path used to commit each of its SQLite statements on its own (a
new command's row, its journal record, its audit record, its final status):
four commits per round trip. :class:`GroupCommit` collects those statements
while the broker handles a pass of messages (up to ``config.batch``) and its
timers, and writes them in ONE transaction at the end of the pass
(:meth:`GroupCommit.commit`, called once per turn of the loop).

The contract
------------
1. **Nothing leaves the broker ahead of a write it depends on.** While any
   statement of the pass is uncommitted, every message the broker sends is
   held (:meth:`hold`), in order, and goes out right after the commit. So an
   operator told "queued" (a COMMAND_STATUS, a REPLY of ``bulk.start``...)
   is told so only once the command's row is on disk: it survives kill -9.
   A pass that has written nothing sends at once, as before.
   The exception is a statement whose loss a restart repairs by itself,
   written with ``promise=False``: a command's final status and result once
   the agent has answered (after a restart the command is delivered again
   and the agent answers again from its record of executed commands: it
   does not run twice) and the mark that a result reached its sender (it is
   sent again). Those hold nothing back and ride with the next commit, at
   the latest :data:`LAZY_MAX_S` later (a pass that ends after that).
2. **Where what happens depends on a send** (a command marked ``sent`` when
   the agent's connection took it; a result marked ``result_sent`` when the
   operator's took it) the whole step waits (:meth:`after_commit`) instead of
   the send alone: it runs after the commit, sends for real and records what
   happened; a record it makes is committed with the next pass. Other sends
   held report success at once (a fan-out copy dropped at release is counted
   by the broker's drop counters as any other).
3. **Read your writes.** Stores that write through the group keep what they
   wrote in memory until it is committed (the command queue's open and just
   finished commands) or call :meth:`commit_writes` before a query that must
   see it (the journal before ``journal.read``). What was held stays held
   until the end of the pass even then, and what is sent after it queues
   behind it: order per connection is kept.
4. **A failed commit loses nothing and says nothing.** The transaction is
   rolled back, the statements stay queued, held messages stay held, and the
   next pass tries again (counted ``group_commit_failed``, logged throttled).
   A statement SQLite refuses as such (a constraint) is skipped and logged:
   it would fail every retry.
5. **One thread.** The broker's loop thread is the only caller.

Only writes that go through the group are grouped: the key registry, bulk
runs, approvals and targets keep their own connections and commit as they
did (the group holds SQLite's write lock only inside :meth:`commit`, so they
never wait for it). ``enabled=False`` (``BrokerConfig.group_commit``) writes
each statement at once and holds nothing: the old behaviour, kept for
``bench/command_path.py`` to measure against.
"""
from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

from broker.core import sqlite_db
from broker.core.stats import Counters, LogThrottle

log = logging.getLogger(__name__)

#: statements that promise nothing (``promise=False``) wait at most this long for a commit of their own
LAZY_MAX_S = 0.2


class GroupCommit:
    """Statements of one loop pass, committed together; messages held until then."""

    def __init__(self, path: Path, counters: Counters, enabled: bool = True):
        self.db = sqlite_db.connect(path, auto_checkpoint=False)  # the broker checkpoints broker.db
        self.enabled = enabled
        self.counters = counters
        self._writes: list[tuple[str, tuple]] = []
        self._promised = 0  # how many of them a message may depend on
        self._lazy_since = 0.0
        self._held: list[tuple[Callable[..., Any], tuple]] = []
        self._committed: list[Callable[[], None]] = []
        self._releasing = False
        self._throttle = LogThrottle()

    @property
    def holding(self) -> bool:
        """True while a statement waits for the commit, or what was held for it has not gone yet
        (a query committed early): what is sent now must wait too, behind it."""
        return (self._promised > 0 or bool(self._held)) and not self._releasing

    def write(self, sql: str, params: tuple, promise: bool = True) -> None:
        """Queue one statement for this pass's transaction (disabled: run it now, its own commit);
        ``promise=False``: nothing sent depends on it (see the module docstring)."""
        if not self.enabled:
            self.db.execute(sql, params)
            self.counters["db_commits"] += 1
            self.counters["db_writes"] += 1
            return
        if not self._writes:
            self._lazy_since = time.monotonic()
        self._writes.append((sql, params))
        self._promised += promise

    def on_commit(self, forget: Callable[[], None]) -> None:
        """Call ``forget`` after every successful commit (a store drops what it kept in memory)."""
        self._committed.append(forget)

    def hold(self, action: Callable[..., Any], *args: Any) -> None:
        """Run ``action(*args)`` after the commit, in the order held."""
        self._held.append((action, args))

    def after_commit(self, action: Callable[..., Any], *args: Any) -> None:
        """Run ``action(*args)`` now if nothing waits for the commit, else right after it."""
        if self.holding:
            self._held.append((action, args))
        else:
            action(*args)

    def commit_writes(self) -> bool:
        """Commit what is queued (held messages stay held); False if it failed and stays queued."""
        if not self._writes:
            return True
        writes, promised, self._writes, self._promised = self._writes, self._promised, [], 0
        try:
            self._transaction(writes)
        except sqlite3.Error as exc:
            self._writes, self._promised = writes + self._writes, promised + self._promised
            self.counters["group_commit_failed"] += 1
            if self._throttle.allow("commit"):
                log.error("broker.db: %d statements not committed (retried next pass; nothing they promise is sent): %s",
                          len(writes), exc)
            return False
        self.counters["db_commits"] += 1
        self.counters["db_writes"] += len(writes)
        for forget in self._committed:
            forget()
        return True

    def commit(self) -> None:
        """End of a pass: commit, then send what was held (messages and the steps that wait for them).
        Only statements that promise nothing, and younger than :data:`LAZY_MAX_S`: they wait for the next."""
        if not self._promised and not self._held and self._writes and time.monotonic() - self._lazy_since < LAZY_MAX_S:
            return
        if not self.commit_writes() or self._releasing:
            return
        self._releasing = True  # what the held steps send goes at once; what they write, with the next pass
        try:
            while self._held:
                held, self._held = self._held, []
                for action, args in held:
                    self._run(action, args)
        finally:
            self._releasing = False

    def _run(self, action: Callable[..., Any], args: tuple) -> None:
        try:
            action(*args)
        except Exception:  # as in the loop: a bug in one step must not stop the others or the bus
            self.counters["internal_errors"] += 1
            if self._throttle.allow("held"):
                log.exception("internal error in a step held for the commit")

    def _transaction(self, writes: list[tuple[str, tuple]]) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in writes:
                try:
                    db.execute(sql, params)
                except sqlite3.IntegrityError as exc:  # this statement would fail every retry: skipped, said
                    self.counters["group_commit_refused"] += 1
                    log.error("broker.db refused a statement (skipped): %s: %s", exc, sql.split("(")[0])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Commit and send what is left, then close the connection."""
        self.commit_writes()
        self.commit()
        self.db.close()
