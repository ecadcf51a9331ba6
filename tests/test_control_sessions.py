"""Remote-control rules that need no screen: sessions, idle expiry, event checks, no display."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.context import CommandError
from agent.control import RemoteControl
from agent.control.events import MAX_EVENTS, FrameMapper, frame_size, parse_events, region
from agent.control.sessions import ControlSessions

from test_notice_display import make_agent

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def headless(tmp_path, monkeypatch):
    """An agent context on a machine with no display."""
    monkeypatch.delenv("DISPLAY", raising=False)
    return make_agent(tmp_path)


def test_one_operator_at_a_time_and_idle_expiry():
    clock = Clock()
    sessions = ControlSessions(idle_timeout_s=60, clock=clock)
    session, new = sessions.open("alice", "ticket 1")
    assert new and sessions.require("alice") is session
    with pytest.raises(CommandError, match="already held by alice"):
        sessions.open("bob", "me too")
    clock.now += 59
    assert sessions.expire() is None
    sessions.touch(session)
    clock.now += 59
    assert sessions.expire() is None, "input keeps it alive"
    clock.now += 1
    assert sessions.expire() is session and sessions.current is None
    with pytest.raises(CommandError, match="^no remote-control session open: send control.open"):
        sessions.require("alice")


def test_idle_expiry_through_the_runner_poll_tells_the_user(headless):
    clock = Clock()
    control = RemoteControl(ControlSessions(idle_timeout_s=30, clock=clock))
    control.sessions.open("alice", "ticket 2")  # (control.open itself needs a display)
    assert control.poll(headless.ctx) == []
    clock.now += 31
    [ended] = control.poll(headless.ctx)
    assert ended["operator"] == "alice"
    assert headless.lines()[-2].endswith("Remote control ended  alice's remote control ended after 30 s without input")
    assert headless.access.entries()[-1].kind == "control.end"
    assert control.poll(headless.ctx) == []


def test_no_display_refuses_remote_input_clearly(headless):
    control = RemoteControl()
    with pytest.raises(CommandError, match="^remote input unavailable: no display$"):
        control.open({"reason": "help"}, headless.as_operator("alice"))
    with pytest.raises(CommandError, match="^remote input unavailable: no display$"):
        control.input({"events": [{"type": "move", "x": 1, "y": 1}], "frame_w": 10, "frame_h": 10}, headless.as_operator("alice"))


def test_importing_the_agent_parts_without_a_display_does_not_touch_pyautogui(tmp_path):
    """pyautogui raises KeyError DISPLAY at import on a headless machine: it must stay lazy."""
    code = (
        "import os, sys; os.environ.pop('DISPLAY', None)\n"
        "import agent.control, agent.chat, agent.notice\n"
        "from agent.context import CommandError\n"
        "from test_notice_display import make_agent\n"
        "ctx = make_agent(__import__('pathlib').Path(sys.argv[1])).as_operator('alice')\n"
        "try:\n"
        "    agent.control.RemoteControl().handlers()['input']({'events': [{'type': 'key', 'key': 'a'}]}, ctx)\n"
        "except CommandError as exc:\n"
        "    print(exc)\n"
        "print('pyautogui' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=False, capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)
    assert done.stdout.splitlines() == ["remote input unavailable: no display", "False"], done.stderr


@pytest.mark.parametrize("reason", [None, "", "   ", 42, "x" * 501])
def test_control_open_needs_a_reason(headless, reason):
    with pytest.raises(CommandError, match="reason"):
        RemoteControl().open({"reason": reason} if reason is not None else {}, headless.as_operator("alice"))


def test_a_reason_cannot_forge_access_log_lines(headless, monkeypatch):
    control = RemoteControl()
    control.sessions.open("alice", "x")
    control.end({"reason": "done\n2026-01-01 00:00:00  agent stopped"}, headless.as_operator("alice"))
    assert [e.kind for e in headless.access.entries()] == ["notice", "control.end"]  # no forged "agent stopped"


def test_frame_mapping_scales_and_clamps():
    half = FrameMapper(640, 360, 1280, 720)
    assert half.to_screen(0, 0) == (0, 0)
    assert half.to_screen(100, 50) == (200, 100)
    assert half.to_screen(639.5, 359.5) == (1279, 719)
    assert half.to_screen(-5, 9999) == (0, 719)
    odd = FrameMapper(1000, 1000, 1920, 1080)
    assert odd.to_screen(500, 500) == (960, 540)
    second_monitor = FrameMapper(960, 540, 1920, 1080, left=1920, top=0)
    assert second_monitor.to_screen(0, 0) == (1920, 0)
    assert second_monitor.to_screen(959, 539) == (1920 + 1918, 1078)
    assert second_monitor.to_screen(5000, 5000) == (1920 + 1919, 1079), "kept on that monitor"


def test_region_defaults_to_the_whole_screen_and_is_checked():
    assert region({}, 1280, 720) == (0, 0, 1280, 720)
    assert region({"region": {"left": 1920, "top": 0, "width": 2560, "height": 1440}}, 4480, 1440) == (1920, 0, 2560, 1440)
    with pytest.raises(CommandError, match="region.width"):
        region({"region": {"left": 0, "top": 0, "width": 0, "height": 10}}, 100, 100)
    with pytest.raises(CommandError, match="region must be a map"):
        region({"region": [0, 0, 1, 1]}, 100, 100)


def test_events_are_checked_before_anything_runs():
    events = parse_events({"events": [
        {"type": "move", "x": 1, "y": 2},
        {"type": "click", "button": "right", "clicks": 2},
        {"type": "wheel", "dy": -3, "dx": 1, "x": 5, "y": 5},
        {"type": "key", "key": "Ctrl+Shift+Esc"},
        {"type": "key", "key": "+"},
        {"type": "text", "text": "hé"},
    ]}, known_keys={"ctrl", "shift", "esc", "+"})
    assert [e.type for e in events] == ["move", "click", "wheel", "key", "key", "text"]
    assert events[1].positioned is False and events[1].clicks == 2
    assert events[3].keys == ("ctrl", "shift", "esc") and events[4].keys == ("+",)


@pytest.mark.parametrize("bad, message", [
    ({}, "non-empty list"),
    ({"events": "move"}, "non-empty list"),
    ({"events": [{"type": "move", "x": 1, "y": 1}] * (MAX_EVENTS + 1)}, "at most"),
    ({"events": [{"type": "drag"}]}, "event 0.type"),
    ({"events": [{"type": "move", "x": 1}]}, "event 0.y must be a finite number"),
    ({"events": [{"type": "move", "x": float("nan"), "y": 1}]}, "event 0.x"),
    ({"events": [{"type": "move", "x": True, "y": 1}]}, "event 0.x"),
    ({"events": [{"type": "click", "button": "fourth"}]}, "event 0.button"),
    ({"events": [{"type": "click", "clicks": 40}]}, "event 0.clicks"),
    ({"events": [{"type": "wheel", "dy": 10**6}]}, "event 0.dy"),
    ({"events": [{"type": "key", "key": "ctrl++"}]}, "not a valid key combination"),
    ({"events": [{"type": "text", "text": ""}]}, "event 0.text"),
    ({"events": [{"type": "text", "text": "a" * 6000}, {"type": "text", "text": "b" * 6000}]}, "characters of text"),
])
def test_malformed_events_are_refused(bad, message):
    with pytest.raises(CommandError, match=message.replace("+", r"\+")):
        parse_events(bad, known_keys={"ctrl", "a"})


def test_error_messages_never_quote_keys_or_text():
    with pytest.raises(CommandError) as err:
        parse_events({"events": [{"type": "key", "key": "p4ssw0rd"}]}, known_keys={"a"})
    assert "p4ssw0rd" not in str(err.value)


@pytest.mark.parametrize("args, expected", [
    ({}, None),
    ({"frame_w": 640, "frame_h": 360}, (640, 360)),
])
def test_frame_size(args, expected):
    assert frame_size(args) == expected


@pytest.mark.parametrize("args", [{"frame_w": 640}, {"frame_w": 0, "frame_h": 10}, {"frame_w": 1.5, "frame_h": 10}])
def test_bad_frame_size(args):
    with pytest.raises(CommandError, match="frame_"):
        frame_size(args)
