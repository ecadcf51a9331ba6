"""``status`` and ``agents``: what the broker and its agents are doing."""
from __future__ import annotations

import time
from dataclasses import asdict
from typing import TYPE_CHECKING

from broker.server.registry import ACCEPTED

if TYPE_CHECKING:
    from broker.server.peers import Peer
    from broker.server.loop import Broker


def status(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``status``: the broker (boot id, endpoint, key, uptime, peers, services,
    journal, rate limit, flow), its counters, command counts and the agents."""
    return {
        "broker": {
            "boot_id": broker.boot_id,
            "endpoint": broker.endpoint,
            "public_key": broker.keypair.public,
            "started": broker.started,
            "uptime_s": time.time() - broker.started,
            "peers": len(broker.peers),
            "online_agents": len(broker.online),
            "pending_keys": broker.registry.pending_count(),
            "services": sorted(broker.providers),
            "journal": len(broker.journal),
            "journal_dropped": broker.journal.dropped,
            "rate_limit": {**asdict(broker.config.rate_limit), "summary": broker.config.rate_limit.describe()},
            "flow": broker.flow.status({rid: p.client_id for rid, p in broker.peers.items()}),
        },
        "counters": broker.counters.snapshot(),
        "commands": broker.commands.counts(),
        "agents": agents(broker, peer, args),
    }


def agents(broker: "Broker", peer: "Peer", args: dict) -> list[dict]:
    """``agents``: every accepted agent with its label, host, online state,
    last seen, version and user (from its HELLO) and messages dropped by its
    rate limit."""
    out = []
    for record in broker.registry.all():
        if record.role != "agent" or record.state != ACCEPTED:
            continue
        rids = broker.conns.get(record.client_id)
        live = broker.peers.get(rids[0]) if rids else None
        out.append(
            {
                "client_id": record.client_id,
                "label": record.label,
                "hostname": record.hostname,
                "state": "online" if record.client_id in broker.online else "offline",
                "last_seen": record.last_seen,
                "version": (live.info.get("version") if live else "") or "",
                "user": (live.info.get("user") if live else "") or "",
                "dropped_rate_limited": broker.quotas.dropped(record.client_id)[0] if broker.quotas else 0,
            }
        )
    return out
