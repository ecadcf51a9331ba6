"""Moving outbox records onto the bus until the store acknowledges them.

:class:`DurableSender` is the agent side of the "at least once,
deduplicated" contract: :meth:`report` writes a record to the durable
outbox, :meth:`pump` sends what is due (bounded by the outbox's in-flight
window), an ``ACK`` from the persister deletes records, and a reconnect
makes every unacknowledged record due again.

When the broker's WELCOME offers batches, due records travel many to a
``BATCH`` message (within its record and byte limits); a record too large
for any batch, a lone record, and everything sent to a broker that offers no
batches go one record per message. Either way the persister acknowledges
each record by its own message id, after its commit.
"""
from __future__ import annotations

import logging
from typing import Any, Iterator

from agent.outbox import Outbox, OutboxError, OutboxRecord, Priority
from broker.core.client import BusClient
from broker.core.envelope import Envelope, Kind, pack_body
from broker.core.batches import BATCH_FRAME_BYTES, BatchLimits, batch_record_bytes, batch_terms, pack_batch
from broker.core.errors import EmsError, ProtocolError

log = logging.getLogger(__name__)


class DurableSender:
    def __init__(self, bus: BusClient, outbox: Outbox, batch: int = 500):
        self.bus = bus
        self.outbox = outbox
        self.batch = batch
        self.acked = 0
        self.batches_sent = 0
        self._generation = bus.generation

    def report(self, kind: Kind, name: str, data: Any, priority: Priority | str | None = None, msg_id: str | None = None) -> str:
        """Keep a record durably for delivery; ``name`` is the topic after ``<kind>.<me>.``.

        ``msg_id`` names the record when the server already knows its id
        (a chat message stored under the id its operator gave it); a record
        with that id already waiting is not stored twice.
        """
        if msg_id is None:
            return self.outbox.put(kind, name, pack_body(data), priority)
        self.outbox.put_many([(kind, name, pack_body(data), priority, msg_id)])
        return msg_id

    def report_many(self, items: list[tuple[Kind, str, Any]]) -> list[str]:
        return self.outbox.put_many([(kind, name, pack_body(data)) for kind, name, data in items])

    def pump(self) -> int:
        """Send due records if connected and not rate-limited; returns how many were handed to the bus.

        Records the broker dropped over this agent's rate limit are never
        acknowledged, so the outbox resends them once ``resend_after_s`` has passed.
        """
        if self.bus.generation != self._generation:
            self._generation = self.bus.generation
            self.outbox.requeue_all()  # reconnected: whatever was in flight may be lost
        if not self.bus.ready or self.bus.throttled:
            return 0
        sent: list[str] = []
        try:
            for group in _groups(self.outbox.due(self.batch), batch_terms(self.bus.welcome)):
                self._send(group)
                sent += [record.msg_id for record in group]
        except EmsError as exc:  # send queue full or disconnected: the rest waits
            log.debug("paused sending the outbox: %s", exc)
        finally:
            if sent:
                self.outbox.mark_sent(sent)
        return len(sent)

    def _send(self, group: list[OutboxRecord]) -> None:
        """One message: a BATCH, or a lone record as itself."""
        if len(group) == 1:
            record = group[0]
            self.bus.publish(record.kind, record.topic, body=record.body, msg_id=record.msg_id)
            return
        self.bus.send(Kind.BATCH, body=pack_batch([(r.kind, r.topic, r.msg_id, r.created, r.body) for r in group]))
        self.batches_sent += 1

    def handle(self, env: Envelope) -> bool:
        """Take an ACK from the store; False for any other message."""
        if env.kind is not Kind.ACK:
            return False
        try:
            ids = env.data().get("ids", [])
            self.acked += self.outbox.ack(str(i) for i in ids)
        except (ProtocolError, AttributeError, OutboxError) as exc:
            log.warning("could not apply an ack: %s", exc)
        return True


def _groups(records: list[OutboxRecord], limits: BatchLimits | None) -> Iterator[list[OutboxRecord]]:
    """``records`` in order, cut into groups that each fit one message:
    batches within ``limits``, or single records (no limits: no batches)."""
    if limits is None:
        for record in records:
            yield [record]
        return
    group: list[OutboxRecord] = []
    size = BATCH_FRAME_BYTES
    for record in records:
        added = batch_record_bytes(record.topic, record.msg_id, record.body)
        if group and not limits.fits(len(group) + 1, size + added):
            yield group
            group, size = [], BATCH_FRAME_BYTES
        if not limits.fits(1, size + added):  # too large for any batch: on its own
            yield [record]
            continue
        group.append(record)
        size += added
    if group:
        yield group
