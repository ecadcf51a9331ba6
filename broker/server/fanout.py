"""Subscriptions and fan-out: what agents publish, to whoever may read it.

:class:`Fanout` takes agents' EVENT / LOG / SECURITY / FRAME messages and
BATCHes, checks the topic is the sender's own, and sends each to the
subscribers whose prefixes match and whose role may read it
(``permissions.live_readers``, remembered per topic), within each
receiver's byte budget (``broker/server/flow.py``). It also answers SUBSCRIBE and
UNSUBSCRIBE. This is the hot path: the methods bind what they use locally.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from broker.core import permissions
from broker.core.envelope import ErrorCode, Header, Kind, message_bytes, pack_header
from broker.core.batches import BATCH_TOPIC_ROOTS, check_batch, decode_batch
from broker.core.errors import ProtocolError

if TYPE_CHECKING:
    from broker.server.peers import Peer
    from broker.server.loop import Broker

log = logging.getLogger(__name__)

#: topic prefixes one connection may subscribe to (fan-out cost is per prefix)
MAX_PREFIXES = 100
#: live topics whose readers the fan-out remembers (about 100 bytes each)
READERS_CACHE = 65_536


class Fanout:
    """Route what agents publish to the live subscribers allowed to read it."""

    def __init__(self, broker: "Broker"):
        self.broker = broker
        self.counters = broker.counters
        self.flow = broker.flow
        self.subscribers = broker.peer_table.subscribers
        self.send = broker.send
        #: live topic -> roles that may receive it (permissions.live_readers, cached)
        self._readers: dict[str, frozenset[str]] = {}
        #: agents whose chat records someone awaits (client id -> anything), and who takes them (:meth:`watch_chat`)
        self._chat_awaited: dict = {}
        self._on_chat: Callable[[str, bytes], None] | None = None

    def watch_chat(self, awaited: dict, on_chat: Callable[[str, bytes], None]) -> None:
        """Hand ``on_chat(client_id, body)`` every ``event.<agent>.chat`` record of an agent that is a key of
        ``awaited`` (a dict the caller keeps up to date; for any other agent this costs one dict lookup)."""
        self._chat_awaited, self._on_chat = awaited, on_chat

    def subscribed(self, topic: str) -> bool:
        """Whether any connection subscribes to a prefix of ``topic`` (before packing what nobody would get)."""
        for peer in self.subscribers.values():
            if topic.startswith(peer.prefixes):
                return True
        return False

    def publish(self, topic: str, sender: bytes, header, body) -> int:
        """Fan out to every subscriber whose prefix matches ``topic`` and
        whose role may read it (``permissions.LIVE_READERS``)."""
        delivered = 0
        readers = None
        size, admit = len(sender) + len(header) + len(body), self.flow.admit  # envelope.message_bytes, inlined
        for peer in list(self.subscribers.values()):
            if topic.startswith(peer.prefixes):
                if readers is None:  # once per message, and only if someone subscribed
                    readers = self._readers.get(topic) or self._readers_of(topic)
                if peer.role not in readers:
                    self.counters["withheld_by_role"] += 1
                    continue
                if not admit(peer.rid, size):
                    self.over_budget(peer)
                elif self.send(peer.rid, sender, header, body):
                    delivered += 1
                else:
                    self.counters["dropped_fanout"] += 1
        return delivered

    def _readers_of(self, topic: str) -> frozenset[str]:
        """The roles that may receive ``topic`` live, remembered per topic (a
        dict lookup on the fan-out path; the cache starts over when full)."""
        if len(self._readers) >= READERS_CACHE:
            self._readers.clear()
        readers = self._readers[topic] = permissions.live_readers(topic)
        return readers

    def over_budget(self, peer: "Peer") -> None:
        """Count a best-effort message dropped over a peer's byte budget; say so
        (throttled) as an ops/security event naming the peer."""
        self.counters["dropped_over_budget"] += 1
        budget = self.flow.notice_due(peer.rid, self.broker.clock())
        if budget is not None:
            self.broker.records.security(peer, "slow_consumer",
                                         f"{budget.in_flight:,} bytes sent and not yet taken (budget {self.flow.budget_bytes:,}): "
                                         f"{budget.dropped:,} live messages ({budget.dropped_bytes:,} bytes) dropped for it so far")

    # -- what agents publish ---------------------------------------------------------
    def on_agent_publish(self, peer: "Peer", header: Header, frames) -> None:
        """EVENT / LOG / SECURITY / FRAME: check the topic is the sender's, fan out."""
        prefix = permissions.AGENT_TOPIC_PREFIX[header.kind]
        own = f"{prefix}.{peer.client_id}"
        topic = header.topic
        if not (topic == own or topic.startswith(own + ".")):
            self.counters["refused_topic"] += 1
            self.broker.records.security(peer, "spoofed_topic", f"{peer.client_id} published on {topic!r}")
            self.broker.send_error(peer.rid, header, ErrorCode.BAD_TOPIC, f"must start with {own}")
            return
        self.counters["routed"] += 1
        self.publish(topic, peer.sender, frames[1], frames[2])
        if peer.client_id in self._chat_awaited and topic == f"{own}.chat" and header.kind == Kind.EVENT:
            self._on_chat(peer.client_id, frames[2].bytes)

    def on_agent_batch(self, peer: "Peer", header: Header, frames) -> None:
        """BATCH: many of the sender's records. Whole to the store (peers that
        said ``batches``); record by record to live subscribers of its topics,
        unpacked only if there are any."""
        try:
            count = check_batch(frames[2].buffer)
        except ProtocolError as exc:
            self.counters["refused_batches"] += 1
            self.broker.refuse(peer, header, exc.code, exc.detail)
            return
        self.counters["routed_batches"] += 1
        self.counters["routed_batch_records"] += count
        live = []
        for sub in list(self.subscribers.values()):
            if sub.batches:
                if not self.send(sub.rid, peer.sender, frames[1], frames[2]):
                    self.counters["dropped_batches"] += 1
            elif _may_want(sub.prefixes, peer.client_id):
                live.append(sub)
        if live:
            self._fan_out_batch(peer, frames[2].bytes, live)
        if peer.client_id in self._chat_awaited:
            self._chat_in_batch(peer, frames[2].bytes)

    def _chat_in_batch(self, peer: "Peer", body: bytes) -> None:
        """The chat records of a batch, to :meth:`watch_chat`'s taker (only for agents it awaits)."""
        try:
            records, _refused = decode_batch(body, peer.client_id)
        except ProtocolError:  # counted by _fan_out_batch, or refused by the store
            return
        topic = f"{permissions.AGENT_TOPIC_PREFIX[Kind.EVENT]}.{peer.client_id}.chat"
        for record in records:
            if record.topic == topic and record.kind == Kind.EVENT:
                self._on_chat(peer.client_id, record.body)

    def _fan_out_batch(self, peer: "Peer", body: bytes, subscribers: list["Peer"]) -> None:
        """Each record of a batch to the live subscribers whose prefixes match its topic."""
        try:
            records, refused = decode_batch(body, peer.client_id)
        except ProtocolError as exc:  # the store, which had it whole, refuses it the same way
            self.counters["bad_batches"] += 1
            if self.broker._throttle.allow(("bad_batch", peer.key)):
                log.warning("undecodable batch from %s: %s", peer.client_id, exc.detail)
            return
        self.counters["batch_records_refused"] += len(refused)
        for record in records:
            header = readers = None
            for sub in subscribers:
                if record.topic.startswith(sub.prefixes):
                    readers = readers or self._readers.get(record.topic) or self._readers_of(record.topic)
                    if sub.role not in readers:
                        self.counters["withheld_by_role"] += 1
                        continue
                    header = header or pack_header(record.kind, record.topic, record.msg_id, ts=record.ts)
                    if not self.flow.admit(sub.rid, message_bytes(peer.sender, header, record.body)):
                        self.over_budget(sub)
                    elif not self.send(sub.rid, peer.sender, header, record.body):
                        self.counters["dropped_fanout"] += 1

    # -- subscriptions -------------------------------------------------------------------
    def on_subscribe(self, peer: "Peer", header: Header, frames) -> None:
        """SUBSCRIBE: add prefixes this role may read (at most MAX_PREFIXES in
        all); watching screens or sensitive streams is audited."""
        broker = self.broker
        data = broker.read_body(peer, header, frames)
        if data is None:
            return
        prefixes = data.get("prefixes")
        if not isinstance(prefixes, list) or not all(isinstance(p, str) and len(p) <= 200 for p in prefixes) or len(prefixes) > 100:
            broker.refuse(peer, header, ErrorCode.BAD_REQUEST, "prefixes must be a list of up to 100 short strings")
            return
        forbidden = [p for p in prefixes if not permissions.may_subscribe(peer.role, p)]
        if forbidden:  # only topics this role may not read: refused, and a security event
            self.counters["refused_role"] += 1
            why = permissions.refusal(peer.role, f"read {forbidden}")
            broker.records.security(peer, "forbidden", why)
            broker.send_error(peer.rid, header, ErrorCode.FORBIDDEN, why)
            return
        merged = tuple(dict.fromkeys(peer.prefixes + tuple(prefixes)))
        if len(merged) > MAX_PREFIXES:
            broker.refuse(peer, header, ErrorCode.BAD_REQUEST, f"at most {MAX_PREFIXES} subscriptions per connection")
            return
        self._audit_watch(peer, prefixes)
        peer.prefixes = merged
        self.subscribers[peer.rid] = peer
        broker.reply(peer, header, {"prefixes": list(peer.prefixes)})

    def _audit_watch(self, peer: "Peer", prefixes: list[str]) -> None:
        """Name a person who subscribes to screens (``screen.watch``) or to
        other sensitive streams (``stream.watch``: captures, chat, file
        operations, the audit trail) in the audit trail."""
        screens, streams = [], {}
        for prefix in prefixes:
            classes = permissions.watched(peer.role, prefix)
            if "frame" in classes:
                screens.append(prefix)
            if classes - {"frame"}:
                streams[prefix] = sorted(classes - {"frame"})
        if screens:
            self.broker.records.audit(peer, "screen.watch", {"prefixes": screens})
        if streams:
            self.broker.records.audit(peer, "stream.watch",
                                      {"prefixes": list(streams), "streams": sorted({c for v in streams.values() for c in v})})

    def on_unsubscribe(self, peer: "Peer", header: Header, frames) -> None:
        """UNSUBSCRIBE: drop the prefixes named (all of them for none)."""
        data = self.broker.read_body(peer, header, frames)
        if data is None:
            return
        prefixes = data.get("prefixes") or []
        if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
            self.broker.refuse(peer, header, ErrorCode.BAD_REQUEST, "prefixes must be a list of strings")
            return
        drop = set(prefixes)
        peer.prefixes = tuple(p for p in peer.prefixes if p not in drop) if drop else ()
        if not peer.prefixes:
            self.subscribers.pop(peer.rid, None)
        self.broker.reply(peer, header, {"prefixes": list(peer.prefixes)})


def _may_want(prefixes: tuple[str, ...], client_id: str) -> bool:
    """Whether any of ``prefixes`` can match a topic an agent may batch
    (``<root>.<client_id>`` or below it)."""
    for root in BATCH_TOPIC_ROOTS.values():
        own = f"{root}.{client_id}"
        below = own + "."
        for prefix in prefixes:
            if own.startswith(prefix) or prefix.startswith(below):
                return True
    return False
