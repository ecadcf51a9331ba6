"""Fields that say who did something come from the authenticated key, never a body.

An enrolled agent (a stolen laptop's key) forges every identity field
(operator, agent, origin, client_id, sender) in every record kind it can
publish; the store keeps the authenticated values: ``client_id`` is the
agent's key's, ``origin`` is ``agent``, and the ``operator`` of a capture,
a file operation or an operator's chat message is the sender of the command
it reports on, from the broker's record of that command. Then the same on
the store alone for the waiting rules, and a real agent process end to end.
"""
from __future__ import annotations

import itertools
import time

import pytest

from broker.core import keys
from broker.core.config import Timing
from broker.core.envelope import Kind, new_id
from broker.persister.store import OPERATOR_WAIT_S, Record

from conftest import Bus, wait_for
from test_persister_bus import RunningPersister
from test_store_support import make_store

FORGED = {"operator": "mallory", "agent": "mallory", "origin": "broker", "client_id": "victim", "sender": "mallory"}
#: record kind -> (event name or kind, history kind, base data)
KINDS = {
    "capture": (Kind.EVENT, "capture", "captures", {"width": 1, "height": 1, "format": "jpeg", "image": b"\xff\xd8x"}),
    "fileop": (Kind.EVENT, "fileop", "fileops", {"op": "download", "path": "/srv/a.txt", "ok": True}),
    "chat_out": (Kind.EVENT, "chat", "messages", {"direction": "out", "body": "from IT", "status": "sent"}),
    "chat_in": (Kind.EVENT, "chat", "messages", {"direction": "in", "body": "thanks"}),
    "security": (Kind.SECURITY, "usb", "security", {"event": "usb_inserted"}),
    "log": (Kind.LOG, "", "logs", {"level": "INFO", "logger": "agent", "message": "hello"}),
    "activity": (Kind.EVENT, "notice", "activity", {"title": "shown"}),
    "sysinfo": (Kind.EVENT, "sysinfo", "metrics", {"cpu_percent": 1.0}),
}
#: kinds whose row names an operator, and who that must be
OPERATOR_OF = {"capture": "op-real", "fileop": "op-real", "chat_out": "op-real", "chat_in": "op-real"}


class Stamping:
    """A bus and a store; op-real's command to agent-x; agent-x's forged records."""

    def __init__(self, root):
        self.bus = Bus(root, Timing.fast())
        self.persister = RunningPersister(self.bus, root)
        self.agent = self.bus.peer("agent-x")
        op = self.bus.peer("op-real", role="operator")
        self.cmd_id = op.send_command("agent-x", "files.download", {"path": "/srv/a.txt", "reason": "test"})["id"]
        other = self.bus.peer("op-other", role="operator")
        self.bus.peer("agent-y")
        self.foreign_cmd = other.send_command("agent-y", "files.download", {"path": "/srv/b.txt", "reason": "test"})["id"]
        self.anchor = self.agent.publish(Kind.EVENT, "chat", {"direction": "out", "body": "hi", "status": "sent",
                                                               "command": self.cmd_id, "operator": "mallory"})
        self.ids = {}
        for name, field in itertools.product(KINDS, FORGED):
            kind, event, _, data = KINDS[name]
            forged = {**data, field: FORGED[field], "command": self.cmd_id, "in_reply_to": self.anchor}
            self.ids[name, field] = self.agent.publish(kind, event, forged)
        self.foreign = self.agent.publish(Kind.EVENT, "fileop", {"op": "list", "path": "/", "ok": True, "command": self.foreign_cmd})

    def row(self, name: str, field: str) -> dict:
        history, msg_id = KINDS[name][2], self.ids[name, field]

        def found():
            return [r for r in self.bus.admin.request("store.query", kind=history, client_id="agent-x", limit=1000)
                    if r["msg_id"] == msg_id]

        return wait_for(found, 15, what=f"the stored {name} record")[0]

    def close(self):
        self.persister.stop()
        self.bus.close()


