"""Who may send what: the broker's permission matrix.

Roles come from the key registry, never from a message. A peer whose key is
still pending has the pseudo-role ``pending`` and may only say HELLO (to
present an enrolment token and wait). Anything outside this matrix is
refused with ``FORBIDDEN`` and logged as a security event.
"""
from __future__ import annotations

from broker.envelope import Kind

PENDING_ROLE = "pending"

_VIEWER = frozenset({Kind.HELLO, Kind.HEARTBEAT, Kind.SUBSCRIBE, Kind.UNSUBSCRIBE, Kind.REQUEST})

ROLE_KINDS: dict[str, frozenset[Kind]] = {
    PENDING_ROLE: frozenset({Kind.HELLO}),
    "agent": frozenset(
        {
            Kind.HELLO,
            Kind.HEARTBEAT,
            Kind.EVENT,
            Kind.LOG,
            Kind.SECURITY,
            Kind.COMMAND_STATUS,
            Kind.RESULT,
            Kind.FRAME,
            Kind.BATCH,
        }
    ),
    "viewer": _VIEWER,
    "operator": _VIEWER | {Kind.COMMAND},
    "admin": _VIEWER | {Kind.COMMAND},
    "service": _VIEWER | {Kind.ACK, Kind.SECURITY, Kind.REPLY, Kind.ERROR},
}

#: Topic namespace each agent-originated kind must publish under:
#: ``<prefix>.<sender client id>.<rest>``.
AGENT_TOPIC_PREFIX: dict[Kind, str] = {
    Kind.EVENT: "event",
    Kind.LOG: "log",
    Kind.SECURITY: "security",
    Kind.FRAME: "frame",
}

_LEVEL = {"viewer": 1, "operator": 2, "admin": 3}

#: Broker REQUEST operations and the least operator role that may call
#: them. ``service`` peers may call the ones marked readable.
REQUEST_OPS: dict[str, tuple[str, bool]] = {
    # op: (minimum operator role, services may call)
    "status": ("viewer", True),
    "agents": ("viewer", True),
    "command.get": ("viewer", True),
    "command.list": ("viewer", True),
    "keys.list": ("admin", False),
    "keys.accept": ("admin", False),
    "keys.reject": ("admin", False),
    "keys.revoke": ("admin", False),
    "keys.add": ("admin", False),
    "keys.unblock": ("admin", False),
    "keys.blocked": ("admin", False),
    "keys.label": ("operator", False),
    # the broker's journal of its own records, pulled by the persister
    "journal.read": ("admin", True),
    "journal.ack": ("admin", True),
    # forwarded to the service that provides "store" (the persister)
    "store.query": ("viewer", True),
    "store.capture": ("viewer", True),
    "store.stats": ("viewer", True),
}

#: Operation prefixes answered by a service rather than the broker itself.
SERVICE_PREFIXES = ("store.",)


def may_send(role: str, kind: Kind) -> bool:
    return kind in ROLE_KINDS.get(role, frozenset())


def may_request(role: str, op: str) -> bool:
    rule = REQUEST_OPS.get(op)
    if rule is None:
        return False
    minimum, services = rule
    if role == "service":
        return services
    return _LEVEL.get(role, 0) >= _LEVEL[minimum]
