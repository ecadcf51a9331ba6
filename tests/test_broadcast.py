"""Tracked broadcasts on a real broker: one chat message to a selector, per-recipient receipts.

Simulated agents (real Curve BusClients that publish receipts as EVENTs or in a BATCH, as agents do) for the
role matrix, bad input, receipts that must not count and a cancel; REAL ``ems agent`` processes (one on a private
Xvfb whose chat window the test reads with xdotool, two without a display, one of them offline at first) for the
end to end; and the CLI.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from bench.harness.xvfb import Xvfb
from broker.core import keys
from broker.core.batches import pack_batch
from broker.core.envelope import ErrorCode, Kind, new_id, pack_body
from broker.core.errors import RemoteError
from conftest import wait_for
from test_agent_e2e import xdotool

TEXT = "The office closes at 15:00 today: please save your work."
SEND = {"selector": "id:desk-*", "text": TEXT, "reason": "building maintenance"}


@pytest.fixture
def desks(bus):
    """Three simulated agents, online."""
    return {f"desk-{i}": bus.peer(f"desk-{i}") for i in (1, 2, 3)}


def recipients(answer: dict) -> dict[str, str]:
    return {r["client_id"]: r["status"] for r in answer["recipients"]}


def awake(bus, agent) -> None:
    """Until the broker counts ``agent`` online: a simulated agent that has not polled for a while (a slow,
    loaded machine) may have been timed out, and must say HELLO again before what it sends counts."""
    wait_for(lambda: (agent.poll(0.02), agent.client_id in bus.broker.online)[1], 20, what=f"{agent.client_id} online")


def receipt(bus, agent, message_id: str, status: str) -> None:
    """``agent`` reports a receipt, as an agent does."""
    awake(bus, agent)
    agent.publish(Kind.EVENT, "chat", {"ref": message_id, "message_id": message_id, "direction": "out", "status": status,
                                       "operator": "alice", "ts": time.time()})


def statuses_become(client, broadcast_id: str, expected: dict[str, str], timeout_s: float = 10.0) -> dict:
    def now():
        answer = client.request("broadcast.get", id=broadcast_id)
        return answer if recipients(answer) == expected else None
    return wait_for(now, timeout_s, interval_s=0.05, what=f"recipients {expected}")


# -- who may do what ---------------------------------------------------------------------------------
ROLES = ("viewer", "sender", "other operator", "admin", "service", "agent")
#: role -> what each op answers: "ok", "forbidden", or "bad" (allowed, refused for this caller: not its broadcast)
EXPECTED = {
    "viewer": {"broadcast.send": "forbidden", "broadcast.get": "counts", "broadcast.list": "counts", "broadcast.cancel": "forbidden"},
    "sender": {"broadcast.send": "ok", "broadcast.get": "text", "broadcast.list": "text", "broadcast.cancel": "ok"},
    "other operator": {"broadcast.send": "ok", "broadcast.get": "text", "broadcast.list": "text", "broadcast.cancel": "bad"},
    "admin": {"broadcast.send": "ok", "broadcast.get": "text", "broadcast.list": "text", "broadcast.cancel": "ok"},
    "service": {"broadcast.send": "forbidden", "broadcast.get": "text", "broadcast.list": "text", "broadcast.cancel": "forbidden"},
    "agent": {"broadcast.send": "forbidden", "broadcast.get": "forbidden", "broadcast.list": "forbidden",
              "broadcast.cancel": "forbidden"},
}


@pytest.mark.parametrize("role,op", [(r, o) for r in ROLES for o in EXPECTED["viewer"]])
def test_every_role_x_every_op(bus, desks, role, op):
    """Each role calls each broadcast op on a broadcast the sender made: a viewer sees counts and never the text,
    reason or recipients; only the sender or an admin cancels; a refusal is FORBIDDEN with a security event."""
    sender = bus.peer("op-sender", role="operator")
    made = sender.request("broadcast.send", **SEND)
    peer = sender if role == "sender" else bus.peer(f"who-{role.replace(' ', '-')}", role=role.replace("other ", ""))
    args = {"broadcast.send": SEND, "broadcast.get": {"id": made["id"]}, "broadcast.list": {},
            "broadcast.cancel": {"id": made["id"], "reason": "wrong text"}}[op]
    before = bus.broker.counters["security_forbidden"]
    expected = EXPECTED[role][op]
    try:
        answer = peer.request(op, **args)
    except RemoteError as exc:
        assert expected in ("forbidden", "bad"), (role, op, exc)
        assert exc.code == (ErrorCode.FORBIDDEN if expected == "forbidden" else ErrorCode.BAD_REQUEST)
        assert bus.broker.counters["security_forbidden"] == before + (expected == "forbidden")
        if expected == "bad":
            assert "only op-sender (who sent it) or an admin may cancel" in exc.detail
        return
    assert expected in ("ok", "counts", "text"), (role, op, answer)
    shown = answer[0] if op == "broadcast.list" else answer
    assert shown["count"] == 3 and sum(shown["counts"].values()) == 3
    if expected == "counts":
        assert not {"text", "reason", "recipients"} & set(shown), shown
        assert TEXT not in json.dumps(answer)
    elif op != "broadcast.list":
        assert shown["text"] == TEXT and shown["reason"] == "building maintenance" and set(recipients(shown)) == set(desks)


# -- bad input ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change,words", [
    ({"text": ""}, "text must be a non-empty string"),
    ({"text": "   \n "}, "text must say something"),
    ({"text": "x" * 10_001}, "at most 10000 characters"),
    ({"text": 42}, "text must be a string"),
    ({"reason": ""}, "a reason is needed"),
    ({"reason": "   "}, "a reason is needed"),
    ({"reason": "r" * 501}, "at most 500 characters"),
    ({"selector": "no-such-agent"}, "no accepted agent matches"),
    ({"selector": "group:"}, "group: needs a value"),
    ({"selector": ""}, "selector must be a non-empty string"),
    ({"max_parallel": -1}, "max_parallel"),
    ({"max_parallel": 0}, "max_parallel"),
    ({"max_parallel": 2 ** 63}, "max_parallel"),
    ({"max_parallel": "5"}, "max_parallel"),
    ({"ttl_s": 0}, "ttl_s must be from 1"),
    ({"ttl_s": -1}, "ttl_s must be from 1"),
    ({"ttl_s": 2 ** 63}, "ttl_s must be"),
    ({"ttl_s": float("nan")}, "ttl_s"),
])
def test_bad_input_is_refused_with_what_to_give(bus, desks, change, words):
    """Empty, blank, 10,000+1-character and non-text messages; blank and too long reasons; unknown and malformed
    selectors; -1 / 0 / 2^63 / text numbers: each BAD_REQUEST naming what is wrong, and nothing sent."""
    operator = bus.peer("op-bad", role="operator")
    with pytest.raises(RemoteError) as refused:
        operator.request("broadcast.send", **{**SEND, **change})
    assert refused.value.code == ErrorCode.BAD_REQUEST and words in refused.value.detail, refused.value.detail
    assert operator.request("broadcast.list") == [] and operator.request("command.list", limit=10) == []


@pytest.mark.parametrize("op,args,words", [
    ("broadcast.get", {"id": "nope"}, "no broadcast 'nope'"),
    ("broadcast.get", {"id": ""}, "id must be a non-empty string"),
    ("broadcast.get", {"id": "x", "limit": 2 ** 63}, "limit"),
    ("broadcast.list", {"limit": 2 ** 63}, "limit"),
    ("broadcast.cancel", {"id": "nope", "reason": "x"}, "no broadcast 'nope'"),
])
def test_bad_reads_are_refused(bus, op, args, words):
    """Unknown and empty ids, limits of 2^63: BAD_REQUEST naming the field (-1 and 0 are clamped, as every
    limit is: test_receipts_as_events_and_in_batches_are_counted_per_recipient)."""
    operator = bus.peer("op-reads", role="operator")
    with pytest.raises(RemoteError) as refused:
        operator.request(op, **args)
    assert refused.value.code == ErrorCode.BAD_REQUEST and words in refused.value.detail, refused.value.detail


# -- receipts ---------------------------------------------------------------------------------------------
def test_receipts_as_events_and_in_batches_are_counted_per_recipient(bus, desks):
    """desk-1 reports delivered then read as EVENTs, desk-2 delivered inside a BATCH; desk-3 nothing. Each
    recipient's message id is its own, carried by its chat.send command; the sender sees who read it."""
    operator = bus.peer("op-receipts", role="operator")
    made = operator.request("broadcast.send", **SEND)
    ids = {r["client_id"]: r["message_id"] for r in made["recipients"]}
    assert len(set(ids.values())) == 3
    commands = {c["target"]: c for c in operator.request("command.list", limit=10)}
    assert {t: (c["id"], c["name"], c["args"]["message_id"], c["args"]["text"]) for t, c in commands.items()} == {
        t: (ids[t], "chat.send", ids[t], TEXT) for t in desks}
    receipt(bus, desks["desk-1"], ids["desk-1"], "delivered")
    awake(bus, desks["desk-2"])
    desks["desk-2"].send(Kind.BATCH, body=pack_batch([
        (Kind.EVENT, "sysinfo", new_id(), time.time(), pack_body({"cpu": 3})),
        (Kind.EVENT, "chat", new_id(), time.time(), pack_body({"ref": ids["desk-2"], "status": "delivered", "ts": time.time()}))]))
    statuses_become(operator, made["id"], {"desk-1": "delivered", "desk-2": "delivered", "desk-3": "queued"})
    receipt(bus, desks["desk-1"], ids["desk-1"], "read")
    final = statuses_become(operator, made["id"], {"desk-1": "read", "desk-2": "delivered", "desk-3": "queued"})
    assert final["counts"] == {"read": 1, "delivered": 1, "queued": 1}
    by_id = {r["client_id"]: r for r in final["recipients"]}
    assert by_id["desk-1"]["delivered_ts"] <= by_id["desk-1"]["read_ts"] and by_id["desk-3"]["delivered_ts"] is None
    assert operator.request("broadcast.get", id=made["id"], limit=-1)["recipients"] == []  # clamped to 0 listed
    assert len(operator.request("broadcast.list", limit=0)) == 1  # clamped to 1
    viewer = bus.peer("viewer-receipts", role="viewer")
    assert viewer.request("broadcast.get", id=made["id"])["counts"] == {"read": 1, "delivered": 1, "queued": 1}


