"""The records the broker makes itself: security events, audit, presence.

Each is journaled (``broker/server/journal.py``) until the store has it, and
published live like anything an agent sends. Security events are counted
always and logged and published throttled, so a flood from one key cannot
fill the log or the store.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from broker.core.envelope import Kind, pack_body, pack_header
from broker.server.operators import person_of

if TYPE_CHECKING:
    from broker.server.peers import Peer
    from broker.server.loop import Broker

log = logging.getLogger(__name__)

_EMPTY = b""


class OwnRecords:
    """Make, journal and publish the broker's own records."""

    def __init__(self, broker: "Broker"):
        self.counters = broker.counters
        self.journal = broker.journal
        self.throttle = broker._throttle
        self.publish = broker.fanout.publish
        self.registry = broker.registry

    def note(self, kind: Kind, topic: str, data, sender: bytes = _EMPTY) -> None:
        """A record the broker makes (audit, presence, security): journaled
        until the store has it, and published live."""
        header, body = pack_header(kind, topic), pack_body(data)
        self.journal.append(int(kind), topic, header, body)
        self.publish(topic, sender, header, body)

    def security(self, peer: "Peer | None", event: str, detail: str, subject: str | None = None, throttle: object = None) -> None:
        """Count every security event; log and publish them throttled.

        A flood of bad frames from one key is one counter, a few log lines
        and a few stored events per minute, each stating how many similar
        ones were held back, so an attacker cannot fill the log or the store.
        ``subject`` names the client the event is about when that is not the
        peer's own id (a new key claiming a known id: the claimed id);
        ``throttle`` replaces the peer's key as what one throttle counts.
        """
        self.counters[f"security_{event}"] += 1
        throttle_key = (event, throttle if throttle is not None else (peer.key if peer else None))
        if not self.throttle.allow(throttle_key):
            return
        held = self.throttle.suppressed(throttle_key)
        who = f"{peer.client_id} ({peer.role}, key {peer.key[:8]})" if peer else "broker"
        log.warning("security: %s from %s: %s%s", event, who, detail, f" (+{held} similar suppressed)" if held else "")
        record = {
            "event": event,
            "detail": detail,
            "client_id": subject if subject is not None else (peer.client_id if peer else ""),
            "role": peer.role if peer else "",
            "key": peer.key if peer else "",
            "suppressed_before": held,
            "ts": time.time(),
        }
        if peer is not None and subject is not None:
            record["peer_id"] = peer.client_id
        if peer is not None and peer.address:
            record["address"] = peer.address
        self.note(Kind.SECURITY, "security.broker", record)

    def audit(self, peer: "Peer", action: str, detail: dict) -> None:
        """An operator action, named: logged and published on ``audit.<who>``.

        ``operator_name`` is the person (the one a command names: the key's
        display name or the person a service vouched for; else the key's
        display name) and ``via`` the service that vouched (``""``)."""
        log.info("audit: %s (%s) %s %s", peer.client_id, peer.role, action, detail)
        self.note(
            Kind.EVENT,
            f"audit.{peer.client_id}",
            {"operator": peer.client_id, "role": peer.role, "action": action, "detail": detail,
             "target": detail.get("target") or detail.get("client_id") or "", "reason": detail.get("reason", ""), "ts": time.time(),
             "operator_name": detail.get("operator_name") or person_of(self.registry, peer), "via": detail.get("via") or ""},
            sender=peer.sender,
        )
