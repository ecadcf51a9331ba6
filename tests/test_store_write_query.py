"""Store writes and queries: routing, dedupe, rejects, paging, injection,
full and read-only disks, retention."""
from __future__ import annotations

import time

import pytest
from test_store_support import PLAIN_MARKER, SECRETS, make_store, sample_records, table_counts

from broker.persister import schema
from broker.persister.store import CHAT_UPDATE_WAIT_S, PURGE_BATCH, STATS, VIEWS, Record, StoreUnavailable


@pytest.fixture
def store(tmp_path):
    s = make_store(tmp_path)
    yield s
    s.close()


def _logs(client: str, n: int, ts: float = 1000.0, prefix: str = "m") -> list[Record]:
    return [
        Record("log", client, f"{prefix}{i}", ts + i, f"log.{client}", {"level": "INFO", "logger": "t", "message": f"line {i}"})
        for i in range(n)
    ]


# -- routing -------------------------------------------------------------------------
def test_every_record_kind_lands_in_its_table(store):
    result = store.write_batch(sample_records("a1"))
    assert (result.new, result.duplicates, result.rejected) == (11, 0, [])
    counts = table_counts(store.connection)
    assert counts == {
        "clients": 1, "sessions": 1, "screen_captures": 1, "chat_messages": 1, "file_operations": 1,
        "activity_logs": 1, "metrics": 1, "security_events": 2, "client_logs": 1, "audit_trail": 1, "commands": 1,
    }
    client = store.query("clients")[0]
    assert client["client_id"] == "a1" and client["online"] is True
    assert (client["hostname"], client["os"], client["os_version"], client["logged_in_user"]) == (PLAIN_MARKER, "Linux", "6.1", "bob")
    assert client["last_sysinfo"]["cpu_percent"] == 12.5
    assert (client["first_seen"], client["last_seen"]) == (1000.0, 1007.0)  # a command status is no sighting
    assert store.query("sessions")[0]["logged_in_user"] == "bob"
    assert store.query("metrics")[0]["disk_percent"] == 71.0
    assert store.query("activity")[0]["name"] == "window"
    message = store.query("messages")[0]
    assert (message["direction"], message["status"], message["deleted"]) == ("in", "delivered", False)
    assert store.query("fileops")[0]["ok"] is False
    assert store.query("commands")[0]["status"] == "sent"
    audit = store.query("audit")[0]
    assert (audit["operator"], audit["action"], audit["target"]) == ("admin", "capture.view", "a1")
    broker_event, agent_event = store.query("security")
    assert (broker_event["origin"], broker_event["client_id"], broker_event["subject"]) == ("broker", None, "a1")
    assert (agent_event["origin"], agent_event["client_id"]) == ("agent", "a1")
    # neither the broker nor the operator became a "client"
    assert [c["client_id"] for c in store.query("clients")] == ["a1"]
    assert len(store.query("security", client_id="a1")) == 2


def test_presence_opens_and_closes_sessions_and_ignores_replays(store):
    def presence(msg_id, ts, state, **data):
        return Record("presence", "a1", msg_id, ts, "presence.a1", {"state": state, **data})

    store.write_batch([presence("on1", 10, "online", info={"user": "bob"}), presence("off1", 20, "offline", reason="timeout")])
    store.write_batch([presence("on2", 30, "online", info={"user": "eve"})])
    # replays of old presence (an outbox or a restart) change nothing
    replay = store.write_batch([presence("on1", 10, "online", info={"user": "bob"}), presence("off1", 20, "offline")])
    assert (replay.new, replay.duplicates) == (0, 2)
    sessions = store.query("sessions", order="asc")
    assert [(s["started"], s["ended"], s["end_reason"], s["logged_in_user"]) for s in sessions] == [
        (10, 20, "timeout", "bob"),
        (30, None, None, "eve"),
    ]
    assert store.query("clients")[0]["online"] is True
    # an online without the offline before it supersedes the open session
    store.write_batch([presence("on3", 40, "online")])
    assert [s["end_reason"] for s in store.query("sessions", order="asc")] == ["timeout", "superseded", None]
    # a late offline (older than the newest presence) does not take the client offline
    store.write_batch([presence("off0", 35, "offline", reason="late")])
    assert store.query("clients")[0]["online"] is True


