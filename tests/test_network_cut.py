"""A network cut at test size: one agent's link black-holed for 5 s, then healed;
and the two client fixes the cut showed to be needed (an unanswered connect is
dialled again; a repeated WELCOME is not a reconnect).

`python -m bench.netcut` runs the 60 s cut with the product heartbeat
(``make chaos`` does, as scenario 5 of bench.reliability).
"""
from __future__ import annotations

from dataclasses import replace

import zmq
from zmq.utils.monitor import recv_monitor_message

from bench.netcut import run_netcut
from bench.netns import NetNamespace
from broker.core import keys
from broker.core.client import BusClient
from broker.core.config import ClientConfig, Timing
from broker.core.envelope import Kind
from conftest import wait_for


def test_black_holed_agent_goes_offline_comes_back_and_loses_nothing(tmp_path):
    """Tried: a real `ems agent` and an agent streaming numbered events through its
    durable outbox, both in a network namespace whose link is black-holed for 5 s
    (frames are sent and vanish: no RST, no ICMP), with 0.5 s heartbeats (offline
    after 1.5 s); a command is sent to the agent once the broker reports it offline.
    """
    report = run_netcut(tmp_path, cut_s=5.0, heartbeat_s=0.5, rate=50.0, lead_s=1.0, settle_s=45.0, progress=print)
    print(report)
    assert report.frames_discarded > 0, "the black hole ate no frame: the link was never cut"
    assert report.offline_after_s is not None, "the broker did not report the agent offline before the heal"
    assert report.stored_during_cut == 0, "events were stored while the agent was cut off"
    assert report.created_during_cut > 0
    assert report.online_after_s is not None, "the agent did not come back online after the heal"
    assert report.stream_finished, report.notes
    assert (report.stored, report.missing, report.duplicated) == (report.events, 0, 0)
    assert report.command_first_status == "queued"
    assert report.command_status == "done"
    assert report.command_runs == 1
    assert report.command_results == 1


def test_black_holed_connect_is_abandoned_and_retried(tmp_path):
    """Tried: a client dialling an address inside a black-holed namespace (SYNs vanish,
    no RST). libzmq must give up the attempt after ``connect_timeout_s`` and dial
    again, instead of leaving the SYN in the kernel's growing retransmission backoff
    (which delayed reconnecting after a heal by up to one backoff step)."""
    timing = replace(Timing.fast(), connect_timeout_s=0.5)
    with NetNamespace.create() as ns:
        ns.cut()
        client = BusClient(ClientConfig(server=f"tcp://{ns.ns_address}:7741", server_key=keys.generate().public,
                                        timing=timing), keys.generate())
        client.connect()
        monitor = client.socket.get_monitor_socket(zmq.EVENT_CONNECT_RETRIED)
        events = []

        def retried_twice() -> bool:
            while monitor.poll(0):
                events.append(recv_monitor_message(monitor))
            return len(events) >= 2

        try:
            wait_for(retried_twice, timeout_s=10, what="two abandoned connects")
            assert {e["event"] for e in events} == {zmq.EVENT_CONNECT_RETRIED}
            assert not client.ready
        finally:
            monitor.close(linger=0)
            client.close()


def test_repeated_hello_answers_do_not_count_as_reconnects(bus):
    """Tried: a HELLO repeated on a welcomed connection (as queued repeats arrive after a
    cut heals). The broker answers each; the client must not take the extra WELCOME
    for a reconnect (which re-sends every unacknowledged outbox record)."""
    peer = bus.peer("hello-twice", "operator")
    generation = peer.generation
    peer.send(Kind.HELLO, data={"client_id": "hello-twice"})
    reply = peer.call(Kind.REQUEST, {"op": "status", "args": {}}, timeout_s=5)  # answered after the WELCOME
    assert reply.kind is Kind.REPLY
    assert peer.ready
    assert peer.generation == generation
