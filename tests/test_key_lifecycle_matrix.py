"""Key lifecycle: every key state x every enrolment path, on a real broker.

A client id ``desk-7`` is put in one of six states (``unknown``; claimed by
another ``pending`` key; held by an ``accepted``, online agent; claimed by a
``rejected`` key; ``revoked`` and then unblocked by an admin; revoked and
``blocked``). Then one enrolment path runs against it with a fresh Curve key
K claiming ``desk-7``:

- ``hello``: K says HELLO without a token (a re-enrolment if the id is known);
- ``token``: K says HELLO with the server's enrolment token;
- ``manual_accept``: K says HELLO, then an admin accepts K's key prefix;
- ``revoke_id``: K says HELLO, then an admin revokes ``desk-7``;
- ``revoke_key``: K says HELLO, then an admin revokes the prefix of the key
  that put the id in its state (K's own when the id was unknown).

Each case checks the resulting key states, whether K is welcomed, whether
the id is blocked, and the security event raised about the claim, whose
subject (``client_id``) must be ``desk-7``, not K's ``pending-*``
placeholder. A second matrix does the same for reserved ids (the broker's,
services', operators', placeholders). Then the attacks that broke the old
code, a one-source flood of 1,000+ keys with legitimate enrolment during
it, the total cap, and the ``ems keys`` CLI (bulk reject, revoke, unblock).
"""
from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker.core import keys
from broker.core.profile import Profile, save
from broker.core.client import AccessRevoked, BusClient
from broker.core.config import ClientConfig, Timing
from broker.core.envelope import ErrorCode, Kind
from broker.core.errors import RemoteError
from broker.server.loop import serve_in_thread

from conftest import Bus, ManualClock, next_message, wait_for

X = "desk-7"
TOKEN = "seven sturdy enrolment words for the fleet"
CLAIM_EVENTS = ("reenrolment", "blocked_id_claimed", "reserved_id_claimed")
STATES = ("unknown", "pending", "accepted", "rejected", "revoked", "blocked")
PATHS = ("hello", "token", "manual_accept", "revoke_id", "revoke_key")


# -- helpers -------------------------------------------------------------------
def drive(client: BusClient, state: str, timeout_s: float = 5.0) -> None:
    """Poll ``client`` until it is in ``state`` (it changes state only inside poll)."""
    wait_for(lambda: client.poll(0.05) is None and client.state == state, timeout_s, what=f"client state {state}")


def cut_off(client: BusClient) -> None:
    """``client`` is told its key is revoked (AccessRevoked) and closes its socket."""
    with pytest.raises(AccessRevoked):
        wait_for(lambda: client.poll(0.05) and False, 5, what="AccessRevoked")
    assert client.socket is None


def states(bus: Bus) -> dict[str, str]:
    return {r["public_key"]: r["state"] for r in bus.admin.request("keys.list")}


def blocked(bus: Bus) -> set[str]:
    return {b["client_id"] for b in bus.admin.request("keys.blocked")}


def claim_counts(bus: Bus) -> dict[str, int]:
    return {e: bus.broker.counters[f"security_{e}"] for e in CLAIM_EVENTS}


def security_about(watcher: BusClient, event: str, key: str) -> dict:
    """The next ``event`` on ``security.broker`` raised by ``key``."""
    env = next_message(watcher, lambda e: e.kind is Kind.SECURITY and e.data()["event"] == event and e.data()["key"] == key)
    assert env.topic == "security.broker" and env.sender == ""
    return env.data()


def audit_row(watcher: BusClient, action: str) -> dict:
    env = next_message(watcher, lambda e: e.topic.startswith("audit.") and e.data()["action"] == action)
    return env.data()


def restart_with(bus: Bus, **settings) -> None:
    """Restart the broker with changed settings; the watcher is greeted and
    subscribed again before this returns (a request re-introduces it)."""
    bus.stop()
    for name, value in settings.items():
        setattr(bus.config, name, value)
    bus.start()
    bus.watcher.request("status")


def from_source(bus: Bus, source: str) -> ClientConfig:
    """A client config that dials the broker from loopback address ``source``."""
    return ClientConfig(server=f"tcp://{source}:0;{bus.endpoint.removeprefix('tcp://')}", server_key=bus.server_key,
                        timing=bus.timing)


