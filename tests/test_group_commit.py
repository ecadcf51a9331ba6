"""Group commit (broker/server/group_commit.py): what the broker said is queued is on disk.

A broker subprocess is killed with SIGKILL in the middle of a burst of commands;
every command its sender was told is ``queued`` must be in broker.db, and after a
restart each reaches its agent exactly once. The unit tests pin the contract's
parts: held sends wait for the commit, a failed commit keeps both the statements
and what they promise.
"""
from __future__ import annotations

import collections
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from broker.core import keys
from broker.core.client import BusClient
from broker.core.config import ClientConfig, DataDir, Timing
from broker.core.envelope import Kind, new_id
from broker.core.stats import Counters
from broker.server.group_commit import GroupCommit
from broker.server.registry import KeyRegistry
from conftest import wait_for

BURST = 2000
KILL_AFTER_ACKS = 120
CHUNK = 50


def _start_broker(procs, data: DataDir, name: str):
    data.endpoint_file.unlink(missing_ok=True)
    proc = procs.ems(name, "broker", "--data-dir", str(data.root), "--bind", "tcp://127.0.0.1:0", "--heartbeat-s", "0.2")
    wait_for(lambda: data.endpoint_file.exists() or proc.poll() is not None, 20, what="the broker's endpoint file")
    assert proc.poll() is None, proc.log_path.read_text()
    return proc, data.endpoint_file.read_text().strip()


def _client(data: DataDir, endpoint: str, pair: keys.KeyPair, client_id: str) -> BusClient:
    config = ClientConfig(server=endpoint, server_key=keys.load(data.keys, "broker").public, timing=Timing.fast())
    client = BusClient(config, pair, hello={"client_id": client_id})
    client.connect()
    client.wait_ready(10)
    return client


def _burst_until_killed(operator: BusClient, broker) -> set[str]:
    """Send pings in chunks, faster than the broker takes them; SIGKILL it once KILL_AFTER_ACKS were acked
    (more are then on their way: sent, maybe written, not yet acked); the ids acked."""
    acked: set[str] = set()

    def take(timeout_s: float) -> bool:
        env = operator.poll(timeout_s)
        if env is not None and env.kind is Kind.COMMAND_STATUS and env.data().get("status") == "queued":
            acked.add(env.corr)
        return env is not None

    sent, deadline = 0, time.monotonic() + 30
    while len(acked) < KILL_AFTER_ACKS and time.monotonic() < deadline:
        if sent < BURST:  # a chunk at once: the broker handles many per pass
            for _ in range(CHUNK):
                operator.send(Kind.COMMAND, "command.gc-agent", {"target": "gc-agent", "name": "ping", "args": {}}, msg_id=new_id())
            sent += CHUNK
        while take(0.001):
            pass
    broker.send_signal(signal.SIGKILL)
    broker.wait(10)
    while take(0.2):  # what was already on its way to the operator
        pass
    return acked


def test_commands_acked_as_queued_survive_a_sigkill_mid_burst_and_run_once(procs, tmp_path):
    """Tried: SIGKILL of the broker process while an operator floods it with commands for an offline agent.
    Every id the operator saw ``queued`` is a row of broker.db; after a restart the agent gets each once."""
    data = DataDir(tmp_path / "server").ensure()
    operator_pair, agent_pair = keys.generate(), keys.generate()
    registry = KeyRegistry(data.broker_db)
    registry.add(operator_pair.public, "gc-operator", "operator")
    registry.add(agent_pair.public, "gc-agent", "agent")
    registry.close()
    broker, endpoint = _start_broker(procs, data, "broker-1")
    operator = _client(data, endpoint, operator_pair, "gc-operator")
    try:
        acked = _burst_until_killed(operator, broker)
    finally:
        operator.close()
    assert broker.returncode == -signal.SIGKILL
    assert len(acked) >= KILL_AFTER_ACKS, "the burst ended before the kill"
    db = sqlite3.connect(str(data.broker_db))
    kept = {row[0] for row in db.execute("SELECT id FROM commands")}
    db.close()
    assert acked <= kept, f"{len(acked - kept)} commands acked as queued are not in broker.db"

    broker, endpoint = _start_broker(procs, data, "broker-2")
    agent = _client(data, endpoint, agent_pair, "gc-agent")
    delivered: collections.Counter[str] = collections.Counter()
    try:
        def all_arrived() -> bool:
            while (env := agent.poll(0.05)) is not None:
                if env.kind is Kind.COMMAND:
                    delivered[env.msg_id] += 1
            return acked <= set(delivered)
        wait_for(all_arrived, 30, what="every acked command delivered after the restart")
        for env in agent.drain(10_000, 0.5):
            if env.kind is Kind.COMMAND:
                delivered[env.msg_id] += 1
    finally:
        agent.close()
    assert set(delivered) <= kept  # nothing the broker had not kept
    assert [cmd_id for cmd_id, times in delivered.items() if times > 1] == []


