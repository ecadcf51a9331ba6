"""Many records per bus message on the durable path (agent -> broker -> store):
real broker, real persister and SQLite, real outboxes; nothing mocked."""
from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.delivery import DurableSender, _groups
from agent.outbox import Outbox
from broker.core.envelope import ErrorCode, Kind, new_id, pack_body
from broker.core.batches import BATCH_FRAME_BYTES, MAX_BATCH_BYTES, MAX_BATCH_RECORDS, BatchLimits, batch_offer, batch_record_bytes, batch_terms, check_batch, decode_batch, pack_batch
from broker.core.errors import ProtocolError

from conftest import next_message, wait_for
from test_persister_bus import persister, pump_once, sender_for  # noqa: F401 (persister is a fixture)


def take_acks(sender: DurableSender, acks: list[list[str]]) -> None:
    """One pass of an agent's loop that also keeps the id list of every ACK."""
    for env in sender.bus.drain(1000, 0.02):
        if env.kind is Kind.ACK:
            acks.append(list(env.data()["ids"]))
        sender.handle(env)
    sender.pump()


def activity_count(persister, client_id: str) -> int:
    db = persister.store.connection
    return db.execute("SELECT count(*) FROM activity_logs WHERE client_id=?", (client_id,)).fetchone()[0]


def counters(bus) -> dict:
    return bus.admin.request("status")["counters"]


# -- the wire format ------------------------------------------------------------------
def test_batch_round_trip_and_limits_checked_before_unpacking():
    """A batch decodes to full topics under its sender; oversize (records or
    bytes), another layout version, an empty batch and non-batch bytes are
    refused as a whole with a clear error."""
    raw = pack_batch([(Kind.EVENT, "window", "m1", 10.0, pack_body({"app": "x"})),
                      (Kind.LOG, "", "m2", 11, pack_body({"message": "hi"}))])
    assert check_batch(raw) == 2
    records, refused = decode_batch(raw, "desk-1")
    assert refused == []
    assert [(r.kind, r.topic, r.msg_id, r.ts) for r in records] == [
        (Kind.EVENT, "event.desk-1.window", "m1", 10.0),
        (Kind.LOG, "log.desk-1", "m2", 11.0),
    ]

    many = pack_batch([(Kind.EVENT, "e", f"m{i}", 1.0, b"\x80") for i in range(MAX_BATCH_RECORDS + 1)])
    with pytest.raises(ProtocolError, match=f"{MAX_BATCH_RECORDS + 1} records exceeds {MAX_BATCH_RECORDS}") as exc:
        check_batch(many)
    assert exc.value.code is ErrorCode.TOO_LARGE
    big = pack_batch([(Kind.EVENT, "e", "m1", 1.0, b"x" * MAX_BATCH_BYTES)])
    with pytest.raises(ProtocolError, match="bytes exceeds") as exc:
        decode_batch(big, "desk-1")
    assert exc.value.code is ErrorCode.TOO_LARGE
    with pytest.raises(ProtocolError, match="batch layout 2") as exc:
        check_batch(msgpack.packb([2, [[4, "e", "m1", 1.0, b""]]]))
    assert exc.value.code is ErrorCode.BAD_VERSION
    for junk in (b"", b"\xc1", msgpack.packb({"v": 1}), msgpack.packb([1, []]), msgpack.packb("x" * 50)):
        with pytest.raises(ProtocolError) as exc:
            check_batch(junk)
        assert exc.value.code is ErrorCode.BAD_BODY


def test_malformed_records_are_refused_one_by_one():
    """Wrong kind, missing fields, an empty or too long id, a NaN time, a body
    that is not bytes, a topic too long: each refused with its reason; the
    good records of the same batch are kept."""
    good = [4, "ok", "good-1", 1.0, b"\x80"]
    bad = [
        [7, "x", "b1", 1.0, b""],  # COMMAND cannot be batched
        [4, "x", "b2", 1.0],  # four fields
        [4, "x", "", 1.0, b""],  # empty id
        [4, "x", "b" * 65, 1.0, b""],  # id too long
        [4, "x", "b5", float("nan"), b""],
        [4, "x", "b6", 1.0, "text"],
        [4, "n" * 200, "b7", 1.0, b""],
        "not a record",
    ]
    raw = msgpack.packb([1, [good, *bad, [6, "login", "good-2", 2.0, b"\x80"]]], use_bin_type=True)
    records, refused = decode_batch(raw, "desk-1")
    assert [r.msg_id for r in records] == ["good-1", "good-2"]
    assert [r.topic for r in records] == ["event.desk-1.ok", "security.desk-1.login"]
    assert len(refused) == len(bad)
    assert "kind 7 cannot be batched" in refused[0] and "timestamp must be a finite number" in refused[4]
    assert "topic of" in refused[6] and "exceeds" in refused[6]


