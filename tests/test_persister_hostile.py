"""Hostile input against the persister and the broker's request ops, on a real
bus: every integer field of every op x hostile values gets a reply or
BAD_REQUEST (never INTERNAL, never a dead persister); events nested around
and far past the ingest limit from a real enrolled agent are stored or
quarantined and acknowledged; a NUL in a text search matches nothing."""
from __future__ import annotations

import pytest
from test_persister_bus import RunningPersister, pump_once

from agent.delivery import DurableSender
from agent.outbox import Outbox
from broker.core.bounds import INT64_MAX, INT64_MIN, BoundsError
from broker.core.config import Timing
from broker.core.envelope import ErrorCode, Kind
from broker.core.errors import RemoteError
from broker.persister.store import VIEWS, Record

from conftest import Bus, wait_for

NAN, INF = float("nan"), float("inf")
#: a list nested 1,015 deep: it packs, but repr() of it raises RecursionError
DEEP: list = ["x"]
for _ in range(1014):
    DEEP = [DEEP]

#: every value msgpack can carry that a request matrix tries (2**64 and -2**63-1
#: cannot be encoded at all: see test_values_no_wire_can_carry_are_refused_in_process)
WIRE_VALUES = [-1, 0, 1, 2**31, INT64_MAX, 2**63, 2**64 - 1, INF, NAN, "1", None, [], {}, True]

#: (op, field) -> (the rest of the args, what the field is)
INT_FIELDS = {
    ("store.query", "before_id"): ({"kind": "logs"}, "optional id"),
    ("store.query", "since"): ({"kind": "logs"}, "time"),
    ("store.query", "until"): ({"kind": "logs"}, "time"),
    ("store.query", "limit"): ({"kind": "logs"}, "limit"),
    ("store.capture", "id"): ({"purpose": "view"}, "id"),
    ("store.stats", "since"): ({"group_by": "log_level"}, "time"),
    ("store.stats", "until"): ({"group_by": "kind"}, "time"),
    ("command.list", "limit"): ({}, "limit"),
    ("command.get", "id"): ({}, "command id"),
    ("journal.read", "limit"): ({}, "limit"),
    ("journal.ack", "upto"): ({}, "id"),
}
#: most rows each limit may return
MAX_ROWS = {"store.query": 1000, "command.list": 1000, "journal.read": 10_000}


def accepted(what: str, value) -> bool:
    """Whether a field of this sort takes ``value`` (else: BAD_REQUEST)."""
    is_int64 = type(value) is int and INT64_MIN <= value <= INT64_MAX
    if what == "command id":  # ids are strings; "1" is a string naming no command
        return False
    if value is None:
        return what in ("optional id", "time", "limit")
    if what == "time":
        return is_int64 or (type(value) is float and value == value and abs(value) != INF)
    return is_int64


class Stack:
    """A broker thread and a persister thread with an agent's records, shared by a module's tests."""

    def __init__(self, root):
        self.bus = Bus(root, Timing.fast())
        self.persister = RunningPersister(self.bus, root)
        self.admin = self.bus.admin
        self.agent = self.bus.peer("agent-h")
        sender = DurableSender(self.agent, Outbox(root / "agent-h-outbox.db"))
        for i in range(3):
            sender.report(Kind.LOG, "agent", {"level": "INFO", "message": f"line {i}"})
        sender.report(Kind.EVENT, "capture", {"image": b"not a jpeg", "format": "jpeg"})
        sender.report(Kind.EVENT, "window", {"title": "editor"})
        wait_for(lambda: pump_once(sender) or sender.outbox.stats()["pending"] == 0, 15, interval_s=0.0,
                 what="the sample records to be acknowledged")
        self.command = self.admin.send_command("agent-h", "ping", {"reason": "hostile input tests"})

    def alive(self) -> None:
        """The persister thread runs, has hit no internal error and answers; the broker answered nothing INTERNAL."""
        service = self.persister.service
        assert self.persister.thread.is_alive()
        assert service.stats["internal_errors"] == 0
        assert len(self.admin.request("store.query", kind="logs", client_id="agent-h", limit=10)) == 3
        assert self.bus.broker.counters.get("internal_errors", 0) == 0

    def close(self):
        self.persister.stop()
        self.bus.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("hostile"))
    yield s
    s.close()


