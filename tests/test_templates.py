"""Command templates on a real broker: typed parameters checked (every type at its edges, text from a command
line converted), fixed arguments a run cannot override, a run as a paced bulk run that reaches real Curve
agents with the filled-in arguments, a template marked for approval held until another operator approves,
definitions for admins only and audited, and the CLI end to end.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from broker.core.envelope import ErrorCode, Kind
from broker.core.errors import RemoteError
from broker.core.templates import TemplateError, check_template, fill
from conftest import wait_for

PATCH = {"name": "patch", "command": "os.update.apply", "args": {"dry_run": True}, "description": "apply updates",
         "params": {"reboot": {"type": "bool", "default": False},
                    "window_h": {"type": "int", "min": 1, "max": 72, "required": True},
                    "channel": {"type": "choice", "choices": ["stable", "beta"], "default": "stable"},
                    "note": {"type": "text", "max_chars": 20},
                    "share": {"type": "number", "min": 0, "max": 1}}}


def specs():
    return check_template(PATCH["name"], PATCH["command"], PATCH["args"], PATCH["params"])


@pytest.mark.parametrize("values,expected", [
    ({"window_h": 4}, {"dry_run": True, "reboot": False, "window_h": 4, "channel": "stable"}),
    ({"window_h": "72", "reboot": "yes", "channel": "beta", "note": "hi", "share": "0.5"},
     {"dry_run": True, "reboot": True, "window_h": 72, "channel": "beta", "note": "hi", "share": 0.5}),
    ({"window_h": 1, "reboot": "off", "share": 0}, {"dry_run": True, "reboot": False, "window_h": 1, "channel": "stable", "share": 0}),
])
def test_values_are_converted_to_their_types(values, expected):
    assert fill(PATCH["args"], specs(), values) == expected


@pytest.mark.parametrize("values,needle", [
    ({}, "'window_h' (int) is required"), ({"window_h": 0}, "from 1 to 72"), ({"window_h": 73}, "from 1 to 72"),
    ({"window_h": -1}, "from 1 to 72"), ({"window_h": 2**63}, "64-bit"), ({"window_h": "4.5"}, "an integer"),
    ({"window_h": True}, "an integer"), ({"window_h": 4, "reboot": "maybe"}, "true or false"),
    ({"window_h": 4, "channel": "nightly"}, "one of stable, beta"), ({"window_h": 4, "note": "x" * 21}, "at most 20"),
    ({"window_h": 4, "note": 5}, "must be text"), ({"window_h": 4, "share": "nan"}, "finite number"),
    ({"window_h": 4, "share": 1.5}, "from 0 to 1"), ({"window_h": 4, "dry_run": False}, "unknown parameter(s) dry_run"),
    ({"window_h": 4, "note": "a\x00b"}, "must be text"), ([], "a map"),
])
def test_bad_values_are_refused_naming_the_parameter(values, needle):
    with pytest.raises(TemplateError) as error:
        fill(PATCH["args"], specs(), values)
    assert needle in str(error.value)


@pytest.mark.parametrize("change,needle", [
    ({"name": "has space"}, "template name"), ({"command": ""}, "command"), ({"args": []}, "args"),
    ({"params": {"1x": {"type": "int"}}}, "parameter name"), ({"params": {"x": {"type": "date"}}}, "type one of"),
    ({"params": {"x": {"type": "choice"}}}, "needs choices"), ({"params": {"x": {"type": "text", "min": 1}}}, "min is for"),
    ({"params": {"x": {"type": "int", "default": "ten"}}}, "an integer"), ({"params": {"dry_run": {"type": "bool"}}}, "also a fixed"),
    ({"params": {"x": {"type": "int", "evil": 1}}}, "only"), ({"params": {"x": {"type": "int", "required": "yes"}}}, "required is"),
])
def test_bad_definitions_are_refused(change, needle):
    definition = {**PATCH, **change}
    with pytest.raises(TemplateError) as error:
        check_template(definition["name"], definition["command"], definition["args"], definition["params"])
    assert needle in str(error.value)


@pytest.fixture
def world(bus):
    agents = [bus.peer(f"lab-{i}") for i in range(3)]
    operator = bus.peer("op-t", role="operator")
    bus.admin.request("templates.put", **PATCH)
    return bus, agents, operator


def test_a_run_reaches_every_agent_with_the_filled_in_arguments(world):
    bus, agents, operator = world
    run = operator.request("templates.run", name="patch", selector="id:lab-*", params={"window_h": "6"}, reason="Tuesday")
    assert run["count"] == 3 and run["state"] == "running"
    for agent in agents:
        [command] = wait_for(lambda: [e.data() for e in agent.drain(10, 0.1) if e.kind is Kind.COMMAND], 10, what="the command")
        args = command["args"]
        assert command["name"] == "os.update.apply"
        assert (args["dry_run"], args["window_h"], args["reboot"], args["template"], args["reason"]) == (True, 6, False, "patch", "Tuesday")


def test_a_template_marked_for_approval_is_held_until_another_operator_approves(world):
    bus, agents, operator = world
    bus.admin.request("templates.put", **{**PATCH, "approval": True})
    run = operator.request("templates.run", name="patch", selector="lab-0", params={"window_h": 2})
    assert run["state"] == "held"
    [request] = bus.admin.request("approvals.list")
    bus.admin.request("approvals.decide", id=request["id"], approve=True, reason="ok for lab-0")
    wait_for(lambda: [e for e in agents[0].drain(10, 0.1) if e.kind is Kind.COMMAND], 10, what="the approved command")


def test_definitions_are_for_admins_and_audited(world):
    bus, _, operator = world
    listener = bus.peer("t-audit", role="admin")
    listener.subscribe(["audit."])
    for op, args in (("templates.put", PATCH), ("templates.remove", {"name": "patch"})):
        with pytest.raises(RemoteError) as refused:
            operator.request(op, **args)
        assert refused.value.code == ErrorCode.FORBIDDEN
    bus.admin.request("templates.remove", name="patch")
    wait_for(lambda: any(e.data()["action"] == "templates.remove" for e in listener.drain(10, 0.1)), 10, what="the audit record")
    with pytest.raises(RemoteError) as missing:
        operator.request("templates.run", name="patch", selector="all", params={})
    assert "no template 'patch'" in str(missing.value)


def test_the_cli_adds_lists_and_runs(world):
    bus, agents, _ = world
    from broker.core.profile import Profile, save

    save(bus.data, Profile(server=bus.endpoint, server_key=bus.server_key, key_name="admin", client_id="admin"))

    def ems(*argv):
        return subprocess.run([sys.executable, "-m", "broker.cli.main", "template", *argv, "--data-dir", str(bus.data.root)],
                              capture_output=True, text=True, timeout=60)
    added = ems("add", "shout", "chat.send", "--param", "text:text:required:max_chars=50", "--arg", "urgent=true")
    assert added.returncode == 0 and "template shout: chat.send with 1 parameter(s)" in added.stdout, added.stderr
    listed = ems("list")
    assert "shout" in listed.stdout and "text:text*" in listed.stdout and "patch" in listed.stdout
    dry = ems("run", "shout", "lab-1", "text=123", "--dry-run")
    assert dry.returncode == 0 and "would go to 1 agent(s)" in dry.stdout
    ran = ems("run", "shout", "lab-1", "text=123", "--json")  # digits stay text: the parameter says so
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["args"]["text"] == "123"
    bad = ems("run", "shout", "lab-1", "text=" + "x" * 51)
    assert bad.returncode == 2 and "at most 50 characters" in bad.stderr
    assert ems("add", "broken", "x", "--param", "nocolon").returncode == 2
