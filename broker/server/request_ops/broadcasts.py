"""``broadcast.send``, ``broadcast.get``, ``broadcast.list``, ``broadcast.cancel``: one chat message to many agents,
with per-recipient receipts (:mod:`broker.server.broadcasts`).

Who sees what: chat text is for operators and up (``permissions.sees_chat``), and so is who got and read
it; a viewer sees a broadcast's counts (how many delivered, read, ...) and never its text, reason or recipients.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from broker.core import bounds, permissions
from broker.server.broadcast_store import Broadcast
from broker.server.broadcasts import check_reason, check_text
from broker.server.bulk_store import BulkOptions
from broker.server.request_ops.bulk import max_parallel_of, ttl_of

if TYPE_CHECKING:
    from broker.server.peers import Peer
    from broker.server.loop import Broker

#: recipients listed in one ``broadcast.get`` answer at most (``counts`` always covers them all)
MAX_LISTED = 10_000


def send(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``broadcast.send``: chat ``text`` (1-10,000 characters) to every agent ``selector`` matches, with a
    ``reason`` (kept in the audit trail with the person who sent it); paced by ``max_parallel`` (1-1000, default 20),
    each message waiting at most ``ttl_s`` (default 1 h) for an offline agent; a vouching service (the web) names the
    person in ``operator`` (refused without one). Answers the broadcast, as ``broadcast.get``; ``dry_run: true``
    answers who would get it and sends nothing."""
    text = check_text(args.get("text"))
    reason = check_reason(args.get("reason"))
    selector = bounds.text(args.get("selector"), "selector", 1000, empty=False)
    options = BulkOptions(max_parallel=max_parallel_of(args), ttl_s=ttl_of(args))
    if bounds.boolean(args.get("dry_run", False), "dry_run"):
        text_of, targets = broker.bulk.plan(selector, set(broker.online))
        return {"dry_run": True, "selector": text_of, "count": len(targets),
                "recipients": [{"client_id": t.client_id, "online": t.client_id in broker.online} for t in targets[:MAX_LISTED]]}
    operator = args.get("operator")
    return view(broker, broker.operations.broadcasts.send(peer, text, selector, reason, options, operator), peer)


def get(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``broadcast.get``: one broadcast by ``id``: counts per status; for operators and up also its text, reason and
    each recipient's status, message id and delivered / read times (``limit`` ≤ 10,000 listed)."""
    limit = bounds.limit(args.get("limit"), "limit", MAX_LISTED, 0, MAX_LISTED)
    return view(broker, _find(broker, args), peer, limit)


def list_(broker: "Broker", peer: "Peer", args: dict) -> list[dict]:
    """``broadcast.list``: the newest broadcasts (``limit`` ≤ 200, default 20), with counts, without recipient lists."""
    limit = bounds.limit(args.get("limit"), "limit", 20, 1, 200)
    return [view(broker, b, peer, 0) for b in broker.operations.broadcasts.recent(limit)]


def cancel(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``broadcast.cancel``: stop broadcast ``id`` (its sender or an admin, with a ``reason``): recipients not
    reached yet (not sent, or queued for an offline agent) never get it; what was shown stays shown."""
    broadcast = _find(broker, args)
    reason = check_reason(args.get("reason"))
    if peer.client_id != broadcast.sender and peer.role != "admin":
        raise ValueError(f"only {broadcast.sender} (who sent it) or an admin may cancel broadcast {broadcast.id}")
    return view(broker, broker.operations.broadcasts.cancel(peer, broadcast, reason), peer)


def _find(broker: "Broker", args: dict) -> Broadcast:
    broadcast_id = bounds.text(args.get("id"), "id", 64, empty=False)
    broadcast = broker.operations.broadcasts.get(broadcast_id)
    if broadcast is None:
        raise ValueError(f"no broadcast {broadcast_id!r} (ems broadcast list)")
    return broadcast


def view(broker: "Broker", b: Broadcast, peer: "Peer", limit: int = MAX_LISTED) -> dict:
    """``b`` as ``peer`` may see it: counts for everyone; text, reason and recipients for those who may read chat."""
    run = broker.operations.broadcasts.run_of(b)
    out = {"id": b.id, "sender": b.sender, "person": b.person, "selector": b.selector, "state": b.state,
           "run_state": run.state if run else "", "created": b.created, "count": len(b.recipients), "counts": b.counts()}
    if permissions.sees_chat(peer.role):
        out["text"], out["reason"] = b.text, b.reason
        out["recipients"] = [{"client_id": r.client_id, "status": r.status, "message_id": r.message_id,
                              "delivered_ts": r.delivered_ts, "read_ts": r.read_ts} for r in b.recipients[:limit]]
    return out