def test_command_status_only_moves_forward(store):
    def status(msg_id, ts, value, **extra):
        return Record("command_status", "a1", msg_id, ts, "command.a1", {"id": "c1", "target": "a1", "name": "ping", "status": value, **extra})

    assert store.write_batch([status("s1", 1, "queued"), status("s2", 2, "delivered")]).new == 2
    late = store.write_batch([status("s3", 3, "sent")])  # arrives after delivered
    assert (late.new, late.duplicates) == (0, 1)
    store.write_batch([status("s4", 4, "done"), status("s5", 5, "done", result={"ok": True, "rtt": 3})])
    command = store.query("commands")[0]
    assert (command["status"], command["result"], command["updated"]) == ("done", {"ok": True, "rtt": 3}, 5)
    other = store.write_batch([Record("command_status", "a2", "x", 6, "command.a2", {"id": "c1", "status": "done"})])
    assert "belongs to a1" in other.rejected[0].reason


def test_chat_status_updates_and_soft_delete(store):
    store.write_batch([Record("event", "a1", "m1", 1, "event.a1.chat", {"body": "hi", "direction": "out", "operator": "alice"})])
    assert store.query("messages")[0]["status"] == "queued"
    upd = store.write_batch([Record("event", "a1", "u1", 2, "event.a1.chat", {"ref": "m1", "status": "read"})])
    assert upd.new == 1
    assert (store.query("messages")[0]["status"], store.query("messages")[0]["status_ts"]) == ("read", 2)
    back = store.write_batch([Record("event", "a1", "u2", 3, "event.a1.chat", {"ref": "m1", "status": "delivered"})])
    assert back.duplicates == 1 and store.query("messages")[0]["status"] == "read"
    message_id = store.query("messages")[0]["id"]
    assert store.soft_delete_message(message_id)
    assert store.query("messages") == []
    assert store.query("messages", include_deleted=True)[0]["deleted"] is True


def test_a_chat_update_that_overtook_its_message_waits_for_it(store):
    """A delete (and a read receipt) of a message the store has not got yet,
    as when the message's first send was dropped and is resent later: not
    stored, not rejected, listed as waiting (so it is not acknowledged and
    its agent resends it); once the message is stored the resent updates
    apply. An orphan update older than CHAT_UPDATE_WAIT_S is rejected."""
    now = time.time()
    early = [Record("event", "a1", "u1", now, "event.a1.chat", {"ref": "m1", "status": "read"}),
             Record("event", "a1", "u2", now + 1, "event.a1.chat", {"ref": "m1", "deleted": True})]
    first = store.write_batch(early)
    assert (first.new, first.rejected, first.durable) == (0, [], [])
    assert [w.record.msg_id for w in first.waiting] == ["u1", "u2"] and first.waiting[0].reason.endswith(" yet")
    store.write_batch([Record("event", "a1", "m1", now - 1, "event.a1.chat", {"body": "hi", "direction": "out"})])
    again = store.write_batch(early)
    assert (again.new, again.waiting, again.rejected) == (2, [], [])
    [row] = store.query("messages", include_deleted=True)
    assert (row["status"], row["deleted"]) == ("read", True)

    stale = store.write_batch([Record("event", "a1", "u3", now - CHAT_UPDATE_WAIT_S - 60, "event.a1.chat",
                                      {"ref": "gone", "deleted": True})])
    assert stale.waiting == [] and "no chat message 'gone'" in stale.rejected[0].reason


# -- dedupe and rejects ------------------------------------------------------------------
def test_the_same_batch_twice_is_stored_once(store):
    batch = sample_records("a1") + _logs("a1", 50)
    first = store.write_batch(batch)
    counts = table_counts(store.connection)
    second = store.write_batch(batch)
    assert (first.new, first.duplicates) == (61, 0)
    assert (second.new, second.duplicates) == (0, 61)
    assert table_counts(store.connection) == counts
    every_id = [(r.client_id, r.msg_id) for r in batch]
    assert first.durable == every_id and second.durable == every_id
    # a duplicate inside one batch, and the same msg_id from another client
    again = store.write_batch([_logs("a1", 1, prefix="z")[0]] * 2 + _logs("a2", 1))
    assert (again.new, again.duplicates) == (2, 1)


