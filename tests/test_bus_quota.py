"""Per-agent rate limits on a real broker: a flooding agent is throttled
(dropped, counted, reported, told), everyone else keeps working, a
well-behaved client backs off, and durable records are never lost."""
from __future__ import annotations

import threading

import msgpack
import pytest
import zmq

from agent.delivery import DurableSender
from agent.outbox import Outbox
from broker.core.client import RateLimited
from broker.core.config import RateLimit, Timing
from broker.core.envelope import ErrorCode, Kind, decode, pack_body, pack_header
from broker.core.errors import ConfigError
from test_persister_bus import RunningPersister

from conftest import Bus, next_message, wait_for

#: refills so slowly that nothing comes back during a test: exact counts
FROZEN = 0.001


class LimitedBus(Bus):
    """The ``bus`` fixture's broker with the given per-agent limits."""

    def __init__(self, root, timing, limits: RateLimit):
        self.limits = limits
        super().__init__(root, timing)

    def start(self) -> None:
        self.config.rate_limit = self.limits
        super().start()


@pytest.fixture
def limited(tmp_path):
    """Start a broker with ``limited(RateLimit(...))``; closed at teardown."""
    made = []

    def start(limits: RateLimit) -> LimitedBus:
        made.append(LimitedBus(tmp_path / f"bus{len(made)}", Timing.fast(), limits))
        return made[-1]

    yield start
    for b in made:
        b.close()


class RawAgent:
    """An enrolled agent on a bare DEALER: says HELLO, then sends whatever it
    is told as fast as the socket takes it, ignoring every answer (no back-off)."""

    def __init__(self, bus: Bus, client_id: str):
        pair = bus.enrol(client_id)
        self.client_id = client_id
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.sndtimeo = 10_000
        self.sock.curve_serverkey = bus.server_key.encode()
        self.sock.curve_publickey = pair.public_bytes
        self.sock.curve_secretkey = pair.secret_bytes
        self.sock.connect(bus.endpoint)
        self.sock.send_multipart([pack_header(Kind.HELLO), pack_body({"client_id": client_id})])
        assert self.sock.poll(10_000), "no WELCOME from the broker"
        assert decode(self.sock.recv_multipart()).kind is Kind.WELCOME
        self.received = []

    def publish(self, kind: Kind, name: str, body: bytes = b"\x80") -> tuple[str, int]:
        """Send one message under our own topic; returns (msg id, bytes on the wire)."""
        prefix = {Kind.EVENT: "event", Kind.FRAME: "frame", Kind.LOG: "log", Kind.SECURITY: "security"}[kind]
        header = pack_header(kind, f"{prefix}.{self.client_id}.{name}")
        self.sock.send_multipart([header, body])
        return msgpack.unpackb(header)[3], len(header) + len(body)

    def errors(self, code: ErrorCode) -> list[tuple[str, dict]]:
        """(corr, body) of every ERROR with ``code`` received so far."""
        while self.sock.poll(0):
            self.received.append(decode(self.sock.recv_multipart()))
        return [(e.corr, e.data()) for e in self.received if e.kind is Kind.ERROR and e.data()["code"] == code]

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def agent_row(bus: Bus, client_id: str) -> dict:
    """The agent's row in ``status`` over the bus."""
    return next(a for a in bus.admin.request("status")["agents"] if a["client_id"] == client_id)


def read_all(bus: Bus, sent: int) -> dict:
    """The broker's counters once it has routed or dropped ``sent`` metered messages."""
    def settled():
        counters = dict(bus.broker.counters)
        return counters if counters.get("routed", 0) + counters.get("dropped_rate_limited", 0) >= sent else None

    return wait_for(settled, 15, what=f"the broker to read {sent} messages")


