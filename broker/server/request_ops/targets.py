"""``targets.resolve``, ``targets.tags`` and ``targets.tag``: selectors, tags and groups (:mod:`broker.server.targets`)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from broker.core import bounds, selectors
from broker.core.selectors import TargetFacts

if TYPE_CHECKING:
    from broker.server.peers import Peer
    from broker.server.loop import Broker

#: agents listed in one answer at most (``count`` is always the whole number)
MAX_LISTED = 10_000


def resolve(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``targets.resolve``: the accepted agents ``selector`` matches now (``count``, and up to ``limit`` ≤ 10,000
    listed with what was tested: online, label, host, os, version, tags, groups); a preview, nothing is sent."""
    selector = selectors.parse(args.get("selector"))
    limit = bounds.limit(args.get("limit"), "limit", MAX_LISTED, 0, MAX_LISTED)
    found = broker.targets.resolve(selector, broker.registry, broker.online)
    return {"selector": selector.text, "count": len(found), "targets": [_row(f) for f in found[:limit]]}


def tags(broker: "Broker", peer: "Peer", args: dict) -> list[dict]:
    """``targets.tags``: every tag and group with how many agents carry it."""
    return broker.targets.summary()


def tag(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``targets.tag``: put (or with ``remove: true`` take off) ``kind`` (tag or group) ``name`` on every agent
    ``selector`` matches; audited with the selector and the agents changed."""
    kind = bounds.text(args.get("kind"), "kind", 16, empty=False)
    name = bounds.text(args.get("name"), "name", 64, empty=False)
    selector = selectors.parse(args.get("selector"))
    remove = bounds.boolean(args.get("remove", False), "remove")
    ids = [f.client_id for f in broker.targets.resolve(selector, broker.registry, broker.online)]
    book = broker.targets
    changed = book.remove(kind, name, ids) if remove else book.add(kind, name, ids, peer.client_id)
    action = "targets.untag" if remove else "targets.tag"
    broker.records.audit(peer, action, {"kind": kind, "name": name, "selector": selector.text, "changed": changed[:1000],
                                        "count": len(changed)})
    return {"kind": kind, "name": name, "matched": len(ids), "changed": changed}


def _row(facts: TargetFacts) -> dict:
    return {"client_id": facts.client_id, "online": facts.online, "label": facts.label, "host": facts.host,
            "os": facts.os, "version": facts.version, "tags": sorted(facts.tags), "groups": sorted(facts.groups)}
