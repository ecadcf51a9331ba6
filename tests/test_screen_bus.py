"""Screens end to end over the real bus: live frames to an operator, captures into the store."""
from __future__ import annotations

import io
import random
import statistics
import time
from dataclasses import replace

import pytest
from PIL import Image

from agent.access_log import AccessLog
from agent.context import AgentContext, LocalPolicy
from agent.delivery import DurableSender
from agent.outbox import Outbox
from agent.screen import handlers
from broker.core import screen_frames as protocol
from bench.harness.pattern import Pattern
from broker.core.screen_frames import LiveCanvas
from bench.harness.xvfb import Xvfb
from broker.core.envelope import Kind

from conftest import wait_for
from test_persister_bus import RunningPersister

W, H = 1280, 720


@pytest.fixture(scope="module")
def xscreen():
    if not Xvfb.installed():
        pytest.fail("Xvfb is not installed: run installer/install.sh --dev")
    with Xvfb(W, H) as x, Pattern(x.display, W, H) as p:
        p.window("doc", 600, 100, 600, 500, lines=40)
        yield x, p


@pytest.fixture
def pattern(xscreen, monkeypatch):
    x, p = xscreen
    monkeypatch.setenv("DISPLAY", x.display)
    p.rect("box", 100, 100, 200, 150, "#ff0000")
    return p


def agent_context(root, client_id: str, report=None) -> tuple[AgentContext, list]:
    access, notices = AccessLog(root / "access.log"), []
    ctx = AgentContext(client_id=client_id, data_dir=root, policy=LocalPolicy(), access_log=access.record,
                       notify=lambda title, text: notices.append((title, text)), report=report or (lambda *a: ""))
    return ctx, notices


def test_changes_reach_a_watching_operator_over_the_bus(bus, pattern, tmp_path):
    agent_bus = bus.peer("desk-1")
    operator = bus.peer("op-1", role="operator")
    operator.subscribe(["frame."])
    ctx, notices = agent_context(tmp_path, "desk-1")
    screen = handlers.Screen.on_bus(ctx, agent_bus)
    view = screen.view
    canvas = LiveCanvas()
    rng = random.Random(7)

    def agent_and_operator_loop(deadline: float) -> tuple[protocol.Update, float] | None:
        """An agent loop (poll the bus, pump frames) and an operator, in turn, until an update or ``deadline``."""
        while True:
            agent_bus.poll(0)
            view.pump()
            env = operator.poll(min(0.002, view.wait_s() or 0.002))
            if env is not None and env.kind is Kind.FRAME:
                assert env.topic == "frame.desk-1.live" and env.sender == "desk-1"
                update = protocol.parse(env.body)
                if update.tiles or update.copies:
                    return update, time.perf_counter()
            if time.monotonic() > deadline:
                return None

    def next_update(timeout_s: float = 5.0) -> tuple[protocol.Update, float]:
        deadline = time.monotonic() + timeout_s
        got = agent_and_operator_loop(deadline)
        if got is None:
            pytest.fail(f"no frame update within {timeout_s} s")
        return got

    try:
        state = screen.live_start({}, replace(ctx, operator="op-1"))  # the defaults: 10 fps
        assert state["topic"] == "frame.desk-1.live" and state["fps"] == 10
        first, _ = next_update()
        assert first.full and canvas.apply(first) == protocol.APPLIED
        change_ms, grab_to_operator_ms = [], []
        for i in range(20):
            # change the screen at a random point of the 100 ms frame period (the loop keeps running meanwhile)
            assert agent_and_operator_loop(time.monotonic() + rng.uniform(0, 0.1)) is None  # idle screen: no update
            colour = (40 + i * 10, 255 - i * 10, i * 12)
            pattern.rect("box", 100, 100, 200, 150, "#%02x%02x%02x" % colour)
            changed = time.perf_counter()  # the X server has drawn it
            update, arrived = next_update()
            grab_to_operator_ms.append((time.time() - update.ts) * 1000)
            change_ms.append((arrived - changed) * 1000)
            assert canvas.apply(update) == protocol.APPLIED
            assert all(abs(a - b) <= 16 for a, b in zip(canvas.pixel(200, 175), colour))
        print(f"\nlive view over the bus at 10 fps, 20 changes at random moments: change -> operator "
              f"median {statistics.median(change_ms):.1f} ms, max {max(change_ms):.1f} ms; grab -> operator median "
              f"{statistics.median(grab_to_operator_ms):.1f} ms, max {max(grab_to_operator_ms):.1f} ms (not asserted)")
        screen.live_stop({}, replace(ctx, operator="op-1"))
        view.pump()
        env = wait_for(lambda: operator.poll(0.05), 5, what="the end of the live view")
        assert protocol.parse(env.body).end == "stopped by the operator"
    finally:
        screen.close(ctx)
    assert [title for title, _ in notices] == ["Live view started", "Live view ended"]


def test_a_capture_lands_in_screen_captures_and_an_operator_can_fetch_it(bus, pattern, tmp_path):
    persister = RunningPersister(bus, tmp_path)
    try:
        sender = DurableSender(bus.peer("desk-2"), Outbox(tmp_path / "outbox.db"))
        ctx, _ = agent_context(tmp_path, "desk-2", report=sender.report)
        operator = bus.peer("op-2", role="operator")
        # the store names the capture's operator from the broker's record of this command, not from the agent
        cmd_id = operator.send_command("desk-2", "screen.capture", {"quality": 75, "scale": 0.5})["id"]
        result = handlers.Screen(ctx).capture({"quality": 75, "scale": 0.5}, replace(ctx, operator="op-2", command_id=cmd_id))

        def acked():
            for env in sender.bus.drain(100, 0.02):
                sender.handle(env)
            sender.pump()
            return sender.outbox.stats()["pending"] == 0

        wait_for(acked, 15, interval_s=0, what="the capture to be stored")
        [row] = operator.request("store.query", kind="captures", client_id="desk-2")
        assert (row["width"], row["height"], row["quality"], row["format"], row["operator"]) == (640, 360, 75, "jpeg", "op-2")
        capture = operator.request("store.capture", id=row["id"])
        assert capture["msg_id"] == result["msg_id"]
        image = Image.open(io.BytesIO(capture["image"])).convert("RGB")
        assert image.size == (640, 360)
        assert all(abs(a - b) <= 16 for a, b in zip(image.getpixel((100, 87)), (255, 0, 0)))
    finally:
        persister.stop()