def test_malformed_records_are_rejected_one_by_one_with_a_reason(store):
    good = _logs("a1", 3)
    bad = [
        Record("log", "a1", "b1", "yesterday", "log.a1", {"message": "x"}),
        Record("log", "a1", "b2", 1.0, "log.a1", ["not", "a", "dict"]),
        Record("log", 42, "b3", 1.0, "log.a1", {"message": "x"}),
        Record("gossip", "a1", "b4", 1.0, "x", {}),
        Record("log", "a1", "b5", 1.0, "log.a1", {"level": "INFO"}),
        Record("event", "a1", "b6", 1.0, "event.a2.window", {"title": "spoofed"}),
        Record("event", "a1", "b7", 1.0, "event.a1.fileop", {"op": "read", "path": "/x", "ok": "yes"}),
        Record("event", "a1", "b8", 1.0, "event.a1.capture", {"image": "not bytes"}),
        Record("event", "a1", "b9", 1.0, "event.a1.chat", {"ref": "nope", "status": "read"}),  # fails inside the transaction
        Record("event", "a1", "b10", float("nan"), "event.a1.window", {}),
        Record("log", "", "b11", 1.0, "log.", {"message": "x"}),
        Record("event", "a1", "b12", 1.0, "event.a1.sysinfo", {"cpu_percent": "high"}),
        "not a record",
    ]
    result = store.write_batch(good[:1] + bad + good[1:])
    assert result.new == 3 and len(result.durable) == 3
    assert len(result.rejected) == len(bad)
    reasons = {getattr(r.record, "msg_id", r.record): r.reason for r in result.rejected}
    assert "ts must be" in reasons["b1"]
    assert "data must be a dict" in reasons["b2"]
    assert "client_id must be" in reasons["b3"]
    assert "unknown kind" in reasons["b4"]
    assert "data['message'] is missing" in reasons["b5"]
    assert "is not event.a1.<name>" in reasons["b6"]
    assert "'ok' must be a boolean" in reasons["b7"]
    assert "image must be" in reasons["b8"]
    assert "no chat message 'nope'" in reasons["b9"]
    assert "finite" in reasons["b10"]
    assert "need a client_id" in reasons["b11"]
    assert "cpu_percent" in reasons["b12"]
    assert "not a Record" in reasons["not a record"]
    record, reason = result.rejected[0]  # unpacks like a tuple
    assert [r["msg_id"] for r in store.query("logs", order="asc")] == ["m0", "m1", "m2"]
    assert [c["client_id"] for c in store.query("clients")] == ["a1"]


# -- queries ---------------------------------------------------------------------------
def test_keyset_paging_walks_every_row_once_in_both_orders(store):
    store.write_batch(_logs("a1", 25) + _logs("a2", 5, prefix="o"))
    for order in ("desc", "asc"):
        seen, cursor = [], None
        while True:
            page = store.query("logs", client_id="a1", limit=10, before_id=cursor, order=order)
            if not page:
                break
            seen += [row["id"] for row in page]
            cursor = page[-1]["id"]
        assert len(seen) == len(set(seen)) == 25
        assert seen == sorted(seen, reverse=order == "desc")
    clients = store.query("clients", limit=1, order="asc")
    assert [c["client_id"] for c in clients + store.query("clients", before_id=clients[0]["client_id"], order="asc")] == ["a1", "a2"]


