"""Two-person approval on a real broker with real Curve clients: a held reboot reaches no agent until another
operator approves it (then it runs under the id it was sent with, and the requester's wait sees it through);
the requester can never approve their own request (same key, or the same person through another key); a
denial and an expiry end it unrun with a failed result saying why; a held bulk run starts only once approved;
held requests survive a broker restart; every decision is audited with both people and both reasons; every
bad decision is refused with why and changes nothing.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from broker.core import keys
from broker.core.config import Timing
from broker.core.envelope import ErrorCode, Kind
from broker.core.errors import RemoteError
from conftest import Bus, wait_for

REASON = {"reason": "kernel patch"}


@pytest.fixture
def world(bus):
    agent = bus.peer("desk-7")
    jane = _operator(bus, "jane", "Jane Doe")
    omar = _operator(bus, "omar", "Omar Khan")
    bus.admin.request("approvals.require", names=["reboot", "shutdown"])
    listener = bus.peer("audit-ears", role="admin")
    listener.subscribe(["audit."])
    return bus, agent, jane, omar, listener


def _operator(bus, client_id: str, name: str):
    pair = keys.generate()
    bus.admin.request("keys.add", public_key=pair.public, client_id=client_id, role="operator", name=name)
    return bus.client(pair, hello={"client_id": client_id})


def commands_to(agent, within_s: float = 0.5) -> list[dict]:
    return [e.data() for e in agent.drain(100, within_s) if e.kind is Kind.COMMAND]


def audit_of(listener, action: str) -> list[dict]:
    """Every audit record of ``action`` the listener has had (records drained earlier are kept on it)."""
    seen = listener.__dict__.setdefault("audit_seen", [])

    def found():
        seen.extend(e.data() for e in listener.drain(100, 0.05))
        return [a for a in seen if a["action"] == action]
    return wait_for(found, 10, interval_s=0, what=f"the {action} audit record")


def test_a_held_reboot_runs_only_after_another_operator_approves(world):
    bus, agent, jane, omar, listener = world
    first = jane.send_command("desk-7", "reboot", REASON)
    assert first["status"] == "held"
    assert commands_to(agent) == []  # nothing reached the agent
    assert jane.request("command.get", id=first["id"])["status"] == "held"
    [pending] = omar.request("approvals.list")
    assert pending["id"] == first["id"] and pending["summary"] == "reboot on desk-7"
    assert (pending["requester_name"], pending["reason"]) == ("Jane Doe", "kernel patch")
    decided = omar.request("approvals.decide", id=first["id"], approve=True, reason="change ticket 81 checked")
    assert decided["state"] == "approved" and decided["decided_name"] == "Omar Khan"
    [command] = wait_for(lambda: commands_to(agent, 0.1), 10, what="the approved reboot at the agent")
    assert command["args"]["approval"] == {"id": first["id"], "by": "Omar Khan", "reason": "change ticket 81 checked"}
    assert command["args"]["operator"]["name"] == "Jane Doe"  # it runs as the requester's command
    agent.send(Kind.RESULT, data={"ok": True, "output": {"dry_run": True}}, corr=first["id"], topic="command.desk-7")
    assert jane.wait_result(first["id"], 10)["status"] == "done"  # her --wait sees it through, same id
    [approval] = audit_of(listener, "approval.approve")
    assert approval["operator_name"] == "Omar Khan" and approval["reason"] == "change ticket 81 checked"
    assert approval["detail"]["requester_name"] == "Jane Doe" and approval["detail"]["requester_reason"] == "kernel patch"
    [ran] = [a for a in audit_of(listener, "command") if a["detail"]["id"] == first["id"]]
    assert ran["operator_name"] == "Jane Doe" and ran["detail"]["approved_by"]["by"] == "Omar Khan"


def test_the_requester_can_never_approve_their_own_request(world):
    bus, agent, jane, omar, _ = world
    held = jane.send_command("desk-7", "reboot", REASON)
    second_key = _operator(bus, "jane-laptop", "Jane Doe")  # the same person, another key
    for who in (jane, second_key):
        for approve in (True, False):
            with pytest.raises(RemoteError) as refused:
                who.request("approvals.decide", id=held["id"], approve=approve, reason="it is fine")
            assert refused.value.code == ErrorCode.BAD_REQUEST and "another person" in str(refused.value)
    assert omar.request("approvals.list")[0]["state"] == "pending" and commands_to(agent) == []


def test_a_denial_ends_it_unrun_and_the_requester_is_told_why(world):
    bus, agent, jane, omar, listener = world
    held = jane.send_command("desk-7", "shutdown", REASON)
    omar.request("approvals.decide", id=held["id"], approve=False, reason="not during payroll")
    outcome = jane.wait_result(held["id"], 10)
    assert outcome["status"] == "failed" and "denied by Omar Khan: not during payroll" in outcome["result"]["error"]
    assert commands_to(agent) == []
    assert "denied by Omar Khan" in jane.request("command.get", id=held["id"])["result"]["error"]
    [denial] = audit_of(listener, "approval.deny")
    assert denial["detail"]["requester_name"] == "Jane Doe"
    with pytest.raises(RemoteError) as again:
        omar.request("approvals.decide", id=held["id"], approve=True, reason="changed my mind")
    assert "is denied already" in str(again.value)


def test_an_undecided_request_expires_unrun(tmp_path):
    bus = Bus(tmp_path, Timing.fast())
    try:
        bus.broker.approvals.ttl_s = 0.5
        agent = bus.peer("desk-7")
        jane = _operator(bus, "jane", "Jane Doe")
        bus.admin.request("approvals.require", names=["reboot"])
        held = jane.send_command("desk-7", "reboot", REASON)
        outcome = jane.wait_result(held["id"], 20)
        assert outcome["status"] == "failed" and "no one approved it within 0.5 s" in outcome["result"]["error"]
        assert bus.admin.request("approvals.list", state="expired")[0]["id"] == held["id"]
        assert commands_to(agent) == []
    finally:
        bus.close()


def test_a_held_bulk_run_starts_only_when_approved_and_a_denied_one_never(world):
    bus, agent, jane, omar, _ = world
    others = [bus.peer(f"lab-{i}") for i in range(3)]
    run = jane.request("bulk.start", selector="id:lab-*", name="reboot", args=REASON)
    assert run["state"] == "held" and "waiting for a second operator" in run["why"]
    assert all(commands_to(peer, 0.2) == [] for peer in others)
    [request] = [r for r in omar.request("approvals.list") if r["kind"] == "bulk"]
    assert request["summary"] == "reboot on 3 agent(s) matching 'id:lab-*'"
    omar.request("approvals.decide", id=request["id"], approve=True, reason="lab night")
    for peer in others:
        [command] = wait_for(lambda: commands_to(peer, 0.1), 10, what="the run's reboot")
        assert command["args"]["approval"]["by"] == "Omar Khan"
    denied = jane.request("bulk.start", selector="id:lab-*", name="shutdown", args=REASON)
    [request] = [r for r in omar.request("approvals.list") if r["kind"] == "bulk"]
    omar.request("approvals.decide", id=request["id"], approve=False, reason="no")
    final = jane.request("bulk.get", id=denied["id"])
    assert final["state"] == "cancelled" and "denied by Omar Khan: no" in final["why"]
    assert final["counts"] == {"cancelled": 3}
    withdrawn = jane.request("bulk.start", selector="id:lab-*", name="shutdown", args=REASON)
    cancelled = jane.request("bulk.cancel", id=withdrawn["id"], reason="asked the wrong team")  # its requester withdraws it
    assert cancelled["state"] == "cancelled" and cancelled["counts"] == {"cancelled": 3}
    [request] = [r for r in omar.request("approvals.list") if r["kind"] == "bulk"]
    omar.request("approvals.decide", id=request["id"], approve=True, reason="too late")  # approving it later starts nothing
    assert all(commands_to(peer, 0.3) == [] for peer in others)


def test_held_requests_survive_a_broker_restart(world):
    bus, agent, jane, omar, _ = world
    held = jane.send_command("desk-7", "reboot", REASON)
    bus.stop()
    bus.start()
    wait_for(lambda: _answers(omar), 20, what="omar back")
    omar.request("approvals.decide", id=held["id"], approve=True, reason="after the restart")
    wait_for(lambda: commands_to(agent, 0.1), 20, what="the reboot after the restart")


def _answers(client) -> bool:
    try:
        return isinstance(client.request("approvals.rules", timeout_s=1), list)
    except Exception:  # noqa: BLE001 - reconnecting
        return False


@pytest.mark.parametrize("args,needle", [
    ({"id": "nope", "approve": True, "reason": "x"}, "no approval request"),
    ({"id": None, "approve": True, "reason": "x"}, "id must be"), ({"id": "", "approve": True, "reason": "x"}, "id must be"),
    ({"approve": "yes", "reason": "x"}, "approve must be"), ({"approve": 1, "reason": "x"}, "approve must be"),
    ({"approve": True}, "reason must be"), ({"approve": True, "reason": "   "}, "needs a reason"),
    ({"approve": True, "reason": "x" * 2001}, "reason must be"),
])
def test_bad_decisions_are_refused_with_why_and_change_nothing(world, args, needle):
    bus, agent, jane, omar, _ = world
    held = jane.send_command("desk-7", "reboot", REASON)
    with pytest.raises(RemoteError) as refused:
        omar.request("approvals.decide", **{"id": held["id"], **args})
    assert refused.value.code == ErrorCode.BAD_REQUEST and needle in str(refused.value)
    assert omar.request("approvals.list")[0]["state"] == "pending" and commands_to(agent) == []


def test_rules_are_for_admins_and_the_cli_reads_them(world):
    bus, _, jane, _, _ = world
    with pytest.raises(RemoteError) as refused:
        jane.request("approvals.require", names=["files.upload"])
    assert refused.value.code == ErrorCode.FORBIDDEN
    from broker.core.profile import Profile, save

    save(bus.data, Profile(server=bus.endpoint, server_key=bus.server_key, key_name="admin", client_id="admin"))

    def ems(*argv):
        return subprocess.run([sys.executable, "-m", "broker.cli.main", *argv, "--data-dir", str(bus.data.root)],
                              capture_output=True, text=True, timeout=60)
    assert "need approval now: files.upload, reboot, shutdown" in ems("approvals", "require", "files.upload").stdout
    assert "need approval: files.upload, reboot, shutdown" in ems("approvals", "rules").stdout
    held = jane.send_command("desk-7", "reboot", REASON)
    listed = ems("approvals")
    assert held["id"] in listed.stdout and "Jane Doe (jane)" in listed.stdout and "kernel patch" in listed.stdout
    approved = ems("approve", held["id"], "--reason", "admin on call")
    assert approved.returncode == 0 and approved.stdout.startswith("approved: reboot on desk-7"), approved.stderr
    assert "needs command names" in ems("approvals", "release").stderr
