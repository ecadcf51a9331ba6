"""``templates.list``, ``templates.put``, ``templates.remove``, ``templates.run``: named, typed commands
(:mod:`broker.core.templates`) run on a selector as a bulk run."""
from __future__ import annotations

from typing import TYPE_CHECKING

from broker.core import bounds
from broker.core.templates import check_template, fill
from broker.server.request_ops import bulk
from broker.server.template_book import Template

if TYPE_CHECKING:
    from broker.server.peers import Peer
    from broker.server.loop import Broker


def list_(broker: "Broker", peer: "Peer", args: dict) -> list[dict]:
    """``templates.list``: every template (command, fixed args, parameter specs, whether runs need approval)."""
    return [t.as_dict() for _, t in sorted(broker.template_book.templates.items())]


def put(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``templates.put``: add or replace template ``name`` (``command``, ``args``, ``params``, ``approval``,
    ``description``); admins only, audited."""
    name, command = args.get("name"), args.get("command")
    fixed, params = args.get("args", {}), args.get("params", {})
    specs = check_template(name, command, fixed, params)
    problem = bounds.tree_problem(fixed)
    if problem is not None:
        raise ValueError(f"args: {problem}")
    template = Template(name, command, fixed, specs, bounds.boolean(args.get("approval", False), "approval"),
                        bounds.text(args.get("description", ""), "description", 500), peer.client_id)
    new = broker.template_book.put(template)
    broker.records.audit(peer, "templates.add" if new else "templates.change", {"name": name, "command": command,
                                                                                "approval": template.approval})
    return template.as_dict()


def remove(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``templates.remove``: delete template ``name`` (admins; audited)."""
    name = bounds.text(args.get("name"), "name", 64, empty=False)
    if not broker.template_book.remove(name):
        raise _unknown(name)
    broker.records.audit(peer, "templates.remove", {"name": name})
    return {"name": name, "removed": True}


def run(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``templates.run``: template ``name`` with ``params`` on what ``selector`` picks, as a bulk run (its
    options as ``bulk.start``'s; ``reason`` joins the arguments); held for approval if the template says so."""
    name = bounds.text(args.get("name"), "name", 64, empty=False)
    template = broker.template_book.templates.get(name)
    if template is None:
        raise _unknown(name)
    command_args = fill(template.args, template.params, args.get("params", {}))
    if args.get("reason"):
        command_args["reason"] = bounds.text(args["reason"], "reason", 2000)
    command_args["template"] = name
    if "operator" in args:  # the person a vouching service names (the broker's stamp decides what counts)
        command_args["operator"] = args["operator"]
    request = {k: v for k, v in args.items() if k not in ("name", "params", "reason", "operator")}
    return bulk.start(broker, peer, {**request, "name": template.command, "args": command_args}, hold=template.approval)


def _unknown(name: str) -> ValueError:
    return ValueError(f"no template {name!r} (ems template list)")