def test_receipts_that_are_not_this_agents_do_not_count(bus, desks):
    """desk-3 reports read for desk-1's message id, for an unknown id, a status that is no receipt, and a
    malformed body; desk-1 reports on a LOG topic named chat: nothing changes, and a receipt after read does
    not go back."""
    operator = bus.peer("op-spoof", role="operator")
    made = operator.request("broadcast.send", **SEND)
    ids = {r["client_id"]: r["message_id"] for r in made["recipients"]}
    receipt(bus, desks["desk-3"], ids["desk-1"], "read")
    receipt(bus, desks["desk-3"], "no-such-message", "read")
    receipt(bus, desks["desk-3"], ids["desk-3"], "exploded")
    awake(bus, desks["desk-3"])
    desks["desk-3"].publish(Kind.EVENT, "chat", body=b"\xc1 not msgpack")
    awake(bus, desks["desk-1"])
    desks["desk-1"].publish(Kind.LOG, "chat", {"ref": ids["desk-1"], "status": "read"})
    receipt(bus, desks["desk-2"], ids["desk-2"], "read")  # the marker: sent last, by a well-behaved agent
    statuses_become(operator, made["id"], {"desk-1": "queued", "desk-2": "read", "desk-3": "queued"})
    receipt(bus, desks["desk-2"], ids["desk-2"], "delivered")
    receipt(bus, desks["desk-1"], ids["desk-1"], "delivered")
    statuses_become(operator, made["id"], {"desk-1": "delivered", "desk-2": "read", "desk-3": "queued"})