def test_raw_flood_is_dropped_counted_reported_and_the_sender_told(limited):
    """A raw agent ignoring RATE_LIMITED sends 2,000 events into a bucket of
    100: exactly 100 are routed; the other 1,900 are dropped, counted for that
    agent in `status`, reported as one throttled security event, and the sender
    gets RATE_LIMITED with a retry-after, far fewer times than it was dropped."""
    bus = limited(RateLimit(msgs_per_s=FROZEN, burst_msgs=100, bytes_per_s=0, notice_s=0.5))
    watcher = bus.peer("sec-watch", role="viewer")
    watcher.subscribe(["security.broker", "event.flood-a"])
    flood = RawAgent(bus, "flood-a")
    try:
        ids = [flood.publish(Kind.EVENT, "flood")[0] for _ in range(2000)]
        counters = read_all(bus, 2000)
        assert counters["routed"] == 100
        assert counters["dropped_rate_limited"] == 1900
        assert agent_row(bus, "flood-a")["dropped_rate_limited"] == 1900

        event = next_message(watcher, lambda e: e.kind is Kind.SECURITY and e.data()["event"] == "rate_limited")
        assert event.data()["client_id"] == "flood-a"
        assert "dropped so far" in event.data()["detail"]
        assert counters["security_rate_limited"] == counters["rate_limit_notices"]

        notices = wait_for(lambda: flood.errors(ErrorCode.RATE_LIMITED), 5, what="a RATE_LIMITED error")
        corr, body = notices[0]
        assert corr == ids[100]  # answers the first dropped message
        assert body["retry_after_s"] >= 0.5
        assert "msgs/s" in body["detail"]
        assert len(notices) <= counters["rate_limit_notices"] < 1900
    finally:
        flood.close()


def test_commands_to_other_agents_work_during_a_flood(limited):
    """While one raw agent floods without pause (and is being dropped), an
    operator's commands to another agent, and that agent's results, still
    go through: every command ends `done`."""
    bus = limited(RateLimit(msgs_per_s=500, burst_msgs=500, bytes_per_s=0))
    operator = bus.peer("op-q", role="operator")
    worker = bus.peer("agent-w")
    flood = RawAgent(bus, "flood-b")
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            env = worker.poll(0.05)
            if env is not None and env.kind is Kind.COMMAND:
                worker.send(Kind.COMMAND_STATUS, data={"status": "delivered"}, corr=env.msg_id)
                worker.send(Kind.RESULT, data={"ok": True, "output": {"pong": True}}, corr=env.msg_id)

    def flooding() -> None:
        while not stop.is_set():
            flood.publish(Kind.EVENT, "flood", b"\x81\xa1x\xc4\xc8" + b"\0" * 200)

    threads = [threading.Thread(target=answer, daemon=True), threading.Thread(target=flooding, daemon=True)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: bus.broker.counters["dropped_rate_limited"] > 1000, 20, what="the flood to be throttled")
        before = bus.broker.counters["dropped_rate_limited"]
        outcomes = []
        for i in range(10):
            cmd = operator.send_command("agent-w", "ping", {"i": i}, timeout_s=10)
            outcomes.append(operator.wait_result(cmd["id"], 15)["status"])
        assert outcomes == ["done"] * 10
        assert bus.broker.counters["dropped_rate_limited"] > before  # the flood went on the whole time
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        flood.close()