@pytest.mark.parametrize("value", WIRE_VALUES, ids=repr)
@pytest.mark.parametrize("op, field", list(INT_FIELDS), ids="-".join)
def test_every_integer_field_takes_a_value_or_says_bad_request(stack, op, field, value):
    """Tried: each integer argument of every op that has one (store.query, store.capture,
    store.stats, command.list, command.get, journal.read, journal.ack) set to -1, 0, 1,
    2^31, 2^63-1, 2^63, 2^64-1, inf, nan, "1", None, [], {} and True, as an admin over
    the bus. An accepted value gets a reply (limits clamped to their range: -1 is one
    row, never "no limit"), anything else BAD_REQUEST; never INTERNAL, and the persister
    is alive and answering afterwards."""
    base, what = INT_FIELDS[(op, field)]
    args = {**base, field: value}
    if accepted(what, value):
        result = stack.admin.request(op, **args)
        if what == "limit" and type(value) is int:
            assert 1 <= len(result) <= min(max(value, 1), MAX_ROWS[op]) or (op == "journal.read" and not result)
    else:
        with pytest.raises(RemoteError) as err:
            stack.admin.request(op, **args)
        assert err.value.code == ErrorCode.BAD_REQUEST, err.value
    stack.alive()


def test_command_list_with_a_negative_limit_is_not_every_command(stack):
    """Tried: command.list limit=-1 (SQLite's "no limit") with several commands queued: one comes back."""
    for _ in range(3):
        stack.admin.send_command("agent-h", "ping", {"reason": "fill the queue"})
    assert len(stack.admin.request("command.list", limit=-1)) == 1
    assert len(stack.admin.request("command.list", limit=2)) == 2
    stack.alive()


@pytest.mark.parametrize("needle", ["\x00", "a\x00", "\x00%", "%\x00", "line\x00 1"], ids=repr)
@pytest.mark.parametrize("kind", ["logs", "activity", "security", "clients", "commands"])
def test_a_nul_in_text_is_refused_never_matching_every_row(stack, kind, needle):
    """Tried: a text search holding a NUL (SQLite's LIKE stops at it, so "\\0" matched
    every row) on plain and encrypted kinds: BAD_REQUEST naming the NUL."""
    with pytest.raises(RemoteError, match="NUL") as err:
        stack.admin.request("store.query", kind=kind, text=needle)
    assert err.value.code == ErrorCode.BAD_REQUEST
    stack.alive()


