"""Who may send what, and who may read what: the bus's permission tables.

Roles come from the key registry, never from a message. A peer whose key is
still pending has the pseudo-role ``pending`` and may only say HELLO (to
present an enrolment token and wait). Anything outside these tables is
refused with ``FORBIDDEN`` and logged as a security event.

The write side is :data:`ROLE_KINDS` and :data:`REQUEST_OPS`. The read side
is one table per surface, kept consistent with each other:

* :data:`LIVE_READERS`: which roles receive each class of live topic (the
  broker filters its fan-out with :func:`live_readers` and refuses a
  subscription that can only match forbidden topics: :func:`may_subscribe`);
* :data:`HISTORY_READERS`: which roles may query each history kind
  (``store.query`` ``kind``), and :data:`OWNER_FIELDS`: the fields of a row
  only its operator (the command's sender), an admin or a service sees;
* :data:`COMMAND_PRIVATE_FIELDS`: what ``command.get``/``command.list``
  show only to the command's sender or an admin.

Screen pictures, chat text, file paths and contents are for operators and
up; the audit trail (what every operator did) is for admins. Services (the
persister, sync, bridges) read every durable stream, never live screens.
"""
from __future__ import annotations

from broker.core.envelope import AGENT_TOPIC_ROOTS, Kind

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
    # a service sends a command only for a person it vouches for (broker.server.operators)
    "service": _VIEWER | {Kind.ACK, Kind.SECURITY, Kind.REPLY, Kind.ERROR, Kind.COMMAND},
}
#: roles whose commands may name the person they act for (``args.operator``):
#: a bridge that authenticated that person (the admin API, the web). Anyone
#: else's commands are stamped with their own key's id and display name.
VOUCHING_ROLES = frozenset({"service"})

#: Topic namespace each agent-originated kind must publish under:
#: ``<prefix>.<sender client id>.<rest>`` (the envelope's map, under the name the broker reads)
AGENT_TOPIC_PREFIX = AGENT_TOPIC_ROOTS

_LEVEL = {"viewer": 1, "operator": 2, "admin": 3}
#: the "minimum role" of an op no operator may call, only services
SERVICES_ONLY = "services only"

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
    "keys.name": ("admin", False),
    # the broker's journal of its own records, pulled by the persister
    "journal.read": ("admin", True),
    "journal.ack": ("admin", True),
    # a service's record of what a person did through it (broker.server.request_ops.audit)
    "audit.note": (SERVICES_ONLY, True),
    # selectors, tags and groups (broker.server.targets)
    "targets.resolve": ("viewer", True),
    "targets.tags": ("viewer", True),
    "targets.tag": ("operator", False),
    # one command to many agents, paced (broker.server.bulk); a service (the web) acts here only for a person
    # it names (args.operator): the broker stamps and checks that person (broker.server.approval_flow)
    "bulk.start": ("operator", True),
    "bulk.get": ("viewer", True),
    "bulk.list": ("viewer", True),
    "bulk.cancel": ("operator", True),
    # two-person approval (broker.server.approvals): the rules are the admins'
    "approvals.list": ("operator", True),
    "approvals.decide": ("operator", True),
    "approvals.rules": ("viewer", True),
    "approvals.require": ("admin", False),
    # named, typed commands (broker.core.templates): admins define them, operators run them
    "templates.list": ("viewer", True),
    "templates.put": ("admin", False),
    "templates.remove": ("admin", False),
    "templates.run": ("operator", True),
    # ordered template steps per target (broker.core.playbooks): admins define them, operators run them
    "playbooks.list": ("viewer", True),
    "playbooks.put": ("admin", False),
    "playbooks.remove": ("admin", False),
    "playbooks.run": ("operator", False),
    "playbooks.get": ("viewer", True),
    "playbooks.cancel": ("operator", False),
    # runs the broker starts at a time or on a cron expression (broker.server.schedules), as their owner. A service
    # (the web) makes, pauses and removes them only for a person it names (args.operator), who owns what it makes
    "schedules.add": ("operator", True),
    "schedules.list": ("viewer", True),
    "schedules.get": ("viewer", True),
    "schedules.remove": ("operator", True),
    "schedules.pause": ("operator", True),
    "schedules.resume": ("operator", True),
    # one chat message to many agents, with receipts (broker.server.broadcasts); text only for operators and up.
    # A service (the web) sends only for a person it names (args.operator), stamped by the broker as for bulk.start
    "broadcast.send": ("operator", True),
    "broadcast.get": ("viewer", True),
    "broadcast.list": ("viewer", True),
    "broadcast.cancel": ("operator", False),
    # forwarded to the service that provides "store" (the persister)
    "store.query": ("viewer", True),
    "store.capture": ("viewer", True),
    "store.stats": ("viewer", True),
    # the change feed the sync worker reads (decrypted rows): services only
    "store.changes": (SERVICES_ONLY, True),
    # forwarded to the service that provides "sync" (the MySQL sync worker)
    "sync.now": ("operator", True),
    "sync.status": ("viewer", True),
    # the automatic full snapshots: on/off and their period (the web's Servers tab, admins only)
    "sync.auto": ("admin", True),
    # forwarded to the alerts service (broker.alerts): alerts and rules, and each person's own inbox
    "alerts.list": ("viewer", True),
    "alerts.rules": ("viewer", True),
    "alerts.rule_put": ("admin", False),
    "alerts.rule_remove": ("admin", False),
    "alerts.ack": ("operator", True),
    "inbox.list": ("viewer", True),
    "inbox.read": ("viewer", True),
    "inbox.count": ("viewer", True),
}