def test_a_well_behaved_client_backs_off_until_the_retry_after(limited):
    """A BusClient that does not pace itself (as after a reconnect, when the
    broker's bucket is emptier than the client's copy) publishing until the
    broker says RATE_LIMITED stops: while throttled, publish raises
    RateLimited and the broker sees nothing more from it; once the
    retry-after has passed it publishes again."""
    bus = limited(RateLimit(msgs_per_s=20, burst_msgs=50, bytes_per_s=0, notice_s=1.0))
    agent = bus.peer("polite", pace=False)
    sent = 0
    while True:
        try:
            agent.publish(Kind.EVENT, "tick", {"n": sent})
        except RateLimited:
            break
        sent += 1
        agent.drain(100, 0.001 if sent > 50 else 0.0)
        assert sent < 5000, "the client was never told to back off"
    assert agent.rate_limited >= 1 and agent.throttled_until > 0
    counters = read_all(bus, sent)
    dropped, routed = counters["dropped_rate_limited"], counters["routed"]
    assert dropped > 0 and routed >= 50

    while agent.throttled:
        with pytest.raises(RateLimited):
            agent.publish(Kind.EVENT, "tick", {"n": -1})
        agent.poll(0.01)
    assert bus.broker.counters["dropped_rate_limited"] == dropped  # it sent nothing metered meanwhile
    agent.publish(Kind.EVENT, "tick", {"n": "again"})
    wait_for(lambda: bus.broker.counters["routed"] == routed + 1, 5, what="the new event to be routed")
    assert bus.broker.counters["dropped_rate_limited"] == dropped


def test_results_and_heartbeats_pass_when_an_agent_is_over_its_limit(limited):
    """An agent that used up its bucket (5 messages, no refill during the
    test) and ignores the back-off still has its command status and result
    delivered and stays online: only what agents publish is metered."""
    bus = limited(RateLimit(msgs_per_s=FROZEN, burst_msgs=5, bytes_per_s=0))
    agent = bus.peer("greedy", pace=False)
    operator = bus.peer("op-g", role="operator")
    for i in range(20):
        agent.send(Kind.EVENT, "event.greedy.tick", {"n": i})  # send(): no back-off
    assert read_all(bus, 20)["dropped_rate_limited"] == 15
    cmd = operator.send_command("greedy", "ping", timeout_s=10)
    env = next_message(agent, lambda e: e.kind is Kind.COMMAND)
    agent.send(Kind.COMMAND_STATUS, data={"status": "delivered"}, corr=env.msg_id)
    agent.send(Kind.RESULT, data={"ok": True, "output": {"pong": True}}, corr=env.msg_id)
    assert operator.wait_result(cmd["id"], 10)["result"]["output"] == {"pong": True}
    assert bus.broker.counters["dropped_rate_limited"] == 15
    assert agent_row(bus, "greedy")["state"] == "online"


def push_all(sender: DurableSender, n: int) -> None:
    """Report ``n`` numbered records (~150 B each) and run the agent's loop until all are acknowledged."""
    sender.report_many([(Kind.EVENT, "activity", {"n": i, "pad": "x" * 100}) for i in range(n)])

    def all_acked() -> bool:
        for env in sender.bus.drain(1000, 0.02):
            sender.handle(env)
        sender.pump()
        return sender.outbox.stats()["pending"] == 0

    wait_for(all_acked, 60, interval_s=0.0, what="every record to be acknowledged")


def test_durable_records_through_a_throttle_are_stored_exactly_once(limited, tmp_path):
    """A DurableSender pushes 1,000 records (~150 KB, one per message or in
    batches, whichever the broker offers) at a broker that admits 50 KB/s in
    bursts of 20 KB: sends are dropped and the sender is told to wait, yet
    every record reaches the persister's store exactly once (dropped ones
    were never acked, so the outbox resent them)."""
    bus = limited(RateLimit(msgs_per_s=0, bytes_per_s=50_000, burst_bytes=20_000, notice_s=0.2))
    persister = RunningPersister(bus, tmp_path)
    outbox = Outbox(tmp_path / "durable-outbox.db", resend_after_s=0.5)
    try:
        client = bus.peer("durable-a", pace=False)  # the broker's limit bites, not the client's copy
        sender = DurableSender(client, outbox)
        push_all(sender, 1000)
        rows = persister.store.query("activity", client_id="durable-a", limit=1000)
        assert sorted(r["data"]["n"] for r in rows) == list(range(1000))
        assert persister.store.connection.execute("SELECT COUNT(*) FROM activity_logs").fetchone()[0] == 1000
        assert agent_row(bus, "durable-a")["dropped_rate_limited"] > 0  # the throttle did bite
        assert client.rate_limited > 0
    finally:
        outbox.close()
        persister.stop()


