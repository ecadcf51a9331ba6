"""``playbooks.put/remove/list/run/get/cancel``: ordered template steps per target (:mod:`broker.core.playbooks`,
:mod:`broker.server.playbook_runner`)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from broker.core import bounds, permissions
from broker.core.playbooks import PlaybookError, check_playbook
from broker.core.templates import fill, value_of
from broker.server.playbook_book import Playbook
from broker.server.playbook_runs import PlaybookRun, RunOptions
from broker.server.request_ops import bulk

if TYPE_CHECKING:
    from broker.server.loop import Broker
    from broker.server.peers import Peer
    from broker.server.template_book import Template

#: targets listed in one ``playbooks.get`` answer at most (``counts`` always covers them all)
MAX_LISTED = 5_000


def list_(broker: "Broker", peer: "Peer", args: dict) -> list[dict]:
    """``playbooks.list``: every playbook (its steps: template, params, when)."""
    return [p.as_dict() for _, p in sorted(broker.operations.playbook_book.playbooks.items())]


def put(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``playbooks.put``: add or replace playbook ``name`` (``steps``, ``description``); each step's template must
    exist and its ``params`` fit that template. Admins only, audited."""
    steps = check_playbook(args.get("name"), args.get("steps"))
    for number, step in enumerate(steps, 1):
        template = _template(broker, step["template"], number)
        unknown = sorted(set(step["params"]) - set(template.params))
        if unknown:
            raise PlaybookError(f"step {number}: template {template.name} takes no parameter(s) {', '.join(unknown)}")
        for pname, value in step["params"].items():
            value_of(pname, template.params[pname], value)
    problem = bounds.tree_problem(steps)
    if problem is not None:
        raise ValueError(f"steps: {problem}")
    playbook = Playbook(args["name"], steps, bounds.text(args.get("description", ""), "description", 500), peer.client_id)
    new = broker.operations.playbook_book.put(playbook)
    broker.records.audit(peer, "playbooks.add" if new else "playbooks.change",
                         {"name": playbook.name, "steps": [s["template"] for s in steps]})
    return playbook.as_dict()