@pytest.fixture
def group(tmp_path: Path):
    db = tmp_path / "broker.db"
    conn = sqlite3.connect(str(db))
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.commit()
    conn.close()
    g = GroupCommit(db, Counters())
    yield g
    g.db.close()


def _rows(g: GroupCommit) -> list[tuple]:
    conn = sqlite3.connect(str(g.db.execute("PRAGMA database_list").fetchone()[2]))
    try:
        return conn.execute("SELECT id, v FROM t ORDER BY id").fetchall()
    finally:
        conn.close()


def test_what_is_held_goes_after_the_commit_in_order_and_a_quiet_pass_sends_at_once(group):
    """Tried: a step with nothing written (runs at once), then two writes and steps held behind them."""
    seen = []
    group.after_commit(lambda: seen.append(("now", _rows(group))))
    group.write("INSERT INTO t (id, v) VALUES (?, ?)", (1, "a"))
    group.write("INSERT INTO t (id, v) VALUES (?, ?)", (2, "b"))
    assert group.holding
    group.after_commit(lambda: seen.append(("first", _rows(group))))
    group.hold(lambda: seen.append(("second", None)))
    assert seen == [("now", [])] and _rows(group) == []
    group.commit()
    assert seen == [("now", []), ("first", [(1, "a"), (2, "b")]), ("second", None)]
    assert group.counters["db_commits"] == 1 and group.counters["db_writes"] == 2 and not group.holding


def test_a_failed_commit_keeps_its_statements_and_says_nothing(group):
    """Tried: another connection holds broker.db's write lock during the commit (busy); then it lets go."""
    group.db.execute("PRAGMA busy_timeout=50")
    blocker = sqlite3.connect(group.db.execute("PRAGMA database_list").fetchone()[2], isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    sent = []
    group.write("INSERT INTO t (id, v) VALUES (?, ?)", (1, "a"))
    group.after_commit(sent.append, "queued")
    group.commit()
    assert sent == [] and group.holding and group.counters["group_commit_failed"] == 1
    blocker.execute("ROLLBACK")
    blocker.close()
    group.commit()
    assert sent == ["queued"] and _rows(group) == [(1, "a")]


def test_a_statement_sqlite_refuses_is_skipped_not_retried_forever(group):
    """Tried: a duplicate primary key queued beside a good row: the good row is kept, the bad one counted."""
    group.write("INSERT INTO t (id, v) VALUES (?, ?)", (1, "a"))
    group.write("INSERT INTO t (id, v) VALUES (?, ?)", (1, "again"))
    group.write("INSERT INTO t (id, v) VALUES (?, ?)", (2, "b"))
    group.commit()
    assert _rows(group) == [(1, "a"), (2, "b")] and group.counters["group_commit_refused"] == 1 and not group.holding


def test_disabled_writes_each_statement_at_once_and_holds_nothing(tmp_path):
    """Tried: the older path (``group_commit = False``): each statement its own commit, no step held."""
    db = tmp_path / "broker.db"
    g = GroupCommit(db, Counters(), enabled=False)
    g.db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    ran = []
    g.write("INSERT INTO t (id, v) VALUES (?, ?)", (1, "a"))
    g.after_commit(ran.append, 1)
    assert ran == [1] and not g.holding and _rows(g) == [(1, "a")] and g.counters["db_commits"] == 1
    g.close()


def test_a_statement_that_promises_nothing_holds_nothing_and_rides_with_the_next_commit(group):
    """Tried: an agent's answer (``promise=False``) alone, then a new command's row behind it, then one left to age."""
    ran = []
    group.write("INSERT INTO t (id, v) VALUES (?, ?)", (1, "final"), promise=False)
    group.after_commit(ran.append, "result")
    assert ran == ["result"] and not group.holding
    group.commit()  # young and alone: waits
    assert _rows(group) == []
    group.write("INSERT INTO t (id, v) VALUES (?, ?)", (2, "queued"))
    group.after_commit(ran.append, "queued")
    assert group.holding and ran == ["result"]
    group.commit()
    assert _rows(group) == [(1, "final"), (2, "queued")] and ran == ["result", "queued"]
    assert group.counters["db_commits"] == 1
    group.write("INSERT INTO t (id, v) VALUES (?, ?)", (3, "result_sent"), promise=False)
    group._lazy_since -= 10  # as if it had waited past LAZY_MAX_S
    group.commit()
    assert _rows(group)[-1] == (3, "result_sent") and group.counters["db_commits"] == 2


def test_a_query_that_commits_early_keeps_the_order_of_what_was_held(group):
    """Tried: a write and a held send, then a read that commits mid-pass, then another send: it stays behind."""
    sent = []
    group.write("INSERT INTO t (id, v) VALUES (?, ?)", (1, "a"))
    group.after_commit(sent.append, "queued")
    assert group.commit_writes() and _rows(group) == [(1, "a")]
    group.after_commit(sent.append, "later")
    assert sent == [] and group.holding
    group.commit()
    assert sent == ["queued", "later"] and not group.holding
