"""The broker's byte budget per receiving peer (broker/server/flow.py).

A subscriber that stops reading must not grow the broker's memory beyond
its budget: live fan-out, fanned-out batch records, screen frames and
presence to it are dropped (counted per peer, in ``ems status`` and as a
throttled ``slow_consumer`` event) once the bytes it has not taken exceed
the budget, while commands' statuses and results, replies and errors still
reach it. It receives again as soon as it reads. A peer from before credits
(empty heartbeats) is trusted up to each heartbeat.

The last test runs the broker as a real process with a paced agent at its
allowed rate, a healthy subscriber and a subscriber stopped with SIGSTOP,
and measures the broker's RSS.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from broker.core import keys
from broker.core.profile import Profile, save
from broker.core.client import BusClient, RateLimited
from broker.core.config import ClientConfig, DataDir, Timing
from broker.core.envelope import Kind, credit_body, credit_of, pack_body, pack_header
from broker.core.batches import pack_batch
from broker.core.errors import RemoteError, SendError
from broker.server.registry import KeyRegistry

from conftest import Bus, wait_for

REPO = Path(__file__).resolve().parent.parent
BUDGET = 64 * 1024
BODY = b"x" * 4096
#: heartbeats fast enough for readers to credit, a peer timeout long enough that a
#: silent subscriber stays connected through the test (the budget must bound it, not the timeout)
SLOW_TIMEOUT = Timing(heartbeat_s=0.2, peer_timeout_s=60.0, broker_timeout_s=60.0, reconnect_min_s=0.05, reconnect_max_s=0.5)


@pytest.fixture
def flowbus(tmp_path):
    b = Bus(tmp_path, SLOW_TIMEOUT)
    b.stop()
    b.config.peer_budget_bytes = BUDGET
    b.config.credit_every_bytes = BUDGET // 8
    b.start()
    b.admin.wait_ready(10)
    yield b
    b.close()


def _peer_flow(bus: Bus, client_id: str) -> dict:
    peers = bus.admin.request("status")["broker"]["flow"]["peers"]
    return next((p for p in peers if p["client_id"] == client_id), {"dropped": 0, "dropped_bytes": 0})


def _drops(bus: Bus) -> int:
    return bus.admin.request("status")["counters"].get("dropped_over_budget", 0)


def _fill(bus: Bus, agent: BusClient, reader: str) -> None:
    """Publish until ``reader`` (not reading) is over its budget."""
    sent = 0
    while _peer_flow(bus, reader)["dropped"] == 0:
        for _ in range(8):
            agent.publish(Kind.EVENT, "fill", body=BODY)
            sent += 1
        agent.poll(0.01)
        assert sent < 20 * BUDGET // len(BODY), "no drop after 20 budgets' worth"
    dropped = _peer_flow(bus, reader)["dropped"]
    while _peer_flow(bus, reader)["dropped"] == dropped:  # top up: even a small message no longer fits
        for _ in range(8):
            agent.publish(Kind.EVENT, "top", body=b"t" * 16)
        agent.poll(0.01)


def _read_all(client: BusClient, until, timeout_s: float = 10.0) -> list:
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen.extend(client.drain(1000, 0.05))
        if until(seen):
            return seen
    pytest.fail(f"reader saw {len(seen)} messages, not what it waited for")


# -- what a peer reports ---------------------------------------------------------------

@pytest.mark.parametrize("body,expected", [
    (b"", None), (credit_body(0), 0), (credit_body(12345), 12345), (credit_body(2**63 - 1), 2**63 - 1),
    (pack_body({"rx": 2**63}), None), (pack_body({"rx": 2**64 - 1}), None), (pack_body({"rx": -1}), None),
    (pack_body({"rx": 1.5}), None), (pack_body({"rx": True}), None), (pack_body({"rx": "12"}), None),
    (pack_body({"rx": None}), None), (pack_body([1]), None), (pack_body({"other": 3}), None), (b"\xc1", None),
    (pack_body({"rx": 1, "pad": "x" * 100}), None), (pack_body({"rx": [[[[1]]]]}), None), (b"\x81", None),
])
def test_credit_body_is_read_defensively(body, expected):
    """Tried: every malformed credit (negative, 2^63 and beyond, float, bool, string,
    not a map, truncated, oversized, nested): each counts as no credit, never an error."""
    assert credit_of(body) == expected


def test_hostile_heartbeat_bodies_do_not_credit_or_break_the_broker(flowbus):
    """Tried: from a stalled reader that reports credit, heartbeats claiming
    2^64-1, -1, garbage and an oversized body: none counts as credit, it stays
    over budget and the broker keeps routing. (A peer that claims exactly what
    was sent, or never reports at all, is trusted: see the module docstring.)"""
    agent, reader = flowbus.peer("a1"), flowbus.peer("op", "operator")
    reader.subscribe(["event.a1."])
    reader.socket.send_multipart([_hb_header(), credit_body(reader.received_bytes)])
    _fill(flowbus, agent, "op")
    for body in (pack_body({"rx": 2**64 - 1}), pack_body({"rx": -1}), b"\xc1\xc1", b"x" * 10_000):
        reader.socket.send_multipart([_hb_header(), body])
    before = _peer_flow(flowbus, "op")["dropped"]
    agent.publish(Kind.EVENT, "after", body=BODY)
    wait_for(lambda: _peer_flow(flowbus, "op")["dropped"] > before, what="still over budget")
    assert flowbus.admin.request("status")["counters"].get("internal_errors", 0) == 0


def _hb_header() -> bytes:
    return pack_header(Kind.HEARTBEAT)


# -- best effort: dropped over budget, delivered again after reading --------------------

def _send_event(bus, agent, name):
    agent.publish(Kind.EVENT, name, body=BODY)


def _send_frame(bus, agent, name):
    agent.publish(Kind.FRAME, name, body=pack_body({"v": 1, "seq": 1, "end": name}))


def _send_batch_record(bus, agent, name):
    agent.send(Kind.BATCH, body=pack_batch([(Kind.EVENT, name, f"m-{name}-{time.monotonic_ns()}", time.time(), BODY)]))


BEST_EFFORT = {
    "event": (_send_event, "event.a1."),
    "frame": (_send_frame, "frame.a1."),
    "batch record": (_send_batch_record, "event.a1."),
}


@pytest.mark.parametrize("kind", sorted(BEST_EFFORT))
def test_best_effort_is_dropped_over_budget_and_flows_after_reading(kind, flowbus):
    """Tried: a subscriber that stops reading while an agent keeps publishing;
    each best-effort kind is dropped for it (counted for that peer and in
    total), and reaches it again once it has read."""
    send, prefix = BEST_EFFORT[kind]
    agent, reader = flowbus.peer("a1"), flowbus.peer("op", "operator")
    reader.subscribe(sorted({"event.a1.", prefix}))
    _fill(flowbus, agent, "op")
    total = _drops(flowbus)
    send(flowbus, agent, "while-over")
    wait_for(lambda: _drops(flowbus) > total, what=f"the {kind} dropped over budget")
    got = _read_all(reader, lambda seen: sum(len(e.body) for e in seen) >= BUDGET // 2)
    assert not any(e.topic.endswith("while-over") for e in got)
    reader.drain(10_000, 0.3)  # take what is left, and credit it
    send(flowbus, agent, "after-reading")
    _read_all(reader, lambda seen: any(e.topic.endswith("after-reading") for e in seen))
    flow = _peer_flow(flowbus, "op")
    assert flow["dropped"] >= 1 and flow["dropped_bytes"] >= flow["dropped"]


def test_presence_is_best_effort_too(flowbus):
    """An agent coming online while an operator is over budget: its presence
    record is dropped for that operator (it is in the journal for the store)."""
    agent, reader = flowbus.peer("a1"), flowbus.peer("op", "operator")
    reader.subscribe(["event.a1.", "presence."])
    _fill(flowbus, agent, "op")
    total = _drops(flowbus)
    flowbus.peer("a2")
    wait_for(lambda: _drops(flowbus) > total, what="presence dropped over budget")
    got = _read_all(reader, lambda seen: sum(len(e.body) for e in seen) >= BUDGET // 2)
    assert not any(e.topic == "presence.a2" for e in got)


# -- never dropped: commands, statuses, results, replies, errors --------------------------

def _reply(bus, reader, agent):
    return reader.request("status")["broker"]["peers"] > 0


def _error(bus, reader, agent):
    with pytest.raises(RemoteError) as err:
        reader.send_command("nobody", "sysinfo", {"reason": "test"}, timeout_s=10)
    return err.value.code.name == "UNKNOWN_TARGET"


def _command_status_and_result(bus, reader, agent):
    status = reader.send_command("a1", "ping", {"reason": "flow test"}, timeout_s=10)
    cmd_id = status["id"]
    env = _read_all(agent, lambda seen: any(e.kind is Kind.COMMAND for e in seen))
    command = next(e for e in env if e.kind is Kind.COMMAND)
    agent.send(Kind.RESULT, command.topic, {"ok": True, "pong": 1}, corr=command.msg_id)
    return reader.wait_result(cmd_id, 10)["status"] == "done"


def _status_to_a_subscribed_sender(bus, reader, agent):
    """The sender also watches ``command.a1`` live, and is over budget when its
    command is queued: the live copy of the status is dropped, its own arrives."""
    reader.subscribe(["command.a1"])
    _fill(bus, agent, "op")
    return reader.send_command("a1", "ping", {"reason": "flow test"}, timeout_s=10)["status"] == "queued"


GUARANTEED = {"reply": _reply, "error": _error, "command status and result": _command_status_and_result,
              "status to a subscribed sender": _status_to_a_subscribed_sender}


@pytest.mark.parametrize("kind", sorted(GUARANTEED))
def test_guaranteed_traffic_reaches_a_peer_over_budget(kind, flowbus):
    """Tried: a peer over its byte budget asks, commands and gets an error;
    the broker sends it every reply, status, result and error (no drop counted)."""
    agent, reader = flowbus.peer("a1"), flowbus.peer("op", "operator")
    reader.subscribe(["event.a1."])
    _fill(flowbus, agent, "op")
    before = _peer_flow(flowbus, "op")["dropped"]
    assert GUARANTEED[kind](flowbus, reader, agent)
    if kind != "status to a subscribed sender":  # (there the live copy is dropped, and counted)
        assert _peer_flow(flowbus, "op")["dropped"] == before


def test_slow_consumer_event_is_published_and_throttled(flowbus):
    """A peer over budget is named once in a security/ops event, not once per drop."""
    agent, reader = flowbus.peer("a1"), flowbus.peer("op", "operator")
    watcher = flowbus.peer("sec", "admin")
    watcher.subscribe(["security.broker"])
    reader.subscribe(["event.a1."])
    _fill(flowbus, agent, "op")
    for _ in range(50):
        agent.publish(Kind.EVENT, "more", body=BODY)
    wait_for(lambda: _peer_flow(flowbus, "op")["dropped"] > 40, what="many drops")
    events = [e.data() for e in _read_all(watcher, lambda seen: any(e.data().get("event") == "slow_consumer" for e in seen))]
    slow = [e for e in events if e.get("event") == "slow_consumer"]
    assert len(slow) == 1 and slow[0]["client_id"] == "op" and "budget" in slow[0]["detail"]
    counters = flowbus.admin.request("status")["counters"]
    assert counters["security_slow_consumer"] == 1 and counters["dropped_over_budget"] > 40


# -- peers from before credits -----------------------------------------------------------

class OldClient(BusClient):
    """A client as it was before credits: its heartbeats are empty."""

    def _heartbeat(self) -> None:
        try:
            self.send(Kind.HEARTBEAT, body=b"")
        except SendError:
            pass


def _old_peer(bus: Bus, client_id: str, role: str) -> BusClient:
    pair = bus.enrol(client_id, role)
    c = OldClient(bus.client_config(), pair, hello={"client_id": client_id})
    bus.clients.append(c)
    c.connect()
    c.wait_ready(10)
    return c


def _in_flight_listed(bus: Bus, client_id: str) -> bool:
    """Whether ``client_id`` has more than one credit step in flight (status lists it)."""
    return any(p["client_id"] == client_id for p in bus.admin.request("status")["broker"]["flow"]["peers"])


def test_old_client_that_reads_gets_a_stream_of_several_budgets(flowbus):
    """An old client (empty heartbeats) that reads gets all of four budgets'
    worth, sent half a budget at a time: each heartbeat counts as having read
    everything sent before it."""
    agent, old = flowbus.peer("a1"), _old_peer(flowbus, "old", "operator")
    old.subscribe(["event.a1."])
    per_step, got = BUDGET // 2 // len(BODY), []
    for step in range(8):
        for i in range(per_step):
            agent.publish(Kind.EVENT, f"n{step}.{i}", body=BODY)

        def caught_up():
            got.extend(e for e in old.drain(1000, 0.05) if e.kind is Kind.EVENT)
            return len(got) == (step + 1) * per_step and not _in_flight_listed(flowbus, "old")

        wait_for(caught_up, what="the old client to read and heartbeat")
    assert _peer_flow(flowbus, "old")["dropped"] == 0


def test_old_client_that_stops_reading_holds_at_most_a_budget(flowbus):
    """Tried: an old client that never reads while four budgets' worth is published to it."""
    agent, old = flowbus.peer("a1"), _old_peer(flowbus, "old", "operator")
    old.subscribe(["event.a1."])
    # a barrier: an old client's heartbeat says "I read it all" and resets what it holds, so
    # the last one it sent before it stopped reading must be handled before the stream starts
    old.request("status")
    for i in range(4 * BUDGET // len(BODY)):
        agent.publish(Kind.EVENT, f"n{i}", body=BODY)
    wait_for(lambda: _peer_flow(flowbus, "old")["dropped"] > 0, what="drops for the stalled old client")
    taken = old.drain(10_000, 2.0) + old.drain(10_000, 0.5)
    assert 0 < sum(len(e.body) for e in taken if e.kind is Kind.EVENT) <= BUDGET


# -- the real thing: broker process, paced agent, SIGSTOPped subscriber, RSS -------------

STALLED_SCRIPT = r"""
import sys
from broker.core import keys
from broker.core.client import BusClient
from broker.core.config import ClientConfig, Timing
from broker.core.config import DataDir
from pathlib import Path
root, server, server_key, out = sys.argv[1:5]
pair = keys.load(DataDir(Path(root)).keys, "stalled")
c = BusClient(ClientConfig(server, server_key, Timing(heartbeat_s=5, peer_timeout_s=60, broker_timeout_s=60)), pair, hello={"client_id": "stalled"})
c.connect(); c.wait_ready(20); c.subscribe(["event.pub."])
with open(out, "a", buffering=1) as f:
    f.write("ready\n")
    while True:
        env = c.poll(0.5)
        if env is not None and env.topic.startswith("event.pub.after"):
            f.write(env.topic + "\n")
"""

PROCESS_BUDGET = 8 * 2**20
#: an agent's burst must fit a healthy reader's budget (the defaults: 16 MiB burst, 32 MiB budget);
#: the test scales both down to keep its run short, and keeps the default rate of 8 MiB/s
AGENT_BURST = 2 * 2**20
#: what the test publishes: ten budgets' worth, at the agent's allowed rate (8 MiB/s by default)
PUBLISHED = 10 * PROCESS_BUDGET
#: RSS the broker may grow by: the stalled peer's budget, the healthy one's, and 16 MiB for libzmq
#: buffers, SQLite and the Python heap; without the budget it grows by about PUBLISHED
RSS_MARGIN = 16 * 2**20


def _register(data: DataDir, names: dict[str, str]) -> dict[str, keys.KeyPair]:
    registry = KeyRegistry(data.broker_db)
    pairs = {}
    for name, role in names.items():
        pairs[name] = keys.load_or_create(data.keys, name)
        registry.add(pairs[name].public, name, role)
    registry.close()
    return pairs


def test_stalled_subscriber_process_keeps_broker_memory_bounded(procs, tmp_path):
    """Tried: a subscriber process that is SIGSTOPped while an enrolled agent
    publishes ten budgets' worth at its allowed rate. The broker's RSS grows by
    at most two budgets + 16 MiB, a healthy subscriber receives every event,
    the drops are counted for the stalled peer in `status`, and after SIGCONT the
    stalled subscriber receives new events again."""
    data = DataDir(tmp_path / "server").ensure()
    pairs = _register(data, {"admin": "admin", "pub": "agent", "healthy": "operator", "stalled": "operator"})
    broker = procs.ems("broker", "broker", "--data-dir", str(data.root), "--bind", "tcp://127.0.0.1:0", "--heartbeat-s", "5",
                       "--peer-budget-bytes", str(PROCESS_BUDGET), "--agent-burst-bytes", str(AGENT_BURST), env={"PYTHONPATH": str(REPO)})
    wait_for(data.endpoint_file.exists, 20, what="the broker to bind")
    server, server_key = data.endpoint_file.read_text().strip(), keys.load(data.keys, "broker").public
    config = ClientConfig(server, server_key, Timing(heartbeat_s=5, peer_timeout_s=60, broker_timeout_s=60))
    clients = {name: BusClient(config, pairs[name], hello={"client_id": name}) for name in ("admin", "pub")}
    healthy = HealthyReader(config, pairs["healthy"], ["event.pub."])
    out = tmp_path / "stalled.out"
    stalled = subprocess.Popen([sys.executable, "-c", STALLED_SCRIPT, str(data.root), server, server_key, str(out)],
                               env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=str(tmp_path))
    procs.procs.append(stalled)
    try:
        for c in clients.values():
            c.connect()
            c.wait_ready(20)
        healthy.start()
        assert healthy.ready.wait(30) and healthy.error is None, healthy.error
        wait_for(lambda: stalled.poll() is not None or (out.exists() and "ready" in out.read_text()), 30, what="the stalled subscriber to subscribe")
        assert stalled.poll() is None, "the subscriber process died"
        stalled.send_signal(signal.SIGSTOP)
        rss = psutil.Process(broker.pid)
        baseline = rss.memory_info().rss
        peak = _publish_at_allowed_rate(clients["pub"], rss, "bulk", PUBLISHED)
        routed = -1  # what the agent's rate limit let through, once the broker has routed the last of it

        def healthy_has_all():
            nonlocal peak, routed
            peak = max(peak, rss.memory_info().rss)
            # the publisher's last messages may still wait in the broker's input when it returns:
            # the count is final once two readings a poll apart agree
            before, routed = routed, clients["admin"].request("status")["counters"]["routed"]
            return routed == before and healthy.events >= routed

        wait_for(healthy_has_all, 60, interval_s=0.1, what="the healthy subscriber to get every routed event")
        assert routed >= PUBLISHED // len(BIG) // 2, "the agent's own pacing kept it far below its allowed rate"
        assert healthy.events == routed
        growth = peak - baseline
        assert growth <= 2 * PROCESS_BUDGET + RSS_MARGIN, f"broker RSS grew by {growth / 2**20:.1f} MiB"
        status = clients["admin"].request("status")
        flow = {p["client_id"]: p for p in status["broker"]["flow"]["peers"]}
        assert flow["stalled"]["dropped_bytes"] >= routed * len(BIG) - 2 * PROCESS_BUDGET
        assert "healthy" not in flow or flow["healthy"]["dropped"] == 0
        assert status["counters"]["dropped_over_budget"] == flow["stalled"]["dropped"]
        save(data, Profile(server=server, server_key=server_key, key_name="admin", client_id="admin"))
        shown = subprocess.run([sys.executable, "-m", "broker.cli.main", "status", "--data-dir", str(data.root)], check=True,
                               capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
        assert "live messages dropped over it" in shown
        assert any(line.split()[:1] == ["stalled"] and f"{flow['stalled']['dropped']:,}" in line for line in shown.splitlines()), shown
        stalled.send_signal(signal.SIGCONT)
        _publish_until_seen(clients, out)
    finally:
        stalled.send_signal(signal.SIGCONT)
        healthy.stop.set()
        healthy.join(10)
        for c in clients.values():
            c.close()


BIG = b"b" * (64 * 1024)


def _publish_at_allowed_rate(pub: BusClient, rss: psutil.Process, name: str, total: int) -> int:
    """Publish ``total`` bytes of events as fast as the agent's pacing allows; the peak broker RSS seen."""
    peak, sent = 0, 0
    while sent < total // len(BIG):
        try:
            pub.publish(Kind.EVENT, f"{name}.{sent}", body=BIG)
            sent += 1
        except RateLimited:
            pub.poll(0.005)
        if sent % 16 == 0:
            peak = max(peak, rss.memory_info().rss)
    return peak


class HealthyReader(threading.Thread):
    """A subscriber that reads all the time, on its own thread (its BusClient lives there)."""

    def __init__(self, config: ClientConfig, pair: keys.KeyPair, prefixes: list[str]):
        super().__init__(name="healthy-reader", daemon=True)
        self.config, self.pair, self.prefixes = config, pair, prefixes
        self.events = 0
        self.error: Exception | None = None
        self.ready, self.stop = threading.Event(), threading.Event()

    def run(self) -> None:
        client = BusClient(self.config, self.pair, hello={"client_id": "healthy"})
        try:
            client.connect()
            client.wait_ready(20)
            client.subscribe(self.prefixes)
            self.ready.set()
            while not self.stop.is_set():
                self.events += sum(1 for e in client.drain(1000, 0.05) if e.kind is Kind.EVENT)
        except Exception as exc:  # reported by the test
            self.error = exc
            self.ready.set()
        finally:
            client.close()


def _publish_until_seen(clients: dict, out: Path) -> None:
    """After SIGCONT: the stalled subscriber reads its backlog, credits, and gets new events."""
    pub = clients["pub"]
    deadline = time.monotonic() + 60
    n = 0
    while time.monotonic() < deadline:
        try:
            pub.publish(Kind.EVENT, f"after.{n}", body=b"small")
            n += 1
        except RateLimited:
            pass
        pub.poll(0.1)
        if "event.pub.after" in out.read_text():
            return
    pytest.fail("the stalled subscriber never received a new event after SIGCONT")
