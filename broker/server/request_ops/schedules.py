"""``schedules.add``, ``schedules.list``, ``schedules.get``, ``schedules.remove``, ``schedules.pause``,
``schedules.resume``: runs the broker starts at a time or on a cron expression (:mod:`broker.server.schedules`)."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from broker.core import bounds, cron, permissions
from broker.core.envelope import new_id
from broker.core.vocabulary import MAX_REASON_CHARS, clean_reason
from broker.server import operators
from broker.server.approval_flow import acting_person
from broker.server.schedule_store import Schedule
from broker.server.schedules import DEFAULT_GRACE_S, MAX_GRACE_S, MISSED_POLICIES, SCHEDULABLE, SKIP, next_slot

if TYPE_CHECKING:
    from broker.server.peers import Peer
    from broker.server.loop import Broker

#: a one-off time at most this far ahead
MAX_AHEAD_S = 10 * 366 * 24 * 3600
MAX_SCHEDULES = 1000


def add(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``schedules.add``: schedule ``name`` runs ``request_op`` (a schedulable op: templates.run, bulk.start) with ``args`` as the caller,
    on ``cron`` (5 fields or @daily...) or once ``at`` (epoch seconds, or ``YYYY-MM-DD HH:MM`` in ``tz``), in
    zone ``tz`` (IANA, default UTC); ``missed`` skip|once, ``grace_s`` 0-604800 (default 60); a ``reason`` is
    required. The op is tried as a dry run first (a bad template, selector or option is refused now). Audited."""
    name = bounds.text(args.get("name"), "name", 64, empty=False)
    op = bounds.one_of(args.get("request_op"), "request_op", SCHEDULABLE)
    request = args.get("args", {})
    if not isinstance(request, dict):
        raise ValueError("args must be a map (the op's own arguments)")
    problem = bounds.tree_problem(request)
    if problem is not None:
        raise ValueError(f"args: {problem}")
    reason = clean_reason(bounds.text(args.get("reason"), "reason", MAX_REASON_CHARS))
    if not reason:
        raise ValueError("a schedule needs a reason (it is each run's reason in the audit trail)")
    tz = bounds.text(args.get("tz", "UTC"), "tz", 64, empty=False)
    zone = cron.zone(tz)
    spec, at = _when(args, zone)
    missed = bounds.one_of(args.get("missed", SKIP), "missed", MISSED_POLICIES)
    grace_s = bounds.int64(args.get("grace_s", DEFAULT_GRACE_S), "grace_s", 0, MAX_GRACE_S)
    request = {k: v for k, v in request.items() if k != "dry_run"}
    owner_name = operators.person_of(broker.registry, peer)
    if peer.role in permissions.VOUCHING_ROLES:  # the web: the person it names owns it; each run is theirs
        person_id, owner_name = acting_person(broker.registry, peer, args)
        request["operator"] = {"id": person_id, "name": owner_name}
    _dry_run(broker, peer, op, request, reason)
    if broker.operations.schedules.store.count() >= MAX_SCHEDULES:
        raise ValueError(f"at most {MAX_SCHEDULES} schedules; remove one first (ems schedule remove NAME)")
    now = time.time()
    schedule = Schedule(new_id(), name, peer.client_id, peer.role, peer.key, owner_name, op,
                        request, spec, at, tz, missed, grace_s, reason, None)
    schedule.next_due = next_slot(schedule, now)
    if schedule.next_due is None:
        raise ValueError("that time has passed" if at is not None else "the cron expression never runs")
    broker.operations.schedules.store.add(schedule)
    broker.records.audit(peer, "schedules.add", {"id": schedule.id, "name": name, "op": op, "cron": spec, "at": at, "tz": tz,
                                                 "missed": missed, "grace_s": grace_s, "reason": reason,
                                                 "operator_name": schedule.owner_name, "via": _via(peer)})
    return view(broker, schedule, peer)


def _when(args: dict, zone) -> tuple[str, float | None]:
    """(cron text, None) or ("", one-off epoch seconds) from ``cron`` / ``at``; exactly one of them."""
    spec, at = args.get("cron"), args.get("at")
    if (spec is None) == (at is None):
        raise ValueError("give exactly one of cron (e.g. '*/5 * * * *' or @daily) and at (a time, once)")
    if spec is not None:
        return cron.parse(spec).text, None
    when = cron.wall_time(at, zone) if isinstance(at, str) else bounds.finite(at, "at", "epoch seconds or YYYY-MM-DD HH:MM")
    now = time.time()
    if not now < when <= now + MAX_AHEAD_S:
        raise ValueError(f"at must be in the future and within 10 years, not {cron.shown(when, zone) if abs(when) < 1e11 else when}")
    return "", when


def _dry_run(broker: "Broker", peer: "Peer", op: str, request: dict, reason: str) -> None:
    """Try ``op`` as a dry run as ``peer`` (bad arguments are refused now, not at the first slot)."""
    broker.operations.schedules.ops[op](broker, peer, {**SCHEDULABLE[op].with_reason(request, reason), "dry_run": True})


