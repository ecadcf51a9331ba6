"""``audit.note``: a service's record of what a person did through it, in the bus's audit trail.

A service that answers ops of its own (the alerts service: an alert
acknowledged, a rule changed) keeps the person who did it and why; this op
puts that record where every other operator action is, the broker's audit
trail (journaled, stored, shown in ``ems history audit`` and the employee's
access summaries), with the service as ``via``. A service records only
actions under a name it provides (``alerts.ack`` from the service that
provides ``alerts``), never the broker's own (``keys.accept``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from broker.core import bounds

if TYPE_CHECKING:
    from broker.server.peers import Peer
    from broker.server.loop import Broker


def note(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``audit.note`` (services only): ``action`` under a name the calling service provides, ``person``
    (``{"id", "name"}``: who did it, as the service authenticated them) and ``detail`` (a map: ``reason``,
    ``target``, ...); recorded like the broker's own audit records, the service named as ``via``."""
    action = bounds.text(args.get("action"), "action", 64, empty=False)
    provided = sorted(name for name, rid in broker.providers.items() if rid == peer.rid)
    root, dot, rest = action.partition(".")
    if root not in provided or not dot or not rest:
        own = ", ".join(f"{name}.*" for name in provided) or "nothing: it provides no ops"
        raise ValueError(f"a service records only its own actions ({own}), not {action!r}")
    person = args.get("person")
    if not isinstance(person, dict):
        raise ValueError("person must be a map: {id, name} of who did it")
    name = bounds.text(person.get("name"), "person.name", 200, empty=False)
    person_id = bounds.text(person.get("id", ""), "person.id", 200)
    detail = args.get("detail", {})
    if not isinstance(detail, dict):
        raise ValueError("detail must be a map")
    problem = bounds.tree_problem(detail)
    if problem is not None:
        raise ValueError(f"detail: {problem}")
    broker.records.audit(peer, action, {**detail, "operator_name": name, "operator_id": person_id, "via": peer.client_id})
    return {"recorded": action}
