"""The broker's own REQUEST operations: op -> function, one table.

Who may ask is :data:`broker.core.permissions.REQUEST_OPS` (the least operator
role, and whether services may call), the one place for that rule; this
table says what answers each op. Operations under
``permissions.SERVICE_PREFIXES`` (``store.*``) are forwarded to the service
that provides them and have no function here. Both tables must name the same
broker ops: checked when this module is imported.

Each function is ``op(broker, peer, args) -> result``; its docstring is its
spec. It raises ``ValueError`` (``bounds.BoundsError`` included),
``RegistryError``, ``KeyError``, ``TypeError`` or ``OverflowError`` for a
bad request; the broker answers those BAD_REQUEST.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from broker.core import permissions
from broker.server.request_ops import (approvals, audit, broadcasts, bulk, commands, journal, key_revoke, keys, playbooks,
                                       schedules, status, targets, templates)

if TYPE_CHECKING:
    from broker.server.peers import Peer
    from broker.server.loop import Broker

Op = Callable[["Broker", "Peer", dict], object]

OPS: dict[str, Op] = {
    "status": status.status,
    "audit.note": audit.note,
    "agents": status.agents,
    "command.get": commands.get,
    "command.list": commands.list_,
    "keys.list": keys.list_,
    "keys.blocked": keys.blocked,
    "keys.accept": keys.accept,
    "keys.reject": keys.reject,
    "keys.revoke": key_revoke.revoke,
    "keys.unblock": key_revoke.unblock,
    "keys.add": keys.add,
    "keys.label": keys.label,
    "keys.name": keys.name,
    "journal.read": journal.read,
    "journal.ack": journal.ack,
    "targets.resolve": targets.resolve,
    "targets.tags": targets.tags,
    "targets.tag": targets.tag,
    "bulk.start": bulk.start,
    "bulk.get": bulk.get,
    "bulk.list": bulk.list_,
    "bulk.cancel": bulk.cancel,
    "approvals.list": approvals.list_,
    "approvals.decide": approvals.decide,
    "approvals.rules": approvals.rules,
    "approvals.require": approvals.require,
    "templates.list": templates.list_,
    "templates.put": templates.put,
    "templates.remove": templates.remove,
    "templates.run": templates.run,
    "playbooks.list": playbooks.list_,
    "playbooks.put": playbooks.put,
    "playbooks.remove": playbooks.remove,
    "playbooks.run": playbooks.run,
    "playbooks.get": playbooks.get,
    "playbooks.cancel": playbooks.cancel,
    "schedules.add": schedules.add,
    "schedules.list": schedules.list_,
    "schedules.get": schedules.get,
    "schedules.remove": schedules.remove,
    "schedules.pause": schedules.pause,
    "schedules.resume": schedules.resume,
    "broadcast.send": broadcasts.send,
    "broadcast.get": broadcasts.get,
    "broadcast.list": broadcasts.list_,
    "broadcast.cancel": broadcasts.cancel,
}


def broker_ops() -> set[str]:
    """The ops ``permissions.REQUEST_OPS`` says the broker answers itself."""
    return {op for op in permissions.REQUEST_OPS if not op.startswith(permissions.SERVICE_PREFIXES)}


def _check() -> None:
    """Every op with a permission rule has a function here and the reverse."""
    if set(OPS) != broker_ops():
        raise RuntimeError(f"broker.server.request_ops.OPS and permissions.REQUEST_OPS differ: "
                           f"{sorted(set(OPS) ^ broker_ops())}")


_check()