def test_time_window_and_text_search(store):
    store.write_batch(_logs("a1", 20) + sample_records("a1", ts=5000.0))
    window = store.query("logs", since=1005, until=1010, order="asc")
    assert [r["ts"] for r in window] == [1005, 1006, 1007, 1008, 1009]
    assert [r["message"] for r in store.query("logs", text="LINE 1", order="asc")] == ["line 1"] + [f"line {i}" for i in range(10, 20)]
    assert [r["message"] for r in store.query("logs", text="line 1", limit=3, order="asc")] == ["line 1", "line 10", "line 11"]
    assert store.query("messages", text=SECRETS["chat"].lower())[0]["body"] == SECRETS["chat"]
    assert store.query("activity", text="secret-title")[0]["data"]["app"] == "browser"
    assert len(store.query("audit", text="capture")) == 1
    # LIKE wildcards are literal
    assert store.query("audit", text="%") == [] and store.query("audit", text="capture_view") == []
    with pytest.raises(ValueError, match="no text"):
        store.query("metrics", text="x")


def test_stats(store):
    store.write_batch(sample_records("a1") + sample_records("a2", tag="b-") + _logs("a1", 3))
    assert store.stats("log_level") == [{"key": "INFO", "count": 3}, {"key": "ERROR", "count": 2}]
    assert store.stats("log_level", client_id="a2") == [{"key": "ERROR", "count": 1}]
    assert {"key": "messages", "count": 2} in store.stats("kind")
    assert store.stats("security_origin") == [{"key": "agent", "count": 2}, {"key": "broker", "count": 2}]


INJECTIONS = [
    "x' OR '1'='1",
    '"; DROP TABLE clients; --',
    "a1' --",
    "1; DELETE FROM client_logs",
    "' UNION SELECT client_id, 1, 1, 1, 1, 1, 1 FROM clients --",
    "%",
    "_",
]


@pytest.mark.parametrize("evil", INJECTIONS)
def test_hostile_query_parameters_are_literal_or_refused(store, evil):
    store.write_batch(sample_records("a1") + _logs("a1", 5))
    # a client whose id *is* the hostile string: only its own rows match
    store.write_batch(_logs(evil, 2, prefix="e"))
    before = table_counts(store.connection)

    assert [r["client_id"] for r in store.query("logs", client_id=evil)] == [evil, evil]
    assert store.query("logs", client_id=evil + "x") == []
    assert store.query("audit", client_id=evil) == []
    assert store.query("security", client_id=evil) == []
    assert store.query("logs", text=evil) == []
    assert store.query("audit", text=evil) == []
    assert store.query("clients", text=evil)[0]["client_id"] == evil
    assert store.stats("log_level", client_id=evil) == [{"key": "INFO", "count": 2}]
    with pytest.raises(ValueError, match="since must be a number"):
        store.query("logs", since=evil)
    with pytest.raises(ValueError, match="until must be a number"):
        store.query("logs", until=evil)
    with pytest.raises(ValueError, match="order must be"):
        store.query("logs", order=evil)
    with pytest.raises(ValueError, match="order must be"):
        store.query("logs", order="desc; DROP TABLE clients")
    with pytest.raises(ValueError, match="unknown history kind"):
        store.query(evil)
    with pytest.raises(ValueError, match="cannot group by"):
        store.stats(evil)
    with pytest.raises(ValueError, match="before_id"):
        store.query("logs", before_id=evil)
    with pytest.raises(ValueError, match="limit"):
        store.query("logs", limit=evil)
    with pytest.raises(ValueError, match="no retention"):
        store.purge({evil: 1})
    assert store.delete_client(evil + "x")["clients"] == 0

    assert table_counts(store.connection) == before
    tables = {r[0] for r in store.connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert set(schema.TABLES) <= tables


def test_every_query_kind_and_stat_runs(store):
    refused = Record("quarantine", "a1", "q1", 1011.0, "event.a1.deep",
                     {"kind": "EVENT", "size": 4000, "reason": "nested deeper than 32 levels", "sha256": "00" * 32})
    store.write_batch(sample_records("a1") + [refused])
    for kind in VIEWS:
        assert store.query(kind, client_id="a1", since=0, until=1e10), kind
    for group_by in STATS:
        assert store.stats(group_by, since=0) is not None


# -- unavailable disk --------------------------------------------------------------------
def _big_batch(tag: str) -> list[Record]:
    client = f"new-{tag}"
    return [
        Record("event", client, f"{tag}{i}", 2000.0 + i, f"event.{client}.capture", {"image": bytes([i % 251]) * 4000, "format": "raw"})
        for i in range(60)
    ] + _logs(client, 60, prefix=f"{tag}l")


def test_full_disk_raises_store_unavailable_and_writes_nothing(store):
    store.write_batch(sample_records("a1"))
    conn = store.connection
    before = table_counts(conn)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 5}")  # a real SQLITE_FULL, 5 pages from now
    batch = _big_batch("f")

    with pytest.raises(StoreUnavailable, match="full.*free space"):
        store.write_batch(batch)

    assert not conn.in_transaction
    assert table_counts(conn) == before  # not even the new client's row
    assert store.query("logs")  # reads still work
    conn.execute("PRAGMA max_page_count = 1073741823")
    result = store.write_batch(batch)
    assert (result.new, result.duplicates, result.rejected) == (120, 0, [])
    assert table_counts(conn)["screen_captures"] == before["screen_captures"] + 60