@pytest.mark.parametrize(
    "op, args",
    [
        ("store.query", {"kind": "logs", "before_id": [[[[[[[[1]]]]]]]]}),
        ("store.query", {"kind": "logs", "order": {"a": [1] * 10}}),
        ("store.query", {"kind": ["logs"]}),
        ("store.query", {"kind": "logs", "client_id": 2**63}),
        ("store.query", {"kind": "clients", "before_id": 7}),
        ("store.query", {"kind": "logs", "include_deleted": "yes"}),
        ("store.query", {"kind": "logs", "text": "x" * 201}),
        ("store.stats", {"group_by": {"kind": 1}}),
        ("store.stats", {"group_by": "log_level", "client_id": ["a"]}),
        ("store.capture", {"id": "1"}),
        ("store.capture", {"id": 1, "purpose": DEEP}),
        ("store.query", {"kind": "logs", "order": DEEP}),
        ("store.query", {"kind": "logs", "text": DEEP}),
        ("store.stats", {"group_by": DEEP}),
        ("store.nothing", {}),
        ("command.list", {"target": ["agent-h"]}),
        ("command.list", {"target": "agent-h\x00"}),
        ("command.list", {"names": "ping"}),
        ("command.list", {"names": [1, 2]}),
        ("keys.label", {"id": {"a": 1}, "label": "x"}),
        ("keys.revoke", {"id": "agent-h", "reason": ["why"]}),
        ("keys.add", {"public_key": 2**63, "client_id": "x"}),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(v),
)
def test_wrong_types_anywhere_are_bad_requests(stack, op, args):
    """Tried: containers (one nested 1,015 deep, whose repr would raise
    RecursionError), NULs, out-of-range ints and wrong types in every string
    argument of the store and broker ops: BAD_REQUEST, nothing changed (agent-h
    keeps its key), the persister alive."""
    with pytest.raises(RemoteError) as err:
        stack.admin.request(op, **args)
    assert err.value.code == ErrorCode.BAD_REQUEST, err.value
    assert [k["state"] for k in stack.admin.request("keys.list") if k["client_id"] == "agent-h"] == ["accepted"]
    stack.alive()


def test_a_hostile_viewer_query_gets_bad_request_and_the_store_lives(stack):
    """Tried: a viewer key asking metrics before_id=2^63 (the OverflowError that killed
    the persister), since=2^63 and limit=inf: BAD_REQUEST each, then it reads metrics."""
    viewer = stack.bus.peer("viewer-h", role="viewer")
    for args in ({"before_id": 2**63}, {"since": 2**63}, {"limit": INF}, {"until": NAN}):
        with pytest.raises(RemoteError) as err:
            viewer.request("store.query", kind="metrics", **args)
        assert err.value.code == ErrorCode.BAD_REQUEST
    assert viewer.request("store.query", kind="metrics") == []
    stack.alive()


# -- nesting, from a real enrolled agent ----------------------------------------------------
def nested_body(depth: int, leaf: str) -> bytes:
    """msgpack of ``depth`` maps ``{"a": {"a": ... leaf}}``, built by hand (any depth)."""
    return b"\x81\xa1a" * depth + b"\xd9" + bytes([len(leaf)]) + leaf.encode()


@pytest.mark.parametrize("path", ["outbox", "single"])
@pytest.mark.parametrize("depth", [31, 32, 33, 100, 1000, 1001, 1023, 1025])
def test_nested_events_are_stored_or_quarantined_and_always_acknowledged(stack, tmp_path, depth, path):
    """Tried: an enrolled agent's event nested 31 .. 1,025 maps deep, through its real
    outbox (batched) and as one raw EVENT message. Up to 32 levels it is stored; deeper
    it is quarantined (1,025: past msgpack's 1,024, it does not even decode); either way
    it is acknowledged (the outbox empties), a security event names the agent, and a
    text search of activity afterwards works and finds the stored ones by their leaf."""
    agent_id = f"deep-{path}-{depth}"
    leaf = f"needle-{agent_id}"
    body = nested_body(depth, leaf)
    client = stack.bus.peer(agent_id)
    before = stack.persister.service.stats["quarantined"]
    if path == "outbox":
        outbox = Outbox(tmp_path / "outbox.db")
        sender = DurableSender(client, outbox)
        msg_id = outbox.put(Kind.EVENT, "deep", body)
        wait_for(lambda: pump_once(sender) or outbox.stats()["pending"] == 0, 15, interval_s=0.0, what="the ACK")
    else:
        msg_id = client.publish(Kind.EVENT, "deep", body=body)
        acked: set[str] = set()

        def ack_arrived():
            acked.update(i for env in client.drain(100, 0.05) if env.kind is Kind.ACK for i in env.data()["ids"])
            return msg_id in acked

        wait_for(ack_arrived, 15, interval_s=0.0, what="the ACK")
    stored = [r["msg_id"] for r in stack.admin.request("store.query", kind="activity", client_id=agent_id)]
    held = stack.admin.request("store.query", kind="quarantine", client_id=agent_id)
    if depth <= 32:
        assert (stored, held) == ([msg_id], [])
        found = stack.admin.request("store.query", kind="activity", text=leaf)
        assert [r["msg_id"] for r in found] == [msg_id]
    else:
        assert stored == [] and [r["msg_id"] for r in held] == [msg_id]
        assert held[0]["size"] == len(body) and held[0]["kind"] == "EVENT"
        assert held[0]["reason"] == ("nested deeper than 32 levels" if depth <= 1024 else held[0]["reason"])
        assert depth <= 1024 or "does not decode" in held[0]["reason"]
        assert stack.persister.service.stats["quarantined"] == before + 1
        events = wait_for(lambda: [e for e in stack.admin.request("store.query", kind="security", client_id=agent_id)
                                   if e["event"] == "quarantined"], 10, what="the quarantine security event")
        assert events[0]["subject"] == agent_id and events[0]["origin"] == "persister"
        assert stack.admin.request("store.query", kind="activity", text=leaf) == []
    assert isinstance(stack.admin.request("store.query", kind="activity", text="needle"), list)
    stack.alive()


def test_quarantine_history_is_for_admins_only(stack):
    """Tried: reading the quarantine as a viewer and as an operator: FORBIDDEN; an admin reads it."""
    for role in ("viewer", "operator"):
        peer = stack.bus.peer(f"q-{role}", role=role)
        with pytest.raises(RemoteError, match="may not read quarantine") as refused:
            peer.request("store.query", kind="quarantine")
        assert refused.value.code is ErrorCode.FORBIDDEN
    assert isinstance(stack.admin.request("store.query", kind="quarantine"), list)


def test_a_flood_of_deep_events_is_one_security_event_a_minute(stack):
    """Tried: one agent sending 20 over-deep events: all 20 quarantined and acknowledged,
    one security event stored for them (the rest counted, not reported)."""
    client = stack.bus.peer("deep-flood")
    ids = {client.publish(Kind.EVENT, "deep", body=nested_body(40, "x")) for _ in range(20)}
    acked: set[str] = set()

    def all_acked():
        acked.update(i for env in client.drain(100, 0.05) if env.kind is Kind.ACK for i in env.data()["ids"])
        return acked >= ids

    wait_for(all_acked, 15, interval_s=0.0, what="20 ACKs")
    assert len(stack.admin.request("store.query", kind="quarantine", client_id="deep-flood")) == 20
    def reported():
        return [e for e in stack.admin.request("store.query", kind="security", client_id="deep-flood") if e["event"] == "quarantined"]

    wait_for(reported, 10, what="the quarantine security event")
    stack.alive()  # one more round trip: a second event, had one been sent, is stored by now
    assert len(reported()) == 1
    stack.alive()


# -- in process: what no wire can carry, and data stored before the limits ---------------------
@pytest.fixture
def store(tmp_path):
    from test_store_support import make_store

    s = make_store(tmp_path)
    yield s
    s.close()


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**30, 2**63, INF, NAN], ids=repr)
@pytest.mark.parametrize(
    "call",
    [
        lambda s, v: s.query("logs", before_id=v),
        lambda s, v: s.query("logs", since=v),
        lambda s, v: s.query("logs", until=v),
        lambda s, v: s.query("logs", limit=v),
        lambda s, v: s.get_capture(v),
        lambda s, v: s.stats("log_level", since=v),
        lambda s, v: s.stats("kind", until=v),
    ],
    ids=["query-before_id", "query-since", "query-until", "query-limit", "capture-id", "stats-since", "stats-until"],
)
def test_values_no_wire_can_carry_are_refused_in_process(store, call, value):
    """Tried: 2^64, -2^63-1, 10^30 (msgpack cannot encode them), 2^63, inf and nan straight
    into the Store's query paths: BoundsError (a ValueError), never OverflowError."""
    with pytest.raises(BoundsError):
        call(store, value)