def test_a_pacing_agent_is_never_dropped_and_its_records_all_arrive(limited, tmp_path):
    """An agent's BusClient keeps to the limit its WELCOME states (operators
    are told none): 1,000 durable records pushed as fast as the client takes
    them at 50 KB/s (bursts of 20 KB) all reach the store exactly once,
    the client held back what the broker would have dropped (``paced``), and
    the broker dropped nothing and sent no RATE_LIMITED."""
    limits = RateLimit(msgs_per_s=0, bytes_per_s=50_000, burst_bytes=20_000, notice_s=0.2)
    bus = limited(limits)
    persister = RunningPersister(bus, tmp_path)
    outbox = Outbox(tmp_path / "paced-outbox.db", resend_after_s=30)  # no resend needed: nothing is dropped
    try:
        client = bus.peer("paced-a")
        assert client.welcome["rate_limit"] == limits.offer()
        assert "rate_limit" not in bus.peer("op-p", role="operator").welcome
        sender = DurableSender(client, outbox)
        push_all(sender, 1000)
        rows = persister.store.query("activity", client_id="paced-a", limit=1000)
        assert sorted(r["data"]["n"] for r in rows) == list(range(1000))
        assert client.paced > 0  # it did hold back
        assert agent_row(bus, "paced-a")["dropped_rate_limited"] == 0
        assert client.rate_limited == 0 and bus.broker.counters["rate_limit_notices"] == 0
    finally:
        outbox.close()
        persister.stop()


def test_pacing_raises_before_sending_and_frees_up_with_time(limited):
    """The client's copy of the limit (5 messages, next token in ~5 s):
    the 6th publish raises RateLimited and nothing of it reaches the broker;
    a later one is sent. Bad offers in a WELCOME pace nothing."""
    bus = limited(RateLimit(msgs_per_s=0.2, burst_msgs=5, bytes_per_s=0))
    agent = bus.peer("paced-b")
    for n in range(5):
        agent.publish(Kind.EVENT, "tick", {"n": n})
    with pytest.raises(RateLimited, match="rate limit"):
        agent.publish(Kind.EVENT, "tick", {"n": 5})
    assert agent.paced == 1
    wait_for(lambda: bus.broker.counters["routed"] >= 5, 5, what="the 5 events")
    wait_for(lambda: _publishes(agent), 30, interval_s=0.1, what="a token to come back")
    wait_for(lambda: bus.broker.counters["routed"] == 6, 5, what="the 6th event")
    assert bus.broker.counters["dropped_rate_limited"] == 0
    for offer in (None, "fast", {"msgs_per_s": -1, "burst_msgs": 5, "bytes_per_s": 0, "burst_bytes": 0},
                  {"msgs_per_s": 0, "burst_msgs": 0, "bytes_per_s": 0, "burst_bytes": 0}, {"msgs_per_s": 5}):
        assert RateLimit.from_offer(offer) is None, offer


def test_a_reconnected_agent_paces_from_where_its_buckets_stand(limited):
    """The broker's buckets outlive a connection: an agent that used 3 of its
    5 messages (no refill during the test) and reconnects is told in its
    WELCOME that 2 are left, so its third publish is held back in the client
    and the broker drops nothing."""
    bus = limited(RateLimit(msgs_per_s=FROZEN, burst_msgs=5, bytes_per_s=0))
    pair = bus.enrol("re-a")
    first = bus.client(pair, hello={"client_id": "re-a"})
    for n in range(3):
        first.publish(Kind.EVENT, "tick", {"n": n})
    wait_for(lambda: bus.broker.counters["routed"] == 3, 5, what="the first 3 events")
    first.close()

    second = bus.client(pair, hello={"client_id": "re-a"})
    assert 1.9 < second.welcome["rate_limit"]["msgs_left"] <= 2.1
    for n in range(2):
        second.publish(Kind.EVENT, "tick", {"n": 3 + n})
    with pytest.raises(RateLimited):
        second.publish(Kind.EVENT, "tick", {"n": 5})
    wait_for(lambda: bus.broker.counters["routed"] == 5, 5, what="the 2 events left")
    assert bus.broker.counters["dropped_rate_limited"] == 0 and second.paced == 1


