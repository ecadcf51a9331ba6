"""The persister on a real bus: agents' records reach SQLite, are acknowledged
only after the commit, and history is served through the broker by role."""
from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from agent.delivery import DurableSender
from agent.outbox import Outbox
from broker.core.envelope import ErrorCode, Kind
from broker.core.errors import RemoteError
from broker.persister.crypto import SecurityManager
from broker.persister.service import Persister, PersisterConfig
from broker.persister.store import Store

from conftest import wait_for


class RunningPersister:
    def __init__(self, bus, tmp_path):
        self.store = Store(tmp_path / "store.db", SecurityManager(tmp_path / "store-keys.json"))
        client = bus.client(bus.enrol("persister", role="service"), hello={"client_id": "persister", "provides": ["store"]}, ready=False)
        self.service = Persister(client, self.store, PersisterConfig(commit_latency_s=0.02, retry_s=0.1))
        self.thread = threading.Thread(target=self.service.run, daemon=True)
        self.thread.start()
        wait_for(lambda: "store" in bus.broker.providers, 10, what="the persister to register")

    def stop(self):
        self.service.stop()
        self.thread.join(10)


@pytest.fixture
def persister(bus, tmp_path):
    p = RunningPersister(bus, tmp_path)
    yield p
    p.stop()


def sender_for(bus, tmp_path, client_id: str) -> DurableSender:
    client = bus.peer(client_id)
    return DurableSender(client, Outbox(tmp_path / f"{client_id}-outbox.db"))


def pump_once(sender: DurableSender) -> None:
    """Take acks, send what is due: one pass of an agent's loop."""
    for env in sender.bus.drain(1000, 0.02):
        sender.handle(env)
    sender.pump()


def pump_until_acked(sender: DurableSender, timeout_s: float = 15.0) -> None:
    def done():
        pump_once(sender)
        return sender.outbox.stats()["pending"] == 0

    wait_for(done, timeout_s, interval_s=0.0, what="every record to be acknowledged")


def test_records_are_stored_then_acked_and_readable_by_role(bus, persister, tmp_path):
    sender = sender_for(bus, tmp_path, "agent-s")
    sender.report(Kind.EVENT, "sysinfo", {"hostname": "desk-7", "cpu_percent": 12.5, "memory_percent": 40.0, "logged_in_user": "kim"})
    sender.report(Kind.LOG, "agent", {"level": "WARNING", "logger": "agent", "message": "disk almost full"})
    sender.report(Kind.SECURITY, "login", {"event": "login_failed", "detail": "3 attempts"})
    pump_until_acked(sender)
    assert sender.acked == 3

    operator = bus.peer("op-1", role="operator")
    clients = operator.request("store.query", kind="clients")
    assert [c["hostname"] for c in clients if c["client_id"] == "agent-s"] == ["desk-7"]
    logs = operator.request("store.query", kind="logs", client_id="agent-s")
    assert logs[0]["message"] == "disk almost full"  # decrypted by the store for the operator
    assert operator.request("store.query", kind="metrics", client_id="agent-s")[0]["cpu_percent"] == 12.5

    viewer = bus.peer("view-1", role="viewer")
    with pytest.raises(RemoteError, match="may not read audit") as refused:
        viewer.request("store.query", kind="audit")
    assert refused.value.code == ErrorCode.FORBIDDEN  # a refusal, not a bad request (tests/test_read_authz_matrix.py)
    with pytest.raises(RemoteError, match="unknown history kind") as bad:
        operator.request("store.query", kind="clients; DROP TABLE clients")
    assert bad.value.code == ErrorCode.BAD_REQUEST
    assert operator.request("store.query", kind="clients")  # still there


def test_operator_actions_land_in_the_audit_trail(bus, persister, tmp_path):
    admin = bus.admin
    bus.peer("agent-t")
    admin.send_command("agent-t", "ping", {"reason": "user called the help desk"})
    def command_rows():  # other audit rows (keys.add for the peer) may land first
        return [r for r in admin.request("store.query", kind="audit") if r["action"] == "command"]

    [row] = wait_for(command_rows, 10, what="the command's audit row")
    assert row["operator"] == "admin"
    assert row["target"] == "agent-t"


def test_full_disk_stops_acks_and_loses_nothing(bus, persister, tmp_path):
    """SQLITE_FULL (a real one, via max_page_count): the persister keeps the
    batch, acknowledges nothing, reports it; once space is back every record
    is committed exactly once and acknowledged."""
    db = persister.store.connection
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count={pages}")
    sender = sender_for(bus, tmp_path, "agent-f")
    sender.report_many([(Kind.EVENT, "activity", {"n": i, "pad": "x" * 500}) for i in range(300)])
    def failing_twice():
        pump_once(sender)
        return persister.service.stats["write_failures"] >= 2

    wait_for(failing_twice, 15, interval_s=0.0, what="write failures to be reported")
    pump_once(sender)
    assert sender.acked == 0
    assert sender.outbox.stats()["pending"] == 300

    db.execute("PRAGMA max_page_count=1073741823")
    pump_until_acked(sender, 30)
    rows = persister.store.query("activity", client_id="agent-f", limit=1000)
    assert sorted(r["data"]["n"] for r in rows) == list(range(300))