def test_read_only_database_raises_store_unavailable_and_loses_nothing(store):
    store.write_batch(sample_records("a1"))
    conn = store.connection
    before = table_counts(conn)
    conn.execute("PRAGMA query_only = ON")  # root ignores chmod 0444; this is a real SQLITE_READONLY
    batch = _big_batch("r")

    with pytest.raises(StoreUnavailable, match="read-only"):
        store.write_batch(batch)
    with pytest.raises(StoreUnavailable, match="read-only"):
        store.purge({"logs": 0})

    assert not conn.in_transaction
    assert table_counts(conn) == before
    assert store.query("messages")[0]["body"] == SECRETS["chat"]
    conn.execute("PRAGMA query_only = OFF")
    assert store.write_batch(batch).new == 120


def test_full_sync_is_available(tmp_path):
    store = make_store(tmp_path, synchronous="FULL")
    assert store.connection.execute("PRAGMA synchronous").fetchone()[0] == 2
    store.close()
    with pytest.raises(ValueError, match="synchronous"):
        make_store(tmp_path, "other.db", synchronous="SOMETIMES")


# -- retention ---------------------------------------------------------------------------
def test_purge_deletes_only_old_rows(store):
    now = 100_000.0
    store.write_batch(_logs("a1", PURGE_BATCH + 500, ts=1000.0, prefix="old"))  # more than one purge batch
    store.write_batch(_logs("a1", 10, ts=now - 10, prefix="new"))
    store.write_batch(sample_records("a1", ts=1000.0, tag="o-"))
    before = table_counts(store.connection)

    purged = store.purge({"logs": 3600, "captures": 3600}, now=now)

    assert purged == {"logs": PURGE_BATCH + 501, "captures": 1}
    after = table_counts(store.connection)
    assert after["client_logs"] == 10 and after["screen_captures"] == 0
    assert {k: v for k, v in after.items() if k not in ("client_logs", "screen_captures")} == {
        k: v for k, v in before.items() if k not in ("client_logs", "screen_captures")
    }
    assert store.purge({"logs": 3600}, now=now) == {"logs": 0}
    with pytest.raises(ValueError, match="non-negative"):
        store.purge({"logs": -1})


def test_purge_keeps_open_sessions_and_commands_and_cascades_old_clients(store):
    now = 100_000.0
    store.write_batch(sample_records("gone", ts=1000.0))  # online, then ...
    store.write_batch([Record("presence", "gone", "off", 1100.0, "presence.gone", {"state": "offline"})])
    store.write_batch(sample_records("here", ts=1000.0, tag="h-"))  # still online, open session, command in flight

    purged = store.purge({"sessions": 3600, "commands": 3600, "clients": 3600}, now=now)

    assert purged == {"sessions": 1, "commands": 0, "clients": 1}
    assert [c["client_id"] for c in store.query("clients")] == ["here"]
    conn = store.connection
    for table in schema.CHILD_TABLES:
        assert conn.execute(f"SELECT count(*) FROM {table} WHERE client_id = 'gone'").fetchone()[0] == 0, table
    assert len(store.query("sessions", client_id="here")) == 1
    assert len(store.query("commands")) == 1
    assert len(store.query("audit")) == 2  # the trail outlives the client