def remove(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``playbooks.remove``: delete playbook ``name`` (admins; audited); runs already started go on."""
    name = bounds.text(args.get("name"), "name", 64, empty=False)
    if not broker.operations.playbook_book.remove(name):
        raise _unknown(name)
    broker.records.audit(peer, "playbooks.remove", {"name": name})
    return {"name": name, "removed": True}


def run(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``playbooks.run``: playbook ``name`` on what ``selector`` picks, ``reason`` required; ``params`` fill what the
    steps leave open (a step's own values win); ``max_parallel`` targets at once (1-1000, default 20), ``ttl_s`` per
    step's command; ``dry_run: true`` answers targets x steps and starts nothing. Held for approval if any step's
    template (or command) needs it."""
    name = bounds.text(args.get("name"), "name", 64, empty=False)
    playbook = broker.operations.playbook_book.playbooks.get(name)
    if playbook is None:
        raise _unknown(name)
    reason = args.get("reason")
    if reason is None or not bounds.text(reason, "reason", 2000).strip():
        raise ValueError("reason: say why this playbook runs (it is kept with every step in the audit trail)")
    values = args.get("params", {})
    if not isinstance(values, dict):
        raise ValueError("params: a map of parameter name -> value, for what the steps leave open")
    templates = [_template(broker, step["template"], n) for n, step in enumerate(playbook.steps, 1)]
    unused = sorted(set(values) - {p for t in templates for p in t.params})
    if unused:
        raise ValueError(f"no step of playbook {name} takes parameter(s) {', '.join(map(str, unused))}")
    options = bulk.options_of(args)
    steps = [_step(broker, peer, name, n, step, template, values, reason)
             for n, (step, template) in enumerate(zip(playbook.steps, templates), 1)]
    selector = bounds.text(args.get("selector"), "selector", 1000, empty=False)
    pace = RunOptions(options.max_parallel, options.ttl_s)
    if args.get("dry_run", False) is True:
        online = set(broker.online)
        text, found = broker.bulk.plan(selector, online)
        return {"dry_run": True, "playbook": name, "selector": text, "count": len(found), "options": pace.__dict__,
                "steps": _steps_view(steps),
                "targets": [{"client_id": t.client_id, "online": t.client_id in online} for t in found[:MAX_LISTED]]}
    hold = any(t.approval for t in templates)
    return view(broker.operations.playbooks.start(peer, name, steps, selector, pace, hold), peer)


def _step(broker: "Broker", peer: "Peer", name: str, number: int, step: dict, template: "Template", values: dict,
          reason: str) -> dict:
    """One step as it runs: its template's command and arguments, filled, stamped with the operator and the reason."""
    given = {**{k: v for k, v in values.items() if k in template.params}, **step["params"]}
    try:
        filled = fill(template.args, template.params, given)
    except ValueError as exc:
        raise ValueError(f"step {number} ({template.name}): {exc}") from None
    filled.update(reason=reason, template=template.name, playbook=name, playbook_step=number)
    stamped = broker.command_router.stamped(peer, template.command, filled)
    return {"template": template.name, "command": template.command, "args": stamped, "when": step["when"]}


def get(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``playbooks.get``: run ``id``: its state, counts per target state, and per target (``limit`` ≤ 5,000 listed)
    each step's status and command id; the reason, step arguments and results only for its sender or an admin."""
    return view(_find(broker, args), peer, bounds.limit(args.get("limit"), "limit", MAX_LISTED, 0, MAX_LISTED))


def cancel(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``playbooks.cancel``: stop run ``id`` (its sender or an admin): targets not started end cancelled, steps
    still queued for offline agents expire unrun; a step already running finishes and nothing follows it."""
    run = _find(broker, args)
    if peer.client_id != run.sender and peer.role != "admin":
        raise ValueError(f"only {run.sender} (who started it) or an admin may cancel playbook run {run.id}")
    reason = bounds.text(args.get("reason", ""), "reason", 500)
    live = broker.operations.playbooks.runs.get(run.id)
    if live is not None:
        broker.operations.playbooks.stop(live, f"cancelled by {peer.client_id}" + (f": {reason}" if reason else ""))
        broker.records.audit(peer, "playbooks.cancel", {"id": run.id, "playbook": run.playbook, "reason": reason})
        run = live
    return view(run, peer)


def _find(broker: "Broker", args: dict) -> PlaybookRun:
    run_id = bounds.text(args.get("id"), "id", 64, empty=False)
    runner = broker.operations.playbooks
    run = runner.runs.get(run_id) or runner.store.get(run_id)
    if run is None:
        raise ValueError(f"no playbook run {run_id!r}")
    return run


def _template(broker: "Broker", name: str, number: int) -> "Template":
    template = broker.template_book.templates.get(name)
    if template is None:
        raise PlaybookError(f"step {number}: no template {name!r} (ems template list)")
    return template


def _steps_view(steps: list[dict]) -> list[dict]:
    return [{"number": n, "template": s["template"], "command": s["command"], "when": s["when"]} for n, s in enumerate(steps, 1)]


def view(run: PlaybookRun, peer: "Peer", limit: int = MAX_LISTED) -> dict:
    """``run`` as ``peer`` may see it (arguments and results only for its sender, an admin or a service)."""
    whole = permissions.sees_whole_command(peer.role, peer.client_id, run.sender)
    out = {"id": run.id, "playbook": run.playbook, "sender": run.sender, "person": run.person,
           "selector": run.selector, "state": run.state, "why": run.why, "created": run.created, "updated": run.updated,
           "options": run.options.__dict__, "count": len(run.targets), "counts": run.counts(), "steps": _steps_view(run.steps),
           "targets": [{"client_id": t.client_id, "state": t.state, "step": t.step + 1, "why": t.why,
                        "steps": [{"status": s.status, "command_id": s.command_id, **({"result": s.result} if whole else {})}
                                  for s in t.steps]} for t in run.targets[:limit]]}
    if whole:
        out["args"], out["reason"] = [s["args"] for s in run.steps], run.reason
    return out


def _unknown(name: str) -> ValueError:
    return ValueError(f"no playbook {name!r} (ems playbook list)")
