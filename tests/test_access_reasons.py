"""Every access needs a reason, and operators are people (issue 12).

Real broker, real sockets: every access command of
:data:`broker.core.vocabulary.ACCESS_COMMANDS` is refused by the broker without a
usable reason and goes through with one, from a bus client, ``ems send`` and
the admin API; the broker stamps who sent it (a key's display name, or the
person a service vouches for, with the service as ``via``), and a real agent
tells its user that person's name.
"""
from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from agent.context import LocalPolicy
from agent.runner import Agent, AgentConfig
from broker.core import keys
from broker.core.profile import Profile, save
from broker.core.config import Timing
from broker.core.envelope import ErrorCode, Kind
from broker.core.errors import RemoteError
from broker.core.vocabulary import ACCESS_COMMANDS, MAX_REASON_CHARS

from conftest import Bus, next_message, wait_for
from test_admin_http import Admin, FakeAgent
from test_agent_capabilities import ALL_COMMANDS

#: reason -> refused?
REASONS = {None: True, "": True, "   \t ": True, "x" * (MAX_REASON_CHARS + 1): True, 42: True,
           "  ticket 4711: the user asked for help  ": False}


def enrol_person(bus: Bus, client_id: str, role: str, name: str = "") -> keys.KeyPair:
    pair = keys.generate()
    bus.admin.request("keys.add", public_key=pair.public, client_id=client_id, role=role, name=name)
    return pair


def commands_received(agent, timeout_s: float = 5.0) -> dict:
    """The next COMMAND the bare agent client receives: its body."""
    return next_message(agent, lambda e: e.kind is Kind.COMMAND, timeout_s).data()


def test_the_access_table_names_agent_commands_only():
    assert set(ACCESS_COMMANDS) <= ALL_COMMANDS
    assert {"capture", "thumbnail", "live.start", "control.open", "files.download", "files.upload",
            "power.reboot", "update.apply"} <= set(ACCESS_COMMANDS)
    assert not {"ping", "help", "sysinfo", "chat.send", "live.stop", "control.close", "input"} & set(ACCESS_COMMANDS)


@pytest.mark.parametrize("name", sorted(ACCESS_COMMANDS))
def test_the_broker_refuses_every_access_command_without_a_usable_reason(bus, name):
    agent = bus.peer("pc-1")
    jane = bus.client(enrol_person(bus, "jane", "operator", "Jane Doe"), hello={"client_id": "jane"})
    for reason, refused in REASONS.items():
        args = {} if reason is None else {"reason": reason}
        if refused:
            with pytest.raises(RemoteError) as caught:
                jane.send_command("pc-1", name, args)
            assert caught.value.code == ErrorCode.REASON_REQUIRED, (name, reason)
            assert "reason" in caught.value.detail
            if reason is None:
                assert "give a reason: ems send" in caught.value.detail and "--reason" in caught.value.detail
        else:
            assert jane.send_command("pc-1", name, args)["status"] == "queued"
    body = commands_received(agent)  # only the command with a reason reached the agent
    assert body["name"] == name and body["args"]["reason"] == "ticket 4711: the user asked for help"
    assert body["args"]["operator"] == {"id": "jane", "name": "Jane Doe", "via": ""}


def test_only_the_command_with_a_reason_reaches_the_agent(bus):
    agent = bus.peer("pc-1")
    jane = bus.client(enrol_person(bus, "jane", "operator", "Jane Doe"), hello={"client_id": "jane"})
    with pytest.raises(RemoteError):
        jane.send_command("pc-1", "capture", {})
    jane.send_command("pc-1", "ping", {"echo": 1})
    assert commands_received(agent)["name"] == "ping"  # the refused capture never got there


@pytest.mark.parametrize("name", ["ping", "help", "sysinfo", "chat.send", "live.stop", "control.close", "files.roots"])
def test_other_commands_need_no_reason(bus, name):
    agent = bus.peer("pc-1")
    assert bus.admin.send_command("pc-1", name, {})["status"] == "queued"
    body = commands_received(agent)
    assert body["name"] == name and body["args"]["operator"] == {"id": "admin", "name": "admin", "via": ""}