def _publishes(agent) -> bool:
    agent.drain(100, 0.0)  # heartbeats: the broker must not forget us while we wait for a token
    try:
        agent.publish(Kind.EVENT, "tick", {"n": 6})
    except RateLimited:
        return False
    return True


def test_byte_limit_meters_screen_frames(limited):
    """Only the byte bucket (messages unlimited): frames of known size into a
    bucket of 5.5 frames: exactly 6 pass (the last one goes into debt), the
    rest are dropped and counted, and the notice names the byte limit."""
    body = b"\0" * 10_000
    size = len(pack_header(Kind.FRAME, "frame.framer.live")) + len(body)
    bus = limited(RateLimit(msgs_per_s=0, bytes_per_s=FROZEN, burst_bytes=5.5 * size, notice_s=0.5))
    flood = RawAgent(bus, "framer")
    try:
        for _ in range(40):
            assert flood.publish(Kind.FRAME, "live", body)[1] == size
        counters = read_all(bus, 40)
        assert counters["routed"] == 6
        assert counters["dropped_rate_limited"] == 34
        assert "MiB/s" in wait_for(lambda: flood.errors(ErrorCode.RATE_LIMITED), 5, what="RATE_LIMITED")[0][1]["detail"]
    finally:
        flood.close()


def test_no_limit_when_turned_off(limited):
    """RateLimit.off(): 3,000 events in a burst from one agent are all routed, none dropped."""
    bus = limited(RateLimit.off())
    flood = RawAgent(bus, "free")
    try:
        for _ in range(3000):
            flood.publish(Kind.EVENT, "burst")
        counters = read_all(bus, 3000)
        assert counters["routed"] == 3000
        assert counters.get("dropped_rate_limited", 0) == 0
        assert bus.admin.request("status")["broker"]["rate_limit"]["summary"] == "off"
    finally:
        flood.close()


@pytest.mark.parametrize(
    "kwargs, complaint",
    [
        ({"msgs_per_s": -1}, "msgs_per_s must be a number >= 0"),
        ({"bytes_per_s": float("nan")}, "bytes_per_s must be a number >= 0"),
        ({"burst_msgs": "many"}, "burst_msgs must be a number >= 0"),
        ({"msgs_per_s": 100, "burst_msgs": 0}, "burst_msgs must be at least 1"),
        ({"bytes_per_s": 100, "burst_bytes": 0.5}, "burst_bytes must be at least 1"),
        ({"notice_s": 0}, "notice_s must be > 0"),
    ],
)
def test_bad_limits_are_refused_with_a_clear_error(kwargs, complaint):
    """Negative, NaN, non-numeric rates, a burst too small for its rate and a
    zero notice interval are refused when the config is made, naming the field."""
    with pytest.raises(ConfigError, match=complaint):
        RateLimit(**kwargs)


def test_ems_broker_refuses_a_negative_rate(procs, tmp_path):
    """`ems broker --agent-msgs-per-s -5` exits 2 with the reason, before binding anything."""
    proc = procs.ems("broker", "broker", "--data-dir", str(tmp_path / "data"), "--bind", "tcp://127.0.0.1:0", "--agent-msgs-per-s", "-5")
    assert proc.wait(30) == 2
    assert "rate limit msgs_per_s must be a number >= 0 (0 turns the limit off), not -5.0" in proc.log_path.read_text()