def newcomer(bus: Bus, claim: str, token: str | None = None, config: ClientConfig | None = None) -> BusClient:
    """A fresh key saying HELLO as ``claim`` (with ``token``); not waited for."""
    hello = {"client_id": claim, "hostname": f"{claim}-host"}
    if token is not None:
        hello["token"] = token
    client = BusClient(config or bus.client_config(), keys.generate(), hello=hello)
    bus.clients.append(client)
    client.connect()
    return client


def steady_timing() -> Timing:
    """Fast heartbeats, but a peer left unpolled while a test waits on the
    admin or a CLI process stays live for 30 s, so that counts of live
    connections closed are exact even on a loaded machine."""
    return Timing(heartbeat_s=0.2, peer_timeout_s=30.0, broker_timeout_s=30.0, reconnect_min_s=0.05,
                  reconnect_max_s=0.5, request_timeout_s=10.0)


@pytest.fixture
def watched(tmp_path):
    """A bus plus an admin watching ``security.`` and ``audit.``."""
    bus = Bus(tmp_path, steady_timing())
    watcher = bus.peer("sec-watch", role="admin")
    watcher.subscribe(["security.", "audit."])
    bus.watcher = watcher
    yield bus
    bus.close()


# -- arranging one state of the id -------------------------------------------------
def arrange(bus: Bus, state: str) -> BusClient | None:
    """Put ``desk-7`` in ``state``; returns the client whose key did it (None if unknown)."""
    if state == "unknown":
        return None
    if state in ("pending", "rejected"):
        other = newcomer(bus, X)
        drive(other, "pending")
        if state == "rejected":
            bus.admin.request("keys.reject", id=other.keypair.public)
            cut_off(other)
        return other
    other = bus.peer(X)
    if state in ("revoked", "blocked"):
        bus.admin.request("keys.revoke", id=X, reason="stolen")
        cut_off(other)
        if state == "revoked":
            bus.admin.request("keys.unblock", id=X, reason="machine recovered")
    return other


@dataclass(frozen=True)
class Outcome:
    welcomed: bool
    new_key: str  # the state of K's key afterwards
    other_key: str | None  # the state of the arranged key afterwards
    event: str | None  # the claim's security event (subject desk-7)
    blocked: bool  # desk-7 blocked afterwards


_OTHER = {"unknown": None, "pending": "pending", "accepted": "accepted", "rejected": "rejected", "revoked": "revoked", "blocked": "revoked"}
_EVENT = {"unknown": None, "pending": None, "accepted": "reenrolment", "rejected": None, "revoked": "reenrolment",
          "blocked": "blocked_id_claimed"}


def expected(state: str, path: str) -> Outcome:
    """The rules, written out per state and path (see the module docstring)."""
    other, event, was_blocked = _OTHER[state], _EVENT[state], state == "blocked"
    admissible_by_token = state in ("unknown", "pending", "rejected")  # a new id: never admitted before
    if path == "hello":
        return Outcome(False, "pending", other, event, was_blocked)
    if path == "token":
        return Outcome(admissible_by_token, "accepted" if admissible_by_token else "pending", other, event, was_blocked)
    if path == "manual_accept":
        if was_blocked:
            return Outcome(False, "pending", other, event, True)
        replaced = "revoked" if state == "accepted" else other  # the key it replaces
        return Outcome(True, "accepted", replaced, event, False)
    if path == "revoke_id":
        return Outcome(False, "revoked", None if other is None else "revoked", event, True)
    # revoke_key: an accepted key's prefix revokes its id; any other key alone
    if state == "unknown":
        return Outcome(False, "revoked", None, None, False)
    if state == "accepted":
        return Outcome(False, "revoked", "revoked", event, True)
    return Outcome(False, "pending", "revoked", event, was_blocked)


