"""``approvals.list``, ``approvals.decide``, ``approvals.rules``, ``approvals.require``: two-person approval
(:mod:`broker.server.approvals`)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from broker.core import bounds
from broker.core.vocabulary import MAX_REASON_CHARS, clean_reason
from broker.server.approvals import APPROVED, DENIED, EXPIRED, PENDING

if TYPE_CHECKING:
    from broker.server.peers import Peer
    from broker.server.loop import Broker

STATES = (PENDING, APPROVED, DENIED, EXPIRED)


def list_(broker: "Broker", peer: "Peer", args: dict) -> list[dict]:
    """``approvals.list``: requests, newest first, of one ``state`` (default pending; ``all`` for every state),
    ``limit`` ≤ 500; what each would do, who asked and why, and who decided."""
    state = args.get("state", PENDING)
    if state not in (*STATES, "all"):
        raise ValueError(f"state must be one of {', '.join(STATES)} or all, not {state!r}")
    limit = bounds.limit(args.get("limit"), "limit", 100, 1, 500)
    return [r.as_dict() for r in broker.approvals.book.listed(None if state == "all" else state, limit)]


def decide(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``approvals.decide``: ``approve`` (true) or deny (false) request ``id`` with a ``reason``, as an operator who
    is not the requester (a vouching service names the person deciding in ``operator``); the held command is
    queued (or the run starts), or it ends unrun."""
    request_id = bounds.text(args.get("id"), "id", 64, empty=False)
    approve = args.get("approve")
    if not isinstance(approve, bool):
        raise ValueError("approve must be true (approve) or false (deny)")
    reason = clean_reason(bounds.text(args.get("reason"), "reason", MAX_REASON_CHARS * 4))
    if not reason:
        raise ValueError("a decision needs a reason (it is kept in the audit trail beside the requester's)")
    return broker.approvals.decide(peer, request_id, approve, reason, args).as_dict()


def rules(broker: "Broker", peer: "Peer", args: dict) -> list[str]:
    """``approvals.rules``: the command names that need a second operator's approval."""
    return sorted(broker.approvals.book.rules)


def require(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``approvals.require``: ``names`` (command names) need approval from now on, or no longer with ``remove``;
    admins only, audited."""
    names = bounds.text_list(args.get("names"), "names", 64, 64)
    if not names:
        raise ValueError("names: at least one command name, e.g. reboot")
    remove = bounds.boolean(args.get("remove", False), "remove")
    changed = broker.approvals.book.set_rules(names, not remove, peer.client_id)
    broker.records.audit(peer, "approvals.release" if remove else "approvals.require", {"names": names, "changed": changed})
    return {"rules": sorted(broker.approvals.book.rules), "changed": changed}