@pytest.fixture(scope="module")
def stamping(tmp_path_factory):
    s = Stamping(tmp_path_factory.mktemp("stamping"))
    yield s
    s.close()


@pytest.mark.parametrize("name,field", list(itertools.product(KINDS, FORGED)))
def test_a_forged_identity_field_is_not_what_is_stored(stamping, name, field):
    """agent-x publishes a ``name`` record whose body says ``field`` is someone
    else (mallory, victim, broker); stored: client_id agent-x, origin agent,
    and the operator who really sent the command (op-real)."""
    row = stamping.row(name, field)
    assert row["client_id"] == "agent-x"
    if name in OPERATOR_OF:
        assert row["operator"] == OPERATOR_OF[name]
    if name == "security":
        assert (row["origin"], row["subject"]) == ("agent", None)
        if field in ("origin", "client_id"):
            assert row["detail"]["claimed"] == {field: FORGED[field]}  # kept as what it is: a claim


def test_a_record_naming_another_agent_s_command_does_not_get_its_operator(stamping):
    """agent-x reports a file operation "for" op-other's command to agent-y:
    the store does not find that command among agent-x's, so the record waits
    (not stored, not acknowledged) instead of being stored under op-other."""
    stamping.row("fileop", "operator")  # everything published before it is stored by now
    rows = stamping.bus.admin.request("store.query", kind="fileops", client_id="agent-x", limit=1000)
    assert stamping.foreign not in [r["msg_id"] for r in rows]
    assert not [r for r in rows if r["operator"] == "op-other"]
    wait_for(lambda: stamping.persister.service.stats["waiting"] >= 1, 10, what="the record to wait")


def test_the_broker_names_each_command_s_operator_in_the_store(stamping):
    """The command's row in the store names its sender (from the broker's
    journal and status, not from any agent)."""
    def row():
        return [r for r in stamping.bus.admin.request("store.query", kind="commands", client_id="agent-x")
                if r["id"] == stamping.cmd_id and r["operator"]]

    assert wait_for(row, 10, what="the command row")[0]["operator"] == "op-real"


# -- the store's waiting rules ---------------------------------------------------------
STORE_KINDS = {
    "capture": ("event.a1.capture", "captures", {"width": 1, "height": 1, "image": b"\xff\xd8x"}),
    "fileop": ("event.a1.fileop", "fileops", {"op": "list", "path": "/", "ok": True}),
    "chat_out": ("event.a1.chat", "messages", {"direction": "out", "body": "hello"}),
}
COMMAND_CASES = {"known": "cmd-a1", "missing": None, "unknown": "cmd-nobody-sent", "another agent's": "cmd-a2"}


def _command(cmd_id: str, target: str, operator: str) -> Record:
    return Record("command_status", target, f"st-{cmd_id}", 1000.0, f"command.{target}",
                  {"id": cmd_id, "target": target, "name": "files.list", "status": "queued", "operator": operator})