def run_path(bus: Bus, path: str, state: str, other: BusClient | None) -> tuple[BusClient, dict | None]:
    """Run ``path`` with a fresh key K claiming desk-7; returns K and the admin's answer."""
    k = newcomer(bus, X, token=TOKEN if path == "token" else None)
    if path == "token" and expected(state, path).welcomed:
        k.wait_ready(5)
        return k, None
    drive(k, "pending")
    if path == "manual_accept":
        try:
            return k, bus.admin.request("keys.accept", id=k.keypair.public[:10])
        except RemoteError as exc:
            return k, {"error": exc.code}
    if path == "revoke_id":
        return k, bus.admin.request("keys.revoke", id=X)
    if path == "revoke_key":
        target = other.keypair.public if other is not None else k.keypair.public
        return k, bus.admin.request("keys.revoke", id=target[:10])
    return k, None


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("state", STATES)
def test_state_by_path(watched, state, path):
    """Tried: desk-7 in ``state``, then a fresh key K claims desk-7 by ``path``.

    Expected (``expected()``): the token admits only an id never admitted
    (unknown, or only pending/rejected claims); a manual accept may replace
    a known agent's key, never a blocked id's; revoking desk-7 revokes every
    key that ever claimed it and blocks it; revoking an accepted key's
    prefix revokes its id, any other key's prefix that key alone. Each
    claim on a known or blocked id is a security event whose subject is
    desk-7 and whose key is K's; a refused accept is ``key_op_refused``.
    """
    bus = watched
    if path == "token":
        restart_with(bus, enrol_token=TOKEN)
    other = arrange(bus, state)
    before = claim_counts(bus)
    k, answer = run_path(bus, path, state, other)
    want = expected(state, path)

    if want.welcomed and k.state != "ready":
        k.wait_ready(5)  # an accepted peer is told to say HELLO again
    assert (k.state == "ready") is want.welcomed
    if want.welcomed:
        assert k.client_id == X and k.role == "agent"
    after = states(bus)
    if want.new_key == "revoked":
        cut_off(k)
    assert after[k.keypair.public] == want.new_key
    if other is not None:
        assert after[other.keypair.public] == want.other_key
        if _OTHER[state] == "accepted" and want.other_key == "revoked":
            cut_off(other)  # a replaced or revoked live agent is cut off at once
    assert (X in blocked(bus)) is want.blocked
    counts = claim_counts(bus)
    for event in CLAIM_EVENTS:
        assert (counts[event] > before[event]) is (event == want.event), event
    if want.event is not None:
        record = security_about(bus.watcher, want.event, k.keypair.public)
        assert record["client_id"] == X and record["peer_id"] == X and record["address"] == "127.0.0.1"
    check_answer(bus, state, path, answer, k)


def check_answer(bus: Bus, state: str, path: str, answer: dict | None, k: BusClient) -> None:
    """What the admin was told, and the audit row naming the admin."""
    if path == "manual_accept" and state == "blocked":
        assert answer == {"error": ErrorCode.BAD_REQUEST}
        refused = security_about(bus.watcher, "key_op_refused", bus.admin_keys.public)
        assert refused["client_id"] == X and "unblock" in refused["detail"]
    elif path == "revoke_id":
        counts = {"unknown": {"pending": 1}, "pending": {"pending": 2}, "accepted": {"accepted": 1, "pending": 1},
                  "rejected": {"rejected": 1, "pending": 1}, "revoked": {"pending": 1}, "blocked": {"pending": 1}}[state]
        assert answer["counts"] == counts and answer["by"] == "id" and answer["blocked"]
        assert answer["already_revoked"] == (1 if state in ("revoked", "blocked") else 0)
        assert answer["connections_closed"] == (2 if state in ("pending", "accepted") else 1)  # K and a live other
        row = audit_row(bus.watcher, "keys.revoke")
        assert row["operator"] == "admin" and row["target"] == X and row["detail"]["counts"] == counts
    elif path == "revoke_key":
        assert answer["by"] == ("id" if state == "accepted" else "key")
        assert sum(answer["counts"].values()) == {"accepted": 2, "revoked": 0, "blocked": 0}.get(state, 1)


# -- reserved ids ---------------------------------------------------------------------
RESERVED = ("broker", "persister", "store", "Broker", "admin-http", "pending-abcdef", "admin", "op-alice", "op-gone", "svc-sync")
RESERVED_PATHS = ("hello", "token", "manual_accept", "keys_add")


def arrange_reserved(bus: Bus, claim: str) -> str | None:
    """Holders of operator and service ids; returns the holder's key, if any."""
    if claim == "admin":
        return bus.admin_keys.public
    role = {"op-alice": "operator", "op-gone": "operator", "svc-sync": "service"}.get(claim)
    if role is None:
        return None
    pair = bus.enrol(claim, role)
    if claim == "op-gone":  # a rejected operator key still holds its id
        bus.admin.request("keys.reject", id=pair.public)
    return pair.public