#: Operation prefixes answered by a service rather than the broker itself.
SERVICE_PREFIXES = ("store.", "sync.", "alerts.", "inbox.")

#: ops a vouching service (the web through the admin API) may call only for a person it names in
#: ``args.operator`` (FORBIDDEN, a security event, otherwise): a service has no inbox, and acknowledges or
#: broadcasts nothing in its own name
PERSON_OPS = frozenset({"alerts.ack", "inbox.list", "inbox.read", "inbox.count", "broadcast.send", "schedules.add",
                        "schedules.remove", "schedules.pause", "schedules.resume"})
#: the roles a vouching service may claim for the person it names (``args.operator.role``); a claim of more
#: ("admin") is cut down to the highest of these, no claim is the lowest. A stolen service token can thus
#: act as any *named* operator (read and mark their inbox, acknowledge alerts, with a reason, recorded with
#: the service as ``via``) but never as an admin: alert rules, keys and approval rules stay with admin keys.
VOUCHED_ROLES = ("viewer", "operator")


def vouched_role(claimed: object) -> str:
    """The role the broker stands behind for a person a service names: the claim, at most ``operator``."""
    if claimed in VOUCHED_ROLES:
        return str(claimed)
    return VOUCHED_ROLES[-1] if claimed == "admin" else VOUCHED_ROLES[0]


# -- the read side ---------------------------------------------------------------
_OPERATOR_ROLES = frozenset({"viewer", "operator", "admin"})
VIEWERS_UP = _OPERATOR_ROLES | {"service"}
OPERATORS_UP = frozenset({"operator", "admin", "service"})
ADMINS = frozenset({"admin", "service"})

#: ``event.<agent>.<name>`` names whose records carry screen pictures, chat
#: text or file paths; every other event name is class ``activity``. Names
#: are matched exactly, as the store routes them (``capture.x`` is activity).
SENSITIVE_EVENTS = ("capture", "chat", "fileop")

#: Live topic class -> the roles that receive it. A class is a topic root
#: (``presence``, ``command`` (status metadata, never arguments), ``log``,
#: ``security``, ``audit``, ``frame``) or, under ``event.``, the event's
#: class (:data:`SENSITIVE_EVENTS` or ``activity``). Topics of no class
#: (nothing publishes them today) are admins' and services'.
LIVE_READERS: dict[str, frozenset[str]] = {
    "presence": VIEWERS_UP,
    "command": VIEWERS_UP,
    "activity": VIEWERS_UP,  # sysinfo and every other event name
    "log": VIEWERS_UP,
    "security": VIEWERS_UP,
    "capture": OPERATORS_UP,
    "chat": OPERATORS_UP,
    "fileop": OPERATORS_UP,
    "frame": frozenset({"operator", "admin"}),  # live screens: people, not services
    "audit": ADMINS,
}
_UNKNOWN_CLASS_READERS = ADMINS
#: classes an operator's subscription to is written to the audit trail
WATCHED_CLASSES = frozenset({"capture", "chat", "fileop", "frame", "audit"})
_EVENT_CLASSES = (*SENSITIVE_EVENTS, "activity")
_ROOT_CLASSES = {"presence": ("presence",), "command": ("command",), "log": ("log",), "security": ("security",),
                 "audit": ("audit",), "frame": ("frame",), "event": _EVENT_CLASSES}

#: History kind (``store.query`` ``kind``) -> the roles that may query it.
#: Kept in step with the live classes: ``captures`` ~ capture, ``messages``
#: ~ chat, ``fileops`` ~ fileop, ``audit`` ~ audit.
HISTORY_READERS: dict[str, frozenset[str]] = {
    "clients": VIEWERS_UP,
    "sessions": VIEWERS_UP,
    "metrics": VIEWERS_UP,
    "activity": VIEWERS_UP,
    "security": VIEWERS_UP,
    "logs": VIEWERS_UP,
    "commands": VIEWERS_UP,  # without args/result unless the caller sent it (OWNER_FIELDS)
    "captures": OPERATORS_UP,
    "messages": OPERATORS_UP,
    "fileops": OPERATORS_UP,
    "audit": ADMINS,
    "quarantine": ADMINS,  # records the store refused at ingest: metadata only, never a body
}
#: History kinds whose every look by a person is written to the audit trail.
AUDITED_HISTORY = frozenset({"captures", "messages", "fileops", "audit", "quarantine"})
#: History kind -> fields shown only to the row's ``operator``, an admin or a service.
OWNER_FIELDS: dict[str, tuple[str, ...]] = {"commands": ("args", "result")}
#: ``command.get``/``command.list`` fields shown only to the command's sender or an admin.
COMMAND_PRIVATE_FIELDS = ("args", "result")
#: request operations whose ``args`` name the history kind they read
_HISTORY_OPS = {"store.capture": "captures"}


