"""Executing input on the local screen: the one place that knows pyautogui and the platforms.

pyautogui drives X11 (XTEST), Windows (SendInput) and macOS (Quartz). It
raises ``KeyError: 'DISPLAY'`` when imported without a display, so it is
imported on first use; on X11 it binds to ``$DISPLAY`` at import, and
:meth:`InputDriver.gui` re-binds it when the display changed since (a new
login session). Differences between platforms live here:

* key aliases: ``meta``/``super``/``cmd`` are ``command`` on macOS and
  ``win`` elsewhere; ``option`` is ``alt`` outside macOS;
* horizontal wheel: pyautogui has none on Windows, so it is sent as
  shift + vertical wheel there (what most Windows programs understand);
* text: characters pyautogui cannot type on this platform are skipped and
  counted (never named).

Nothing here logs or keeps what is typed.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any

from agent.context import CommandError
from agent.control.events import FrameMapper, InputEvent
from agent.notice.display import has_display

log = logging.getLogger(__name__)

NO_DISPLAY = "remote input unavailable: no display"

_MAC_ALIASES = {"meta": "command", "super": "command", "cmd": "command", "win": "command", "windows": "command"}
_OTHER_ALIASES = {"meta": "win", "super": "win", "cmd": "win", "command": "win", "windows": "win", "option": "alt"}
_COMMON_ALIASES = {"control": "ctrl", "escape": "esc", "return": "enter", "del": "delete", "ins": "insert", "pgup": "pageup", "pgdn": "pagedown"}


class InputDriver:
    """Moves the pointer, clicks, scrolls and types on this machine's screen."""

    def __init__(self, platform: str | None = None):
        self.platform = sys.platform if platform is None else platform
        self._gui: Any = None
        self._bound_display: str | None = None

    # -- pyautogui, lazily ---------------------------------------------------------
    def gui(self) -> Any:
        """pyautogui, imported and configured (no fail-safe corner, no pauses)."""
        if not has_display(platform=self.platform):
            raise CommandError(NO_DISPLAY)
        if self._gui is None:
            try:
                import pyautogui
            except Exception as exc:  # KeyError DISPLAY, Xlib connection refused, missing backend
                raise CommandError(f"remote input unavailable: {type(exc).__name__}: {exc}") from exc
            pyautogui.FAILSAFE = False
            pyautogui.PAUSE = 0
            pyautogui.MINIMUM_DURATION = 0
            self._gui = pyautogui
            self._bound_display = os.environ.get("DISPLAY")
        self._rebind_x11()
        return self._gui

    def _rebind_x11(self) -> None:
        """Follow a changed ``$DISPLAY`` (pyautogui's X11 module connects once, at import)."""
        if self.platform in ("win32", "darwin"):
            return
        current = os.environ.get("DISPLAY")
        if current == self._bound_display:
            return
        try:
            import pyautogui._pyautogui_x11 as x11
            from Xlib.display import Display

            old, x11._display = x11._display, Display(current)
            old.close()
        except Exception as exc:
            raise CommandError(f"remote input unavailable: cannot open display {current}: {exc}") from exc
        log.info("remote input now on display %s", current)
        self._bound_display = current

    def known_keys(self) -> frozenset[str]:
        """Key names an operator may send (pyautogui's plus aliases)."""
        return frozenset(self.gui().KEYBOARD_KEYS) | frozenset(self._aliases())

    def screen_size(self) -> tuple[int, int]:
        width, height = self.gui().size()
        return int(width), int(height)

    def position(self) -> tuple[int, int]:
        x, y = self.gui().position()
        return int(x), int(y)

    # -- executing ---------------------------------------------------------------
    def run(self, events: list[InputEvent], mapper: FrameMapper | None) -> dict:
        """Execute ``events`` in order; returns counts (never contents)."""
        gui = self.gui()
        skipped = 0
        for event in events:
            point = mapper.to_screen(event.x, event.y) if event.positioned and mapper is not None else None
            if event.type == "move":
                gui.moveTo(*point)
            elif event.type == "click":
                if point is not None:
                    gui.moveTo(*point)
                gui.click(button=event.button, clicks=event.clicks, interval=0.0)
            elif event.type == "wheel":
                self._wheel(gui, event, point)
            elif event.type == "key":
                keys = [self._alias(k) for k in event.keys]
                if len(keys) > 1:
                    gui.hotkey(*keys, interval=0.0)
                else:
                    gui.press(keys[0])
            elif event.type == "text":
                skipped += self._type(gui, event.text)
        return {"executed": len(events), "skipped_chars": skipped}

    def _wheel(self, gui: Any, event: InputEvent, point: tuple[int, int] | None) -> None:
        if point is not None:
            gui.moveTo(*point)
        if event.dy:
            gui.scroll(event.dy)
        if event.dx:
            if self.platform == "win32":
                with gui.hold("shift"):
                    gui.scroll(-event.dx)
            else:
                gui.hscroll(event.dx)

    def _type(self, gui: Any, text: str) -> int:
        mapping = getattr(gui.platformModule, "keyboardMapping", {})
        typeable = [c for c in text if mapping.get(c) is not None]
        if typeable:
            gui.write("".join(typeable), interval=0.0)
        return len(text) - len(typeable)

    def _aliases(self) -> dict[str, str]:
        return {**_COMMON_ALIASES, **(_MAC_ALIASES if self.platform == "darwin" else _OTHER_ALIASES)}

    def _alias(self, name: str) -> str:
        return self._aliases().get(name, name)