def test_an_operator_cannot_name_someone_else(bus):
    """What an operator key says about who it is, is overwritten with its own
    key's person, and the claim is a security event."""
    agent = bus.peer("pc-1")
    bus.admin.subscribe(["security."])
    mallory = bus.client(enrol_person(bus, "mallory", "operator", "Mallory M"), hello={"client_id": "mallory"})
    args = {"reason": "look", "operator": {"id": "ceo", "name": "The CEO", "via": "admin-http"}}
    mallory.send_command("pc-1", "capture", args)
    assert commands_received(agent)["args"]["operator"] == {"id": "mallory", "name": "Mallory M", "via": ""}
    event = next_message(bus.admin, lambda e: e.kind is Kind.SECURITY and e.data().get("event") == "impersonation")
    assert event.data()["client_id"] == "mallory" and "The CEO" in event.data()["detail"]


def test_a_service_vouches_for_a_person_and_is_recorded_as_via(bus):
    agent = bus.peer("pc-1")
    bridge = bus.client(enrol_person(bus, "web-bridge", "service"), hello={"client_id": "web-bridge"})
    with pytest.raises(RemoteError) as caught:  # a service acts only for a named person
        bridge.send_command("pc-1", "power.reboot", {"reason": "frozen"})
    assert caught.value.code == ErrorCode.FORBIDDEN and "args.operator" in caught.value.detail
    with pytest.raises(RemoteError):
        bridge.send_command("pc-1", "power.reboot", {"reason": "frozen", "operator": {"name": "  "}})
    bus.admin.subscribe(["audit."])
    bridge.send_command("pc-1", "power.reboot", {"reason": "frozen", "operator": {"id": "jd@example.org", "name": "Jane Doe"}})
    assert commands_received(agent)["args"]["operator"] == {"id": "jd@example.org", "name": "Jane Doe", "via": "web-bridge"}
    audit = next_message(bus.admin, lambda e: e.topic == "audit.web-bridge" and e.data()["action"] == "command").data()
    assert audit["operator_name"] == "Jane Doe" and audit["reason"] == "frozen"
    assert audit["detail"]["via"] == "web-bridge" and audit["detail"]["operator_id"] == "jd@example.org"


def test_display_names_are_set_by_admins_and_kept(bus):
    jane = enrol_person(bus, "jane", "operator", "Jane Doe")
    listed = {r["client_id"]: r for r in bus.admin.request("keys.list")}
    assert listed["jane"]["name"] == "Jane Doe"
    assert bus.admin.request("keys.name", id="jane", name="  Jane Q. Doe ")["name"] == "Jane Q. Doe"
    with pytest.raises(RemoteError):
        bus.admin.request("keys.name", id="jane", name="two\nlines")
    operator = bus.client(jane, hello={"client_id": "jane"})
    with pytest.raises(RemoteError) as caught:  # an operator cannot rename anyone, itself included
        operator.request("keys.name", id="jane", name="The CEO")
    assert caught.value.code == ErrorCode.FORBIDDEN
    bus.stop()
    bus.start()  # the name is in the registry, not in memory
    assert {r["client_id"]: r for r in bus.admin.request("keys.list")}["jane"]["name"] == "Jane Q. Doe"


