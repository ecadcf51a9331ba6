"""``journal.read`` and ``journal.ack``: the store pulls the broker's own records."""
from __future__ import annotations

from typing import TYPE_CHECKING

from broker.core import bounds

if TYPE_CHECKING:
    from broker.server.peers import Peer
    from broker.server.loop import Broker


def read(broker: "Broker", peer: "Peer", args: dict) -> list[dict]:
    """``journal.read``: the oldest ``limit`` (≤ 10,000, default 1000) journaled
    records (audit, presence, security, command origins), each with its
    ``seq`` and packed ``header`` and ``body``."""
    limit = bounds.limit(args.get("limit"), "limit", 1000, 1, 10_000)
    return [{"seq": seq, "header": header, "body": body} for seq, header, body in broker.journal.read(limit)]


def ack(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``journal.ack``: the store has every record up to ``upto``: delete them;
    answers how many went and how many are left."""
    return {"deleted": broker.journal.ack(bounds.int64(args.get("upto"), "upto")), "left": len(broker.journal)}
