"""Scheduled runs at rest (:mod:`broker.server.schedules`), kept in ``broker.db``.

``schedules`` holds a schedule: its owner (client id, role and key when it
was made, and the person's name), the request op it runs and that op's
arguments (sealed like the command queue's, :mod:`broker.core.sealing`), a
cron expression or a one-off time, its zone, the missed-run policy, the next
slot due, the last slot fired, whether it is enabled (and why not).

``schedule_runs`` holds each slot once (its primary key): when it was taken,
the id its run was given *before* it started, and how it went. A slot is
taken and the schedule's next slot set in one transaction (:meth:`claim`),
so a slot is never taken twice, whatever stops the broker.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from broker.core.envelope import pack_body, unpack_body
from broker.core.sealing import aad
from broker.server.broker_tables import BrokerTables

#: a slot taken and its run not yet known to have started
ATTEMPTED = "attempted"
#: such a slot started again after a restart, not yet known to have started (never started a third time)
RETRIED = "attempted again after a restart"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schedules (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    owner       TEXT NOT NULL,
    owner_role  TEXT NOT NULL,
    owner_key   TEXT NOT NULL,
    owner_name  TEXT NOT NULL,
    op          TEXT NOT NULL,
    args        BLOB NOT NULL,
    cron        TEXT NOT NULL DEFAULT '',
    at          REAL,
    tz          TEXT NOT NULL,
    missed      TEXT NOT NULL,
    grace_s     INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    next_due    REAL,
    last_slot   REAL,
    enabled     INTEGER NOT NULL,
    why         TEXT NOT NULL DEFAULT '',
    created     REAL NOT NULL,
    updated     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS schedules_due ON schedules (enabled, next_due);
CREATE TABLE IF NOT EXISTS schedule_runs (
    schedule_id TEXT NOT NULL,
    slot        REAL NOT NULL,
    fired_at    REAL NOT NULL,
    run_id      TEXT NOT NULL DEFAULT '',
    outcome     TEXT NOT NULL,
    PRIMARY KEY (schedule_id, slot)
);
"""
#: slots kept per schedule (the newest; the audit trail keeps every firing)
KEEP_SLOTS = 1000
_COLUMNS = ("id", "name", "owner", "owner_role", "owner_key", "owner_name", "op", "args", "cron", "at", "tz", "missed",
            "grace_s", "reason", "next_due", "last_slot", "enabled", "why", "created", "updated")


@dataclass
class Schedule:
    id: str
    name: str
    owner: str
    owner_role: str
    owner_key: str
    owner_name: str
    op: str
    args: dict
    cron: str
    at: float | None
    tz: str
    missed: str
    grace_s: int
    reason: str
    next_due: float | None
    last_slot: float | None = None
    enabled: bool = True
    why: str = ""
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)


@dataclass
class SlotRun:
    schedule_id: str
    slot: float
    fired_at: float
    run_id: str
    outcome: str