@pytest.mark.parametrize("name,case,age", list(itertools.product(STORE_KINDS, COMMAND_CASES, ("fresh", "past the wait"))))
def test_operator_comes_from_the_command_or_is_null_and_flagged(tmp_path, name, case, age):
    """Store alone (real SQLite): a ``name`` record claiming operator mallory,
    about a command that is ``case``, ``age`` old. Known: the command's
    operator. No command named: NULL and an ``unverified_operator`` event at
    once. Unknown or another agent's: waiting while fresh (then stored with
    the operator once the command's record arrives), NULL and flagged past
    :data:`OPERATOR_WAIT_S`. Never mallory."""
    topic, history, data = STORE_KINDS[name]
    ts = time.time() - (OPERATOR_WAIT_S + 60 if age != "fresh" else 0)
    cmd = COMMAND_CASES[case]
    record = Record("event", "a1", "r1", ts, topic, {**data, "operator": "mallory", **({"command": cmd} if cmd else {})})
    with make_store(tmp_path) as store:
        store.write_batch([_command("cmd-a1", "a1", "op-alice"), _command("cmd-a2", "a2", "op-bob")])
        result = store.write_batch([record])
        rows = store.query(history, client_id="a1")
        flagged = [r for r in store.query("security", client_id="a1") if r["event"] == "unverified_operator"]
        if case == "known":
            assert [r["operator"] for r in rows] == ["op-alice"] and not flagged
        elif case == "missing" or age != "fresh":
            assert [r["operator"] for r in rows] == [None]
            assert [(f["origin"], f["subject"], f["detail"]["msg_id"]) for f in flagged] == [("persister", "a1", "r1")]
        elif case == "unknown":
            assert (rows, [r.msg_id for r, _ in result.waiting]) == ([], ["r1"])
            store.write_batch([_command(cmd, "a1", "op-carol")])  # the broker's record arrives; the agent resends
            store.write_batch([record])
            assert [r["operator"] for r in store.query(history, client_id="a1")] == ["op-carol"]
        else:  # a2's command never becomes a1's: still waiting after a resend
            assert (rows, [r.msg_id for r, _ in result.waiting]) == ([], ["r1"])
            assert [r.msg_id for r, _ in store.write_batch([record]).waiting] == ["r1"]
            assert store.query(history, client_id="a1") == []


# -- a real agent ---------------------------------------------------------------------
def test_a_real_agent_s_file_operation_and_chat_are_stored_under_the_operator_who_sent_them(tmp_path, procs):
    """A real ``ems agent`` process runs op-kim's ``files.list`` and
    ``chat.send``; the store names op-kim on the file operation and on the
    message, from the broker's record of each command."""
    bus = Bus(tmp_path, Timing.fast())
    persister = RunningPersister(bus, tmp_path)
    try:
        agent_dir, shared = tmp_path / "desk-r", tmp_path / "shared"
        shared.mkdir()
        pair = keys.load_or_create(agent_dir / "keys", "agent")
        bus.admin.request("keys.add", public_key=pair.public, client_id="desk-r", role="agent")
        procs.ems("desk-r", "agent", "--data-dir", str(agent_dir), "--server", bus.endpoint, f"--server-key={bus.server_key}",
                  "--id", "desk-r", "--heartbeat-s", "0.5", "--allow-root", str(shared), env={"DISPLAY": ""})
        op = bus.peer("op-kim", role="operator")
        wait_for(lambda: "desk-r" in bus.broker.online, 20, what="the agent online")
        for name, args in (("files.list", {"path": str(shared), "reason": "test"}), ("chat.send", {"message_id": new_id(), "text": "hi"})):
            cmd = op.send_command("desk-r", name, args)
            assert op.wait_result(cmd["id"], timeout_s=30)["status"] == "done"
        fileops = wait_for(lambda: op.request("store.query", kind="fileops", client_id="desk-r"), 20, what="the file operation")
        messages = wait_for(lambda: op.request("store.query", kind="messages", client_id="desk-r"), 20, what="the message")
        assert [r["operator"] for r in fileops] == ["op-kim"]
        assert [(r["direction"], r["operator"]) for r in messages] == [("out", "op-kim")]
    finally:
        persister.stop()
        bus.close()


@pytest.mark.parametrize("sender", ["agent-x", "op-real", "persister", "mallory"])
def test_only_the_broker_s_command_records_reach_the_commands_table(sender):
    """A command status (which names the operator the store trusts) from any
    peer but the broker is not a record: a peer could otherwise name
    whomever it likes as a command's operator."""
    from broker.persister.service import record_for

    data = {"id": "c1", "target": "agent-x", "name": "files.list", "status": "queued", "operator": "mallory"}
    assert record_for(Kind.COMMAND_STATUS, "command.agent-x", "m1", 1.0, sender, data) is None
    assert record_for(Kind.COMMAND_STATUS, "command.agent-x", "m1", 1.0, "", data)[0].data["operator"] == "mallory"
