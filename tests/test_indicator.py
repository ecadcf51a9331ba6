"""The employee sees every access on a real X display: the privacy bar, End, and the consent prompt.

Everything runs for real on the module's Xvfb: the bar and the prompt are
the agent's own child processes, found on screen by window title and size
(``xdotool``; their buttons through the X window tree) and clicked with ``xdotool``. The screen
capability and remote control are the ones the agent runs. Screenshots of
what the employee sees are taken in every run; ``make screenshots`` keeps
them in ``docs/screenshots/`` (``EMS_SCREENSHOT_DIR``).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import Future
from pathlib import Path

import pytest

from agent.accesses import LIVE_VIEW, REMOTE_CONTROL, AccessRegistry
from agent.context import CommandError, LocalPolicy
from agent.control import RemoteControl
from agent.indicator import Indicator
from agent.indicator.backends import bar, select_indicator, tray, tray_available
from agent.screen.handlers import Screen
from broker.core.envelope import Kind

from conftest import ManualClock, wait_for
from test_notice_display import SCREEN_H, SCREEN_W, _x_tools, geometry, make_agent, needs_x, windows_named, x_env, xdotool, xserver  # noqa: F401

pytestmark = needs_x

#: where the screenshots go: docs/screenshots under `make screenshots`, else the test's temporary directory
SHOTS_ENV = "EMS_SCREENSHOT_DIR"
BAR = "^EMS: your computer is being accessed$"
PROMPT = "^EMS: permission asked$"
REASON = "ticket 4711: the printer driver"


class Desk:
    """One employee's desk: a real agent context as operator "Jane Doe", the indicator on the bar."""

    def __init__(self, root: Path, policy: LocalPolicy | None = None, clock=None):
        self.agent = make_agent(root, operator="jane", policy=policy or LocalPolicy())
        self.agent.ctx.accesses = AccessRegistry(60.0, clock=clock) if clock else AccessRegistry(60.0)
        self.ctx = self.agent.ctx
        self.jane = self.agent.as_operator("jane")
        self.jane.operator_name = "Jane Doe"  # what the broker stamps (issue #12); the key id stays "jane"
        self.opened_logs: list[str] = []
        self.indicator = Indicator(self.ctx.accesses, self.ctx.policy, backend=bar(),
                                   open_access_log=lambda: self.opened_logs.append("opened"))

    def until(self, predicate, what: str, timeout_s: float = 15.0):
        """Run the agent loop's indicator pass until ``predicate()`` holds."""
        def passed():
            self.indicator.poll(self.ctx)
            return predicate()
        return wait_for(passed, timeout_s=timeout_s, interval_s=0.05, what=what)

    def shown(self, count: int) -> dict:
        """The bar's report once it shows ``count`` accesses: where its buttons are."""
        return self.until(lambda: self.indicator.on_screen.get("count") == count and self.indicator.on_screen,
                          f"the bar to show {count} access(es)")

    def close(self) -> None:
        self.indicator.close(self.ctx)
        self.agent.notifier.close(dismiss=True)


@pytest.fixture
def desk(x_env, tmp_path):
    made = Desk(tmp_path)
    yield made
    made.close()


