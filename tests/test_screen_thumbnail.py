"""The ``thumbnail`` command on a real X server (Xvfb) showing a known pattern:
a small JPEG of what is on screen, announced to the employee, in the access
log, limited by local policy, never stored; and over the real bus, neither
the broker's command queue nor the agent's record keeps the picture."""
from __future__ import annotations

import io
import json
import sqlite3
import time

import pytest
from PIL import Image
from conftest import ManualClock as Clock
from conftest import next_message, wait_for
from test_screen_capture import H, W, Agentish, check_pattern, display, screen  # noqa: F401  (fixtures)

from agent.context import CommandError, LocalPolicy
from agent.executed import ExecutedCommands
from agent.screen import handlers, thumbnail
from broker.core import thumbnail_request
from broker.server.command_queue import DONE, EPHEMERAL_KEEP_S, QUEUE_KEYS_FILE, CommandQueue
from broker.core.envelope import Kind, unpack_body
from broker.core.errors import EmsError
from broker.core.sealing import KeyRing, aad


@pytest.fixture
def clock():
    return Clock()


def make_agent(root, clock, **policy) -> Agentish:
    agent = Agentish(root)
    agent.ctx.policy = LocalPolicy(**policy)
    agent.capability = handlers.Screen(agent.ctx, clock=clock)  # its gates run on the manual clock
    return agent


@pytest.fixture
def agent(tmp_path, clock):
    a = make_agent(tmp_path, clock)
    yield a
    a.outbox.close()


def access_lines(agent: Agentish, event: str) -> list[str]:
    return [e for e in agent.access.entries() if e.event == event]


def test_a_thumbnail_is_a_small_jpeg_of_what_is_on_screen_and_is_not_stored(display, agent):
    result = agent.capability.thumbnail({"reason": "tile"}, agent.ctx)
    assert (result["width"], result["height"], result["format"]) == (240, 135, "jpeg")
    assert result["screen"] == [W, H] and result["quality"] == thumbnail_request.DEFAULT_QUALITY
    image = Image.open(io.BytesIO(result["image"]))
    assert image.format == "JPEG" and image.size == (240, 135)
    check_pattern(image.convert("RGB"), 240 / W)
    assert len(result["image"]) < 20_000  # small: a few per minute cost nothing on the wire
    assert agent.stored() == []  # unlike a capture, nothing goes to the store
    [entry] = access_lines(agent, "screen thumbnail")
    assert (entry.kind, entry.operator, entry.detail, entry.reason) == ("thumbnail", "op-kim", "240x135", "tile")

    smaller = agent.capability.thumbnail({"width": 64, "quality": 30}, agent.ctx)
    assert Image.open(io.BytesIO(smaller["image"])).size == (64, 36) and len(smaller["image"]) < len(result["image"])


def test_the_employee_is_told_who_looks_once_per_operator_and_again_later(display, agent, clock):
    agent.capability.thumbnail({}, agent.ctx)
    assert agent.notices == [thumbnail.notice_text("op-kim", agent.capability.thumbnail_gate)]
    title, text = agent.notices[0]
    assert title == "Screen thumbnails" and text.startswith("op-kim sees small pictures of your screen")
    assert "at most 6 a minute" in text and "told again in 10 min" in text

    clock.now += 30
    agent.capability.thumbnail({}, agent.ctx)  # the same operator within the notice period: no second notice
    assert len(agent.notices) == 1
    agent.ctx.operator = "op-lee"  # another operator is announced on their first look
    agent.capability.thumbnail({}, agent.ctx)
    assert [t for _, t in agent.notices][1].startswith("op-lee sees")
    agent.ctx.operator = "op-kim"
    clock.now += 600
    agent.capability.thumbnail({}, agent.ctx)  # the period is over: op-kim is announced again
    assert len(agent.notices) == 3 and agent.notices[2][1].startswith("op-kim sees")
    assert len(access_lines(agent, "screen thumbnail")) == 4  # but every picture is in the access log


