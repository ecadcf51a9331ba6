"""The tray icon (pystray's XEmbed backend) docked in a stand-in system tray on Xvfb.

There is no tray program here, so :class:`StandInTray` plays the tray's part
of the XEmbed system-tray protocol with python-xlib: it owns
``_NET_SYSTEM_TRAY_S0``, takes the icon window a ``SYSTEM_TRAY_REQUEST_DOCK``
message names into its own window and maps it. Everything else is the
agent's own: the ``python -m agent.indicator.tray`` child, its Pillow icon,
the Tk menu a click on the icon opens (found by the entry places the child
reports, clicked with xdotool), and the indicator capability that ends the
session.
"""
from __future__ import annotations

import threading
import time

import pytest

from agent.accesses import REMOTE_CONTROL
from agent.control import RemoteControl
from agent.indicator.backends import tray

from conftest import wait_for
from test_indicator import REASON, Desk, click_centre, no_bar
from test_notice_display import _x_tools, needs_x, x_env, xdotool, xserver  # noqa: F401

pytestmark = needs_x

TRAY_X, TRAY_Y, ICON_PX = 300, 200, 32
SYSTEM_TRAY_REQUEST_DOCK = 0
EYE_RED = (192, 57, 43)


class StandInTray:
    """The tray's side of the XEmbed system-tray protocol: owns the selection, docks icons, nothing else."""

    def __init__(self):
        from Xlib import X
        from Xlib.display import Display

        self.display = Display()
        screen = self.display.screen()
        self.window = screen.root.create_window(TRAY_X, TRAY_Y, 4 * ICON_PX, ICON_PX, 0, screen.root_depth,
                                                background_pixel=screen.black_pixel)
        self.window.map()
        self.opcode = self.display.intern_atom("_NET_SYSTEM_TRAY_OPCODE")
        self.window.set_selection_owner(self.display.intern_atom("_NET_SYSTEM_TRAY_S0"), X.CurrentTime)
        self.display.sync()
        self.docked: list[int] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="stand-in tray", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        from Xlib import X

        while not self.stopped.is_set():
            while self.display.pending_events():
                event = self.display.next_event()
                if event.type == X.ClientMessage and event.client_type == self.opcode:
                    _, opcode, window_id = event.data[1][:3]
                    if opcode == SYSTEM_TRAY_REQUEST_DOCK and window_id not in self.docked:
                        self._dock(window_id)
            time.sleep(0.02)

    def _dock(self, window_id: int) -> None:
        icon = self.display.create_resource_object("window", window_id)
        icon.reparent(self.window, ICON_PX * len(self.docked), 0)
        icon.configure(width=ICON_PX, height=ICON_PX)
        icon.map()
        self.display.sync()
        self.docked.append(window_id)

    def icon_pixels(self) -> set[tuple[int, int, int]]:
        """The colours on the tray where the first icon sits (read through a second connection)."""
        from PIL import Image
        from Xlib import X
        from Xlib.display import Display

        reader = Display()
        try:
            root = reader.screen().root
            raw = root.get_image(TRAY_X, TRAY_Y, ICON_PX, ICON_PX, X.ZPixmap, 0xFFFFFFFF)
            image = Image.frombytes("RGB", (ICON_PX, ICON_PX), raw.data, "raw", "BGRX")
            return {colour for _, colour in image.getcolors(ICON_PX * ICON_PX)}
        finally:
            reader.close()

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.display.close()


@pytest.fixture
def stand_in_tray(x_env):
    made = StandInTray()
    yield made
    made.close()


def test_the_tray_icon_docks_shows_the_eye_and_its_menu_ends_a_control_session(stand_in_tray, tmp_path):
    desk = Desk(tmp_path)
    desk.indicator.backend = tray()
    try:
        control = RemoteControl()
        desk.indicator.on_end(REMOTE_CONTROL, control.end_by_user)
        opened = control.open({"reason": REASON}, desk.jane)
        desk.until(lambda: desk.indicator.on_screen.get("count") == 1, "the tray icon to report it is shown")
        assert desk.indicator.backend.name == "tray", "no hand-over to the bar: the desktop has a tray"
        wait_for(lambda: stand_in_tray.docked, what="the icon to ask the tray to dock it")
        wait_for(lambda: EYE_RED in stand_in_tray.icon_pixels(), what="the red eye drawn in the tray")
        xdotool("mousemove", str(TRAY_X + ICON_PX // 2), str(TRAY_Y + ICON_PX // 2), "click", "1")
        buttons = desk.until(lambda: desk.indicator.on_screen.get("buttons"), "the icon's menu to open")
        assert set(buttons) == {"access_log", f"end:remote_control:jane:{opened['session_id']}"}
        click_centre(buttons[f"end:remote_control:jane:{opened['session_id']}"])
        desk.until(lambda: control.sessions.current is None, "End in the tray menu to end the session")
        desk.until(lambda: desk.indicator.backend.child is None, "the tray icon to go with the last access")
        assert no_bar(), "the bar never came up"
        wait_for(lambda: EYE_RED not in stand_in_tray.icon_pixels(), what="the eye to leave the tray")
    finally:
        desk.close()


def test_access_log_in_the_tray_menu_opens_the_log(stand_in_tray, tmp_path):
    desk = Desk(tmp_path)
    desk.indicator.backend = tray()
    try:
        desk.ctx.accesses.begin(REMOTE_CONTROL, "jane", REASON, "s-3", "Jane Doe")
        desk.until(lambda: desk.indicator.on_screen.get("count") == 1, "the tray icon to report it is shown")
        wait_for(lambda: EYE_RED in stand_in_tray.icon_pixels(), what="the red eye drawn in the tray")
        xdotool("mousemove", str(TRAY_X + ICON_PX // 2), str(TRAY_Y + ICON_PX // 2), "click", "1")
        buttons = desk.until(lambda: desk.indicator.on_screen.get("buttons"), "the icon's menu to open")
        assert set(buttons) == {"access_log"}, "no End without an ender for the access"
        click_centre(buttons["access_log"])
        desk.until(lambda: desk.opened_logs, "the access log to be opened from the tray menu")
        desk.ctx.accesses.end(REMOTE_CONTROL, "jane", "s-3")
        desk.until(lambda: desk.indicator.backend.child is None, "the tray icon to go")
    finally:
        desk.close()
