"""bench/fleet.py at test size: 40 lean clients in two processes per system,
fast heartbeats (0.5 s), each system really started, measured, half its
clients SIGKILLed (EMS) and its server SIGKILLed and restarted.
`python -m bench.fleet` runs the full sizes."""
from __future__ import annotations

import pytest

from bench.fleet import EmsSide, FleetRun, FloorSide, MosquittoSide, Settings, served_all, shards
from bench.fleet_clients import PINGREQ, PUBLISH, mqtt_packets, mqtt_publish

N = 40


def small() -> Settings:
    return Settings(sizes=(N,), per_process=N // 2, heartbeat_s=0.5, event_s=1.0, settle_s=1.5, window_s=1.0,
                    storm_timeout_s=60.0)


def test_ems_fleet_presence_follows_the_agents_and_all_come_back_after_a_broker_restart(tmp_path):
    """The broker's online list matches the connected agents; a SIGKILLed client
    process's agents go offline and no live one does; after a SIGKILL and restart
    of the broker every agent is welcomed again."""
    s = small()
    r = FleetRun(EmsSide(s, tmp_path, N), s).run()
    assert "error" not in r, r["error"]
    assert r["presence_steady"] == {"connected": N, "broker_online": N, "missing": 0, "extra": 0}
    kill = r["presence_kill"]
    assert (kill["killed"], kill["marked_offline"], kill["false_offline"]) == (N // 2, N // 2, 0)
    assert r["storm_back"] == N and r["storm_failed"] == 0 and r["storm_broker_online"] == N
    assert r["client_counts"]["event"] > 0 and r["client_counts"]["welcome"] >= N
    assert served_all(r)


@pytest.mark.parametrize("side", [FloorSide, MosquittoSide], ids=["floor", "mosquitto"])
def test_floor_and_mosquitto_fleets_connect_send_and_reconnect(tmp_path, side):
    """The same clients against the libzmq floor and against Mosquitto: all
    connect, send events and heartbeats, and come back after a server restart."""
    s = small()
    r = FleetRun(side(s, tmp_path, N), s).run()
    assert "error" not in r, r["error"]
    assert r["ready_in_window"] == N
    assert r["events_per_s"] > 0 and r["rss_steady_mb"] > 0
    assert r["storm_back"] == N and r["storm_failed"] == 0
    if side is MosquittoSide:
        assert r["client_counts"]["received"] > 0  # the subscriber to event/# got the publishes


def test_mqtt_packets_are_split_whole_and_partial_ones_wait():
    """A 300-byte PUBLISH (two-byte remaining length), a PINGREQ, then half a packet."""
    publish = mqtt_publish("event/a/sysinfo", b"x" * 300)
    buf = bytearray(publish + PINGREQ + publish[:10])
    packets = mqtt_packets(buf)
    assert [kind for kind, _ in packets] == [PUBLISH, PINGREQ[0] >> 4]
    assert packets[0][1].endswith(b"x" * 300)
    assert bytes(buf) == publish[:10]


def test_shards_cover_every_client_within_the_limit():
    """Uneven splits, the per-process limit, and two processes when one is to be killed."""
    for n, per, two in ((10_000, 2500, True), (1000, 2500, True), (1000, 2500, False), (7, 3, False)):
        parts = shards(n, per, two)
        assert sorted(i for part in parts for i in part) == list(range(n))
        assert max(len(p) for p in parts) <= per
        assert len(parts) >= (2 if two else 1)