@pytest.mark.parametrize("path", RESERVED_PATHS)
@pytest.mark.parametrize("claim", RESERVED)
def test_reserved_ids_are_never_taken(watched, claim, path):
    """Tried: a fresh key claims ``claim`` (the broker's or a service's name,
    a role name, a ``pending-*`` placeholder, an operator's or a service's
    id, whatever state its key is in) by HELLO, by HELLO with the enrolment
    token, by HELLO and an admin's accept, and an admin's ``keys.add`` of an
    agent key under that id.

    Expected: never welcomed; K stays pending; a ``reserved_id_claimed``
    security event whose subject is the claimed id; the accept and the
    add are BAD_REQUEST and a ``key_op_refused`` event about that id; the
    holder's key is untouched.
    """
    bus = watched
    if path == "token":
        restart_with(bus, enrol_token=TOKEN)
    holder = arrange_reserved(bus, claim)
    holder_state = states(bus).get(holder) if holder else None
    if path == "keys_add":
        with pytest.raises(RemoteError) as info:
            bus.admin.request("keys.add", public_key=keys.generate().public, client_id=claim, role="agent")
        assert info.value.code == ErrorCode.BAD_REQUEST
        refused = security_about(bus.watcher, "key_op_refused", bus.admin_keys.public)
        assert refused["client_id"] == claim
        return
    k = newcomer(bus, claim, token=TOKEN if path == "token" else None)
    drive(k, "pending")
    event = security_about(bus.watcher, "reserved_id_claimed", k.keypair.public)
    assert event["client_id"] == claim and event["peer_id"] == claim
    if path == "manual_accept":
        with pytest.raises(RemoteError) as info:
            bus.admin.request("keys.accept", id=k.keypair.public[:10])
        assert info.value.code == ErrorCode.BAD_REQUEST
        assert security_about(bus.watcher, "key_op_refused", bus.admin_keys.public)["client_id"] == claim
    drive(k, "pending")
    after = states(bus)
    assert after[k.keypair.public] == "pending" and k.client_id == ""
    if holder:
        assert after[holder] == holder_state


# -- the attacks that broke the old code ---------------------------------------------------
def ems_keys(procs, bus: Bus, *args: str) -> str:
    """Run the real ``ems keys ARGS`` against the bus (admin profile); its output."""
    save(bus.data, Profile(server=bus.endpoint, server_key=bus.server_key, key_name="admin", client_id="admin"))
    proc = procs.ems(f"keys-{time.monotonic_ns()}", "keys", *args, "--data-dir", str(bus.data.root))
    assert proc.wait(60) == 0, proc.log_path.read_text()
    return proc.log_path.read_text()


def test_decoy_pending_key_does_not_save_the_live_key(watched, procs):
    """Tried (the decoy attack): the holder of desk-7's live key opens a
    fresh key claiming desk-7 (pending), hoping `ems keys revoke desk-7`
    revokes the decoy while the live key stays accepted.

    Expected: the CLI says it revoked 2 keys of desk-7 (1 accepted,
    1 pending) and that desk-7 is blocked; the live agent is cut off at
    once, goes offline, cannot reconnect (ZAP denial); a third key claiming
    desk-7 is pending with a ``blocked_id_claimed`` event about desk-7; the
    live key knocking again is a ``connection_refused`` event about desk-7.
    """
    bus = watched
    bus.watcher.subscribe(["presence."])
    live = bus.peer(X)
    next_message(bus.watcher, lambda e: e.kind is Kind.PRESENCE and e.data()["state"] == "online")
    decoy = newcomer(bus, X)
    drive(decoy, "pending")
    assert security_about(bus.watcher, "reenrolment", decoy.keypair.public)["client_id"] == X

    out = ems_keys(procs, bus, "revoke", X, "--reason", "laptop stolen")
    assert "revoked 2 key(s) of desk-7: 1 accepted, 1 pending" in out
    assert "desk-7 is blocked" in out and "2 live connection(s) closed" in out
    cut_off(live)
    cut_off(decoy)
    offline = next_message(bus.watcher, lambda e: e.kind is Kind.PRESENCE and e.data()["state"] == "offline")
    assert offline.data()["client_id"] == X and X not in bus.broker.online
    assert {states(bus)[c.keypair.public] for c in (live, decoy)} == {"revoked"}
    row = audit_row(bus.watcher, "keys.revoke")
    assert row["operator"] == "admin" and row["reason"] == "laptop stolen" and row["detail"]["counts"] == {"accepted": 1, "pending": 1}

    denied = bus.broker.counters["zap_denied"]
    again = bus.client(live.keypair, hello={"client_id": X}, ready=False)
    wait_for(lambda: bus.broker.counters["zap_denied"] > denied, what="ZAP denial of the revoked live key")
    assert again.state != "ready"
    knock = security_about(bus.watcher, "connection_refused", live.keypair.public)
    assert knock["client_id"] == X and knock["role"] == "revoked" and knock["address"] == "127.0.0.1"
    third = newcomer(bus, X)
    drive(third, "pending")
    assert security_about(bus.watcher, "blocked_id_claimed", third.keypair.public)["client_id"] == X


