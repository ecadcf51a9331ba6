"""Bulk runs at rest: one command to many agents (:mod:`broker.server.bulk`), kept in ``broker.db``.

``bulk_runs`` holds a run: who started it, the command and its arguments
(sealed like the command queue's, :mod:`broker.core.sealing`), the selector,
the targets it resolved to when it started, the safety options and its state.
``bulk_targets`` holds each target's place in the run: waiting, launched
(with the id of the ordinary command that carries it), and how it ended.

A target is marked launched, with its command id, *before* the command is
queued: after a crash in between, the broker finds the id without a command
and queues it then, under the same id, so no target runs twice.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from broker.core.envelope import pack_body, unpack_body
from broker.core.sealing import aad
from broker.server.broker_tables import BrokerTables
from broker.server.target_tally import WAITING, TargetTally

LAUNCHED, CANCELLED, SKIPPED = "launched", "cancelled", "skipped"
#: a run's states
RUNNING, FINISHED, HALTED, STOPPED = "running", "finished", "halted", "cancelled"
#: a run waiting for a second operator's approval (broker.server.approvals)
HELD = "held"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bulk_runs (
    id          TEXT PRIMARY KEY,
    sender      TEXT NOT NULL,
    sender_role TEXT NOT NULL,
    sender_key  TEXT NOT NULL,
    name        TEXT NOT NULL,
    args        BLOB NOT NULL,
    selector    TEXT NOT NULL,
    options     TEXT NOT NULL,
    state       TEXT NOT NULL,
    why         TEXT NOT NULL DEFAULT '',
    created     REAL NOT NULL,
    updated     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS bulk_targets (
    run_id     TEXT NOT NULL,
    position   INTEGER NOT NULL,
    client_id  TEXT NOT NULL,
    status     TEXT NOT NULL,
    command_id TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, position)
);
CREATE INDEX IF NOT EXISTS bulk_runs_state ON bulk_runs (state, created);
"""


@dataclass
class BulkOptions:
    """How carefully a run goes: at most ``max_parallel`` commands open at once; the first ``canary`` alone,
    then a pause for their results; a halt once failures pass ``halt_failure_pct`` of what finished."""

    max_parallel: int = 20
    canary: int = 0
    halt_failure_pct: float | None = None
    ttl_s: float = 3600.0
    #: the argument each target's command carries its own command id in (a broadcast's chat ``message_id``); never from the wire
    id_arg: str = ""


@dataclass
class BulkTarget:
    client_id: str
    status: str = WAITING  # waiting, launched, then the command's final status, cancelled or skipped
    command_id: str = ""


@dataclass
class BulkRun(TargetTally):
    STATE = "status"  # a bulk target's state is its command's status
    id: str
    sender: str
    sender_role: str
    sender_key: str
    name: str
    args: dict
    selector: str
    options: BulkOptions
    state: str = RUNNING
    why: str = ""
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    targets: list[BulkTarget] = field(default_factory=list)
    #: targets per status, and where the first waiting one may be (:class:`TargetTally`)
    _counts: dict[str, int] = field(default_factory=dict, repr=False)
    _cursor: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self.recount()

    def waiting(self):
        """Positions of waiting targets, first first, for a caller that marks each one it takes (the same
        position comes again until it is marked: stop taking when done)."""
        while (position := self.next_waiting()) is not None:
            yield position

    @property
    def open(self) -> bool:
        """Whether a target still waits or runs."""
        return bool(self.count(WAITING) or self.count(LAUNCHED))


class BulkStore(BrokerTables):
    """Runs and their targets in ``broker.db`` (the broker's only writer of them)."""

    SCHEMA = _SCHEMA

    def add(self, run: BulkRun) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO bulk_runs (id, sender, sender_role, sender_key, name, args, selector, options, state, why, created,"
                " updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run.id, run.sender, run.sender_role, run.sender_key, run.name,
                 self._keyring.encrypt(pack_body(run.args), aad("bulk_runs", "args", run.id)), run.selector,
                 json.dumps(run.options.__dict__), run.state, run.why, run.created, run.updated))
            self._db.executemany("INSERT INTO bulk_targets (run_id, position, client_id, status, command_id) VALUES (?, ?, ?, ?, ?)",
                                 [(run.id, i, t.client_id, t.status, t.command_id) for i, t in enumerate(run.targets)])

    def set_state(self, run: BulkRun) -> None:
        run.updated = time.time()
        self._db.execute("UPDATE bulk_runs SET state = ?, why = ?, updated = ? WHERE id = ?", (run.state, run.why, run.updated, run.id))

    def set_args(self, run: BulkRun) -> None:
        """Keep ``run.args`` as changed (an approval added to them)."""
        self._db.execute("UPDATE bulk_runs SET args = ? WHERE id = ?",
                         (self._keyring.encrypt(pack_body(run.args), aad("bulk_runs", "args", run.id)), run.id))

    def set_target(self, run: BulkRun, position: int) -> None:
        target = run.targets[position]
        self._db.execute("UPDATE bulk_targets SET status = ?, command_id = ? WHERE run_id = ? AND position = ?",
                         (target.status, target.command_id, run.id, position))

    def load(self, states: tuple[str, ...]) -> list[BulkRun]:
        """Every run in one of ``states``, with its targets, oldest first."""
        rows = self._db.execute(f"SELECT * FROM bulk_runs WHERE state IN ({','.join('?' * len(states))}) ORDER BY created",
                                states).fetchall()
        return [self._run(row) for row in rows]

    def get(self, run_id: str) -> BulkRun | None:
        row = self._db.execute("SELECT * FROM bulk_runs WHERE id = ?", (run_id,)).fetchone()
        return self._run(row) if row else None

    def recent(self, limit: int) -> list[BulkRun]:
        """The newest ``limit`` runs (targets included)."""
        return [self._run(row) for row in self._db.execute("SELECT * FROM bulk_runs ORDER BY created DESC LIMIT ?", (limit,))]

    def _run(self, row) -> BulkRun:
        args = unpack_body(self._keyring.decrypt(row["args"], aad("bulk_runs", "args", row["id"])))
        run = BulkRun(row["id"], row["sender"], row["sender_role"], row["sender_key"], row["name"], args, row["selector"],
                      BulkOptions(**json.loads(row["options"])), row["state"], row["why"], row["created"], row["updated"])
        run.targets = [BulkTarget(r["client_id"], r["status"], r["command_id"]) for r in self._db.execute(
            "SELECT client_id, status, command_id FROM bulk_targets WHERE run_id = ? ORDER BY position", (run.id,))]
        run.recount()
        return run
