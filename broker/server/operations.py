"""Operations on many machines: the parts of the broker that act on fleets.

:class:`FleetOperations` owns them and is what the loop sees: made once,
``restore`` when the loop starts, ``tick`` on every timer pass (wall-clock
seconds), ``close`` when it stops. Each part lives in its own module:

- ``targets`` (:mod:`broker.server.targets`): selectors, tags, groups, facts;
- ``templates`` (:mod:`broker.server.template_book`): named, typed commands;
- ``bulk`` (:mod:`broker.server.bulk`): paced runs to many targets;
- ``approvals`` (:mod:`broker.server.approval_flow`): the two-person rule;
- ``playbook_book`` and ``playbooks`` (:mod:`broker.server.playbook_book`,
  :mod:`broker.server.playbook_runner`): ordered template steps per target;
- ``schedules`` (:mod:`broker.server.schedules`): runs started at a time or on a cron expression;
- ``broadcasts`` (:mod:`broker.server.broadcasts`): one chat message to many, with receipts.

Commands a run launched end here too (:meth:`FleetOperations.on_final`): the
command router tells this one place, which tells the run that owns them.

A new part is made in :meth:`FleetOperations.__init__`, restored, ticked
and closed here; the loop does not change.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from broker.server.approval_flow import Approvals
from broker.server.approvals import ApprovalBook
from broker.server.broadcast_store import BroadcastStore
from broker.server.broadcasts import Broadcasts
from broker.server.bulk import BulkRuns
from broker.server.bulk_store import BulkStore
from broker.server.playbook_book import PlaybookBook
from broker.server.playbook_runner import PlaybookRunner
from broker.server.playbook_runs import RunStore
from broker.server.request_ops import OPS
from broker.server.schedule_store import ScheduleStore
from broker.server.schedules import Scheduler
from broker.server.targets import TargetBook
from broker.server.template_book import TemplateBook

if TYPE_CHECKING:
    from broker.server.command_queue import Command
    from broker.server.loop import Broker


class FleetOperations:
    """Targets, templates, bulk runs, approvals, playbooks, schedules and broadcasts, with one life cycle."""

    def __init__(self, broker: "Broker", wall_clock: Callable[[], float]):
        db = broker.data.broker_db
        self.targets = TargetBook(db, clock=wall_clock)
        self.templates = TemplateBook(db)
        self.bulk = BulkRuns(broker, BulkStore(db, broker.commands.keyring))
        self.approvals = Approvals(broker, ApprovalBook(db, broker.commands.keyring))
        self.playbook_book = PlaybookBook(db)
        self.playbooks = PlaybookRunner(broker, RunStore(db, broker.commands.keyring))
        self.schedules = Scheduler(broker, ScheduleStore(db, broker.commands.keyring), wall_clock, OPS)
        self.broadcasts = Broadcasts(broker, BroadcastStore(db, broker.commands.keyring))
        broker.fanout.watch_chat(self.broadcasts.watching, self.broadcasts.on_chat)

    def restore(self) -> None:
        """The loop starts: what the last broker left unfinished goes on (runs first, then slots being started)."""
        self.bulk.restore()
        self.playbooks.restore()
        self.schedules.restore()
        self.broadcasts.restore()

    def owns(self, cmd_id: str) -> bool:
        """Whether ``cmd_id`` is an open command of a run (bulk or playbook): its outcome goes to no one person."""
        return self.bulk.owns(cmd_id) or self.playbooks.owns(cmd_id)

    def on_final(self, cmd: "Command") -> None:
        """A command reached its final status: the run that launched it, if any, goes on."""
        self.bulk.on_final(cmd)
        self.playbooks.on_final(cmd)

    def tick(self, now: float) -> None:
        """A timer pass (``now``: wall-clock seconds): approvals past their time expire; due schedules start; old
        broadcasts' receipts are no longer awaited."""
        self.approvals.expire_due(now)
        self.schedules.tick(now)
        self.broadcasts.tick(now)

    def close(self) -> None:
        """The loop stops: every store closes."""
        for store in (self.targets, self.templates, self.bulk.store, self.approvals.book, self.playbook_book, self.playbooks.store,
                      self.schedules.store, self.broadcasts.store):
            store.close()