_items = st.lists(
    st.one_of(
        st.lists(st.one_of(st.integers(-5, 300), st.text(max_size=80), st.floats(), st.binary(max_size=20), st.none()),
                 min_size=4, max_size=6),
        st.integers(-(2**63), 2**64 - 1), st.text(max_size=5), st.binary(max_size=5),
    ),
    max_size=20,
)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=200), st.tuples(st.integers(-2, 3), _items).map(lambda v: msgpack.packb(list(v), use_bin_type=True))))
def test_hostile_batches_only_ever_raise_protocol_error(raw):
    """Random bytes and random [version, items] arrays: decode_batch returns
    good records (always under the sender's own topics) and reasons, or raises
    ProtocolError with a code; nothing else escapes."""
    try:
        records, refused = decode_batch(raw, "desk-9")
    except ProtocolError as exc:
        assert isinstance(exc.code, ErrorCode)
        return
    assert all(r.topic.split(".")[1] == "desk-9" and r.kind in (Kind.EVENT, Kind.LOG, Kind.SECURITY) for r in records)
    assert all(isinstance(reason, str) and reason.startswith("record ") for reason in refused)


def test_length_bombs_are_refused_before_anything_is_allocated():
    """An array header claiming four billion records, or a record claiming a
    4 GiB body, in a few bytes: refused at once."""
    with pytest.raises(ProtocolError, match="4294967295 records exceeds") as exc:
        check_batch(b"\x92\x01\xdd\xff\xff\xff\xff")
    assert exc.value.code is ErrorCode.TOO_LARGE
    with pytest.raises(ProtocolError) as exc:
        decode_batch(b"\x92\x01\x91\x95\x04\xa1e\xa1m\xcb" + b"\0" * 8 + b"\xc6\xff\xff\xff\xff", "desk-9")
    assert exc.value.code is ErrorCode.BAD_BODY


def test_welcome_terms_and_grouping(tmp_path):
    """Only a WELCOME offering this layout turns batches on; records are cut
    into groups within the record and byte limits, in order, and a record too
    large for any batch goes on its own."""
    assert batch_terms({}) is None  # a broker from before batches
    assert batch_terms({"batch": {**batch_offer(), "version": 2}}) is None
    assert batch_terms({"batch": {"version": 1, "max_records": "many", "max_bytes": 10}}) is None
    assert batch_terms({"batch": batch_offer()}) == BatchLimits()
    assert batch_terms({"batch": batch_offer(BatchLimits(10**6, 10**9))}) == BatchLimits()  # never above ours

    with Outbox(tmp_path / "o.db") as box:
        box.put_many([(Kind.EVENT, "e", b"x" * 100) for _ in range(7)]
                     + [(Kind.LOG, "big", b"y" * 5000), (Kind.EVENT, "e", b"z")])
        records = box.due(100)
    each = batch_record_bytes("e", records[0].msg_id, records[0].body)
    limits = BatchLimits(max_records=3, max_bytes=BATCH_FRAME_BYTES + 2 * each + 10)
    groups = list(_groups(records, limits))
    assert [len(g) for g in groups] == [2, 2, 2, 1, 1, 1]
    assert [r.msg_id for g in groups for r in g] == [r.msg_id for r in records]
    assert groups[4][0].topic == "big"  # too large for any batch: alone
    assert [len(g) for g in _groups(records, None)] == [1] * 9  # no batches offered
    for group in groups:
        raw = pack_batch([(r.kind, r.topic, r.msg_id, r.created, r.body) for r in group])
        assert len(group) == 1 or limits.fits(check_batch(raw), len(raw))


