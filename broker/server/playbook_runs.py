"""Playbook runs at rest (:mod:`broker.server.playbook_runner`), kept in ``broker.db``.

``playbook_runs`` holds a run: the playbook, who started it (connection,
role, key and the person's name), the reason, the selector and the steps as
filled in when it started (each step's template, command, arguments and
condition: sealed like the command queue's, :mod:`broker.core.sealing`), its
pace and its state. ``playbook_targets`` holds each target resolved when the
run started: where it is (waiting, active, finished, stopped, cancelled,
skipped), its current step, and per step a status, the id of the ordinary
command that carried it and a short copy of its result (sealed too).

A step is marked launched, with its command id, *before* its command is
queued: after a crash in between, the broker finds the id without a command
and queues it then, under the same id, so no step runs twice.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from broker.core.envelope import pack_body, unpack_body
from broker.core.sealing import aad
from broker.server.broker_tables import BrokerTables
from broker.server.target_tally import WAITING, TargetTally

#: a run's states (as a bulk run's)
RUNNING, FINISHED, CANCELLED, HELD = "running", "finished", "cancelled", "held"
#: where a target is
ACTIVE, ENDED, STOPPED, SKIPPED = "active", "finished", "stopped", "skipped"
#: a step's status besides the command's own (launched, then done, failed or expired)
PENDING, LAUNCHED, NOT_RUN = "pending", "launched", "not run"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS playbook_runs (
    id          TEXT PRIMARY KEY,
    playbook    TEXT NOT NULL,
    sender      TEXT NOT NULL,
    sender_role TEXT NOT NULL,
    sender_key  TEXT NOT NULL,
    person      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    selector    TEXT NOT NULL,
    steps       BLOB NOT NULL,
    options     TEXT NOT NULL,
    state       TEXT NOT NULL,
    why         TEXT NOT NULL DEFAULT '',
    created     REAL NOT NULL,
    updated     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS playbook_targets (
    run_id     TEXT NOT NULL,
    position   INTEGER NOT NULL,
    client_id  TEXT NOT NULL,
    state      TEXT NOT NULL,
    step       INTEGER NOT NULL DEFAULT 0,
    why        TEXT NOT NULL DEFAULT '',
    steps      BLOB NOT NULL,
    PRIMARY KEY (run_id, position)
);
CREATE INDEX IF NOT EXISTS playbook_runs_state ON playbook_runs (state, created);
"""


@dataclass
class RunOptions:
    """At most ``max_parallel`` targets in the middle of their steps at once; each step's command expires after ``ttl_s``."""

    max_parallel: int = 20
    ttl_s: float = 3600.0


@dataclass
class StepState:
    status: str = PENDING
    command_id: str = ""
    result: dict = field(default_factory=dict)


@dataclass
class RunTarget:
    client_id: str
    state: str = WAITING
    step: int = 0  # the step it is at (0-based): the one launched while active, the next one to look at otherwise
    why: str = ""
    steps: list[StepState] = field(default_factory=list)


@dataclass
class PlaybookRun(TargetTally):
    id: str
    playbook: str
    sender: str
    sender_role: str
    sender_key: str
    person: str
    reason: str
    selector: str
    steps: list[dict]  # each {template, command, args (stamped), when}
    options: RunOptions
    state: str = RUNNING
    why: str = ""
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    targets: list[RunTarget] = field(default_factory=list)
    #: targets per state, and where the first waiting one may be (:class:`TargetTally`)
    _counts: dict[str, int] = field(default_factory=dict, repr=False)
    _cursor: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self.recount()

    @property
    def open(self) -> bool:
        """Whether a target still waits or is in the middle of its steps."""
        return bool(self.count(WAITING) or self.count(ACTIVE))


class RunStore(BrokerTables):
    """Runs and their targets in ``broker.db`` (the broker's only writer of them)."""

    SCHEMA = _SCHEMA

    def add(self, run: PlaybookRun) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO playbook_runs (id, playbook, sender, sender_role, sender_key, person, reason, selector, steps, options,"
                " state, why, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run.id, run.playbook, run.sender, run.sender_role, run.sender_key, run.person, run.reason, run.selector,
                 self._seal(run.steps, "playbook_runs", "steps", run.id), json.dumps(run.options.__dict__), run.state, run.why,
                 run.created, run.updated))
            self._db.executemany(
                "INSERT INTO playbook_targets (run_id, position, client_id, state, step, why, steps) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(run.id, i, t.client_id, t.state, t.step, t.why, self._target_steps(run, i)) for i, t in enumerate(run.targets)])

    def set_state(self, run: PlaybookRun) -> None:
        run.updated = time.time()
        self._db.execute("UPDATE playbook_runs SET state = ?, why = ?, updated = ? WHERE id = ?",
                         (run.state, run.why, run.updated, run.id))

    def set_steps(self, run: PlaybookRun) -> None:
        """Keep ``run.steps`` as changed (an approval added to their arguments)."""
        self._db.execute("UPDATE playbook_runs SET steps = ? WHERE id = ?",
                         (self._seal(run.steps, "playbook_runs", "steps", run.id), run.id))

    def set_target(self, run: PlaybookRun, position: int) -> None:
        target = run.targets[position]
        self._db.execute("UPDATE playbook_targets SET state = ?, step = ?, why = ?, steps = ? WHERE run_id = ? AND position = ?",
                         (target.state, target.step, target.why, self._target_steps(run, position), run.id, position))

    def load(self, states: tuple[str, ...]) -> list[PlaybookRun]:
        """Every run in one of ``states``, with its targets, oldest first."""
        rows = self._db.execute(f"SELECT * FROM playbook_runs WHERE state IN ({','.join('?' * len(states))}) ORDER BY created",
                                states).fetchall()
        return [self._run(row) for row in rows]

    def get(self, run_id: str) -> PlaybookRun | None:
        row = self._db.execute("SELECT * FROM playbook_runs WHERE id = ?", (run_id,)).fetchone()
        return self._run(row) if row else None

    def recent(self, limit: int) -> list[PlaybookRun]:
        return [self._run(row) for row in self._db.execute("SELECT * FROM playbook_runs ORDER BY created DESC LIMIT ?", (limit,))]

    def _seal(self, value, *place: str) -> bytes:
        return self._keyring.encrypt(pack_body(value), aad(*place))

    def _open(self, blob: bytes, *place: str):
        return unpack_body(self._keyring.decrypt(blob, aad(*place)))

    def _target_steps(self, run: PlaybookRun, position: int) -> bytes:
        steps = [step.__dict__ for step in run.targets[position].steps]
        return self._seal(steps, "playbook_targets", "steps", run.id, str(position))

    def _run(self, row) -> PlaybookRun:
        run = PlaybookRun(row["id"], row["playbook"], row["sender"], row["sender_role"], row["sender_key"], row["person"],
                          row["reason"], row["selector"], self._open(row["steps"], "playbook_runs", "steps", row["id"]),
                          RunOptions(**json.loads(row["options"])), row["state"], row["why"], row["created"], row["updated"])
        run.targets = [RunTarget(r["client_id"], r["state"], r["step"], r["why"],
                                 [StepState(**s) for s in self._open(r["steps"], "playbook_targets", "steps", run.id,
                                                                     str(r["position"]))])
                       for r in self._db.execute("SELECT * FROM playbook_targets WHERE run_id = ? ORDER BY position", (run.id,))]
        run.recount()
        return run
