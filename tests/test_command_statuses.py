"""Who is told a command's statuses (issue #15: "interim statuses only to those who asked").

The sender gets the answer that makes its command durable (``queued``) and the
RESULT; ``sent``, ``delivered`` and the final status before the RESULT only if
its COMMAND said ``statuses: true``. Subscribers of ``command.<target>`` (the
console's live feed, the persister) get every status either way.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from broker.core.client import RemoteError
from broker.core.envelope import ErrorCode, Kind, new_id
from broker.core.profile import Profile, save

from conftest import next_message, wait_for
from test_persister_bus import RunningPersister

EVERY_STATUS = ["queued", "sent", "delivered", "done"]


def run_ping(op, agent, statuses: bool) -> tuple[str, list]:
    """Send a ping the agent answers; everything the operator received about it, up to and with the RESULT."""
    first = op.send_command("desk-1", "ping", {"echo": 1}, statuses=statuses)
    cmd = next_message(agent, lambda e: e.kind is Kind.COMMAND)
    agent.send(Kind.COMMAND_STATUS, data={"status": "delivered"}, corr=cmd.msg_id)
    agent.send(Kind.RESULT, data={"ok": True, "output": "pong"}, corr=cmd.msg_id)
    seen = [("answer", first["status"])]
    result = op.wait_result(first["id"], 10, on_status=lambda s: seen.append(("status", s["status"])))
    seen.append(("result", result["status"]))
    return first["id"], seen


def statuses_on_feed(feed, cmd_id: str, until: str = "done") -> list[str]:
    seen = []
    while until not in seen:
        env = next_message(feed, lambda e: e.kind is Kind.COMMAND_STATUS and e.corr == cmd_id)
        seen.append(env.data()["status"])
    return seen


def test_a_sender_that_did_not_ask_gets_the_answer_and_the_result_only(bus):
    """No statuses flag: queued, then the RESULT; no sent/delivered/done in between, and nothing
    more about the command arrives afterwards either."""
    op = bus.peer("op-1", role="operator")
    agent = bus.peer("desk-1")
    cmd_id, seen = run_ping(op, agent, statuses=False)
    assert seen == [("answer", "queued"), ("result", "done")]
    late = op.poll(0.3)
    assert late is None or late.corr != cmd_id
    assert bus.admin.request("command.get", id=cmd_id)["status"] == "done"


def test_a_sender_that_asked_gets_every_status_in_order(bus):
    op = bus.peer("op-1", role="operator")
    agent = bus.peer("desk-1")
    _, seen = run_ping(op, agent, statuses=True)
    assert seen == [("answer", "queued"), ("status", "sent"), ("status", "delivered"), ("status", "done"), ("result", "done")]


@pytest.mark.parametrize("statuses", [False, True])
def test_command_subscribers_see_every_status_whatever_the_sender_asked(bus, statuses):
    """The console's live feed (an operator subscribed to ``command.``) sees each step of another
    operator's command, asked for or not."""
    feed = bus.peer("console", role="operator")
    feed.subscribe(["command."])
    op = bus.peer("op-1", role="operator")
    agent = bus.peer("desk-1")
    cmd_id, _ = run_ping(op, agent, statuses=statuses)
    assert statuses_on_feed(feed, cmd_id) == EVERY_STATUS


def test_a_subscribed_sender_gets_each_status_once(bus):
    """A sender that subscribes to ``command.`` and asks for statuses gets them through its feed,
    not twice."""
    op = bus.peer("op-1", role="operator")
    op.subscribe(["command."])
    agent = bus.peer("desk-1")
    _, seen = run_ping(op, agent, statuses=True)
    assert seen == [("answer", "queued"), ("status", "sent"), ("status", "delivered"), ("status", "done"), ("result", "done")]


@pytest.mark.parametrize("value", ["yes", 1, None, [True], {"all": True}])
def test_a_statuses_flag_that_is_not_true_or_false_is_refused(bus, value):
    """Tried: a string, an integer, null, a list and a map as ``statuses``: BAD_REQUEST naming the field,
    and no command is queued."""
    op = bus.peer("op-1", role="operator")
    bus.peer("desk-1")
    cmd_id = new_id()
    with pytest.raises(RemoteError) as refused:
        op.call(Kind.COMMAND, {"target": "desk-1", "name": "ping", "args": {}, "statuses": value}, topic="command.desk-1",
                msg_id=cmd_id, timeout_s=5)
    assert refused.value.code == ErrorCode.BAD_REQUEST and "statuses (true or false)" in refused.value.message + refused.value.detail
    with pytest.raises(RemoteError):
        bus.admin.request("command.get", id=cmd_id)


