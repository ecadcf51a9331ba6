"""Scheduled runs: a request op started by the broker at a time, once or on a cron expression.

A schedule runs one op of :data:`SCHEDULABLE` (a template on a selector, a
bulk command, a playbook, a tracked broadcast) with the arguments it was made with, AS THE PERSON WHO MADE
IT: at each slot the broker checks that the owner's key is still accepted
and its role may still call the op; if not, nothing runs, a security record
says why, and the schedule is paused. What the op does then is what it does
for that person by hand (a template marked for approval is held for a
second operator, :mod:`broker.server.approval_flow`). The schedule's reason
is the run's reason, in the audit trail with the owner's name.

Cron slots are wall-clock minutes in the schedule's zone (UTC unless it
names another, :mod:`broker.core.cron`); a one-off schedule has one slot,
its ``at`` time, and is done after it.

Each slot starts at most once, and exactly once for bulk runs:

1. the slot is taken, the next slot set and the run's id chosen in ONE
   SQLite transaction (:meth:`ScheduleStore.claim`), before anything starts;
2. the op starts, its bulk run stored under that id before a command is sent;
3. the slot's outcome is recorded.

A broker killed before (1) finds the slot still due at start-up and runs it
(missed policy below). Killed between (1) and (3), it finds the slot
``attempted``: if a bulk run with the chosen id exists, that run started
(and goes on, :mod:`broker.server.bulk`); if not, nothing of it was sent,
and it starts now under the same rules as a missed slot (once: a broker killed
again during that start does not start it a third time). An op whose start
is not a stored bulk run (none today) is then marked ``interrupted`` and not
run again: at most once, and the slot says it was attempted.

Missed runs (the broker was down or stalled at a slot), per schedule:

* ``skip`` (default): a slot more than ``grace_s`` (default 60 s) late does
  not run; the slot is recorded ``missed`` and the next future slot is used;
* ``once``: if any slot was missed, the schedule runs ONCE when the broker is
  back (not once per missed slot), then goes on with the next future slot.
"""
from __future__ import annotations

import logging
import os
import signal
from typing import TYPE_CHECKING, Callable, NamedTuple

from broker.core import cron, permissions
from broker.core.envelope import new_id
from broker.core.errors import Refused
from broker.server.peers import Peer
from broker.server.registry import ACCEPTED, RegistryError
from broker.server.schedule_store import RETRIED, Schedule, ScheduleStore

if TYPE_CHECKING:
    from broker.server.loop import Broker

log = logging.getLogger(__name__)

SKIP, ONCE = "skip", "once"
MISSED_POLICIES = (SKIP, ONCE)
DEFAULT_GRACE_S = 60
MAX_GRACE_S = 7 * 24 * 3600
#: what an op raises for a bad request (as ``broker.server.requests.BAD_REQUEST_ERRORS``): the slot failed
_BAD_REQUEST = (RegistryError, ValueError, KeyError, TypeError, OverflowError)
#: a test's switch: the broker SIGKILLs itself at this point of a firing (before-claim, after-claim, after-start)
CRASH_ENV = "EMS_SCHEDULE_CRASH_AT"


def _reason_arg(args: dict, reason: str) -> dict:
    """The reason is the op's own argument (``templates.run``)."""
    return {**args, "reason": args.get("reason") or reason}


def _command_reason(args: dict, reason: str) -> dict:
    """The reason goes in the command's arguments (``bulk.start``)."""
    command_args = args.get("args") if isinstance(args.get("args"), dict) else {}
    return {**args, "args": {**command_args, "reason": command_args.get("reason") or reason}}


class Schedulable(NamedTuple):
    """How a schedule's reason reaches an op, and whether its start is a stored bulk run (exactly once)."""

    with_reason: Callable[[dict, str], dict]
    bulk: bool


#: the ops a schedule may run (adding one is one line)
SCHEDULABLE: dict[str, Schedulable] = {
    "templates.run": Schedulable(_reason_arg, bulk=True),
    "bulk.start": Schedulable(_command_reason, bulk=True),
    "playbooks.run": Schedulable(_reason_arg, bulk=False),
    "broadcast.send": Schedulable(_reason_arg, bulk=False),
}


def next_slot(schedule: Schedule, after: float) -> float | None:
    """The schedule's first slot strictly after ``after`` (None: a one-off schedule, done)."""
    if not schedule.cron:
        return schedule.at if schedule.at is not None and schedule.at > after else None
    return cron.next_after(cron.parse(schedule.cron), after, cron.zone(schedule.tz))