def test_revoked_machine_with_the_token_is_not_welcomed(watched):
    """Tried: with EMS_ENROL_TOKEN set, desk-7 is revoked; the machine makes
    a new key and presents the token under desk-7 — before and after a
    broker restart, and again after an admin lifts the block.

    Expected: never welcomed by the token: while blocked, a
    ``blocked_id_claimed`` event about desk-7 (the block and the claims
    survive the restart); after ``keys.unblock`` (audited, naming the
    admin) the id is still known, so a ``reenrolment`` event and pending;
    only an admin's accept admits it.
    """
    bus = watched
    restart_with(bus, enrol_token=TOKEN)
    machine = bus.peer(X)
    bus.admin.request("keys.revoke", id=X, reason="stolen")
    cut_off(machine)
    first = newcomer(bus, X, token=TOKEN)
    drive(first, "pending")
    assert security_about(bus.watcher, "blocked_id_claimed", first.keypair.public)["client_id"] == X
    assert bus.broker.counters["enrol_token_refused"] >= 1

    restart_with(bus)
    second = newcomer(bus, X, token=TOKEN)
    drive(second, "pending")
    assert security_about(bus.watcher, "blocked_id_claimed", second.keypair.public)["client_id"] == X

    assert bus.admin.request("keys.unblock", id=X, reason="returned to IT")["revoked_keys"] == 1
    row = audit_row(bus.watcher, "keys.unblock")
    assert row["operator"] == "admin" and row["target"] == X and row["reason"] == "returned to IT"
    third = newcomer(bus, X, token=TOKEN)
    drive(third, "pending")
    assert security_about(bus.watcher, "reenrolment", third.keypair.public)["client_id"] == X
    assert bus.admin.request("keys.accept", id=third.keypair.public[:10])["state"] == "accepted"
    third.wait_ready(5)
    assert third.client_id == X
    assert states(bus)[machine.keypair.public] == "revoked"


@pytest.mark.parametrize("claim", ["broker", "persister"])
def test_reserved_id_forgery_is_refused(watched, claim):
    """Tried: a token holder enrols as ``claim`` and sends SECURITY records on
    ``security.<claim>`` naming another client (``victim``), plus an EVENT.

    Expected: not welcomed (pending, a ``reserved_id_claimed`` event about
    ``claim``); every message is refused NOT_ENROLLED; a subscriber to
    ``security.`` receives nothing forged up to a sentinel from a real agent.
    """
    bus = watched
    restart_with(bus, enrol_token=TOKEN)
    agent = bus.peer("witness")
    forger = newcomer(bus, claim, token=TOKEN)
    drive(forger, "pending")
    assert security_about(bus.watcher, "reserved_id_claimed", forger.keypair.public)["client_id"] == claim
    refused = bus.broker.counters["refused_pending"]
    for _ in range(20):
        forger.send(Kind.SECURITY, f"security.{claim}", {"event": "forged", "client_id": "victim", "origin": "broker"})
        forger.send(Kind.EVENT, f"event.{claim}.x", {"forged": True})
    wait_for(lambda: bus.broker.counters["refused_pending"] - refused >= 40, what="40 refusals")
    agent.publish(Kind.SECURITY, "sentinel", {"event": "sentinel"})
    seen = []
    env = next_message(bus.watcher, lambda e: seen.append(e) or (e.kind is Kind.SECURITY and e.sender == "witness"))
    assert env.data()["event"] == "sentinel"
    assert not [e for e in seen if e.kind is Kind.SECURITY and e.data().get("event") == "forged"]
    assert all(e.sender in ("", "witness", "sec-watch", "admin") for e in seen)


