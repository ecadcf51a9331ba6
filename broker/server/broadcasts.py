"""Tracked broadcasts: one chat message to every agent a selector picks, with per-recipient receipts.

An operator sends a text with a reason; the broker resolves the selector once
(:mod:`broker.core.selectors`), gives each recipient its own message id (the
id of the ``chat.send`` command that carries it to that agent) and records
the broadcast and its recipients (:mod:`broker.server.broadcast_store`)
before anything goes. The broadcast's id is its bulk run's. The messages go as a bulk run (:mod:`broker.server.bulk`):
paced, audited per command in the sender's name, queued for offline agents
within their time to live, as every command is.

Receipts: every agent reports ``delivered`` (on screen, or in the access log
without a display) and ``read`` as durable ``event.<agent>.chat`` records
whose ``ref`` is the message id. The broker sees them pass on their way to
the store, so the fan-out hands them here (:meth:`Fanout.watch_chat`): one
dict lookup per agent message, by the sender's client id, in
:attr:`Broadcasts.watching`, which holds only agents with a receipt still
awaited. Why here rather than asking the store at ``broadcast.get`` time: the
broker answers requests from its own state (the store is another process,
and may be down or behind, and its answer would come back asynchronously).
The cost: a lookup in an empty dict is ~20 ns against ~8.5 us of broker CPU
per routed event (``bench/bus.py --quick``, three runs each on a busy
2-core machine: 8.3-8.8 us before the hook, 8.2-8.7 us after); only an
awaited agent's records are looked into (its batches decoded once more). A receipt counts only for the agent
it was sent to (the key is the authenticated sender). Receipts are awaited
for :data:`WATCH_S` after a broadcast is made; later ones still reach the
store's message history.

What is not a receipt comes from the run: a recipient is ``pending`` until
its command is queued, ``queued`` while it waits or runs, ``sent`` once the
agent took it, ``failed`` if it failed or expired, ``cancelled`` if the
broadcast was cancelled first (:meth:`Broadcasts.refresh`, at read time).
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from broker.core import bounds
from broker.core.envelope import new_id, unpack_body
from broker.core.errors import ProtocolError
from broker.core.vocabulary import DONE, EXPIRED, FAILED, MAX_REASON_CHARS, QUEUED, SENT, clean_reason
from broker.server.broadcast_store import ENDED, PENDING, READ, RECEIPTS, Broadcast, BroadcastStore, Recipient
from broker.server.bulk_store import CANCELLED, LAUNCHED, SKIPPED, STOPPED, WAITING, BulkOptions, BulkRun

if TYPE_CHECKING:
    from broker.server.loop import Broker
    from broker.server.peers import Peer

log = logging.getLogger(__name__)

CHAT_SEND = "chat.send"
#: the longest text an agent shows (agent.chat.inbox.MAX_TEXT_CHARS)
MAX_TEXT_CHARS = 10_000
#: receipts are awaited this long after a broadcast is made
WATCH_S = 7 * 24 * 3600.0
#: how often the receipts awaited are rebuilt from broker.db (old broadcasts dropped)
PRUNE_S = 3600.0

#: a bulk target's status -> the recipient's (for recipients without a receipt)
_FROM_TARGET = {WAITING: PENDING, LAUNCHED: QUEUED, DONE: SENT, FAILED: FAILED, EXPIRED: FAILED, SKIPPED: FAILED,
                CANCELLED: CANCELLED}


def check_text(value) -> str:
    """The message: text with something in it, at most :data:`MAX_TEXT_CHARS` characters."""
    text = bounds.text(value, "text", MAX_TEXT_CHARS, empty=False)
    if not text.strip():
        raise ValueError("text must say something (it is blank)")
    return text


def check_reason(value) -> str:
    """Why the broadcast (or its cancel) is done: kept in the audit trail, never blank."""
    reason = clean_reason(bounds.text(value if value is not None else "", "reason", MAX_REASON_CHARS))
    if not reason:
        raise ValueError("a reason is needed, kept in the audit trail: give one with --reason '...'")
    return reason


class Broadcasts:
    """The broker's broadcasts: send, receipts, refresh, cancel (see the module docstring)."""

    def __init__(self, broker: "Broker", store: BroadcastStore):
        self.broker, self.store = broker, store
        #: client id -> {message id: broadcast id}: the receipts still awaited (the fan-out looks here)
        self.watching: dict[str, dict[str, str]] = {}
        self._next_prune = 0.0

    # -- send ---------------------------------------------------------------------------
    def send(self, peer: "Peer", text: str, selector_text: str, reason: str, options: BulkOptions,
             operator: object = None) -> Broadcast:
        """Record and start a broadcast of ``text`` (checked) to what ``selector_text`` matches, paced by ``options``;
        ``operator``: the person a vouching service names (the broker's stamp decides what counts)."""
        broker = self.broker
        named = {} if operator is None else {"operator": operator}
        stamped = broker.command_router.stamped(peer, CHAT_SEND, {"text": text, "reason": reason, **named})
        selector, targets = broker.bulk.plan(selector_text, set(broker.online))
        for target in targets:
            target.command_id = new_id()
        options.id_arg = "message_id"
        broadcast_id = new_id()
        broadcast = Broadcast(broadcast_id, broadcast_id, peer.client_id, stamped["operator"]["name"], reason, text, selector,
                              recipients=[Recipient(t.client_id, t.command_id, t.command_id) for t in targets])
        self.store.add(broadcast)  # first: no message goes that broker.db does not know of
        for r in broadcast.recipients:
            self.watching.setdefault(r.client_id, {})[r.message_id] = broadcast.id
        run = broker.bulk.start(peer, CHAT_SEND, stamped, selector, options, planned=(selector, targets), run_id=broadcast_id)
        broker.records.audit(peer, "broadcast.send", {
            "id": broadcast.id, "selector": selector, "count": len(targets), "reason": reason, "chars": len(text),
            "text": text[:500], "operator_name": broadcast.person, "via": stamped["operator"]["via"]})
        return self.refresh(broadcast, run)

    # -- receipts -----------------------------------------------------------------------------
    def on_chat(self, client_id: str, body: bytes) -> None:
        """A chat record of ``client_id`` (one the fan-out saw go by): if it is a receipt awaited, keep it."""
        awaited = self.watching.get(client_id)
        if not awaited:
            return
        try:
            data = unpack_body(body)
        except ProtocolError:  # the store judges malformed records; a receipt this is not
            return
        if not isinstance(data, dict):
            return
        ref, status = data.get("ref"), data.get("status")
        broadcast_id = awaited.get(ref) if isinstance(ref, str) else None
        if broadcast_id is None or status not in RECEIPTS:
            return
        now = time.time()
        ts = data.get("ts")
        ts = float(ts) if isinstance(ts, (int, float)) and not isinstance(ts, bool) and 0 < ts <= now else now
        self.store.receipt(broadcast_id, client_id, status, ts)
        if status == READ:
            self._forget(client_id, ref)

    def _forget(self, client_id: str, message_id: str) -> None:
        awaited = self.watching.get(client_id)
        if awaited is not None:
            awaited.pop(message_id, None)
            if not awaited:
                del self.watching[client_id]

    # -- read ------------------------------------------------------------------------------------
    def get(self, broadcast_id: str) -> Broadcast | None:
        """A broadcast with its recipients' statuses as of now (None if unknown)."""
        broadcast = self.store.get(broadcast_id)
        return self.refresh(broadcast) if broadcast is not None else None

    def recent(self, limit: int) -> list[Broadcast]:
        return [self.refresh(b) for b in self.store.recent(limit)]

    def run_of(self, broadcast: Broadcast) -> BulkRun | None:
        bulk = self.broker.bulk
        return bulk.runs.get(broadcast.run_id) or bulk.store.get(broadcast.run_id)

    def refresh(self, broadcast: Broadcast, run: BulkRun | None = None) -> Broadcast:
        """Recipients without a receipt take their command's state from the run; what changed is kept."""
        run = run or self.run_of(broadcast)
        if run is None:
            return broadcast
        by_client = {t.client_id: t.status for t in run.targets}
        changed = []
        for r in broadcast.recipients:
            if r.status in RECEIPTS:
                continue
            status = _FROM_TARGET.get(by_client.get(r.client_id, ""), r.status)
            if status != r.status:
                r.status = status
                changed.append(r)
                if status in (FAILED, CANCELLED):
                    self._forget(r.client_id, r.message_id)
        if changed:
            self.store.set_statuses(broadcast.id, changed)
        return broadcast

    # -- cancel ------------------------------------------------------------------------------------
    def cancel(self, peer: "Peer", broadcast: Broadcast, reason: str) -> Broadcast:
        """Nothing more of ``broadcast`` goes: recipients not reached yet (waiting, or queued for an offline agent) never get it."""
        run = self.broker.bulk.runs.get(broadcast.run_id)
        if run is None or broadcast.state == ENDED:
            raise ValueError(f"broadcast {broadcast.id} is {broadcast.state if broadcast.state == ENDED else 'sent to every recipient'}"
                             f" already: nothing is left to cancel (see: ems broadcast show {broadcast.id})")
        self.broker.bulk.stop(run, STOPPED, f"broadcast cancelled by {peer.client_id}: {reason}")
        broadcast.state = ENDED
        self.store.set_state(broadcast)
        self.broker.records.audit(peer, "broadcast.cancel", {"id": broadcast.id, "reason": reason})
        return self.refresh(broadcast, run)

    # -- life cycle -----------------------------------------------------------------------------------
    def restore(self) -> None:
        """The loop starts: the receipts still awaited, from broker.db."""
        self._rebuild(time.time())

    def tick(self, now: float) -> None:
        """Now and then: receipts of broadcasts older than :data:`WATCH_S` are no longer awaited."""
        if now >= self._next_prune:
            self._rebuild(now)

    def _rebuild(self, now: float) -> None:
        self._next_prune = now + PRUNE_S
        self.watching.clear()  # the same dict: the fan-out holds it
        for client_id, message_id, broadcast_id in self.store.unread_since(now - WATCH_S):
            self.watching.setdefault(client_id, {})[message_id] = broadcast_id