class Scheduler:
    """The broker's schedules: start each due slot once (see the module docstring)."""

    def __init__(self, broker: "Broker", store: ScheduleStore, clock: Callable[[], float], ops: dict[str, Callable]):
        """``ops``: the broker's request ops (:data:`broker.server.request_ops.OPS`), called as a schedule's owner."""
        self.broker, self.store, self.clock = broker, store, clock
        self.ops = {op: ops[op] for op in SCHEDULABLE}
        self._crash_at = os.environ.get(CRASH_ENV, "")

    # -- firing ------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Start every enabled schedule whose next slot is at or before ``now`` (wall-clock seconds)."""
        for schedule in self.store.due(now):
            try:
                self._due(schedule, now)
            except Exception:  # a bug or a tampered row must not stop the bus: counted, logged, the next one runs
                self.broker.counters["internal_errors"] += 1
                if self.broker._throttle.allow(("schedule", schedule.id)):
                    log.exception("schedule %s: its slot could not be started", schedule.name)

    def _due(self, schedule: Schedule, now: float) -> None:
        slot = schedule.next_due
        following = next_slot(schedule, max(slot, now))
        late = now - slot
        if late > schedule.grace_s and schedule.missed == SKIP:
            outcome = f"missed: the broker was down or stalled at the slot ({late:.0f} s late; missed policy skip)"
            if self.store.claim(schedule, following, "", now, outcome):
                log.info("schedule %s: slot %s %s", schedule.name, slot, outcome)
            return
        run_id = new_id()
        self._crash("before-claim")
        if not self.store.claim(schedule, following, run_id, now):
            return
        self._crash("after-claim")
        self.store.finish(schedule.id, slot, *self._start(schedule, slot, run_id))

    def _start(self, schedule: Schedule, slot: float, run_id: str) -> tuple[str, str | None]:
        """Run ``schedule``'s op for ``slot`` as its owner; the slot's outcome, and the id of the run it made."""
        owner, why = self._owner(schedule)
        if owner is None:
            self._refuse(schedule, why)
            return f"skipped: {why}; the schedule is paused", None
        request = SCHEDULABLE[schedule.op].with_reason(schedule.args, f"{schedule.reason} (schedule {schedule.name})")
        self.broker.bulk.next_id = run_id
        made = None
        try:
            result = self.ops[schedule.op](self.broker, owner, request)
        except Refused as refusal:
            outcome = f"failed: {refusal.message[:300]}"
        except _BAD_REQUEST as exc:
            outcome = f"failed: {str(exc)[:300]}"
        else:
            self._crash("after-start")
            made = result.get("id") if isinstance(result.get("id"), str) else None
            outcome = f"{result.get('state', 'started')}: run {made or run_id}"
        finally:
            self.broker.bulk.next_id = None
        self.broker.records.audit(owner, "schedules.fire", {
            "id": schedule.id, "name": schedule.name, "slot": slot, "run_id": made or run_id, "outcome": outcome,
            "reason": schedule.reason, "operator_name": schedule.owner_name})
        log.info("schedule %s: slot %s %s", schedule.name, slot, outcome)
        return outcome, made

    def _owner(self, schedule: Schedule) -> tuple[Peer | None, str]:
        """The owner as the op sees them (role as the registry says now), or None and why they may not."""
        record = self.broker.registry.get(schedule.owner_key)
        if record is None or record.state != ACCEPTED or record.client_id != schedule.owner:
            return None, f"the key of {schedule.owner} ({schedule.owner_name}) is no longer accepted"
        if not permissions.may_request(record.role, schedule.op):
            return None, permissions.refusal(record.role, f"call {schedule.op}")
        return Peer(rid=b"", key=schedule.owner_key, role=record.role, client_id=schedule.owner,
                    sender=schedule.owner.encode()), ""

    def _refuse(self, schedule: Schedule, why: str) -> None:
        """The owner may no longer run it: paused, with a security record."""
        self.store.set_enabled(schedule, False, f"paused by the broker: {why}", schedule.next_due)
        self.broker.records.security(None, "schedule_refused", f"schedule {schedule.name} ({schedule.id}) not run: {why}; "
                                     "paused", subject=schedule.owner)

    def _crash(self, point: str) -> None:
        if self._crash_at == point:
            log.warning("%s=%s: SIGKILL now", CRASH_ENV, point)
            os.kill(os.getpid(), signal.SIGKILL)

    # -- after a restart ---------------------------------------------------------------------
    def restore(self) -> None:
        """Slots the last broker took without recording how they went: started (a stored run under the chosen
        id), or started now if nothing of them was sent and the missed policy allows, else interrupted."""
        now = self.clock()
        for taken in self.store.attempted():
            schedule = self.store.get(taken.schedule_id)
            if schedule is None:
                continue
            made = None
            if taken.run_id and self.broker.bulk.store.get(taken.run_id) is not None:
                outcome = f"started: run {taken.run_id} (recorded after a broker restart)"
            elif not SCHEDULABLE[schedule.op].bulk or not schedule.enabled or taken.outcome == RETRIED:
                outcome = "interrupted: the broker stopped as the run started; not run again (at most once)"
            elif now - taken.slot > schedule.grace_s and schedule.missed == SKIP:
                outcome = "interrupted before anything was sent; not made up (missed policy skip)"
            else:  # nothing of it was sent: start it, once (a start that kills the broker again is not retried)
                self.store.finish(schedule.id, taken.slot, RETRIED)
                outcome, made = self._start(schedule, taken.slot, taken.run_id)
            self.store.finish(schedule.id, taken.slot, outcome, made)