@pytest.mark.parametrize("depth", [100, 1001, 1023])
def test_a_deep_row_stored_before_the_limits_does_not_break_text_search(store, depth):
    """Tried: an activity row nested 100 / 1,001 / 1,023 deep written straight to the
    store (as a store from before the ingest limits holds it), then text searches:
    they answer (the walk is iterative and bounded), they do not raise RecursionError."""
    data: dict = {"leaf": "deep needle"}
    for _ in range(depth):
        data = {"a": data}
    store.write_batch([Record("event", "a1", "deep", 1000.0, "event.a1.window", data),
                       Record("event", "a1", "flat", 1001.0, "event.a1.window", {"title": "flat needle"})])
    assert [r["msg_id"] for r in store.query("activity", text="flat needle")] == ["flat"]
    assert [r["msg_id"] for r in store.query("activity", text="needle")] == ["flat"]  # below the depth bound: not searched
    assert len(store.query("activity")) == 2


def test_every_text_kind_refuses_nul_in_process(store):
    """Tried: "\\0" as the text of every kind that has text: BoundsError naming the NUL."""
    for kind, view in VIEWS.items():
        if view.text:
            with pytest.raises(BoundsError, match="NUL"):
                store.query(kind, text="\x00")


# -- a bug in the persister is an answer, not an exit (fault injection: no input reaches these today) ----
def test_a_bug_while_answering_is_internal_and_the_persister_answers_on(bus, tmp_path):
    """Tried: store.query raising RuntimeError (a stand-in for any bug) under a request:
    the requester gets INTERNAL, the error is counted, the next request is answered."""
    persister = RunningPersister(bus, tmp_path)
    try:
        real = persister.store.query

        def broken(*args, **kwargs):
            raise RuntimeError("a bug")

        persister.store.query = broken
        with pytest.raises(RemoteError) as err:
            bus.admin.request("store.query", kind="logs")
        assert err.value.code == ErrorCode.INTERNAL
        assert persister.service.stats["internal_errors"] == 1
        persister.store.query = real
        assert bus.admin.request("store.query", kind="logs") == []
        assert persister.thread.is_alive()
    finally:
        persister.stop()