def test_cancel_stops_what_waits_for_an_offline_agent_and_is_audited(bus, desks):
    """desk-3 goes offline; a broadcast reaches desk-1 and desk-2 and waits for desk-3; cancelled with a reason:
    desk-3's message expires unsent (cancelled), the others keep their status, the audit names both actions."""
    admin_tail = bus.peer("audit-tail", role="admin")
    admin_tail.subscribe(["audit."])
    desks["desk-3"].close()
    wait_for(lambda: "desk-3" not in bus.broker.online, 10, what="desk-3 offline")
    operator = bus.peer("op-cancel", role="operator")
    made = operator.request("broadcast.send", **SEND)
    ids = {r["client_id"]: r["message_id"] for r in made["recipients"]}
    receipt(bus, desks["desk-1"], ids["desk-1"], "delivered")
    statuses_become(operator, made["id"], {"desk-1": "delivered", "desk-2": "queued", "desk-3": "queued"})
    with pytest.raises(RemoteError, match="a reason is needed"):
        operator.request("broadcast.cancel", id=made["id"])
    cancelled = operator.request("broadcast.cancel", id=made["id"], reason="sent to the wrong group")
    assert cancelled["state"] == "cancelled" and recipients(cancelled)["desk-3"] == "cancelled"
    assert recipients(cancelled)["desk-1"] == "delivered"
    assert operator.request("command.get", id=ids["desk-3"])["status"] == "expired"
    with pytest.raises(RemoteError, match="nothing is left to cancel"):
        operator.request("broadcast.cancel", id=made["id"], reason="again")
    audit = [e.data() for e in admin_tail.drain(500, 0.5)]
    sent = [a for a in audit if a["action"] == "broadcast.send"]
    stop = [a for a in audit if a["action"] == "broadcast.cancel"]
    assert len(sent) == 1 and sent[0]["reason"] == "building maintenance" and sent[0]["detail"]["count"] == 3
    assert sent[0]["operator_name"] and len(stop) == 1 and stop[0]["reason"] == "sent to the wrong group"