def click_centre(box) -> None:
    x, y, width, height = box
    xdotool("mousemove", str(x + width // 2), str(y + height // 2), "click", "1")


def the_bar() -> str:
    [window] = wait_for(lambda: windows_named(BAR), what="the privacy bar on screen")
    x, y, width, height = geometry(window)
    assert (x, width) == (0, SCREEN_W), "across the whole screen"
    assert y + height == SCREEN_H and 30 <= height <= 200, "at the bottom, as tall as its lines"
    return window


def no_bar() -> bool:
    return not windows_named(BAR)


@pytest.fixture
def shots(tmp_path) -> Path:
    return Path(os.environ.get(SHOTS_ENV) or tmp_path / "screenshots")


def screenshot(xserver, folder: Path, name: str) -> None:
    path = xserver.screenshot(folder / name)
    assert path.stat().st_size > 5000


# -- the bar while an access lasts ---------------------------------------------------------------

def test_live_view_shows_the_bar_naming_viewer_and_reason_until_it_ends(desk, xserver, shots):
    screen = Screen(desk.ctx, publish=lambda body: None, ready=lambda: True)
    screen.live_start({"reason": REASON}, desk.jane)
    [access] = desk.ctx.accesses.snapshot()
    assert (access.kind, access.operator, access.who, access.reason) == (LIVE_VIEW, "Jane Doe", "Jane Doe", REASON)  # a live view is keyed by the person (several may come through one service key)
    assert access.sentence() == "Jane Doe is viewing your screen"
    desk.until(lambda: windows_named(BAR), "the bar")
    the_bar()
    buttons = desk.shown(1)["buttons"]
    assert "access_log" in buttons
    assert not [name for name in buttons if name.startswith("end:")], "live view: End only where local policy allows it"
    wait_for(lambda: windows_named("^EMS notice: Live view started$"), what="the live-view notice")
    screenshot(xserver, shots, "indicator-live.png")
    click_centre(buttons["access_log"])
    desk.until(lambda: desk.opened_logs, "the access log to be opened from the bar")
    screen.live_stop({}, desk.jane)
    desk.until(no_bar, "the bar to go when the view ends")
    screen.close(desk.ctx)


def test_user_may_end_a_live_view_where_local_policy_allows_it(x_env, tmp_path):
    desk = Desk(tmp_path, LocalPolicy(user_may_end_live_view=True))
    try:
        screen = Screen(desk.ctx, publish=lambda body: None, ready=lambda: True)
        desk.indicator.on_end(LIVE_VIEW, screen.end_live_by_user)
        screen.live_start({"reason": REASON}, desk.jane)
        [end] = [box for name, box in desk.shown(1)["buttons"].items() if name.startswith("end:")]
        click_centre(end)
        desk.until(no_bar, "the bar to go after End")
        assert screen.view.state()["watching"] == []
        with pytest.raises(CommandError, match="the user ended your live view"):
            screen.live_start({"reason": REASON}, desk.jane)
        assert [e.reason for e in desk.agent.access.entries() if e.event == "live view ended"] == ["ended by the user"]
        screen.close(desk.ctx)
    finally:
        desk.close()


def test_control_session_shows_the_bar_and_end_ends_it_for_the_operator(desk, xserver, shots):
    control = RemoteControl()
    desk.indicator.on_end(REMOTE_CONTROL, control.end_by_user)
    opened = control.open({"reason": REASON}, desk.jane)
    buttons = desk.shown(1)["buttons"]
    the_bar()
    [end] = [box for name, box in buttons.items() if name == f"end:remote_control:jane:{opened['session_id']}"]
    wait_for(lambda: windows_named("^EMS notice: Remote control started$"), what="the control notice")
    screenshot(xserver, shots, "indicator-control.png")
    click_centre(end)
    desk.until(no_bar, "the bar to go when the user ends the session")
    assert control.sessions.current is None
    with pytest.raises(CommandError, match="^no remote-control session open: the user ended your session at"):
        control.input({"events": [{"type": "move", "x": 1, "y": 1}], "frame_w": 10, "frame_h": 10}, desk.jane)
    assert control.end({}, desk.jane)["ended_by"] == "user"
    assert "Remote control ended  You ended Jane Doe's remote control" in desk.agent.access.read()
    control.open({"reason": "again, with a new notice"}, desk.jane)  # a new session is a new, visible decision
    desk.shown(1)
    control.close(desk.ctx)
    desk.until(no_bar, "the bar to go when the agent stops")


def test_thumbnails_keep_the_bar_up_while_they_continue(x_env, tmp_path, xserver, shots):
    clock = ManualClock()
    desk = Desk(tmp_path, clock=clock)
    desk.ctx.accesses.series_idle_s = 30.0
    try:
        screen = Screen(desk.ctx)
        screen.thumbnail({"reason": "console tiles"}, desk.jane)
        desk.until(lambda: windows_named(BAR), "the bar for thumbnails")
        the_bar()
        assert not [n for n in desk.shown(1)["buttons"] if n.startswith("end:")]
        screenshot(xserver, shots, "indicator-thumbnails.png")
        clock.now += 20
        screen.thumbnail({"reason": "console tiles"}, desk.jane)
        clock.now += 20  # 40 s since the first, 20 since the last: the series goes on
        desk.indicator.poll(desk.ctx)
        assert windows_named(BAR) and len(desk.ctx.accesses.snapshot()) == 1
        clock.now += 11  # 31 s without a thumbnail: the series has ended
        desk.until(no_bar, "the bar to go when thumbnails stop")
        assert "thumbnail ended  Jane Doe: nothing more since 30 s" in desk.agent.access.read()
    finally:
        desk.close()


def test_a_bar_killed_while_an_access_lasts_comes_back(desk):
    desk.ctx.accesses.begin(REMOTE_CONTROL, "jane", REASON, "s-1", "Jane Doe")
    desk.shown(1)
    [window] = wait_for(lambda: windows_named(BAR), what="the bar")
    first = desk.indicator.backend.child.pid
    desk.indicator.backend.child.proc.kill()
    desk.until(lambda: desk.indicator.backend.child is not None and desk.indicator.backend.child.pid != first
               and windows_named(BAR), "a new bar")
    desk.ctx.accesses.end(REMOTE_CONTROL, "jane", "s-1")
    desk.until(no_bar, "the bar to go")


# -- consent ------------------------------------------------------------------------------------

def window_boxes(window: str) -> set[tuple[int, int, int, int]]:
    """Screen x, y, width, height of a window and every window inside it (Tk draws each widget in one)."""
    from Xlib.display import Display

    conn = Display()
    try:
        root = conn.screen().root
        boxes, todo = set(), [conn.create_resource_object("window", int(window))]
        while todo:
            win = todo.pop()
            geo = win.get_geometry()
            at = win.translate_coords(root, 0, 0)
            boxes.add((-at.x, -at.y, geo.width, geo.height))
            todo += win.query_tree().children
        return boxes
    finally:
        conn.close()


def prompt_buttons(window: str) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """Allow and Decline: the prompt's only two same-sized windows side by side."""
    boxes = window_boxes(window)
    pairs = [b for b in boxes if any(o[1:] == b[1:] and o[0] != b[0] for o in boxes)]
    assert len(pairs) == 2, f"two buttons side by side, not {pairs}"
    allow, decline = sorted(pairs)
    return allow, decline


def ask_in_thread(control: RemoteControl, args: dict, ctx) -> Future:
    """control.open on a thread of its own (as on the agent's command lane): it waits for the user."""
    future: Future = Future()

    def run():
        try:
            future.set_result(control.open(args, ctx))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    return future


@pytest.fixture
def asking_desk(x_env, tmp_path):
    made = Desk(tmp_path, LocalPolicy(ask_before=frozenset({"remote_control"}), consent_timeout_s=60))
    yield made
    made.close()


def test_consent_allowed_starts_the_session(asking_desk, xserver, shots):
    control = RemoteControl()
    pending = ask_in_thread(control, {"reason": REASON}, asking_desk.jane)
    [window] = wait_for(lambda: windows_named(PROMPT), what="the consent prompt")
    allow, _decline = prompt_buttons(window)
    screenshot(xserver, shots, "consent-prompt.png")
    assert control.sessions.current is None and not asking_desk.ctx.accesses.snapshot(), "nothing before the answer"
    click_centre(allow)
    opened = pending.result(timeout=15)
    assert opened["new"] and opened["operator"] == "jane"
    asking_desk.shown(1)
    assert "remote control allowed  you allowed Jane Doe (reason: ticket 4711" in asking_desk.agent.access.read()
    control.close(asking_desk.ctx)


def test_consent_declined_fails_the_command_for_the_operator(asking_desk, xserver, shots):
    control = RemoteControl()
    pending = ask_in_thread(control, {"reason": REASON}, asking_desk.jane)
    [window] = wait_for(lambda: windows_named(PROMPT), what="the consent prompt")
    _allow, decline = prompt_buttons(window)
    click_centre(decline)
    with pytest.raises(CommandError, match="^declined by the user$"):
        pending.result(timeout=15)
    wait_for(lambda: windows_named("^EMS notice: Remote control declined$"), what="the declined notice")
    wait_for(lambda: not windows_named(PROMPT), what="the prompt to go")
    screenshot(xserver, shots, "consent-declined.png")
    assert control.sessions.current is None and not asking_desk.ctx.accesses.snapshot()
    asking_desk.indicator.poll(asking_desk.ctx)
    assert no_bar()


def test_no_answer_is_no(x_env, tmp_path):
    desk = Desk(tmp_path, LocalPolicy(ask_before=frozenset({"remote_control"}), consent_timeout_s=1))
    try:
        with pytest.raises(CommandError, match="^no answer from the user$"):
            RemoteControl().open({"reason": REASON}, desk.jane)
        assert "Remote control not allowed  Jane Doe asked to control this computer; there was no answer within 1 s" in desk.agent.access.read()
    finally:
        desk.close()


def test_the_server_cannot_skip_consent(asking_desk):
    control = RemoteControl()
    pending = ask_in_thread(control, {"reason": REASON, "skip_consent": True}, asking_desk.jane)
    [window] = wait_for(lambda: windows_named(PROMPT), what="the consent prompt, asked anyway")
    click_centre(prompt_buttons(window)[1])
    with pytest.raises(CommandError, match="^declined by the user$"):
        pending.result(timeout=15)
    [event] = [data for kind, name, data in asking_desk.agent.reports if kind is Kind.SECURITY]
    assert event == {"event": "consent_skip_refused", "access": "remote_control", "operator": "jane"}
    assert "consent skipping refused  Jane Doe asked to skip your consent for remote control" in asking_desk.agent.access.read()


def test_live_view_can_wait_for_consent_and_renewals_are_not_asked_again(x_env, tmp_path):
    desk = Desk(tmp_path, LocalPolicy(ask_before=frozenset({"live_view"}), consent_timeout_s=60))
    try:
        screen = Screen(desk.ctx, publish=lambda body: None, ready=lambda: True)
        future: Future = Future()
        threading.Thread(target=lambda: future.set_result(screen.live_start({"reason": REASON}, desk.jane)), daemon=True).start()
        [window] = wait_for(lambda: windows_named(PROMPT), what="the consent prompt for live view")
        click_centre(prompt_buttons(window)[0])
        assert future.result(timeout=15)["started"]
        assert not screen.live_start({"reason": REASON}, desk.jane)["started"]  # a renewal: no prompt (it would block here)
        screen.close(desk.ctx)
    finally:
        desk.close()


# -- which indicator --------------------------------------------------------------------------

def test_no_tray_on_bare_xvfb_so_the_bar_is_used(x_env):
    assert not tray_available()
    assert select_indicator("auto").name == "bar"


def test_a_tray_is_detected_by_its_selection_owner(x_env):
    from Xlib import X
    from Xlib.display import Display

    fake_tray = Display()
    window = fake_tray.screen().root.create_window(0, 0, 1, 1, 0, X.CopyFromParent)
    window.set_selection_owner(fake_tray.intern_atom("_NET_SYSTEM_TRAY_S0"), X.CurrentTime)
    fake_tray.sync()
    try:
        assert tray_available()
        assert select_indicator("auto").name == "tray"
        assert select_indicator("bar").name == "bar", "local policy can ask for the bar"
    finally:
        fake_tray.close()
    assert wait_for(lambda: not tray_available(), what="the selection to be released")


def test_the_tray_child_on_a_desktop_without_tray_hands_over_to_the_bar(desk):
    desk.indicator.backend = tray()
    desk.ctx.accesses.begin(REMOTE_CONTROL, "jane", REASON, "s-2", "Jane Doe")
    desk.until(lambda: desk.indicator.backend.name == "bar", "the tray to hand over", timeout_s=30)
    desk.shown(1)
    the_bar()
    desk.ctx.accesses.end(REMOTE_CONTROL, "jane", "s-2")
    desk.until(no_bar, "the bar to go")