def test_crypto_rotate_cli_reencrypts_with_progress(tmp_path):
    """`ems crypto rotate` on a data dir: every value moves to the new key and
    still decrypts; the progress bar is shown."""
    from broker.persister.cli import DATA_KEYS_FILE, STORE_FILE
    from broker.persister.store import Record

    (tmp_path / "keys").mkdir(mode=0o700)
    store = Store(tmp_path / STORE_FILE, SecurityManager(tmp_path / "keys" / DATA_KEYS_FILE))
    store.write_batch([Record("log", "a1", f"m{i}", 1.0 + i, "log.a1", {"level": "INFO", "message": f"secret {i}"}) for i in range(50)])
    old_key = store.crypto.current_key_id
    store.close()
    res = subprocess.run([sys.executable, "-m", "broker.cli.main", "crypto", "rotate", "--data-dir", str(tmp_path), "--batch", "7"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "re-encrypting [" in res.stderr and "50/50" in res.stderr
    store = Store(tmp_path / STORE_FILE, SecurityManager(tmp_path / "keys" / DATA_KEYS_FILE))
    assert store.crypto.current_key_id != old_key
    raw = store.connection.execute("SELECT message FROM client_logs").fetchall()
    assert {store.crypto.key_id_of(r[0]) for r in raw} == {store.crypto.current_key_id}
    assert sorted(r["message"] for r in store.query("logs", limit=100)) == sorted(f"secret {i}" for i in range(50))
    store.close()


def test_each_agent_connection_becomes_a_session_row(bus, persister):
    """Online opens a session (with the logged-in user from HELLO), offline
    closes it with the reason; a reconnect opens a new one."""
    agent = bus.client(bus.enrol("agent-x"), hello={"client_id": "agent-x", "user": "kim"})
    wait_for(lambda: bus.admin.request("store.query", kind="sessions", client_id="agent-x"), 10, what="an open session")
    agent.close()
    rows = wait_for(lambda: [r for r in bus.admin.request("store.query", kind="sessions", client_id="agent-x") if r["ended"]],
                    10, what="the session to close")
    assert rows[0]["logged_in_user"] == "kim"
    assert rows[0]["end_reason"] in ("disconnected", "heartbeat timeout")
    assert rows[0]["started"] <= rows[0]["ended"]


def test_audit_made_while_the_persister_is_down_is_stored_when_it_returns(bus, tmp_path):
    """The broker journals its own records (audit, presence, security) until
    the store acknowledges them: an operator action taken while no persister
    runs is in the audit trail once one is back, exactly once."""
    bus.peer("agent-j")
    status = bus.admin.send_command("agent-j", "ping", {"reason": "nobody is storing right now"})
    assert bus.admin.request("status")["broker"]["journal"] >= 1
    persister = RunningPersister(bus, tmp_path)
    try:
        rows = wait_for(lambda: [r for r in bus.admin.request("store.query", kind="audit") if r["action"] == "command"],
                        15, what="the journaled audit row")
        assert len(rows) == 1 and rows[0]["operator"] == "admin"
        assert status["id"] in str(rows[0]["detail"])
        wait_for(lambda: bus.admin.request("status")["broker"]["journal"] == 0, 15, what="the journal to be acknowledged")
        sessions = persister.store.query("sessions", client_id="agent-j")
        assert len(sessions) == 1  # presence was journaled too, and stored once
    finally:
        persister.stop()


def test_a_chat_delete_that_overtakes_its_message_is_kept_for_later(bus, persister, tmp_path):
    """An agent's delete of a chat message reaches the persister before the
    message itself (its first send was lost): the delete is not acknowledged
    (the store waits for the message), the agent resends it, and once the
    message is stored the delete applies: nothing is lost to the order."""
    client = bus.peer("agent-c")
    sender = DurableSender(client, Outbox(tmp_path / "agent-c-outbox.db", resend_after_s=0.3))
    sender.report(Kind.EVENT, "chat", {"ref": "m1", "message_id": "m1", "deleted": True})

    wait_for(lambda: pump_once(sender) or persister.service.stats["waiting"] >= 1, 10, interval_s=0.0,
             what="the persister to hold the delete back")
    assert sender.acked == 0 and sender.outbox.stats()["pending"] == 1

    sender.report(Kind.EVENT, "chat", {"direction": "out", "body": "hello", "operator": "alice", "status": "sent"}, msg_id="m1")
    pump_until_acked(sender)
    [row] = persister.store.query("messages", client_id="agent-c", include_deleted=True)
    assert (row["msg_id"], row["deleted"]) == ("m1", True)
    assert persister.service.stats["rejected"] == 0