def test_receipts_are_awaited_across_a_broker_restart(bus, desks):
    """The broker restarts between the send and the read: the receipt still counts (awaited ones come from broker.db)."""
    operator = bus.peer("op-restart", role="operator")
    made = operator.request("broadcast.send", **SEND)
    ids = {r["client_id"]: r["message_id"] for r in made["recipients"]}
    bus.stop()
    bus.start()
    wait_for(lambda: (desks["desk-2"].poll(0.05), "desk-2" in bus.broker.online)[1], 30, what="desk-2 back")
    receipt(bus, desks["desk-2"], ids["desk-2"], "read")
    statuses_become(operator, made["id"], {"desk-1": "queued", "desk-2": "read", "desk-3": "queued"}, 20)


def test_a_broadcast_held_for_approval_goes_only_once_approved(bus, desks):
    """Admins require a second operator for chat.send: a broadcast is recorded but held (every recipient
    pending, no command queued); another person approves it: the messages go and receipts count."""
    from test_approvals import _operator

    bus.admin.request("approvals.require", names=["chat.send"])
    jane, omar = _operator(bus, "jane", "Jane Doe"), _operator(bus, "omar", "Omar Khan")
    made = jane.request("broadcast.send", **SEND)
    assert made["run_state"] == "held" and made["counts"] == {"pending": 3} and made["person"] == "Jane Doe"
    assert jane.request("command.list", limit=10) == []
    [request] = [r for r in omar.request("approvals.list") if r["kind"] == "bulk"]
    omar.request("approvals.decide", id=request["id"], approve=True, reason="office notice checked")
    statuses_become(jane, made["id"], {"desk-1": "queued", "desk-2": "queued", "desk-3": "queued"})
    ids = {r["client_id"]: r["message_id"] for r in made["recipients"]}
    receipt(bus, desks["desk-1"], ids["desk-1"], "read")
    statuses_become(jane, made["id"], {"desk-1": "read", "desk-2": "queued", "desk-3": "queued"})


# -- real agents ------------------------------------------------------------------------------------------------
@pytest.fixture
def display():
    if not (Xvfb.installed() and shutil.which("xdotool")):
        pytest.fail("Xvfb and xdotool are needed: run installer/install.sh --dev")
    with Xvfb(1280, 720) as x:
        yield x.display


def real_agent(bus, procs, tmp_path, client_id: str, display: str):
    """A real `ems agent` for ``client_id`` (enrolled now), started by the function returned."""
    agent_dir = tmp_path / client_id
    pair = keys.load_or_create(agent_dir / "keys", "agent")
    bus.admin.request("keys.add", public_key=pair.public, client_id=client_id, role="agent")
    return lambda: procs.ems(client_id, "agent", "--data-dir", str(agent_dir), "--server", bus.endpoint,
                             f"--server-key={bus.server_key}", "--id", client_id, "--heartbeat-s", "0.5",
                             "--access-dir", str(agent_dir), env={"DISPLAY": display})