def test_a_bug_while_taking_a_record_is_counted_and_the_next_one_stored(bus, tmp_path):
    """Tried: the persister's batch append raising once (a stand-in for any bug in
    taking a record): counted, not fatal; the agent's resend is stored and acknowledged."""
    persister = RunningPersister(bus, tmp_path)
    try:
        service, real = persister.service, persister.service._keep
        calls = []

        def broken_once(item):
            calls.append(item)
            if len(calls) == 1:
                raise RuntimeError("a bug")
            real(item)

        service._keep = broken_once
        sender = DurableSender(bus.peer("agent-bug"), Outbox(tmp_path / "bug-outbox.db", resend_after_s=0.3))
        sender.report(Kind.LOG, "agent", {"message": "kept after all"})
        wait_for(lambda: pump_once(sender) or sender.outbox.stats()["pending"] == 0, 15, interval_s=0.0, what="the ACK")
        assert service.stats["internal_errors"] == 1 and len(calls) >= 2
        assert [r["message"] for r in persister.store.query("logs", client_id="agent-bug")] == ["kept after all"]
        assert persister.thread.is_alive()
    finally:
        persister.stop()


@pytest.mark.parametrize("depth, ok", [(31, True), (32, False), (100, False), (1000, False)])
def test_command_args_past_the_limits_are_refused_so_the_audit_trail_keeps_every_command(stack, depth, ok):
    """Tried: an admin's command whose args nest 31 .. 1,000 deep (with the args map
    itself, 32 .. 1,001 levels). Over the limit it is BAD_REQUEST at the broker: its
    audit record would otherwise be quarantined by the store and the action missing
    from the trail; within it the command is queued and audited."""
    args: dict = {"reason": "depth test", "x": "leaf"}
    for _ in range(depth):
        args = {"reason": "depth test", "x": args}
    if ok:
        status = stack.admin.send_command("agent-h", "ping", args)
        wait_for(lambda: [r for r in stack.admin.request("store.query", kind="audit", text="command", limit=1000)
                          if (r["detail"] or {}).get("id") == status["id"]], 10, what="the command's audit row")
    else:
        with pytest.raises(RemoteError, match="nested deeper than 32") as err:
            stack.admin.send_command("agent-h", "ping", args)
        assert err.value.code == ErrorCode.BAD_REQUEST
    stack.alive()
