"""The ``keys.*`` operations that list and decide single keys: ``keys.list``,
``keys.blocked``, ``keys.accept``, ``keys.reject``, ``keys.add``,
``keys.label``, ``keys.name``. Revoking, unblocking and rejecting every pending key are in
:mod:`broker.server.request_ops.key_revoke`. Each change is audited naming the
admin and applied to the key's live connections at once."""
from __future__ import annotations

from typing import TYPE_CHECKING

from broker.core import bounds
from broker.server import enrolment, operators
from broker.core import keys as keyfiles
from broker.server.registry import ACCEPTED, REJECTED, REVOKED, STATES
from broker.server.request_ops import key_revoke
from broker.server.request_ops.key_revoke import reason_of, refuse

if TYPE_CHECKING:
    from broker.server.peers import Peer
    from broker.server.loop import Broker


def list_(broker: "Broker", peer: "Peer", args: dict) -> list[dict]:
    """``keys.list``: every key, or only those in ``state``."""
    state = args.get("state")
    if state is not None and state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}")
    return [r.as_dict() for r in broker.registry.all() if state is None or r.state == state]


def blocked(broker: "Broker", peer: "Peer", args: dict) -> list[dict]:
    """``keys.blocked``: client ids blocked by a revoke, with who blocked them, when and why."""
    return broker.registry.blocked_ids()


def accept(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``keys.accept``: accept the key ``id`` (a key, a unique prefix, or a
    client id with one pending key), unless the enrolment rules forbid it
    (revoked, blocked or reserved id); any other accepted key of the id is cut off."""
    return _change(broker, peer, args, ACCEPTED)


def reject(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``keys.reject``: reject the key ``id``; with ``pending: true`` every
    pending key instead (:func:`~broker.server.request_ops.key_revoke.reject_pending`)."""
    if args.get("pending") is True:
        return key_revoke.reject_pending(broker, peer, args)
    return _change(broker, peer, args, REJECTED)


def add(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``keys.add``: record ``public_key`` (Z85) as accepted for ``client_id``
    with ``role`` (default agent), ``label`` and ``name`` (the person behind
    an operator's key, as notices and the audit trail name them), unless the
    enrolment rules forbid it."""
    key = bounds.text(args.get("public_key"), "public_key", 40)
    if not keyfiles.is_z85_key(key):
        raise ValueError("public_key must be a 40-character Z85 Curve key")
    client_id = bounds.text(args.get("client_id"), "client_id", 200, empty=False)
    role, label = bounds.text(args.get("role", "agent"), "role", 32), bounds.text(args.get("label", ""), "label", 100)
    name = operators.display_name(args.get("name", ""))
    problem = enrolment.add_problem(broker.registry, key, client_id, role)
    if problem:
        refuse(broker, peer, "keys.add", client_id, problem)
    record = broker.registry.add(key, client_id, role, ACCEPTED, label, name)
    broker.records.audit(peer, "keys.add", {"client_id": record.client_id, "role": record.role, "key": key, "name": record.name})
    broker.peer_table.reauthorise({key})
    return record.as_dict()


def label(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``keys.label``: set the label (≤ 100 characters kept) of the key ``id``."""
    record = broker.registry.find(bounds.text(args.get("id"), "id", 200, empty=False))
    broker.registry.set_label(record, bounds.text(args.get("label"), "label", 1000)[:100])
    broker.records.audit(peer, "keys.label", {"client_id": record.client_id, "label": record.label})
    return record.as_dict()


def name(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``keys.name``: set the display name of the person behind the key ``id``
    (one line, at most 100 characters; ``""`` clears it: the client id is shown)."""
    record = broker.registry.find(bounds.text(args.get("id"), "id", 200, empty=False))
    was = record.name
    broker.registry.set_name(record, operators.display_name(args.get("name")))
    broker.records.audit(peer, "keys.name", {"client_id": record.client_id, "name": record.name, "was": was})
    return record.as_dict()


def _change(broker: "Broker", peer: "Peer", args: dict, state: str) -> dict:
    """Accept or reject one key (a client id resolves to its pending key)."""
    registry = broker.registry
    record = registry.find(bounds.text(args.get("id"), "id", 200, empty=False))
    reason = reason_of(args)
    if state == ACCEPTED:
        if record.state == REVOKED:
            refuse(broker, peer, "keys.accept", record.client_id,
                   f"{record.client_id} was revoked; a revoked key stays revoked (enrol a new key)")
        problem = enrolment.accept_problem(registry, record)
        if problem:
            refuse(broker, peer, "keys.accept", record.client_id, problem)
    was = record.state
    replaced = registry.accepted_by_client(record.client_id) if state == ACCEPTED else None
    registry.set_state(record, state)
    broker.records.audit(peer, f"keys.{state}", {"client_id": record.client_id, "key": record.public_key, "was": was, "reason": reason})
    broker.peer_table.reauthorise({record.public_key})
    if replaced is not None and replaced is not record:
        broker.peer_table.reauthorise({replaced.public_key})
    return {**record.as_dict(), "was": was}