def test_real_agents_one_offline_one_read(bus, procs, tmp_path, display):
    """desk-1 (a chat window on Xvfb) and desk-2 (no display: the access log) online, desk-3 (no display) offline.
    A broadcast: desk-1 and desk-2 delivered, desk-3 queued; desk-3 starts: delivered; the user of desk-1 presses
    Read: read. The sender sees one read; a viewer sees the same counts and no text. The persister keeps each
    recipient's message under its own id, with the same status."""
    from test_persister_bus import RunningPersister

    persister = RunningPersister(bus, tmp_path)
    try:
        _real_agents_one_offline_one_read(bus, procs, tmp_path, display)
    finally:
        persister.stop()


def _real_agents_one_offline_one_read(bus, procs, tmp_path, display):
    starters = {"desk-1": real_agent(bus, procs, tmp_path, "desk-1", display),
                "desk-2": real_agent(bus, procs, tmp_path, "desk-2", ""),
                "desk-3": real_agent(bus, procs, tmp_path, "desk-3", "")}
    starters["desk-1"]()
    starters["desk-2"]()
    wait_for(lambda: {"desk-1", "desk-2"} <= set(bus.broker.online), 30, what="two agents online")
    operator = bus.peer("op-real", role="operator")
    made = operator.request("broadcast.send", **SEND)
    assert made["count"] == 3
    statuses_become(operator, made["id"], {"desk-1": "delivered", "desk-2": "delivered", "desk-3": "queued"}, 30)
    starters["desk-3"]()
    statuses_become(operator, made["id"], {"desk-1": "delivered", "desk-2": "delivered", "desk-3": "delivered"}, 30)
    [window] = wait_for(lambda: xdotool(display, "search", "--onlyvisible", "--name", "^EMS message from ").split(), 20,
                        what="desk-1's chat window")
    geometry = dict(line.split("=", 1) for line in xdotool(display, "getwindowgeometry", "--shell", window).split())
    x, y, width, height = (int(geometry[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
    xdotool(display, "mousemove", str(x + width - 60), str(y + height - 20), "click", "1")  # the Read button
    final = statuses_become(operator, made["id"], {"desk-1": "read", "desk-2": "delivered", "desk-3": "delivered"}, 30)
    assert final["counts"] == {"read": 1, "delivered": 2}
    assert all(r["delivered_ts"] for r in final["recipients"])
    viewer = bus.peer("viewer-real", role="viewer")
    seen = viewer.request("broadcast.get", id=made["id"])
    assert seen["counts"] == {"read": 1, "delivered": 2} and "text" not in seen and "recipients" not in seen

    expected = {"desk-1": [(TEXT, "read")], "desk-2": [(TEXT, "delivered")], "desk-3": [(TEXT, "delivered")]}

    def stored() -> bool:
        return expected == {c: [(r["body"], r["status"]) for r in bus.admin.request("store.query", kind="messages", client_id=c)]
                            for c in expected}
    wait_for(stored, 20, what=f"each recipient's message in the store, one each: {expected}")


# -- the CLI ------------------------------------------------------------------------------------------------------
def test_the_cli_sends_lists_shows_and_cancels(bus, desks):
    from broker.core.profile import Profile, save

    save(bus.data, Profile(server=bus.endpoint, server_key=bus.server_key, key_name="admin", client_id="admin"))

    def ems(*argv):
        return subprocess.run([sys.executable, "-m", "broker.cli.main", "broadcast", *argv, "--data-dir", str(bus.data.root)],
                              capture_output=True, text=True, timeout=60)
    sent = ems("send", "id:desk-*", TEXT, "--reason", "maintenance", "--max-parallel", "2", "--json")
    assert sent.returncode == 0, sent.stderr
    made = json.loads(sent.stdout)
    assert made["count"] == 3 and made["text"] == TEXT
    ids = {r["client_id"]: r["message_id"] for r in made["recipients"]}
    for client_id, agent in desks.items():
        receipt(bus, agent, ids[client_id], "delivered")
    receipt(bus, desks["desk-2"], ids["desk-2"], "read")
    followed = ems("show", made["id"], "--follow")
    assert followed.returncode == 0, followed.stderr
    assert "3 recipient(s): 2 delivered, 1 read" in followed.stdout and "desk-2" in followed.stdout
    listed = ems("list")
    assert made["id"] in listed.stdout and "2 delivered, 1 read" in listed.stdout
    cancelled = ems("cancel", made["id"], "--reason", "late", "--json")  # the commands are still open: the run stops
    assert cancelled.returncode == 0 and json.loads(cancelled.stdout)["state"] == "cancelled", cancelled.stderr
    assert json.loads(cancelled.stdout)["counts"] == {"delivered": 2, "read": 1}  # what was shown stays shown
    again = ems("cancel", made["id"], "--reason", "late")
    assert again.returncode == 2 and "nothing is left to cancel" in again.stderr
    assert ems("send", "id:desk-*", TEXT).returncode == 2  # --reason is required
    bad = ems("send", "no-such-agent", TEXT, "--reason", "x")
    assert bad.returncode == 2 and "no accepted agent matches" in bad.stderr
    waiting = subprocess.Popen([sys.executable, "-m", "broker.cli.main", "broadcast", "send", "id:desk-*", "second notice",
                                "--reason", "maintenance", "--wait", "--data-dir", str(bus.data.root)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        second = wait_for(lambda: [b for b in bus.admin.request("broadcast.list") if b["text"] == "second notice"], 20,
                          what="the second broadcast")[0]
        ids = {r["client_id"]: r["message_id"] for r in bus.admin.request("broadcast.get", id=second["id"])["recipients"]}
        for client_id, agent in desks.items():
            receipt(bus, agent, ids[client_id], "delivered")
        out, err = waiting.communicate(timeout=30)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait(5)
    assert waiting.returncode == 0 and "broadcast to 3 [" in err and "3/3" in err, err
    assert "3 recipient(s): 3 delivered" in out
    helped = ems("send", "--help")
    assert "--reason" in helped.stdout and "--wait" in helped.stdout


# -- many agents ----------------------------------------------------------------------------------------------------
def test_a_broadcast_to_200_agents_is_paced_and_failures_are_named(bus, tmp_path):
    """200 simulated agents (bench.command_fleet, its own process; 20 % fail every command, none reports receipts):
    at most --max-parallel messages on their way at once; every recipient ends ``sent`` (its agent took it, no
    receipt yet) or ``failed``, and the failed ones are exactly the failing agents."""
    from test_bulk import FAILING, N, Fleet

    fleet = Fleet(bus, tmp_path)
    try:
        operator = bus.peer("op-fleet", role="operator")
        made = operator.request("broadcast.send", selector="id:sim-*", text=TEXT, reason="fleet", max_parallel=10)
        assert made["count"] == N
        seen = []

        def over():
            answer = operator.request("broadcast.get", id=made["id"])
            seen.append(answer["counts"])
            return answer if not answer["counts"].get("pending") and not answer["counts"].get("queued") else None
        final = wait_for(over, 120, interval_s=0.05, what="every message sent or failed")
        assert final["counts"] == {"sent": N - len(FAILING), "failed": len(FAILING)}
        assert {r["client_id"] for r in final["recipients"] if r["status"] == "failed"} == FAILING
        assert max(counts.get("queued", 0) for counts in seen) <= 10 and len(seen) > 3
    finally:
        fleet.close()


def test_a_dry_run_names_the_recipients_and_sends_nothing(bus):
    """``dry_run: true`` (what ``schedules.add`` tries before it keeps a scheduled broadcast): who would get it, with
    whether each is online now; no broadcast is recorded, no message queued."""
    online = bus.peer("desk-1")
    bus.admin.request("keys.add", public_key=keys.generate().public, client_id="desk-2", role="agent")
    sender = bus.peer("op-dry", role="operator")
    preview = sender.request("broadcast.send", selector="desk-1,desk-2", text="hello", reason="test", dry_run=True)
    assert preview["dry_run"] is True and preview["count"] == 2
    assert sorted((r["client_id"], r["online"]) for r in preview["recipients"]) == [("desk-1", True), ("desk-2", False)]
    assert sender.request("broadcast.list") == [] and [e for e in online.drain(10, 0.3) if e.kind is Kind.COMMAND] == []
