"""Happy paths of the bus: events fan out, commands round-trip, presence."""
from __future__ import annotations

import pytest

from broker.core.client import RemoteError
from broker.core.envelope import ErrorCode, Kind

from conftest import next_message


def test_event_reaches_subscriber_with_stamped_sender(bus):
    viewer = bus.peer("op-view", role="viewer")
    viewer.subscribe(["event."])
    agent = bus.peer("agent-a")
    agent.publish(Kind.EVENT, "sysinfo", {"cpu": 3})
    env = next_message(viewer, lambda e: e.kind is Kind.EVENT)
    assert env.topic == "event.agent-a.sysinfo"
    assert env.sender == "agent-a"
    assert env.data() == {"cpu": 3}


def test_command_round_trip_and_status(bus):
    op = bus.peer("op", role="operator")
    agent = bus.peer("agent-b")
    status = op.send_command("agent-b", "ping", {"echo": 1})
    assert status["status"] in ("queued", "sent")
    cmd = next_message(agent, lambda e: e.kind is Kind.COMMAND)
    assert cmd.msg_id == status["id"] and cmd.sender == "op"
    agent.send(Kind.COMMAND_STATUS, data={"status": "delivered"}, corr=cmd.msg_id)
    agent.send(Kind.RESULT, data={"ok": True, "output": "pong"}, corr=cmd.msg_id)
    result = op.wait_result(status["id"], 5)
    assert result["status"] == "done"
    assert result["result"]["output"] == "pong"
    assert bus.admin.request("command.get", id=status["id"])["status"] == "done"


def test_presence_online_then_offline_on_close(bus):
    viewer = bus.peer("watcher", role="viewer")
    viewer.subscribe(["presence."])
    agent = bus.peer("agent-c")
    online = next_message(viewer, lambda e: e.kind is Kind.PRESENCE)
    assert online.data()["state"] == "online"
    agent.close()
    offline = next_message(viewer, lambda e: e.kind is Kind.PRESENCE, timeout_s=5)
    assert offline.data()["state"] == "offline"
    agents = {a["client_id"]: a for a in bus.admin.request("agents")}
    assert agents["agent-c"]["state"] == "offline"


def test_agent_ids_cannot_carry_topic_separators(bus):
    """Agent ids are topic segments: `keys.add` refuses an id with a dot, and a
    pending agent claiming one is recorded under a placeholder instead."""
    import pytest

    from broker.core import keys
    from broker.core.errors import RemoteError

    with pytest.raises(RemoteError, match="must be 1-64 letters"):
        bus.admin.request("keys.add", public_key=keys.generate().public, client_id="host.example", role="agent")
    pending = bus.client(keys.generate(), hello={"client_id": "evil.event"}, ready=False)
    from conftest import wait_for

    def recorded():
        pending.poll(0.05)
        return [k for k in bus.admin.request("keys.list") if k["state"] == "pending"]

    rows = wait_for(recorded, 10, what="the pending key")
    assert rows[0]["client_id"].startswith("pending-") and "." not in rows[0]["client_id"]


def test_remote_input_is_short_lived_and_not_kept(bus):
    """`input` commands (keys and text typed into a support session) expire
    within seconds if the agent is away, and their arguments are erased
    from the broker's queue once the command is final (the stored value is
    sealed: it is opened with the queue's key to look)."""
    import sqlite3

    from broker.server.command_queue import QUEUE_KEYS_FILE
    from broker.core.envelope import unpack_body
    from broker.core.sealing import KeyRing, aad

    op = bus.peer("op-in", role="operator")
    agent = bus.peer("agent-in")
    first = op.send_command("agent-in", "input", {"events": [{"type": "text", "text": "s3cret"}]})
    record = op.request("command.get", id=first["id"])
    assert record["expires"] - record["created"] <= 10.5
    cmd = next_message(agent, lambda e: e.kind is Kind.COMMAND)
    agent.send(Kind.RESULT, data={"ok": True, "output": {"executed": 1}}, corr=cmd.msg_id)
    assert op.wait_result(first["id"], 5)["status"] == "done"
    def stored_args():
        with sqlite3.connect(bus.data.broker_db) as db:
            (args,) = db.execute("SELECT args FROM commands WHERE id=?", (first["id"],)).fetchone()
        assert b"s3cret" not in args
        return unpack_body(KeyRing(bus.data.keys / QUEUE_KEYS_FILE).decrypt(args, aad("commands", "args", first["id"])))

    from conftest import wait_for

    wait_for(lambda: stored_args() == {"redacted": True}, 5, what="the typed text to be erased")


def test_command_list_filters_by_target_and_names(bus):
    """`command.list` with `names` returns only those commands of the target,
    newest first, however many other commands came after them; a `names`
    that is not a short list of strings is refused as a bad request."""
    op = bus.peer("op", role="operator")
    bus.enrol("agent-off")  # accepted, never connected: its commands stay queued
    bus.enrol("agent-other")
    chat = op.send_command("agent-off", "chat.send", {"message_id": "m1", "text": "hi"})
    for _ in range(5):  # e.g. thumbnails: many newer commands of another name
        op.send_command("agent-off", "ping")
    op.send_command("agent-other", "chat.send", {"message_id": "m2", "text": "hi"})

    listed = op.request("command.list", target="agent-off", limit=3, names=["chat.send", "chat.delete"])
    assert [c["id"] for c in listed] == [chat["id"]]
    assert listed[0]["status"] == "queued"
    assert len(op.request("command.list", target="agent-off", limit=3)) == 3

    for bad in ("chat.send", [1], ["x" * 65], ["a"] * 17):
        with pytest.raises(RemoteError) as info:
            op.request("command.list", target="agent-off", names=bad)
        assert info.value.code == ErrorCode.BAD_REQUEST, bad
