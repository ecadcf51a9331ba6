"""Moving outbox records onto the bus until the store acknowledges them.

:class:`DurableSender` is the agent side of the "at least once,
deduplicated" contract: :meth:`report` writes a record to the durable
outbox, :meth:`pump` sends what is due (bounded by the outbox's in-flight
window), an ``ACK`` from the persister deletes records, and a reconnect
makes every unacknowledged record due again.
"""
from __future__ import annotations

import logging
from typing import Any

from agent.outbox import Outbox, OutboxError, Priority
from broker.client import BusClient
from broker.envelope import Envelope, Kind, pack_body
from broker.errors import EmsError, ProtocolError

log = logging.getLogger(__name__)


class DurableSender:
    def __init__(self, bus: BusClient, outbox: Outbox, batch: int = 500):
        self.bus = bus
        self.outbox = outbox
        self.batch = batch
        self.acked = 0
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
        """Send due records if connected; returns how many were handed to the bus."""
        if self.bus.generation != self._generation:
            self._generation = self.bus.generation
            self.outbox.requeue_all()  # reconnected: whatever was in flight may be lost
        if not self.bus.ready:
            return 0
        sent: list[str] = []
        try:
            for record in self.outbox.due(self.batch):
                self.bus.publish(record.kind, record.topic, body=record.body, msg_id=record.msg_id)
                sent.append(record.msg_id)
        except EmsError as exc:  # send queue full or disconnected: the rest waits
            log.debug("paused sending the outbox: %s", exc)
        finally:
            if sent:
                self.outbox.mark_sent(sent)
        return len(sent)

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