# -- floods ---------------------------------------------------------------------------------
def start_flood(bus: Bus, source: str) -> subprocess.Popen:
    """tests/key_flood.py in its own process: fresh keys from ``source``, until stopped."""
    script = Path(__file__).with_name("key_flood.py")
    return subprocess.Popen([sys.executable, str(script), bus.endpoint, bus.server_key, source],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_flood(proc: subprocess.Popen) -> str:
    try:
        out, _ = proc.communicate(timeout=30)  # closes its stdin: that asks it to stop
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
    return out


def junk_seen(bus: Bus, source: str) -> int:
    """New keys from ``source`` whose HELLO the broker has handled."""
    return bus.broker.counters["pending_not_recorded"] + bus.broker.registry.pending_from(source)


def test_one_source_flood_leaves_enrolment_open(watched):
    """Tried: an outsider with the broker's public key makes a fresh key per
    connection from 127.0.0.2 and says HELLO with each, without pause (a
    separate process, up to 1,000 sockets open). While it runs, a token
    holder enrols from the same address, and another agent from
    127.0.0.3 waits for an admin who accepts it.

    Expected: at most ``max_pending_per_source`` (50) junk keys are
    recorded; the rest are unrecorded peers told NOT_ENROLLED ("not
    recorded"), counted, one throttled ``pending_cap`` event stream per
    address; the token holder is welcomed and the manual agent is pending,
    accepted and welcomed while junk keys keep arriving (1,000+ in all);
    the broker answers every HELLO and raises nothing.
    """
    bus = watched
    restart_with(bus, enrol_token=TOKEN)
    seen: list = []  # what the watcher receives (read while waiting, so it stays connected)

    def handled() -> int:
        seen.extend(bus.watcher.drain(1000, 0.01))
        return junk_seen(bus, "127.0.0.2")

    flood = start_flood(bus, "127.0.0.2")
    try:
        wait_for(lambda: handled() >= 300, 60, what="300 junk keys handled")
        started = time.monotonic()
        token_holder = newcomer(bus, "desk-token", token=TOKEN, config=from_source(bus, "127.0.0.2"))
        manual = newcomer(bus, "desk-manual", config=from_source(bus, "127.0.0.3"))
        token_holder.wait_ready(20)
        token_s = time.monotonic() - started
        drive(manual, "pending", 20)
        bus.admin.request("keys.accept", id="desk-manual")
        manual.wait_ready(20)
        both_s = time.monotonic() - started
        during = handled()
        wait_for(lambda: handled() >= max(1000, during + 200), 120, what="1,000+ junk keys, some after")
    finally:
        out = stop_flood(flood)
    made = int(out.strip().splitlines()[-1].split()[1])
    print(f"flood: {made} keys made, {junk_seen(bus, '127.0.0.2')} handled; token holder welcomed in {token_s:.2f} s,"
          f" manual agent accepted and welcomed in {both_s:.2f} s, {during} junk keys handled by then")
    assert bus.broker.registry.pending_from("127.0.0.2") == bus.config.max_pending_per_source
    assert bus.broker.counters["pending_not_recorded"] >= 1000 - bus.config.max_pending_per_source
    assert bus.broker.counters["security_pending_cap"] == bus.broker.counters["pending_not_recorded"]
    assert bus.broker.counters["internal_errors"] == 0
    assert token_holder.client_id == "desk-token" and manual.client_id == "desk-manual"
    caps = [e.data() for e in seen if e.kind is Kind.SECURITY and e.data()["event"] == "pending_cap"]
    assert 1 <= len(caps) <= 10, "one throttled stream of pending_cap events per address"
    assert all(c["address"] == "127.0.0.2" and "50 keys from 127.0.0.2 are already pending" in c["detail"] for c in caps)


def test_total_cap_keeps_token_enrolment_and_bulk_reject_reopens(watched):
    """Tried: with ``max_pending_keys`` 5, five keys from 127.0.0.2 fill the
    total; then an agent from 127.0.0.3 without a token, and one with it.

    Expected: the tokenless agent is not recorded (NOT_ENROLLED saying
    so, counted, a ``pending_cap`` event naming the id it claims); the
    token holder is welcomed. After ``keys.reject`` with ``pending``, the
    five are rejected in one audited step (one row, count 5, naming the
    admin) and cut off, and the waiting agent's next HELLO records it
    pending, so an admin can accept it.
    """
    bus = watched
    restart_with(bus, enrol_token=TOKEN, max_pending_keys=5)
    junk = [newcomer(bus, f"junk-{i}", config=from_source(bus, "127.0.0.2")) for i in range(5)]
    for client in junk:
        drive(client, "pending")
    waiting = newcomer(bus, "desk-late", config=from_source(bus, "127.0.0.3"))
    drive(waiting, "pending")
    event = security_about(bus.watcher, "pending_cap", waiting.keypair.public)
    assert event["client_id"] == "desk-late" and "5 keys are already pending" in event["detail"]
    assert waiting.keypair.public not in states(bus)
    token_holder = newcomer(bus, "desk-token", token=TOKEN, config=from_source(bus, "127.0.0.3"))
    token_holder.wait_ready(5)

    answer = bus.admin.request("keys.reject", pending=True, reason="flood")
    assert answer["rejected"] == 5 and answer["connections_closed"] == 5
    row = audit_row(bus.watcher, "keys.reject_pending")
    assert row["operator"] == "admin" and row["detail"]["count"] == 5 and row["reason"] == "flood"
    for client in junk:
        cut_off(client)
    wait_for(lambda: waiting.poll(0.05) is None and states(bus).get(waiting.keypair.public) == "pending", 10,
             what="the waiting agent recorded at its next HELLO")
    bus.admin.request("keys.accept", id="desk-late")
    waiting.wait_ready(5)
    assert waiting.client_id == "desk-late"


# -- the ems keys CLI -------------------------------------------------------------------------
class WallClockBus(Bus):
    """A bus whose key registry runs on a manual wall clock (key ages)."""

    def __init__(self, root: Path, timing: Timing, wall: ManualClock):
        self.wall = wall
        super().__init__(root, timing)

    def start(self) -> None:
        self.broker, self.thread = serve_in_thread(self.config, wall_clock=self.wall)
        self.config.bind = self.broker.endpoint


@pytest.fixture
def aged_bus(tmp_path):
    wall = ManualClock()
    wall.now = time.time()
    b = WallClockBus(tmp_path, steady_timing(), wall)
    yield b
    b.close()


def test_cli_bulk_reject_older_than_lists_and_unblocks(aged_bus, procs):
    """Tried: three keys pending for two hours and two for a minute, then
    ``ems keys reject --pending --older-than 30m``, ``ems keys list --state
    pending``, ``ems keys reject --pending``; a revoke by the prefix of a
    pending key, ``ems keys list --state blocked``, ``ems keys unblock``;
    bad flag combinations.

    Expected: the three old keys are rejected and cut off, one audit row
    with count 3 naming the admin; the list shows only the two young ones;
    the second bulk reject takes them; a pending key's prefix is revoked
    alone and blocks nothing (the CLI says so); a client id revoke blocks
    it and ``unblock`` lifts it; bad combinations fail with a message.
    """
    bus = aged_bus
    auditor = bus.peer("auditor", role="admin")
    auditor.subscribe(["audit."])
    old = [newcomer(bus, f"old-{i}") for i in range(3)]
    for client in old:
        drive(client, "pending")
    bus.wall.now += 7200
    young = [newcomer(bus, f"young-{i}") for i in range(2)]
    for client in young:
        drive(client, "pending")

    out = ems_keys(procs, bus, "reject", "--pending", "--older-than", "30m", "--reason", "stale")
    assert "rejected 3 pending key(s); 3 live connection(s) closed" in out
    for client in old:
        cut_off(client)
    row = audit_row(auditor, "keys.reject_pending")
    assert row["operator"] == "admin" and row["detail"]["count"] == 3 and row["reason"] == "stale"
    listed = ems_keys(procs, bus, "list", "--state", "pending")
    assert "young-0" in listed and "young-1" in listed and "old-0" not in listed
    assert "rejected 2 pending key(s)" in ems_keys(procs, bus, "reject", "--pending")

    lone = newcomer(bus, "lonely")
    drive(lone, "pending")
    out = ems_keys(procs, bus, "revoke", lone.keypair.public[:10])
    assert "revoked 1 key(s) of lonely: 1 pending" in out and "lonely is not blocked" in out
    bus.enrol("desk-9")
    out = ems_keys(procs, bus, "revoke", "desk-9")
    assert "desk-9 is blocked" in out
    assert "desk-9" in ems_keys(procs, bus, "list", "--state", "blocked")
    assert "desk-9 is no longer blocked" in ems_keys(procs, bus, "unblock", "desk-9", "--reason", "reissued")
    assert "no blocked client ids" in ems_keys(procs, bus, "list", "--state", "blocked")

    for bad in (["reject"], ["reject", "x", "--pending"], ["reject", "x", "--older-than", "1h"]):
        proc = procs.ems("keys-bad", "keys", *bad, "--data-dir", str(bus.data.root))
        assert proc.wait(60) != 0


def test_admin_cannot_revoke_own_key_and_refusals_are_counted(watched):
    """Tried: the admin revokes its own id and its own key prefix; accepts a
    revoked key, and re-adds it under a new id; unblocks an id that is not
    blocked; lists a bad state.

    Expected: each is BAD_REQUEST; the first four are ``key_op_refused``
    security events (counted) about the id; the admin keeps working.
    """
    bus = watched
    refused = bus.broker.counters["refused_key_ops"]
    for ident in ("admin", bus.admin_keys.public[:10]):
        with pytest.raises(RemoteError) as info:
            bus.admin.request("keys.revoke", id=ident)
        assert info.value.code == ErrorCode.BAD_REQUEST and "you are using" in str(info.value)
    gone = bus.peer("gone")
    bus.admin.request("keys.revoke", id="gone")
    cut_off(gone)
    bus.admin.request("keys.unblock", id="gone")
    with pytest.raises(RemoteError):
        bus.admin.request("keys.accept", id=gone.keypair.public[:10])
    with pytest.raises(RemoteError):
        bus.admin.request("keys.add", public_key=gone.keypair.public, client_id="gone-again")
    assert bus.broker.counters["refused_key_ops"] - refused == 4
    for op, args in (("keys.unblock", {"id": "never"}), ("keys.list", {"state": "lost"})):
        with pytest.raises(RemoteError) as info:
            bus.admin.request(op, **args)
        assert info.value.code == ErrorCode.BAD_REQUEST
    assert states(bus)[bus.admin_keys.public] == "accepted"


# -- pieces on their own ----------------------------------------------------------------------
@pytest.mark.parametrize("address, source", [
    ("127.0.0.1", "127.0.0.1"),
    ("::ffff:10.1.2.3", "10.1.2.3"),  # IPv4-mapped: the IPv4 address
    ("2001:db8:0:1::1", "2001:db8:0:1::/64"),  # one host may use a whole /64
    ("2001:db8:0:1:ffff:ffff:ffff:ffff", "2001:db8:0:1::/64"),
    ("fe80::1%eth0", "fe80::/64"),
    ("not an address", "not an address"),
    ("", ""),
])
def test_pending_caps_count_per_source(address, source):
    """Tried: IPv4, IPv4-mapped, IPv6 (two in one /64, a scoped link-local),
    and junk as ZMQ ``Peer-Address``. Expected: the source a cap counts."""
    from broker.server.enrolment import source_of

    assert source_of(address) == source


def test_registry_from_before_claims_and_blocks(tmp_path):
    """Tried: a ``broker.db`` written by the previous registry (no ``source``
    column, no ``key_claims``, no ``blocked_ids``) holding an accepted key
    and a pending decoy for desk-7, opened by the new registry; then
    ``revoke_client`` and a reopen.

    Expected: the claims are back-filled, so revoking desk-7 revokes both
    keys; the block and the claims survive reopening.
    """
    import sqlite3

    from broker.server.registry import KeyRegistry

    db = tmp_path / "broker.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE keys (public_key TEXT PRIMARY KEY, client_id TEXT NOT NULL, role TEXT NOT NULL,"
                     " state TEXT NOT NULL, label TEXT NOT NULL DEFAULT '', hostname TEXT NOT NULL DEFAULT '',"
                     " created REAL NOT NULL, updated REAL NOT NULL, last_seen REAL)")
        conn.executemany("INSERT INTO keys VALUES (?, ?, 'agent', ?, '', '', 1, 1, NULL)",
                         [("A" * 40, X, "accepted"), ("D" * 40, X, "pending")])
    registry = KeyRegistry(db)
    assert {r.public_key for r in registry.claimants(X)} == {"A" * 40, "D" * 40}
    changed = registry.revoke_client(X, "admin", "stolen")
    assert sorted(was for _, was in changed) == ["accepted", "pending"]
    registry.close()
    again = KeyRegistry(db)
    try:
        assert again.blocked(X)["blocked_by"] == "admin"
        assert {r.state for r in again.claimants(X)} == {"revoked"} and again.accepted_by_client(X) is None
        assert again.pending_count() == 0
    finally:
        again.close()
