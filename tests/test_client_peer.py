"""The client library driven from outside, as a peer would use it.

* ``BusClient.close(flush_s=...)``: what was handed to ``send`` before the
  close still leaves (even before the Curve handshake is done), with a
  context of the client's own and with a shared one; and the flush is
  bounded when there is no broker at all.
* Silence is measured from what arrived: a client that did not poll for
  longer than the broker timeout, while the broker's heartbeats waited in
  its socket, keeps its connection; a broker SIGKILLed for real is still
  noticed. The client runs on a manual clock, the broker is a real
  ``ems broker`` process.
* ``ems broker``: ``--no-agent-rate-limit`` is one flag that turns the limit
  off, ``--send-hwm`` reaches the ROUTER socket, bad values are refused.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import zmq

from broker.core import keys
from broker.server.cli import config_of
from broker.cli.main import build_parser
from broker.core.client import CONNECTING, READY, BusClient
from broker.core.config import BrokerConfig, ClientConfig, DataDir, RateLimit, Timing
from broker.core.envelope import Kind, agent_topic
from broker.core.errors import ConfigError
from broker.server.registry import KeyRegistry
from broker.server.loop import serve_in_thread

from conftest import ManualClock, wait_for

REPO = Path(__file__).resolve().parent.parent
EVENTS = 300


# -- close(flush_s) --------------------------------------------------------------
@pytest.mark.parametrize("shared_context", [False, True], ids=["own-context", "shared-context"])
def test_close_with_flush_sends_what_was_handed_before_the_handshake(bus, shared_context):
    """Tried: an agent that connects and, without waiting for its WELCOME (the
    Curve handshake has not even finished), sends 300 events and closes with
    ``flush_s``. With a context of its own, close blocks until they left; with
    a shared context, the context's I/O thread sends them after close returns.
    A subscriber receives every one of them, in order."""
    viewer = bus.peer("viewer-1", "viewer")
    viewer.subscribe(["event.agent-1."])
    pair = bus.enrol("agent-1")
    ctx = zmq.Context() if shared_context else None
    agent = BusClient(bus.client_config(), pair, hello={"client_id": "agent-1"}, context=ctx)
    agent.connect()
    sent = [agent.send(Kind.EVENT, agent_topic(Kind.EVENT, "agent-1", "flush"), {"n": n}) for n in range(EVENTS)]
    agent.close(flush_s=10)
    got: list[str] = []

    def received_all() -> bool:
        env = viewer.poll(0.1)
        if env is not None and env.topic == "event.agent-1.flush":
            got.append(env.msg_id)
        return len(got) == EVENTS

    wait_for(received_all, 20, interval_s=0, what=f"all {EVENTS} flushed events")
    assert got == sent
    if ctx is not None:
        ctx.term()  # returns: nothing is left to send


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("flush_s", [0, 0.2, 1.0])
def test_close_with_flush_returns_when_no_broker_answers(tmp_path, flush_s):
    """Tried: a client pointed at a port nobody listens on, with its HELLO and
    an event queued, closed with ``flush_s`` 0, 0.2 and 1 s: close returns (the
    test waits up to 30 s for it on another thread) and the client is closed."""
    server_key = keys.generate().public
    client = BusClient(ClientConfig(f"tcp://127.0.0.1:{_free_port()}", server_key, Timing.fast()), keys.generate())
    client.connect()
    client.send(Kind.EVENT, "event.nobody.x", {"lost": True})
    closer = threading.Thread(target=client.close, kwargs={"flush_s": flush_s})
    closer.start()
    closer.join(30)
    assert not closer.is_alive(), "close(flush_s) did not return"
    assert client.socket is None and client.state == "closed"


# -- silence is measured from what arrived -----------------------------------------
@pytest.fixture
def broker_process(procs, tmp_path):
    """A real ``ems broker`` (heartbeat 0.5 s: peers silent 1.5 s are offline) and an
    accepted operator key pair; yields (process, client config, key pair)."""
    data = DataDir(tmp_path / "server").ensure()
    pair = keys.load_or_create(data.keys, "op-1")
    registry = KeyRegistry(data.broker_db)
    registry.add(pair.public, "op-1", "operator")
    registry.close()
    proc = procs.ems("broker", "broker", "--data-dir", str(data.root), "--bind", "tcp://127.0.0.1:0", "--heartbeat-s", "0.5",
                     env={"PYTHONPATH": str(REPO)})
    wait_for(lambda: proc.poll() is not None or data.endpoint_file.exists(), 30, what="the broker to bind")
    assert proc.poll() is None, proc.log_path.read_text()
    config = ClientConfig(data.endpoint_file.read_text().strip(), keys.load(data.keys, "broker").public, Timing.fast())
    return proc, config, pair


def _ready_client(config: ClientConfig, pair, clock: ManualClock) -> BusClient:
    client = BusClient(config, pair, clock=clock)
    client.connect()
    wait_for(lambda: client.poll(0) is None and client.ready, 20, what="the broker's WELCOME")  # poll(0): the clock stands still
    return client


def _input_waiting(client: BusClient) -> bool:
    return bool(client.socket.get(zmq.EVENTS) & zmq.POLLIN)


def test_a_client_that_did_not_poll_keeps_a_live_broker(broker_process, caplog):
    """Tried: a client that does not poll while its clock moves 20 broker
    timeouts on, the broker's heartbeats waiting unread in its socket, then
    polls. It keeps its socket and its session (same socket, same WELCOME
    generation, READY, nothing logged about losing the broker), and the broker
    still answers it."""
    _proc, config, pair = broker_process
    clock = ManualClock()
    client = _ready_client(config, pair, clock)
    try:
        sock, generation = client.socket, client.generation
        wait_for(lambda: _input_waiting(client), 10, what="a broker heartbeat to wait in the socket")
        clock.now += 20 * client._broker_timeout_s
        client.poll(0)
        assert (client.socket, client.generation, client.state) == (sock, generation, READY)
        assert "lost the broker" not in caplog.text
        assert client.request("status", timeout_s=10)["broker"]["peers"] == 1  # this session, no second one
    finally:
        client.close()


def test_a_broker_that_really_died_is_still_noticed(broker_process, caplog):
    """Tried: the broker process SIGKILLed while its client does not poll;
    the client then reads what the broker sent before dying and its clock
    passes the broker timeout with nothing more arriving: it declares the
    broker lost and schedules a reconnect."""
    proc, config, pair = broker_process
    clock = ManualClock()
    client = _ready_client(config, pair, clock)
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: client.poll(0) is None and client.socket is not None and not _input_waiting(client), 10,
                 what="the dead broker's last messages to be read")
        assert client.state == READY
        clock.now += 2 * client._broker_timeout_s
        client.poll(0)
        assert client.state == CONNECTING and client.socket is None
        assert "lost the broker" in caplog.text
    finally:
        client.close()


# -- ems broker: one flag for the rate limit, the send queue as an option --------------------
def _broker_args(tmp_path, *flags: str):
    return build_parser().parse_args(["broker", "--data-dir", str(tmp_path / "data"), "--bind", "tcp://127.0.0.1:0", *flags])


@pytest.mark.parametrize(
    "flags, limit",
    [
        ((), RateLimit()),
        (("--no-agent-rate-limit",), RateLimit.off()),
        (("--no-agent-rate-limit", "--agent-msgs-per-s", "5"), RateLimit.off()),
        (("--agent-msgs-per-s", "0", "--agent-bytes-per-s", "0"), RateLimit.off()),  # the old way still works
        (("--agent-msgs-per-s", "5"), RateLimit(msgs_per_s=5)),
    ],
    ids=["default", "one-flag", "one-flag-wins", "old-two-zeros", "a-rate"],
)
def test_rate_limit_flags(tmp_path, flags, limit):
    """Each way of setting the per-agent limit on `ems broker` gives the limit it says
    (``--no-agent-rate-limit`` alone turns it off, whatever rates are given too)."""
    config = config_of(_broker_args(tmp_path, *flags))
    assert config.rate_limit == limit
    assert config.rate_limit.enabled == (limit != RateLimit.off())


@pytest.mark.parametrize("hwm", [1, 123, BrokerConfig.send_hwm])
def test_send_hwm_reaches_the_router(tmp_path, hwm):
    """`ems broker --send-hwm N` (and the default, from BrokerConfig alone) is the
    high-water mark of the broker's ROUTER socket, read back from the running socket."""
    flags = () if hwm == BrokerConfig.send_hwm else ("--send-hwm", str(hwm))
    config = config_of(_broker_args(tmp_path, *flags))
    DataDir(config.data_dir.root).ensure()
    broker, thread = serve_in_thread(config)
    try:
        assert broker.router.getsockopt(zmq.SNDHWM) == hwm
    finally:
        broker.stop()
        thread.join(10)


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "10"])
def test_a_send_hwm_that_is_no_bound_is_refused(tmp_path, value):
    """Tried: send_hwm 0 (libzmq: unbounded), negative, fractional, a bool and a
    string: BrokerConfig refuses each, naming the field."""
    with pytest.raises(ConfigError, match="send_hwm must be a whole number of messages >= 1"):
        BrokerConfig(DataDir(tmp_path), send_hwm=value)


