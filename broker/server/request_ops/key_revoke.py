"""The broker's revoke, unblock and bulk-reject request operations (``keys.revoke``,
``keys.unblock``, ``keys.reject`` with ``pending``).

Revocation acts on a client id, because a key is only ever a way to be
that id:

- ``revoke ID`` (a client id) revokes every key that ever claimed ID,
  whatever its state (accepted, pending, rejected) and whatever it claims
  now, blocks ID (no key is accepted for it, by an admin, a token or
  ``keys.add``, until ``keys.unblock``) and closes their live connections;
- ``revoke KEY`` (a key or a unique prefix) of an *accepted* key is the same
  as revoking its client id: the key proves that id;
- ``revoke KEY`` of a key that is not accepted (pending, rejected, already
  revoked) revokes that key alone and blocks nothing: anyone can make a key
  claim any id, so the claim proves nothing, and blocking it would let an
  outsider trick an admin into locking out the real machine.

The answer says exactly what changed: each key with the state it had,
counts per state, whether the id is blocked, connections closed. Each call
is one audit row naming the admin.
"""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, NoReturn

from broker.core import bounds
from broker.server.registry import ACCEPTED, REJECTED, REVOKED, KeyRecord, KeyRegistry
from broker.core.vocabulary import MAX_REASON_CHARS

if TYPE_CHECKING:
    from broker.server.peers import Peer
    from broker.server.loop import Broker


def target(registry: KeyRegistry, ident: str) -> tuple[str, KeyRecord | None]:
    """What ``revoke ident`` acts on: (client id, record or None) for an id,
    or ("", record) for a key that is not accepted, alone."""
    if registry.claimants(ident) or registry.blocked(ident) is not None:
        return ident, None
    record = registry.find(ident)  # a key or key prefix (raises if unknown or ambiguous)
    if record.state == ACCEPTED:
        return record.client_id, record
    return "", record


def revoke(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``keys.revoke``: see the module docstring."""
    registry = broker.registry
    reason = reason_of(args)
    client_id, record = target(registry, bounds.text(args.get("id"), "id", 200, empty=False))
    keys = {r.public_key for r in registry.claimants(client_id)} if client_id else {record.public_key}
    if peer.key in keys:
        refuse(broker, peer, "keys.revoke", client_id or record.client_id, "you cannot revoke the key you are using")
    cid = client_id or record.client_id
    was_blocked = registry.blocked(cid) is not None
    if client_id:
        changed = registry.revoke_client(client_id, peer.client_id, reason)
    else:
        changed = registry.set_states([record], REVOKED)
    closed = broker.peer_table.reauthorise({r.public_key for r, _ in changed})
    summary = _summary(registry, cid, keys, changed, "id" if client_id else "key", was_blocked, closed)
    broker.records.audit(peer, "keys.revoke", {"client_id": cid, "by": summary["by"], "keys": [k["public_key"][:8] for k in summary["revoked"]],
                                                "counts": summary["counts"], "blocked": summary["blocked"], "reason": reason})
    return summary


def _summary(registry: KeyRegistry, client_id: str, keys: set[str], changed: list[tuple[KeyRecord, str]],
             by: str, was_blocked: bool, closed: int) -> dict:
    """The answer to ``keys.revoke``: each key revoked now (with the state it
    had), counts per state, and whether the id is blocked now / was before."""
    revoked = [{"public_key": r.public_key, "client_id": r.client_id, "role": r.role, "was": was} for r, was in changed]
    roles = [r.role for r, was in changed if was == ACCEPTED] or [r.role for r, _ in changed] or [""]
    return {
        "client_id": client_id,
        "by": by,
        "state": REVOKED,
        "role": roles[0],
        "revoked": revoked,
        "counts": dict(Counter(k["was"] for k in revoked)),
        "already_revoked": len(keys) - len(changed),
        "blocked": registry.blocked(client_id) is not None,
        "was_blocked": was_blocked,
        "connections_closed": closed,
    }


def unblock(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``keys.unblock``: lift the block a revoke put on a client id. Its
    revoked keys stay revoked; a new key may then be accepted by an admin
    (never by the enrolment token: the id is known)."""
    client_id = bounds.text(args.get("id"), "id", 200, empty=False)
    block = broker.registry.unblock(client_id)
    if block is None:
        raise ValueError(f"{client_id} is not blocked; see `ems keys list --state blocked`")
    reason = reason_of(args)
    broker.records.audit(peer, "keys.unblock", {"client_id": client_id, "blocked_by": block["blocked_by"],
                                                 "blocked_at": block["created"], "reason": reason})
    still = [r.public_key for r in broker.registry.claimants(client_id) if r.state == REVOKED]
    return {"client_id": client_id, "blocked": False, "was": block, "revoked_keys": len(still)}


def reject_pending(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``keys.reject`` with ``pending: true``: reject every pending key created
    more than ``older_than_s`` seconds ago (all of them by default), in one
    transaction, with one audit row giving the count."""
    older = args.get("older_than_s", 0)
    if isinstance(older, bool) or not isinstance(older, (int, float)) or not 0 <= older < 1e12:
        raise ValueError("older_than_s must be a number of seconds >= 0")
    registry = broker.registry
    changed = registry.set_states(registry.pending(created_before=registry.clock() - older if older else None), REJECTED)
    keys = [r.public_key for r, _ in changed]
    closed = broker.peer_table.reauthorise(set(keys))
    reason = reason_of(args)
    broker.records.audit(peer, "keys.reject_pending", {"count": len(keys), "older_than_s": older,
                                                        "keys": [k[:8] for k in keys[:100]], "reason": reason})
    return {"rejected": len(keys), "older_than_s": older, "keys": keys[:1000], "connections_closed": closed}


def refuse(broker: "Broker", peer: "Peer", op: str, client_id: str, why: str) -> NoReturn:
    """An admin's key operation that would break the enrolment rules: a
    security event about the id, and BAD_REQUEST with the reason."""
    broker.counters["refused_key_ops"] += 1
    broker.records.security(peer, "key_op_refused", f"{op} {client_id}: {why}", subject=client_id)
    raise ValueError(why)


def reason_of(args: dict) -> str:
    """The ``reason`` an admin gave (checked like every argument: no NUL, at most
    :data:`~broker.core.vocabulary.MAX_REASON_CHARS` characters)."""
    return bounds.optional_text(args.get("reason"), "reason", MAX_REASON_CHARS) or ""