# -- on the bus -------------------------------------------------------------------------
def test_batched_records_are_stored_once_and_acked_many_at_a_time(bus, persister, tmp_path):
    """300 records of three kinds go in a few BATCH messages; everything is
    committed once, acknowledged by ACKs naming many ids each, and the outbox
    ends empty. Sending them all again (as after a reconnect) stores nothing twice."""
    sender = sender_for(bus, tmp_path, "agent-b")
    sender.report_many([(Kind.EVENT, "activity", {"n": i}) for i in range(200)])
    sender.report_many([(Kind.LOG, "agent", {"level": "INFO", "message": f"line {i}"}) for i in range(50)])
    sender.report_many([(Kind.SECURITY, "login", {"event": "login_failed", "n": i}) for i in range(50)])
    assert sender.pump() == 300
    sender.outbox.requeue_all()  # as after a reconnect: everything in flight goes again
    assert sender.pump() == 300
    assert sender.batches_sent == 2
    acks: list[list[str]] = []
    wait_for(lambda: take_acks(sender, acks) or sender.outbox.stats()["pending"] == 0, 15, interval_s=0.0,
             what="every record to be acknowledged")
    assert max(len(ids) for ids in acks) > 100  # one ACK for many records
    assert activity_count(persister, "agent-b") == 200
    assert len(persister.store.query("logs", client_id="agent-b", limit=1000)) == 50
    assert len(persister.store.query("security", client_id="agent-b", limit=1000)) == 50
    wait_for(lambda: persister.service.stats["duplicates"] >= 300, 10, what="the resent copies to be deduplicated")
    assert activity_count(persister, "agent-b") == 200


def test_a_malformed_record_is_refused_and_the_rest_of_its_batch_stored(bus, persister):
    """A hand-made batch with three good records and one with a NaN time: the
    three are stored and acknowledged, the bad one is counted, neither stored
    nor acknowledged (its agent keeps it). With no live subscriber the broker
    never unpacked the batch."""
    agent = bus.peer("agent-m")
    ids = [new_id() for _ in range(4)]
    body = pack_body({"app": "editor"})
    raw = pack_batch([(Kind.EVENT, "window", ids[0], 1.0, body), (Kind.EVENT, "window", ids[1], float("nan"), body),
                      (Kind.EVENT, "window", ids[2], 2.0, body), (Kind.LOG, "", ids[3], 3.0, pack_body({"message": "m"}))])
    agent.send(Kind.BATCH, body=raw)
    acked: set[str] = set()

    def all_good_acked():
        for env in agent.drain(100, 0.05):
            if env.kind is Kind.ACK:
                acked.update(env.data()["ids"])
        return acked >= {ids[0], ids[2], ids[3]}

    wait_for(all_good_acked, 10, interval_s=0.0, what="the good records' ACK")
    assert ids[1] not in acked
    assert persister.service.stats["batch_records_refused"] == 1
    stored = {r["msg_id"] for r in persister.store.query("activity", client_id="agent-m")}
    assert stored == {ids[0], ids[2]}
    status = counters(bus)
    assert status["routed_batches"] == 1 and status["routed_batch_records"] == 4
    assert status.get("batch_records_refused", 0) == 0  # nobody live: not unpacked by the broker


@pytest.mark.parametrize(
    "raw, code, detail",
    [
        (pack_batch([(Kind.EVENT, "e", f"m{i}", 1.0, b"\x80") for i in range(MAX_BATCH_RECORDS + 1)]),
         "TOO_LARGE", "records exceeds"),
        (pack_batch([(Kind.EVENT, "e", "m1", 1.0, b"x" * (MAX_BATCH_BYTES - 100)),
                     (Kind.EVENT, "e", "m2", 1.0, b"x" * 200)]), "TOO_LARGE", "bytes exceeds"),
        (msgpack.packb([9, [[4, "e", "m1", 1.0, b""]]]), "BAD_VERSION", "batch layout 9"),
        (b"\x93\x01\x02\x03", "BAD_BODY", "batch is not [version, [records]]"),
    ],
    ids=["too-many-records", "too-many-bytes", "other-version", "not-a-batch"],
)
def test_a_batch_over_the_limits_is_refused_with_a_clear_error(bus, persister, raw, code, detail):
    """Oversize (records, bytes), another layout, not a batch at all: the
    broker answers the sender with an ERROR naming the batch and the reason,
    stores nothing and passes nothing on."""
    agent = bus.peer("agent-o")
    batch_id = agent.send(Kind.BATCH, body=raw)
    err = next_message(agent, lambda e: e.kind is Kind.ERROR and e.corr == batch_id).data()
    assert err["code"] == ErrorCode[code]
    assert detail in err["detail"]
    assert counters(bus)["refused_batches"] == 1
    assert counters(bus).get("routed_batches", 0) == 0
    assert activity_count(persister, "agent-o") == 0