def list_(broker: "Broker", peer: "Peer", args: dict) -> list[dict]:
    """``schedules.list``: every schedule (``limit`` ≤ 1000, default 200), by name, with its next slot and how its
    newest slot went (``last_outcome``, "" before the first)."""
    limit = bounds.limit(args.get("limit"), "limit", 200, 1, MAX_SCHEDULES)
    store = broker.operations.schedules.store
    listed = []
    for schedule in store.listed(limit):
        newest = store.runs(schedule.id, 1)
        listed.append({**view(broker, schedule, peer), "last_outcome": newest[0].outcome if newest else ""})
    return listed


def get(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``schedules.get``: schedule ``id`` (or name) with its newest slots (``limit`` ≤ 200, default 20): when,
    the run's id, and how it went."""
    schedule = _find(broker, args)
    limit = bounds.limit(args.get("limit"), "limit", 20, 1, 200)
    out = view(broker, schedule, peer)
    out["runs"] = [{"slot": r.slot, "fired_at": r.fired_at, "run_id": r.run_id, "outcome": r.outcome}
                   for r in broker.operations.schedules.store.runs(schedule.id, limit)]
    return out


def remove(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``schedules.remove``: delete schedule ``id`` (or name) with a ``reason`` (its owner or an admin; audited);
    runs it started go on."""
    schedule, reason, person = _owned(broker, peer, args, "remove")
    broker.operations.schedules.store.remove(schedule.id)
    _audit(broker, peer, "schedules.remove", schedule, reason, person)
    return {"id": schedule.id, "name": schedule.name, "removed": True}


def pause(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``schedules.pause``: schedule ``id`` (or name) starts nothing until resumed; ``reason`` required (its owner
    or an admin; audited)."""
    schedule, reason, person = _owned(broker, peer, args, "pause")
    broker.operations.schedules.store.set_enabled(schedule, False, f"paused by {person}: {reason}", schedule.next_due)
    _audit(broker, peer, "schedules.pause", schedule, reason, person)
    return view(broker, schedule, peer)


def resume(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``schedules.resume``: a paused schedule goes on from its next future slot (slots while paused are not made
    up); ``reason`` required (its owner or an admin; audited)."""
    schedule, reason, person = _owned(broker, peer, args, "resume")
    following = next_slot(schedule, time.time())
    if following is None:
        raise ValueError(f"schedule {schedule.name} ran at its one time already or that time has passed")
    broker.operations.schedules.store.set_enabled(schedule, True, "", following)
    _audit(broker, peer, "schedules.resume", schedule, reason, person)
    return view(broker, schedule, peer)


def _find(broker: "Broker", args: dict) -> Schedule:
    ident = bounds.text(args.get("id"), "id", 64, empty=False)
    schedule = broker.operations.schedules.store.get(ident)
    if schedule is None:
        raise ValueError(f"no schedule {ident!r} (ems schedule list)")
    return schedule


def owner_person(schedule: Schedule) -> str:
    """The id of the person a schedule is for: the one a vouching service named when it made it, else its owner key's."""
    if schedule.owner_role in permissions.VOUCHING_ROLES:
        return str((schedule.args.get("operator") or {}).get("id") or schedule.owner)
    return schedule.owner


def _via(peer: "Peer") -> str:
    return peer.client_id if peer.role in permissions.VOUCHING_ROLES else ""


def _owned(broker: "Broker", peer: "Peer", args: dict, what: str) -> tuple[Schedule, str, str]:
    """The schedule ``args`` names, if the person acting (a key's, or the one a service names) made it, or an admin key."""
    schedule = _find(broker, args)
    person_id, person = acting_person(broker.registry, peer, args)
    if person_id != owner_person(schedule) and peer.role != "admin":
        raise ValueError(f"only {owner_person(schedule)} ({schedule.owner_name}, who made it) or an admin may {what} "
                         f"schedule {schedule.name}")
    reason = clean_reason(bounds.text(args.get("reason"), "reason", MAX_REASON_CHARS))
    if not reason:
        raise ValueError(f"to {what} a schedule needs a reason (kept in the audit trail)")
    return schedule, reason, person


def _audit(broker: "Broker", peer: "Peer", action: str, schedule: Schedule, reason: str, person: str) -> None:
    broker.records.audit(peer, action, {"id": schedule.id, "name": schedule.name, "owner": schedule.owner,
                                        "owner_name": schedule.owner_name, "reason": reason, "operator_name": person,
                                        "via": _via(peer)})


def view(broker: "Broker", schedule: Schedule, peer: "Peer") -> dict:
    """``schedule`` as ``peer`` may see it (the op's arguments only for its owner, an admin or a service)."""
    zone = cron.zone(schedule.tz)
    out = {"id": schedule.id, "name": schedule.name, "owner": schedule.owner, "owner_name": schedule.owner_name,
           "op": schedule.op, "cron": schedule.cron, "at": schedule.at, "tz": schedule.tz, "missed": schedule.missed,
           "grace_s": schedule.grace_s, "reason": schedule.reason, "next_due": schedule.next_due,
           "next_due_text": cron.shown(schedule.next_due, zone), "last_slot": schedule.last_slot,
           "enabled": schedule.enabled, "why": schedule.why, "created": schedule.created,
           "state": "enabled" if schedule.enabled and schedule.next_due is not None else
           ("done" if schedule.enabled else "paused")}
    if permissions.sees_whole_command(peer.role, peer.client_id, schedule.owner):
        out["args"] = schedule.args
    return out