def test_a_request_to_hide_the_notice_is_refused_and_reported(display, agent):
    """Tried: silent=true and notice=false, the server-side ways to ask for no notice."""
    agent.capability.thumbnail({"silent": True, "notice": False}, agent.ctx)
    assert len(agent.notices) == 1
    assert "notice silencing refused" in agent.access.read()
    assert [r["event"] for r in agent.stored() if r["_kind"] == Kind.SECURITY] == ["notice_silence_refused"]


def test_over_the_local_rate_limit_it_is_refused_with_the_wait(display, tmp_path, clock):
    agent = make_agent(tmp_path, clock, thumbnails_per_minute=2)
    agent.capability.thumbnail({}, agent.ctx)
    clock.now += 10
    agent.capability.thumbnail({}, agent.ctx)
    clock.now += 10
    with pytest.raises(CommandError, match="allows 2 a minute; the next one in 40 s"):
        agent.capability.thumbnail({}, agent.ctx)
    assert len(access_lines(agent, "screen thumbnail")) == 2  # a refusal looks at nothing
    clock.now += 40  # the first one leaves the 60 s window
    agent.capability.thumbnail({}, agent.ctx)
    with pytest.raises(CommandError, match="the next one in 10 s"):
        agent.capability.thumbnail({}, agent.ctx)
    agent.outbox.close()


def test_turned_off_by_local_policy(display, tmp_path, clock):
    agent = make_agent(tmp_path, clock, thumbnails_per_minute=0)
    with pytest.raises(CommandError, match="thumbnails are turned off on this computer"):
        agent.capability.thumbnail({}, agent.ctx)
    assert agent.notices == [] and access_lines(agent, "screen thumbnail") == []
    agent.outbox.close()


def test_a_policy_file_cannot_raise_the_ceiling(tmp_path):
    """Tried: 100 a minute (over the hard ceiling), a negative notice period, a string."""
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"thumbnails_per_minute": 2, "thumbnail_notice_every_s": 120}))
    policy = LocalPolicy.load(path)
    assert (policy.thumbnails_per_minute, policy.thumbnail_notice_every_s) == (2, 120.0)
    assert "thumbnail" in policy.mandatory_notices
    for bad, message in (({"thumbnails_per_minute": 100}, "thumbnails_per_minute must be an integer from 0 to 12"),
                         ({"thumbnail_notice_every_s": -1}, "thumbnail_notice_every_s must be a number from 0 to 3600"),
                         ({"thumbnails_per_minute": "6"}, "not '6'")):
        path.write_text(json.dumps(bad))
        with pytest.raises(EmsError, match=message):
            LocalPolicy.load(path)
    assert thumbnail.ThumbnailGate(100, 600).per_minute == 12  # built in code: clamped all the same


@pytest.mark.parametrize("args, message", [
    ({"width": 1280}, "width must be an integer from 32 to 320 pixels, not 1280 .a bigger picture is a capture"),
    ({"width": 10}, "width must be an integer from 32 to 320"),
    ({"width": "240"}, "width must be an integer"),
    ({"quality": 95}, "quality must be an integer from 1 to 80"),
    ({"monitor": 5}, "no monitor 5"),
    ({"scale": 0.5}, "thumbnail does not take scale"),
])
def test_bad_arguments_are_refused_and_cost_nothing(display, tmp_path, clock, args, message):
    agent = make_agent(tmp_path, clock, thumbnails_per_minute=1)
    with pytest.raises(CommandError, match=message):
        agent.capability.thumbnail(args, agent.ctx)
    agent.capability.thumbnail({}, agent.ctx)  # the budget of one is still there
    assert agent.notices and len(access_lines(agent, "screen thumbnail")) == 1
    agent.outbox.close()


def test_without_a_display_it_is_unavailable_and_spends_nothing(tmp_path, clock, monkeypatch, screen):
    agent = make_agent(tmp_path, clock, thumbnails_per_minute=1)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(CommandError, match="screen capture unavailable: no X display .DISPLAY is not set"):
        agent.capability.thumbnail({}, agent.ctx)
    assert agent.notices == [] and access_lines(agent, "screen thumbnail") == []
    monkeypatch.setenv("DISPLAY", screen.display)
    assert agent.capability.thumbnail({}, agent.ctx)["width"] == 240  # the budget was given back
    agent.outbox.close()