# -- the CLI ---------------------------------------------------------------------------
def ems(bus: Bus, *argv: str) -> subprocess.CompletedProcess:
    save(bus.data, Profile(server=bus.endpoint, server_key=bus.server_key, key_name="admin", client_id="admin"))
    return subprocess.run([sys.executable, "-m", "broker.cli.main", *argv, "--data-dir", str(bus.data.root)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", sorted(ACCESS_COMMANDS))
def test_ems_send_refuses_an_access_command_without_reason(bus, name):
    done = ems(bus, "send", "pc-1", name)
    assert done.returncode != 0
    assert f"ems send pc-1 {name} --reason" in done.stderr, done.stderr
    done = ems(bus, "send", "pc-1", name, "--reason", " ")
    assert done.returncode != 0 and "needs a reason" in done.stderr


def test_ems_send_with_a_reason_and_keys_name(bus):
    agent = bus.peer("pc-1")
    done = ems(bus, "send", "pc-1", "capture", "--reason", "ticket 4711")
    assert done.returncode == 0, done.stderr
    assert commands_received(agent)["args"]["reason"] == "ticket 4711"
    pair = keys.generate()
    done = ems(bus, "keys", "add", pair.public, "--id", "jane", "--role", "operator", "--name", "Jane Doe")
    assert done.returncode == 0 and "named 'Jane Doe'" in done.stdout, done.stdout + done.stderr
    done = ems(bus, "keys", "name", "jane", "Jane Q. Doe")
    assert done.returncode == 0, done.stderr
    assert "Jane Q. Doe" in ems(bus, "keys", "list").stdout


# -- the admin API ------------------------------------------------------------------------
def test_admin_api_needs_a_reason_and_a_person_for_every_action(bus):
    admin, agent = Admin(bus), FakeAgent(bus, "pc-1").start()
    try:
        for action in ("reboot", "shutdown", "update-check", "update-apply"):
            path = f"/api/clients/pc-1/{action}"
            for reason, refused in REASONS.items():
                body = {} if reason is None else {"reason": reason}
                status, answer, _ = admin.http.call("POST", path, body)
                assert (status == 400) == refused, (action, reason, answer)
            status, answer, _ = admin.http.call("POST", path, {"reason": "x"}, headers={"X-EMS-Operator": None})
            assert status == 400 and "X-EMS-Operator is required" in answer["error"]
        wait_for(lambda: len(agent.received) == 4, 10, what="the four actions with reasons")
        assert {(a["operator"]["name"], a["operator"]["via"]) for _, a, _ in agent.received} == {("Jane Doe", "admin-http")}
    finally:
        agent.stop()
        admin.close()


# -- a real agent tells its user the person's name --------------------------------------------
@pytest.fixture
def steady_bus(tmp_path):
    b = Bus(tmp_path, Timing())
    yield b
    b.close()


def test_the_agent_names_the_person_in_its_notice_and_access_log(steady_bus, tmp_path):
    """Power commands in dry run (nothing is restarted): the user's notice and
    access log name Jane Doe, or Bob Smith via the admin API, never a key id."""
    pair = keys.load_or_create(tmp_path / "agent" / "keys", "agent")
    steady_bus.admin.request("keys.add", public_key=pair.public, client_id="desk-1", role="agent")
    config = AgentConfig(data_dir=tmp_path / "agent", client=steady_bus.client_config(), client_id="desk-1",
                         sysinfo_interval_s=3600, policy=LocalPolicy(power_dry_run=True))
    agent = Agent(config)
    thread = threading.Thread(target=agent.run, name="agent-under-test", daemon=True)
    thread.start()
    wait_for(lambda: agent.bus.ready, 20, what="the agent to be welcomed")
    admin = Admin(steady_bus)
    try:
        jane = steady_bus.client(enrol_person(steady_bus, "jane", "operator", "Jane Doe"), hello={"client_id": "jane"})
        first = jane.send_command("desk-1", "power.reboot", {"reason": "kernel update", "delay_s": 120})
        assert jane.wait_result(first["id"], 20)["status"] == "done"
        status, outcome, _ = admin.http.call("POST", "/api/clients/desk-1/shutdown?wait=1&timeout_s=20",
                                             {"reason": "office closes", "args": {"delay_s": 120}},
                                             headers={"X-EMS-Operator": "Bob Smith"})
        assert status == 200 and outcome["status"] == "done", outcome
        log = agent.access_log.read()
        assert "Jane Doe will restart this computer" in log and "kernel update" in log
        assert "Bob Smith via admin-http will shut down this computer" in log and "office closes" in log
        assert "jane will" not in log and log.count("admin-http will") == log.count("via admin-http will")
    finally:
        admin.close()
        agent.stop()
        thread.join(30)