def test_ems_broker_no_rate_limit_flag_runs_and_says_off(procs, tmp_path):
    """`ems broker --no-agent-rate-limit --send-hwm 50` runs, logs the limit as
    off and answers `status` with it off; `--send-hwm 0` exits 2 with the reason."""
    data = DataDir(tmp_path / "server").ensure()
    admin = keys.load_or_create(data.keys, "admin")
    registry = KeyRegistry(data.broker_db)
    registry.add(admin.public, "admin", "admin")
    registry.close()
    env = {"PYTHONPATH": str(REPO)}
    proc = procs.ems("broker", "broker", "--data-dir", str(data.root), "--bind", "tcp://127.0.0.1:0",
                     "--no-agent-rate-limit", "--send-hwm", "50", env=env)
    wait_for(lambda: proc.poll() is not None or data.endpoint_file.exists(), 30, what="the broker to bind")
    config = ClientConfig(data.endpoint_file.read_text().strip(), keys.load(data.keys, "broker").public, Timing.fast())
    with BusClient(config, admin, hello={"client_id": "admin"}) as client:
        client.connect()
        client.wait_ready(20)
        limit = client.request("status")["broker"]["rate_limit"]
    assert (limit["summary"], limit["msgs_per_s"], limit["bytes_per_s"]) == ("off", 0, 0)
    assert "per-agent rate limit: off" in proc.log_path.read_text()
    bad = procs.ems("bad", "broker", "--data-dir", str(tmp_path / "other"), "--bind", "tcp://127.0.0.1:0", "--send-hwm", "0", env=env)
    assert bad.wait(30) == 2
    assert "send_hwm must be a whole number of messages >= 1, not 0" in bad.log_path.read_text()