def refusal(role: str, what: str) -> str:
    """The one wording of a refused send, request or read: ``role ROLE may not WHAT``
    (the broker and the persister both refuse; the employee-facing audit and
    the operator's error read the same)."""
    return f"role {role or '?'} may not {what}"


def history_refusal(role: str, kind: str) -> str:
    """Why ``role`` may not read ``kind`` history (see :func:`refusal`)."""
    return refusal(role, f"read {kind} history")


def may_send(role: str, kind: Kind) -> bool:
    return kind in ROLE_KINDS.get(role, frozenset())


def may_request(role: str, op: str) -> bool:
    rule = REQUEST_OPS.get(op)
    if rule is None:
        return False
    minimum, services = rule
    if role == "service":
        return services
    return minimum != SERVICES_ONLY and _LEVEL.get(role, 0) >= _LEVEL[minimum]


def live_class(topic: str) -> str:
    """The read class of a live topic (a key of :data:`LIVE_READERS`, or ``""``)."""
    root, _, rest = topic.partition(".")
    if root == "event":
        name = rest.partition(".")[2]
        return name if name in SENSITIVE_EVENTS else "activity"
    return root if root in _ROOT_CLASSES else ""


def live_readers(topic: str) -> frozenset[str]:
    """The roles that receive ``topic`` live."""
    return LIVE_READERS.get(live_class(topic), _UNKNOWN_CLASS_READERS)


def prefix_classes(prefix: str) -> frozenset[str]:
    """Every class of topic that a subscription to ``prefix`` can match.

    A prefix naming one sensitive event exactly (``event.a.chat``) counts
    as that class only: whoever writes it asks for that stream.
    """
    root, dot, rest = prefix.partition(".")
    if not dot:
        return frozenset(c for r, classes in _ROOT_CLASSES.items() if r.startswith(root) for c in classes)
    if root != "event":
        return frozenset(_ROOT_CLASSES.get(root, ()))
    agent, dot, name = rest.partition(".")
    if not dot:
        return frozenset(_EVENT_CLASSES)
    if name in SENSITIVE_EVENTS:
        return frozenset({name})
    return frozenset(["activity", *(n for n in SENSITIVE_EVENTS if n.startswith(name))])


def may_subscribe(role: str, prefix: str) -> bool:
    """False if every topic ``prefix`` can match is one ``role`` may not read
    (a prefix matching no known topic at all is harmless: allowed)."""
    classes = prefix_classes(prefix)
    return not classes or any(role in LIVE_READERS[c] for c in classes)


def readable_prefixes(role: str, prefixes) -> list[str]:
    """The ``prefixes`` ``role`` may subscribe to (for tools with a default set)."""
    return [p for p in prefixes if may_subscribe(role, p)]


def watched(role: str, prefix: str) -> frozenset[str]:
    """The sensitive classes a subscription of a person to ``prefix`` will
    receive: audited (``screen.watch`` for frames, ``stream.watch`` otherwise)."""
    if role not in _OPERATOR_ROLES:
        return frozenset()
    return frozenset(c for c in prefix_classes(prefix) & WATCHED_CLASSES if role in LIVE_READERS[c])


def may_read_history(role: str, kind: str) -> bool:
    """Whether ``role`` may query history ``kind`` (unknown kinds: False)."""
    return role in HISTORY_READERS.get(kind, frozenset())


def history_kind(op: str, args: dict) -> str | None:
    """The history kind a ``store.*`` request reads, if it names one (else None)."""
    if op in _HISTORY_OPS:
        return _HISTORY_OPS[op]
    if op == "store.query":
        kind = args.get("kind")
        return kind if isinstance(kind, str) and kind in HISTORY_READERS else None
    return None


def sees_whole_command(role: str, client_id: str, sender: str) -> bool:
    """Whether a peer sees a command's arguments and result: its sender, an admin or a service."""
    return role in ADMINS or client_id == sender


def sees_chat(role: str) -> bool:
    """Whether ``role`` sees chat text and who got and read a message (a broadcast's recipients): as live chat."""
    return role in LIVE_READERS["chat"]


def strip_row(role: str, client_id: str, kind: str, row: dict) -> dict:
    """``row`` of history ``kind`` without the fields ``role``/``client_id`` may not see."""
    hidden = OWNER_FIELDS.get(kind)
    if not hidden or sees_whole_command(role, client_id, row.get("operator") or ""):
        return row
    return {k: v for k, v in row.items() if k not in hidden}
