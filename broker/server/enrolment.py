"""Who may enrol under which client id: the policy the broker applies to
keys that are not accepted yet.

Pure decisions over the key registry, no sockets:

- :func:`judge` classifies the client id a new key claims: ``new`` (never
  admitted), ``known`` (held by an accepted or revoked key), ``blocked``
  (revoked by an admin, see ``ems keys unblock``), ``reserved`` (the
  broker's, a service's or an operator's, or a ``pending-*`` placeholder)
  or ``unclaimed``. Only a ``new`` id may be taken by the enrolment token;
  a manual accept may also replace a ``known`` agent's key, never a
  blocked or reserved one.
- :func:`no_room` is the flood guard: pending keys are bounded per source
  address and in total. A key past the caps is not recorded; it stays
  connected as a transient peer that may only say HELLO, so a token holder
  still enrols during a flood.
"""
from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

from broker.server.registry import AGENT_ID, PLACEHOLDER_PREFIX, REVOKED, KeyRecord, KeyRegistry

NEW, KNOWN, BLOCKED, RESERVED, UNCLAIMED = "new", "known", "blocked", "reserved", "unclaimed"

#: ids no agent may take, compared case-insensitively: the broker and the
#: services' names (``security.broker`` records are the broker's own, the
#: persister treats ``persister`` records as its own), role names and
#: generic names an operator would read as the system
RESERVED_IDS = frozenset({
    "broker", "persister", "store", "admin-http", "sync", "bridge", "bridges", "web", "gui", "ems", "system",
    "server", "localhost", "root", "all", "any", "none", "unknown", "agent", "agents", "admin", "operator",
    "viewer", "service", "pending", "blocked", "revoked", "rejected", "accepted",
})

#: the security event a pending key's claim raises (none for new or unclaimed ids)
CLAIM_EVENTS = {KNOWN: "reenrolment", BLOCKED: "blocked_id_claimed", RESERVED: "reserved_id_claimed"}


@dataclass(frozen=True)
class Claim:
    """The client id a key claims and what that id is to the registry."""

    client_id: str  # "" when none (or none that can be an agent id) was claimed
    status: str
    why: str = ""


def claimed_id(value: object) -> str:
    """The client id a HELLO claims, or "" if it cannot be an agent id."""
    return value if isinstance(value, str) and AGENT_ID.match(value) else ""


def reserved_reason(registry: KeyRegistry, client_id: str) -> str:
    """Why no agent may hold ``client_id``; "" if one may."""
    if client_id.lower() in RESERVED_IDS:
        return f"{client_id!r} is reserved for the system"
    if client_id.lower().startswith(PLACEHOLDER_PREFIX):
        return f"{client_id!r} is the placeholder of a key that claimed no id"
    roles = sorted({r.role for r in registry.holders(client_id)} - {"agent"})
    if roles:
        return f"{client_id!r} belongs to a key of role {roles[0]}"
    return ""


def judge(registry: KeyRegistry, public_key: str, client_id: str) -> Claim:
    """Classify the id ``public_key`` claims (see the module docstring)."""
    if not client_id:
        return Claim("", UNCLAIMED, "no client id claimed")
    reason = reserved_reason(registry, client_id)
    if reason:
        return Claim(client_id, RESERVED, reason)
    block = registry.blocked(client_id)
    if block is not None:
        return Claim(client_id, BLOCKED, f"{client_id!r} was revoked and is blocked (by {block['blocked_by']})")
    if registry.is_known(client_id, except_key=public_key):
        return Claim(client_id, KNOWN, f"{client_id!r} is enrolled with another key")
    return Claim(client_id, NEW)


def blocked_text(client_id: str, block: dict) -> str:
    """Why a blocked ``client_id`` cannot be given a key, and what to do."""
    return f"client id {client_id} is blocked (revoked by {block['blocked_by']}): `ems keys unblock {client_id}` first"


def accept_problem(registry: KeyRegistry, record: KeyRecord) -> str:
    """Why an admin may not accept ``record`` under its client id; "" if it may."""
    cid = record.client_id
    block = registry.blocked(cid)
    if block is not None:
        return blocked_text(cid, block)
    if record.role == "agent":
        return reserved_reason(registry, cid)
    return ""


def add_problem(registry: KeyRegistry, public_key: str, client_id: str, role: str) -> str:
    """Why ``keys.add`` may not bind ``client_id`` to ``public_key`` as ``role``; "" if it may."""
    existing = registry.get(public_key)
    if existing is not None and existing.state == REVOKED:
        return f"key {public_key[:8]} was revoked; a revoked key stays revoked (make a new key)"
    block = registry.blocked(client_id)
    if block is not None:
        return blocked_text(client_id, block)
    if role == "agent":
        return reserved_reason(registry, client_id)
    others = sorted({r.role for r in registry.holders(client_id) if r.public_key != public_key} - {role})
    if others:
        return f"client id {client_id!r} is held by a key of role {others[0]}"
    return ""


def token_matches(presented: object, wanted: str | None) -> bool:
    """Whether a HELLO's ``token`` is the server's enrolment token (constant time)."""
    if not wanted or not isinstance(presented, str):
        return False
    return hmac.compare_digest(presented.encode(), wanted.encode())


def source_of(address: str) -> str:
    """The source a pending-key cap counts against: the IPv4 address, or the
    /64 of an IPv6 one (one host can use a whole /64)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def no_room(registry: KeyRegistry, source: str, per_source: int, total: int) -> str:
    """Why a new pending key from ``source`` cannot be recorded now; "" if it can."""
    if registry.pending_from(source) >= per_source:
        return f"{per_source} keys from {source or 'this address'} are already pending"
    if registry.pending_count() >= total:
        return f"{total} keys are already pending"
    return ""
