"""No display, a dead display, a display that dies: the capability says why and nothing crashes."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agent.access_log import AccessLog
from agent.context import AgentContext, CommandError, LocalPolicy
from agent.screen import handlers
from broker.core import screen_frames as protocol
from agent.screen.capture import MssSource
from bench.harness.xvfb import Xvfb


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class Agentish:
    """A handler's context plus what the agent would have kept and shown."""

    def __init__(self, root):
        self.stored, self.notices = [], []
        self.ctx = AgentContext(client_id="desk-9", data_dir=root, policy=LocalPolicy(), access_log=AccessLog(root / "access.log").record,
                                notify=lambda title, text: self.notices.append((title, text)),
                                report=lambda kind, name, data: self.stored.append((kind, name, data)) or "id", operator="op-x")
        self.screen = handlers.Screen(self.ctx)  # no live view until a test gives it a publisher


@pytest.fixture
def agent(tmp_path):
    a = Agentish(tmp_path)
    yield a
    a.screen.close(a.ctx)


@pytest.fixture
def dead_display():
    """The name of a display whose server has just been stopped."""
    if not Xvfb.installed():
        pytest.fail("Xvfb is not installed: run installer/install.sh --dev")
    with Xvfb(320, 200) as x:
        name = x.display
    return name


def test_importing_the_screen_modules_needs_no_display():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    code = ("import sys, agent.screen.handlers, agent.screen.live, agent.screen.capture, agent.screen.tiles, "
            "broker.core.screen_frames\n"
            "from agent.screen.capture import MssSource\n"
            "ok, why = MssSource().available()\n"
            "print(ok, why)\n"
            "assert 'pyautogui' not in sys.modules")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("False no X display (DISPLAY is not set)")


def assert_unavailable_everywhere(agent, reason_part: str) -> None:
    ok, why = MssSource().available()
    assert not ok and reason_part in why
    with pytest.raises(CommandError, match=f"screen capture unavailable: .*{reason_part}"):
        agent.screen.capture({}, agent.ctx)
    agent.screen = handlers.Screen(agent.ctx, lambda body: None)
    with pytest.raises(CommandError, match=f"screen capture unavailable: .*{reason_part}"):
        agent.screen.live_start({}, agent.ctx)
    assert agent.screen.view.pump() == 0
    assert agent.stored == [] and agent.notices == []  # nothing kept, nobody told a view started


def test_without_display_everything_says_why(agent, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert_unavailable_everywhere(agent, "DISPLAY is not set")


def test_a_dead_display_is_unavailable_not_a_crash(agent, dead_display, monkeypatch):
    monkeypatch.setenv("DISPLAY", dead_display)
    assert_unavailable_everywhere(agent, f"cannot open the screen on display {dead_display}")


def test_a_display_that_dies_ends_the_live_view_with_a_notice(agent, monkeypatch):
    if not Xvfb.installed():
        pytest.fail("Xvfb is not installed: run installer/install.sh --dev")
    sent, clock = [], Clock()
    with Xvfb(320, 200) as x:
        monkeypatch.setenv("DISPLAY", x.display)
        agent.screen = handlers.Screen(agent.ctx, sent.append, clock=clock)
        view = agent.screen.view
        agent.screen.live_start({}, agent.ctx)
        assert view.pump() == 1 and protocol.parse(sent[0]).full
    clock.now += 1  # the X server is gone
    assert view.pump() == 1
    end = protocol.parse(sent[-1])
    assert end.end.startswith("screen unavailable:") and not view.active
    assert agent.notices[-1][0] == "Live view ended" and "screen unavailable" in agent.notices[-1][1]
    with pytest.raises(CommandError, match="screen capture unavailable"):
        agent.screen.capture({}, agent.ctx)