def test_neither_the_broker_nor_the_agent_keeps_the_picture(bus, display, tmp_path, clock):
    """Over the real bus: the operator gets the JPEG in the result; the broker's
    command queue (broker.db) and the agent's record of executed commands
    (agent.db, answered again on a re-delivery) keep only the outcome."""
    agent = make_agent(tmp_path, clock)
    agent_bus = bus.peer("desk-1")
    operator = bus.peer("op-1", role="operator")
    executed = ExecutedCommands(tmp_path / "agent.db")
    bus.admin.subscribe(["audit."])
    cmd_id = operator.send_command("desk-1", "thumbnail", {"reason": "tile"}, ttl_s=20)["id"]
    command = next_message(agent_bus, lambda e: e.kind is Kind.COMMAND)
    assert executed.claim(command.msg_id, command.data()["name"])
    agent.ctx.operator = command.sender
    args = dict(command.data()["args"])
    assert args.pop("operator") == {"id": "op-1", "name": "op-1", "via": ""}  # the broker's stamp, popped by the runner
    result = {"ok": True, "output": agent.capability.thumbnail(args, agent.ctx)}
    executed.finish(command.msg_id, result)
    agent_bus.send(Kind.RESULT, data=result, corr=command.msg_id)

    got = operator.wait_result(cmd_id, timeout_s=10)
    assert got["status"] == "done"
    assert Image.open(io.BytesIO(got["result"]["output"]["image"])).size == (240, 135)
    assert agent.notices[0][1].startswith("op-1 sees")  # the operator as the broker stamped it

    assert executed.result_of(cmd_id) == {"ok": True, "omitted": "the output of this command is not kept"}
    executed.close()
    stored = operator.request("command.get", id=cmd_id)
    assert stored["status"] == "done" and stored["result"] == {"ok": True, "omitted": "the output of this command is not kept"}
    def committed_result():  # an agent's answer is committed with a later pass (group_commit.LAZY_MAX_S)
        db = sqlite3.connect(bus.data.broker_db)
        try:
            return db.execute("SELECT result FROM commands WHERE id=?", (cmd_id,)).fetchone()[0]
        finally:
            db.close()
    raw = wait_for(committed_result, what="the final result committed")
    opened = KeyRing(bus.data.keys / QUEUE_KEYS_FILE).decrypt(raw, aad("commands", "result", cmd_id))  # sealed at rest
    assert unpack_body(opened) == stored["result"] and len(raw) < 100

    # the look itself is audited by the broker, operator and reason named
    audit = next_message(bus.admin, lambda e: e.topic == "audit.op-1" and e.data()["detail"].get("name") == "thumbnail").data()
    assert (audit["operator"], audit["target"], audit["reason"]) == ("op-1", "desk-1", "tile")
    agent.outbox.close()


def test_the_broker_forgets_thumbnail_commands_soon_and_keeps_the_others(tmp_path):
    queue = CommandQueue(tmp_path / "broker.db")
    for cmd_id, name in (("t1", "thumbnail"), ("p1", "file.download")):
        cmd = queue.add(cmd_id, "desk-1", "op-1", name, {}, time.time() + 20)
        queue.advance(cmd, DONE, {"ok": True, "output": {"image": b"\xff" * 5000}})
    queue.add("t2", "desk-1", "op-1", "thumbnail", {}, time.time() + 20)  # still open
    assert queue.get("t1").result == {"ok": True, "omitted": "the output of this command is not kept"}
    assert len(queue.get("p1").result["output"]["image"]) == 5000
    queue.checkpoint()  # the broker's timer: too early to forget t1
    assert queue.get("t1") is not None
    assert queue.purge_ephemeral(time.time() + EPHEMERAL_KEEP_S + 1) == 1
    assert queue.get("t1") is None and queue.get("p1") is not None and queue.get("t2").status == "queued"
    queue.close()