class ScheduleStore(BrokerTables):
    """Schedules and their slots in ``broker.db`` (the broker's only writer of them)."""

    SCHEMA = _SCHEMA

    def _seal(self, schedule: Schedule) -> bytes:
        return self._keyring.encrypt(pack_body(schedule.args), aad("schedules", "args", schedule.id))

    def add(self, schedule: Schedule) -> None:
        """Store a new schedule; ValueError if its name is taken."""
        values = {**schedule.__dict__, "args": self._seal(schedule), "enabled": int(schedule.enabled)}
        if self.get(schedule.name) is not None:
            raise ValueError(f"a schedule named {schedule.name!r} exists already (ems schedule list)")
        with self._db:
            self._db.execute(f"INSERT INTO schedules ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                             [values[c] for c in _COLUMNS])

    def get(self, ident: str) -> Schedule | None:
        """A schedule by id or name."""
        row = self._db.execute("SELECT * FROM schedules WHERE id = ? OR name = ?", (ident, ident)).fetchone()
        return self._schedule(row) if row else None

    def count(self) -> int:
        return self._db.execute("SELECT count(*) FROM schedules").fetchone()[0]

    def listed(self, limit: int) -> list[Schedule]:
        return [self._schedule(r) for r in self._db.execute("SELECT * FROM schedules ORDER BY name LIMIT ?", (limit,))]

    def due(self, now: float) -> list[Schedule]:
        """Enabled schedules whose next slot is at or before ``now``, earliest first."""
        rows = self._db.execute("SELECT * FROM schedules WHERE enabled = 1 AND next_due IS NOT NULL AND next_due <= ?"
                                " ORDER BY next_due", (now,))
        return [self._schedule(r) for r in rows]

    def claim(self, schedule: Schedule, next_due: float | None, run_id: str, now: float, outcome: str = ATTEMPTED) -> bool:
        """Take slot ``schedule.next_due`` and move on to ``next_due``, in one transaction; False if that slot
        is no longer the schedule's (taken already, changed, paused or removed)."""
        slot = schedule.next_due
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            moved = self._db.execute("UPDATE schedules SET next_due = ?, last_slot = ?, updated = ? "
                                     "WHERE id = ? AND enabled = 1 AND next_due = ?",
                                     (next_due, slot, now, schedule.id, slot)).rowcount
            if moved:
                self._db.execute("INSERT INTO schedule_runs (schedule_id, slot, fired_at, run_id, outcome) VALUES (?, ?, ?, ?, ?)",
                                 (schedule.id, slot, now, run_id, outcome))
                self._db.execute("DELETE FROM schedule_runs WHERE schedule_id = ? AND slot <= (SELECT slot FROM schedule_runs "
                                 "WHERE schedule_id = ? ORDER BY slot DESC LIMIT 1 OFFSET ?)", (schedule.id, schedule.id, KEEP_SLOTS))
        if moved:
            schedule.next_due, schedule.last_slot = next_due, slot
        return bool(moved)

    def finish(self, schedule_id: str, slot: float, outcome: str, run_id: str | None = None) -> None:
        """How the run of a taken slot went (``run_id``: the run the op made, when it chose its own id)."""
        with self._db:
            self._db.execute("UPDATE schedule_runs SET outcome = ?, run_id = COALESCE(?, run_id) WHERE schedule_id = ? AND slot = ?",
                             (outcome, run_id, schedule_id, slot))

    def set_enabled(self, schedule: Schedule, enabled: bool, why: str, next_due: float | None) -> None:
        schedule.enabled, schedule.why, schedule.next_due, schedule.updated = enabled, why, next_due, time.time()
        with self._db:
            self._db.execute("UPDATE schedules SET enabled = ?, why = ?, next_due = ?, updated = ? WHERE id = ?",
                             (int(enabled), why, next_due, schedule.updated, schedule.id))

    def remove(self, schedule_id: str) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM schedule_runs WHERE schedule_id = ?", (schedule_id,))
            self._db.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,))

    def attempted(self) -> list[SlotRun]:
        """Slots taken whose run was not yet known to have started (the broker stopped in between)."""
        return [SlotRun(*r) for r in self._db.execute(
            "SELECT schedule_id, slot, fired_at, run_id, outcome FROM schedule_runs WHERE outcome IN (?, ?) ORDER BY slot",
            (ATTEMPTED, RETRIED))]

    def runs(self, schedule_id: str, limit: int) -> list[SlotRun]:
        """The newest ``limit`` slots of a schedule."""
        return [SlotRun(*r) for r in self._db.execute(
            "SELECT schedule_id, slot, fired_at, run_id, outcome FROM schedule_runs WHERE schedule_id = ? ORDER BY slot DESC LIMIT ?",
            (schedule_id, limit))]

    def _schedule(self, row) -> Schedule:
        values = {c: row[c] for c in _COLUMNS}
        values["args"] = unpack_body(self._keyring.decrypt(row["args"], aad("schedules", "args", row["id"])))
        values["enabled"] = bool(row["enabled"])
        return Schedule(**values)
