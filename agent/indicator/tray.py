"""The tray indicator: ``python -m agent.indicator.tray`` (pystray, no Qt).

The same JSON-lines protocol as the privacy bar (:mod:`agent.indicator.bar`):
a red eye icon in the system tray while accesses go on; its tooltip and
menu name who and why, with "End: ..." entries where the agent allows one
and "Access log". pystray has one small backend per platform (XEmbed on
X11, AppIndicator/GTK where PyGObject is installed, the Windows
notification area, the macOS status bar). Where the backend has no menu
(XEmbed) a click on the icon opens the same entries as a Tk menu
(:mod:`agent.indicator.tray_menu`), which reports where its entries are
(``"shown"`` with ``buttons``, as the bar does). When the desktop has no
usable tray it prints ``{"event": "unavailable"}`` and exits 3, and the
agent shows the bar instead.
"""
from __future__ import annotations

import json
import queue
import sys
import threading

from agent.indicator.bar import WINDOW_TITLE, _line, read_commands

ICON_PX = 64
RED = (192, 57, 43, 255)
WHITE = (255, 255, 255, 255)
#: the Windows notification area cuts tooltips at 128 characters
MAX_TOOLTIP_CHARS = 127
UNAVAILABLE = 3

#: (label, the event a click sends or None for a line that only informs, the entry's button name)
Entry = tuple[str, dict | None, str | None]
#: an entry with an empty label is a separator
SEPARATOR: Entry = ("", None, None)


def emit(**event) -> None:
    """One event line to the agent (a gone agent is not an error here: stdin's end closes us)."""
    try:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass


def eye_image():
    """The red eye, drawn with Pillow."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (ICON_PX, ICON_PX), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((4, 16, ICON_PX - 4, ICON_PX - 16), fill=RED)
    draw.ellipse((22, 22, ICON_PX - 22, ICON_PX - 22), fill=WHITE)
    return image


def menu_entries(accesses: list) -> list[Entry]:
    """The menu: the title, one line per access (with its End entry where allowed), Access log."""
    entries: list[Entry] = [(WINDOW_TITLE, None, None)]
    for access in (a for a in accesses if isinstance(a, dict)):
        entries.append((_line(access), None, None))
        if access.get("endable"):
            key = str(access.get("key", ""))
            entries.append(("End: " + str(access.get("text", "")), {"event": "end", "key": key}, "end:" + key))
    entries.append(SEPARATOR)
    entries.append(("Access log", {"event": "access_log"}, "access_log"))
    return entries


def tooltip(accesses: list) -> str:
    lines = [_line(a) for a in accesses if isinstance(a, dict)]
    return "\n".join([WINDOW_TITLE, *lines])[:MAX_TOOLTIP_CHARS]


def _sender(event: dict):
    return lambda: emit(**event)


def _nothing() -> None:
    """The lines that only inform do nothing when clicked."""


class TrayIndicator:
    """The pystray icon and the pump that applies the agent's commands (run as the icon's setup thread)."""

    def __init__(self, pystray, commands: queue.Queue):
        self.pystray, self.commands = pystray, commands
        self.accesses: list = []
        self.popup = None
        if not pystray.Icon.HAS_MENU:
            from agent.indicator.tray_menu import PopupMenu

            self.popup = PopupMenu(emit)
        self.icon = pystray.Icon("ems-indicator", eye_image(), WINDOW_TITLE, menu=self.native_menu([]))
        if self.popup is not None:
            _listen_for_clicks(self.icon)

    def native_menu(self, accesses: list):
        """The backend's own menu; its hidden default item (a click on the icon) opens the Tk menu where there is no other."""
        item, menu = self.pystray.MenuItem, self.pystray.Menu
        items = [item(label, _sender(event) if event else _nothing, enabled=event is not None) if label else menu.SEPARATOR
                 for label, event, _ in menu_entries(accesses)]
        items.append(item("Menu", self.open_popup, default=True, visible=False))
        return menu(*items)

    def open_popup(self) -> None:
        if self.popup is not None:
            self.popup.open(menu_entries(self.accesses), len(self.accesses))

    def show(self, accesses: list) -> None:
        self.accesses = [a for a in accesses if isinstance(a, dict)]
        self.icon.title = tooltip(self.accesses)
        self.icon.menu = self.native_menu(self.accesses)
        self.icon.visible = True
        emit(event="shown", count=len(self.accesses))

    def pump(self, icon) -> None:
        """The setup thread: commands until ``close`` or the end of stdin, then the icon stops."""
        while True:
            command = self.commands.get()
            if command is None or command.get("cmd") == "close":
                break
            if command.get("cmd") == "show" and isinstance(command.get("accesses"), list):
                self.show(command["accesses"])
        if self.popup is not None:
            self.popup.close()
        icon.visible = False
        icon.stop()


def _listen_for_clicks(icon) -> None:
    """pystray's XEmbed backend handles clicks but never asks X for them (pystray issue #151): ask on its window."""
    from Xlib import X

    window, display = getattr(icon, "_window", None), getattr(icon, "_display", None)
    if window is None or display is None:
        sys.stderr.write("EMS tray indicator: this pystray has no X window to listen on; clicks may not arrive\n")
        return
    window.change_attributes(event_mask=X.ExposureMask | X.StructureNotifyMask | X.ButtonPressMask)
    display.flush()


def _load_pystray():
    """pystray with a backend for this desktop, or None (said on stderr)."""
    try:
        import pystray
    except Exception as exc:  # ImportError, or Xlib's display errors raised by its X11 backend at import
        sys.stderr.write(f"EMS tray indicator: no tray backend here: {exc}\n")
        return None
    if pystray.Icon.__module__.endswith("._xorg"):
        from agent.indicator.backends import xembed_tray_owned

        if not xembed_tray_owned():
            sys.stderr.write("EMS tray indicator: no XEmbed system tray on this display\n")
            return None
    return pystray


def main(argv: list[str] | None = None) -> int:
    pystray = _load_pystray()
    if pystray is None:
        emit(event="unavailable")
        return UNAVAILABLE
    commands: queue.Queue = queue.Queue()
    threading.Thread(target=read_commands, args=(commands,), name="stdin", daemon=True).start()
    tray = TrayIndicator(pystray, commands)
    tray.icon.run(setup=tray.pump)
    return 0


if __name__ == "__main__":
    sys.exit(main())