def test_a_retried_command_id_is_answered_and_may_ask_for_statuses_then(bus):
    """The same id sent again (a retry after a reconnect) is answered with where it stands; a retry
    that asks for statuses gets the ones that follow."""
    op = bus.peer("op-1", role="operator")
    agent = bus.peer("desk-1")
    cmd_id = new_id()
    assert op.send_command("desk-1", "ping", {}, cmd_id=cmd_id)["status"] == "queued"
    cmd = next_message(agent, lambda e: e.kind is Kind.COMMAND)
    wait_for(lambda: bus.admin.request("command.get", id=cmd_id)["status"] == "sent", what="the command sent")
    assert op.send_command("desk-1", "ping", {}, cmd_id=cmd_id, statuses=True)["status"] == "sent"
    agent.send(Kind.COMMAND_STATUS, data={"status": "delivered"}, corr=cmd.msg_id)
    agent.send(Kind.RESULT, data={"ok": True, "output": "pong"}, corr=cmd.msg_id)
    seen = []
    assert op.wait_result(cmd_id, 10, on_status=lambda s: seen.append(s["status"]))["status"] == "done"
    assert seen == ["delivered", "done"]


def test_the_store_keeps_the_final_status_of_a_command_whose_sender_asked_nothing(bus, tmp_path):
    """The persister takes statuses from ``command.`` like any subscriber: `ems history commands`
    (store.query commands) shows the command done, its operator named."""
    persister = RunningPersister(bus, tmp_path)
    try:
        op = bus.peer("op-1", role="operator")
        agent = bus.peer("desk-1")
        cmd_id, _ = run_ping(op, agent, statuses=False)

        def stored():
            return [r for r in bus.admin.request("store.query", kind="commands") if r.get("id") == cmd_id and r.get("status") == "done"]
        [row] = wait_for(stored, 10, what="the command's final status in the store")
        assert row["operator"] == "op-1" and row["name"] == "ping"
    finally:
        persister.stop()


@pytest.mark.parametrize("statuses", [False, True])
def test_an_approved_command_tells_its_sender_what_it_asked_for(bus, statuses):
    """A held command keeps the sender's choice until another operator approves it: the sender is
    told it is queued then (the answer to the approval), and sent, delivered, done only if it asked."""
    agent = bus.peer("desk-1")
    jane, omar = bus.peer("jane", role="operator"), bus.peer("omar", role="operator")
    bus.admin.request("approvals.require", names=["reboot"])
    first = jane.send_command("desk-1", "reboot", {"reason": "kernel patch"}, statuses=statuses)
    assert first["status"] == "held"
    omar.request("approvals.decide", id=first["id"], approve=True, reason="change ticket 81 checked")
    cmd = next_message(agent, lambda e: e.kind is Kind.COMMAND, timeout_s=10)
    agent.send(Kind.COMMAND_STATUS, data={"status": "delivered"}, corr=cmd.msg_id)
    agent.send(Kind.RESULT, data={"ok": True, "output": {"dry_run": True}}, corr=cmd.msg_id)
    seen = []
    assert jane.wait_result(first["id"], 10, on_status=lambda s: seen.append(s["status"]))["status"] == "done"
    assert seen == (EVERY_STATUS if statuses else ["queued"])


def answer_pings(agent, count: int) -> threading.Thread:
    """``agent`` answers ``count`` commands (delivered, then a pong) on its own thread."""
    def run():
        for _ in range(count):
            cmd = next_message(agent, lambda e: e.kind is Kind.COMMAND, timeout_s=60)
            agent.send(Kind.COMMAND_STATUS, data={"status": "delivered"}, corr=cmd.msg_id)
            agent.send(Kind.RESULT, data={"ok": True, "output": "pong"}, corr=cmd.msg_id)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_ems_send_wait_prints_each_status_and_json_asks_for_none(bus):
    """`ems send --wait` asks for the statuses it prints (-> sent, -> delivered, -> done: a sender that
    did not ask would get none of them); with --json it prints the outcome only."""
    agent = bus.peer("desk-1")
    answering = answer_pings(agent, 2)
    save(bus.data, Profile(server=bus.endpoint, server_key=bus.server_key, key_name="admin", client_id="admin"))

    def ems(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "broker.cli.main", "send", "desk-1", "ping", *argv,
                               "--data-dir", str(bus.data.root)], capture_output=True, text=True, timeout=120)
    shown = ems("--wait")
    assert shown.returncode == 0, shown.stderr
    assert [line.strip() for line in shown.stderr.splitlines() if "->" in line] == ["-> sent", "-> delivered", "-> done"]
    quiet = ems("--wait", "--json")
    assert quiet.returncode == 0, quiet.stderr
    assert json.loads(quiet.stdout)["status"] == "done" and "->" not in quiet.stderr
    answering.join(10)