def test_one_record_per_message_agents_are_still_stored(bus, persister, tmp_path):
    """An agent from before batches publishes one EVENT per record with its
    own ids: stored and acknowledged as before. A current agent whose broker
    offers no batches (WELCOME without ``batch``) sends one record per message."""
    old = bus.peer("agent-old")
    ids = [old.publish(Kind.EVENT, "activity", {"n": i}, msg_id=new_id()) for i in range(20)]
    acked: set[str] = set()

    def acked_all():
        for env in old.drain(100, 0.05):
            if env.kind is Kind.ACK:
                acked.update(env.data()["ids"])
        return acked >= set(ids)

    wait_for(acked_all, 10, interval_s=0.0, what="the old agent's records to be acknowledged")
    assert activity_count(persister, "agent-old") == 20

    sender = sender_for(bus, tmp_path, "agent-nb")
    del sender.bus.welcome["batch"]
    sender.report_many([(Kind.EVENT, "activity", {"n": i}) for i in range(30)])
    wait_for(lambda: pump_once(sender) or sender.outbox.stats()["pending"] == 0, 15, interval_s=0.0, what="every record acked")
    assert sender.batches_sent == 0
    assert activity_count(persister, "agent-nb") == 30
    assert counters(bus).get("routed_batches", 0) == 0


def test_live_subscribers_get_each_batched_record_with_its_topic(bus, persister, tmp_path):
    """`ems tail`-style subscribers see batched records one by one, each with
    its own topic, id, sender and body, and only those their prefixes match;
    the store gets the batch whole and stores each record once."""
    events_watcher = bus.peer("tail-1", role="viewer")
    events_watcher.subscribe(["event."])
    logs_watcher = bus.peer("tail-2", role="viewer")
    logs_watcher.subscribe(["log.agent-l"])
    other_agent_watcher = bus.peer("tail-3", role="viewer")
    other_agent_watcher.subscribe(["event.agent-lx", "security.agent-z."])
    sender = sender_for(bus, tmp_path, "agent-l")
    event_ids = sender.report_many([(Kind.EVENT, "window", {"n": i}) for i in range(5)])
    log_ids = sender.report_many([(Kind.LOG, "agent", {"level": "INFO", "message": f"line {i}"}) for i in range(3)])
    sender.pump()
    assert sender.batches_sent == 1

    seen = [next_message(events_watcher, lambda e: e.kind is Kind.EVENT and e.sender == "agent-l") for _ in event_ids]
    assert [e.msg_id for e in seen] == event_ids
    assert {e.topic for e in seen} == {"event.agent-l.window"}
    assert [e.data()["n"] for e in seen] == list(range(5))
    logs = [next_message(logs_watcher, lambda e: e.kind is Kind.LOG) for _ in log_ids]
    assert [(e.msg_id, e.topic, e.sender) for e in logs] == [(i, "log.agent-l.agent", "agent-l") for i in log_ids]
    assert [e.data()["message"] for e in logs] == [f"line {i}" for i in range(3)]

    wait_for(lambda: pump_once(sender) or sender.outbox.stats()["pending"] == 0, 15, interval_s=0.0, what="every record acked")
    assert activity_count(persister, "agent-l") == 5
    assert not [e for e in events_watcher.drain(100, 0.2) if e.kind in (Kind.LOG, Kind.BATCH)]
    assert not [e for e in other_agent_watcher.drain(100, 0.2) if e.sender == "agent-l"]
