"""Remote control on a real X display: sessions, notices, and input that reaches real windows.

A private Xvfb, the real pointer (read back with ``xdotool``), a real Tk
entry window in its own process that reports what it receives, and the
agent's real notifier and access log.
"""
# ruff: noqa: F811  (pytest fixtures imported from test_notice_display are test arguments here)
from __future__ import annotations

import json
import logging
import queue
import subprocess
import sys
import threading
from dataclasses import replace

import pytest

from agent.context import CommandError, LocalPolicy
from agent.control import RemoteControl
from agent.control.sessions import ControlSessions

from conftest import wait_for
from test_notice_display import (  # noqa: F401  (fixtures: _x_tools, agent, x_env, xserver)
    SCREEN_H,
    SCREEN_W,
    _x_tools,
    agent,
    geometry,
    make_agent,
    needs_x,
    pointer,
    windows_named,
    x_env,
    xserver,
)

pytestmark = needs_x

#: frame the operator looks at: half the screen in each direction
FRAME = {"frame_w": SCREEN_W // 2, "frame_h": SCREEN_H // 2}

TARGET_APP = r"""
import json, sys, tkinter as tk
root = tk.Tk()
root.title("EMS input target")
root.geometry("400x60+100+100")
text = tk.StringVar()
entry = tk.Entry(root, textvariable=text)
entry.pack(fill="both", expand=True, padx=10, pady=10)
def say(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()
text.trace_add("write", lambda *_: say(text=text.get()))
root.bind_all("<Button-1>", lambda e: say(click=[e.x_root, e.y_root]), add="+")
root.bind_all("<Button-4>", lambda e: say(wheel="up"), add="+")
root.bind_all("<Button-5>", lambda e: say(wheel="down"), add="+")
root.bind("<Map>", lambda e: say(mapped=True) if e.widget is root else None)
root.mainloop()
"""


class TargetApp:
    """The Tk entry window input is aimed at; its reports arrive on a queue."""

    def __init__(self, tmp_path):
        script = tmp_path / "target_app.py"
        script.write_text(TARGET_APP)
        self.proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        self.events: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.wait(lambda e: e.get("mapped"), "the target window to be mapped")
        [self.window] = wait_for(lambda: windows_named("^EMS input target$"), what="the target window")

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def wait(self, match, what: str, timeout_s: float = 10.0) -> dict:
        """The first report (seen before or arriving within ``timeout_s``) that ``match`` accepts."""
        for event in self.seen:
            if match(event):
                return event
        def next_match():
            try:
                event = self.events.get(timeout=0.05)
            except queue.Empty:
                return None
            self.seen.append(event)
            return event if match(event) else None
        return wait_for(next_match, timeout_s, interval_s=0, what=what)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.reader.join(10)


@pytest.fixture
def target(agent, tmp_path):
    """The target window, on the display the ``agent`` fixture set up."""
    app = TargetApp(tmp_path)
    yield app
    app.stop()


@pytest.fixture
def control():
    return RemoteControl()


def opened(control, agent, operator="alice", reason="printer ticket 7", **extra) -> dict:
    return control.open({"reason": reason, **extra}, agent.as_operator(operator))


def frame_point(screen_x: int, screen_y: int) -> dict:
    """The frame coordinates (half size) of a screen point."""
    return {"x": screen_x / 2, "y": screen_y / 2}


def test_handlers_table_is_ready_to_wire():
    handlers = RemoteControl().handlers()
    assert set(handlers) == {"control.open", "control.close", "input"}
    assert all(callable(fn) and fn.__doc__ for fn in handlers.values())


def test_mouse_moves_the_real_pointer_scaled_from_a_half_size_frame(control, agent):
    session = opened(control, agent)
    assert (session["screen_w"], session["screen_h"]) == (SCREEN_W, SCREEN_H)
    ctx = agent.as_operator("alice")
    control.input({"events": [{"type": "move", "x": 100, "y": 50}], **FRAME}, ctx)
    assert pointer() == (200, 100)
    control.input({"events": [{"type": "move", "x": 639, "y": 359}], **FRAME}, ctx)
    assert pointer() == (1278, 718)
    control.input({"events": [{"type": "move", "x": 5000, "y": -20}], **FRAME}, ctx)  # off the frame: kept on screen
    assert pointer() == (SCREEN_W - 1, 0)
    right_half = {"frame_w": 320, "frame_h": 360, "region": {"left": 640, "top": 0, "width": 640, "height": 720}}
    control.input({"events": [{"type": "move", "x": 10, "y": 10}], **right_half}, ctx)
    assert pointer() == (660, 20)


def test_click_and_typed_text_reach_a_real_window(control, agent, target, caplog):
    caplog.set_level(logging.DEBUG)
    opened(control, agent)
    ctx = agent.as_operator("alice")
    x, y, width, height = geometry(target.window)
    centre = frame_point(x + width // 2, y + height // 2)
    result = control.input({"events": [{"type": "click", **centre, "button": "left"}], **FRAME}, ctx)
    assert result["executed"] == 1
    click = target.wait(lambda e: "click" in e, "the click to reach the window")
    assert abs(click["click"][0] - (x + width // 2)) <= 2 and abs(click["click"][1] - (y + height // 2)) <= 2

    secret = "Hunter2 typed remotely"
    result = control.input({"events": [{"type": "text", "text": secret}, {"type": "key", "key": "backspace"}], **FRAME}, ctx)
    assert result == {"session_id": result["session_id"], "executed": 2, "skipped_chars": 0}
    target.wait(lambda e: e.get("text") == secret[:-1], "the typed text (minus the backspace) in the entry")

    control.input({"events": [{"type": "key", "key": "ctrl+a"}, {"type": "key", "key": "end"}, {"type": "text", "text": "!"}]}, ctx)
    target.wait(lambda e: e.get("text") == secret[:-1] + "!", "a key combination and more text")

    control.input({"events": [{"type": "wheel", "dy": 2, **centre}, {"type": "wheel", "dy": -1}], **FRAME}, ctx)
    target.wait(lambda e: e.get("wheel") == "down", "wheel events at the window")
    assert [e["wheel"] for e in target.seen if "wheel" in e][:3] == ["up", "up", "down"]

    # executed, never recorded: not in the access log, not in the agent's log
    assert secret not in agent.access.read() and "Hunter" not in caplog.text


def test_session_open_and_close_show_notices_and_write_the_access_log(control, agent):
    result = opened(control, agent, reason="printer ticket 7")
    assert result["new"] and result["operator"] == "alice"
    wait_for(lambda: windows_named("^EMS notice: Remote control started$"), what="the start notice")
    assert opened(control, agent)["new"] is False, "opening again keeps the same session"

    closed = control.end({"reason": "fixed"}, agent.as_operator("alice"))
    assert closed["session_id"] == result["session_id"]
    wait_for(lambda: windows_named("^EMS notice: Remote control ended$"), what="the end notice")
    lines = agent.lines()
    assert len([l for l in lines if "Remote control started" in l]) == 1
    assert lines[0].endswith("Remote control started  alice is now controlling your screen. Reason given: printer ticket 7.")
    assert lines[-2].endswith("Remote control ended  alice is no longer controlling your screen: fixed")
    assert [(e.kind, e.operator, e.reason) for e in agent.access.entries() if e.kind.startswith("control.")] == [
        ("control.start", "alice", "printer ticket 7"), ("control.end", "alice", "printer ticket 7")]


def test_the_employee_reads_the_person_not_the_key_id_from_start_to_end(control, agent):
    """The broker stamps the key's display name: every line the employee reads names
    "Jane Doe", the end of the session too, and never the key id "jane-key"."""
    jane = replace(agent.as_operator("jane-key"), operator_name="Jane Doe")
    control.open({"reason": "ticket 12"}, jane)
    control.end({}, jane)
    control.open({"reason": "ticket 13"}, jane)
    control.close(jane)  # the agent stops
    entries = [e for e in agent.access.entries() if e.kind.startswith("control.")]
    assert [(e.kind, e.operator) for e in entries] == [("control.start", "Jane Doe"), ("control.end", "Jane Doe")] * 2
    assert "jane-key" not in agent.access.read()


def test_input_is_refused_outside_a_session_and_from_another_operator(control, agent):
    move = {"events": [{"type": "move", "x": 10, "y": 10}], **FRAME}
    with pytest.raises(CommandError, match="^no remote-control session open: "):
        control.input(move, agent.as_operator("alice"))
    opened(control, agent, operator="alice")
    with pytest.raises(CommandError, match="^no remote-control session open: bob has no session here"):
        control.input(move, agent.as_operator("bob"))
    with pytest.raises(CommandError, match="already held by alice"):
        opened(control, agent, operator="bob")
    with pytest.raises(CommandError, match="^no remote-control session open: "):
        control.end({}, agent.as_operator("bob"))
    control.end({}, agent.as_operator("alice"))
    with pytest.raises(CommandError, match="^no remote-control session open: "):
        control.input(move, agent.as_operator("alice"))


def test_bad_input_is_refused_whole_and_without_quoting_it(control, agent):
    opened(control, agent)
    ctx = agent.as_operator("alice")
    start = pointer()
    bad = {"events": [{"type": "move", "x": 300, "y": 300}, {"type": "key", "key": "ctrl+s3cr3tkey"}], **FRAME}
    with pytest.raises(CommandError) as err:
        control.input(bad, ctx)
    assert "s3cr3t" not in str(err.value) and "event 1" in str(err.value)
    assert pointer() == start, "nothing ran"
    with pytest.raises(CommandError, match="frame_w and frame_h"):
        control.input({"events": [{"type": "move", "x": 1, "y": 1}]}, ctx)


def test_a_mandatory_notice_cannot_be_silenced(control, agent):
    opened(control, agent, silent=True, notice=False)
    wait_for(lambda: windows_named("^EMS notice: Remote control started$"), what="the start notice despite silent=true")
    text = agent.access.read()
    assert "notice silencing refused  by alice  the 'remote_control' notice is mandatory on this computer" in text
    assert "Remote control started  alice is now controlling your screen" in text
    [(_kind, _name, data)] = [r for r in agent.reports if r[1] == "notice_silence_refused"]
    assert data == {"event": "notice_silence_refused", "notice": "remote_control", "operator": "alice"}


def test_an_optional_notice_may_be_silenced_but_is_still_logged(agent, tmp_path):
    quiet = make_agent(tmp_path / "quiet", policy=LocalPolicy(mandatory_notices=frozenset({"start"})))
    control = RemoteControl()
    control.open({"reason": "night maintenance", "silent": True}, quiet.as_operator("alice"))
    assert "(not shown on screen: the operator asked for no notice)" in quiet.access.read()
    assert not windows_named("^EMS notice: Remote control started$")
    quiet.notifier.close(dismiss=True)


def test_an_idle_session_ends_with_a_notice(agent):
    control = RemoteControl(ControlSessions(idle_timeout_s=0.3))
    opened(control, agent)
    ended = wait_for(lambda: control.poll(agent.ctx), timeout_s=5, what="the idle session to end")
    assert ended[0]["operator"] == "alice"
    wait_for(lambda: windows_named("^EMS notice: Remote control ended$"), what="the end notice")
    assert "alice's remote control ended after 0.3 s without input" in agent.access.read()
    with pytest.raises(CommandError, match="^no remote-control session open: "):
        control.input({"events": [{"type": "move", "x": 1, "y": 1}], **FRAME}, agent.as_operator("alice"))


def test_shutdown_ends_the_session_visibly(control, agent):
    opened(control, agent)
    control.close(agent.ctx)
    assert "alice's remote control ended: the EMS agent is stopping" in agent.access.read()
    assert control.sessions.current is None
