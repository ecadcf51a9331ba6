"""Operations on many machines: the parts of the broker that act on fleets.

:class:`FleetOperations` owns them and is what the loop sees: made once,
``restore`` when the loop starts, ``tick`` on every timer pass (wall-clock
seconds), ``close`` when it stops. Each part lives in its own module:

- ``targets`` (:mod:`broker.server.targets`): selectors, tags, groups, facts;
- ``templates`` (:mod:`broker.server.template_book`): named, typed commands;
- ``bulk`` (:mod:`broker.server.bulk`): paced runs to many targets;
- ``approvals`` (:mod:`broker.server.approval_flow`): the two-person rule;
- ``broadcasts`` (:mod:`broker.server.broadcasts`): one chat message to many, with receipts.

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
from broker.server.targets import TargetBook
from broker.server.template_book import TemplateBook

if TYPE_CHECKING:
    from broker.server.loop import Broker


class FleetOperations:
    """Targets, templates, bulk runs, approvals and broadcasts, with one life cycle."""

    def __init__(self, broker: "Broker", wall_clock: Callable[[], float]):
        db = broker.data.broker_db
        self.targets = TargetBook(db, clock=wall_clock)
        self.templates = TemplateBook(db)
        self.bulk = BulkRuns(broker, BulkStore(db, broker.commands.keyring))
        self.approvals = Approvals(broker, ApprovalBook(db, broker.commands.keyring))
        self.broadcasts = Broadcasts(broker, BroadcastStore(db, broker.commands.keyring))
        broker.fanout.watch_chat(self.broadcasts.watching, self.broadcasts.on_chat)

    def restore(self) -> None:
        """The loop starts: what the last broker left unfinished goes on."""
        self.bulk.restore()
        self.broadcasts.restore()

    def tick(self, now: float) -> None:
        """A timer pass (``now``: wall-clock seconds): approvals past their time expire; old broadcasts' receipts
        are no longer awaited."""
        self.approvals.expire_due(now)
        self.broadcasts.tick(now)

    def close(self) -> None:
        """The loop stops: every store closes."""
        for store in (self.targets, self.templates, self.bulk.store, self.approvals.book, self.broadcasts.store):
            store.close()
