"""``bulk.start``, ``bulk.get``, ``bulk.list``, ``bulk.cancel``: one command to many agents (:mod:`broker.server.bulk`)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from broker.core import bounds, permissions
from broker.server.approval_flow import acting_person
from broker.server.bulk_store import STOPPED, BulkOptions, BulkRun

if TYPE_CHECKING:
    from broker.server.peers import Peer
    from broker.server.loop import Broker

#: targets listed in one ``bulk.get`` answer at most (``counts`` always covers them all)
MAX_LISTED = 10_000
MAX_TTL_S = 30 * 24 * 3600.0


def options_of(args: dict) -> BulkOptions:
    """The run's safety options from a request, each bounded (a clear refusal otherwise)."""
    pct = args.get("halt_failure_pct")
    if pct is not None:
        pct = bounds.finite(pct, "halt_failure_pct", "a percentage from 0 to 100")
        if not 0 <= pct <= 100:
            raise ValueError(f"halt_failure_pct must be a percentage from 0 to 100, not {pct:g}")
    return BulkOptions(max_parallel=max_parallel_of(args), canary=bounds.int64(args.get("canary", 0), "canary", 0, 1000),
                       halt_failure_pct=pct, ttl_s=ttl_of(args))


def max_parallel_of(args: dict) -> int:
    """``max_parallel`` of a request: 1-1000, default 20."""
    return bounds.int64(args.get("max_parallel", BulkOptions.max_parallel), "max_parallel", 1, 1000)


def ttl_of(args: dict) -> float:
    """``ttl_s`` of a request: how long each command may wait for its agent, 1 s to 30 days (default 1 h)."""
    ttl = bounds.finite(args.get("ttl_s", BulkOptions.ttl_s), "ttl_s", "a number of seconds")
    if not 1 <= ttl <= MAX_TTL_S:
        raise ValueError(f"ttl_s must be from 1 to {MAX_TTL_S:g} seconds, not {ttl:g}")
    return ttl


def start(broker: "Broker", peer: "Peer", args: dict, hold: bool = False) -> dict:
    """``bulk.start``: command ``name`` with ``args`` to every agent ``selector`` matches, paced by ``max_parallel``
    (1-1000, default 20), ``canary`` (0-1000), ``halt_failure_pct`` (0-100, none by default) and ``ttl_s`` per
    command; ``dry_run: true`` answers the targets and the plan and starts nothing. Access commands need a reason
    in ``args`` as single commands do. ``hold`` (a template's, never from the wire): wait for approval."""
    name = bounds.text(args.get("name"), "name", 64, empty=False)
    command_args = args.get("args", {})
    if not isinstance(command_args, dict):
        raise ValueError("args must be a map")
    problem = bounds.tree_problem(command_args)
    if problem is not None:
        raise ValueError(f"command args: {problem}")
    options = options_of(args)
    stamped = broker.command_router.stamped(peer, name, command_args)
    selector = bounds.text(args.get("selector"), "selector", 1000, empty=False)
    if args.get("dry_run", False) is True:
        text, targets = broker.bulk.plan(selector, set(broker.online))
        online = set(broker.online)
        return {"dry_run": True, "selector": text, "name": name, "count": len(targets), "options": options.__dict__,
                "targets": [{"client_id": t.client_id, "online": t.client_id in online} for t in targets[:MAX_LISTED]]}
    return view(broker.bulk.start(peer, name, stamped, selector, options, hold), peer)


def get(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``bulk.get``: one run by ``id``: state, counts per status, and each target's status and command id
    (``limit`` ≤ 10,000 listed); the command's arguments only for its sender or an admin."""
    run = _find(broker, args)
    return view(run, peer, bounds.limit(args.get("limit"), "limit", MAX_LISTED, 0, MAX_LISTED))


def list_(broker: "Broker", peer: "Peer", args: dict) -> list[dict]:
    """``bulk.list``: the newest runs (``limit`` ≤ 200, default 20), without their target lists."""
    limit = bounds.limit(args.get("limit"), "limit", 20, 1, 200)
    return [view(run, peer, 0) for run in broker.bulk.store.recent(limit)]


def cancel(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``bulk.cancel``: stop run ``id`` (the person who started it, or an admin; a vouching service names the
    person in ``operator``): nothing more starts, commands still queued for offline agents expire unrun; what
    already runs finishes."""
    run = _find(broker, args)
    person_id, person = acting_person(broker.registry, peer, args)
    starter = run.args.get("operator") or {}
    if peer.role != "admin" and person_id != (starter.get("id") or run.sender):
        raise ValueError(f"only {starter.get('name') or run.sender} (who started it) or an admin may cancel run {run.id}")
    live = broker.bulk.runs.get(run.id)
    if live is not None:
        reason = bounds.text(args.get("reason") or "", "reason", 500)
        broker.bulk.stop(live, STOPPED, f"cancelled by {person}" + (f": {reason}" if reason else ""))
        broker.records.audit(peer, "bulk.cancel", {"id": run.id, "reason": reason, "operator_name": person,
                                                   "via": peer.client_id if peer.role in permissions.VOUCHING_ROLES else ""})
        run = live
    return view(run, peer)


def _find(broker: "Broker", args: dict) -> BulkRun:
    run_id = bounds.text(args.get("id"), "id", 64, empty=False)
    run = broker.bulk.runs.get(run_id) or broker.bulk.store.get(run_id)
    if run is None:
        raise ValueError(f"no bulk run {run_id!r}")
    return run


def view(run: BulkRun, peer: "Peer", limit: int = MAX_LISTED) -> dict:
    """``run`` as ``peer`` may see it (arguments only for its sender, an admin or a service)."""
    out = {"id": run.id, "sender": run.sender, "name": run.name, "selector": run.selector, "state": run.state,
           "why": run.why, "created": run.created, "updated": run.updated, "options": run.options.__dict__,
           "count": len(run.targets), "counts": run.counts(),
           "targets": [{"client_id": t.client_id, "status": t.status, "command_id": t.command_id} for t in run.targets[:limit]]}
    if permissions.sees_whole_command(peer.role, peer.client_id, run.sender):
        out["args"] = run.args
    return out
