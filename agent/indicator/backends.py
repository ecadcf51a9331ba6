"""Where the indicator appears: one small interface, one backend per desktop capability.

* A desktop with a system tray (an XEmbed tray owning ``_NET_SYSTEM_TRAY_S<n>``,
  or a StatusNotifierWatcher on the session bus) and pystray installed: a
  tray icon (:mod:`agent.indicator.tray`) whose menu names who and why, with
  End and Access log. If the tray turns out unusable the child says so and the
  bar takes over.
* Any other display (Xvfb has no tray), or ``indicator: "bar"`` in the
  local policy: the privacy bar (:mod:`agent.indicator.bar`).
* No display: :class:`LogOnlyIndicator` (notices and the access log still
  say everything).

Both screen backends are child processes talking JSON lines
(:class:`agent.chat.channel.WindowProcess`): a toolkit crash cannot reach
the agent, and a child that dies while accesses go on is started again.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import queue
import shutil
import subprocess
import sys
from collections.abc import Mapping
from typing import Protocol

from agent.chat.channel import WindowProcess
from agent.notice.display import child_env, gui_available, module_argv

log = logging.getLogger(__name__)

#: a child that keeps dying before it shows anything is started at most this often in a row
MAX_RESTARTS = 3
STATUS_NOTIFIER = "org.kde.StatusNotifierWatcher"


class IndicatorBackend(Protocol):
    """Shows the accesses going on; ``show([])`` takes the indicator away. Never blocks or raises."""

    name: str

    def show(self, accesses: list[dict]) -> None: ...

    def events(self) -> list[dict]:
        """What the user did since the last call (``{"event": "end", "key": ...}``, ``access_log``...)."""

    def close(self) -> None: ...


class LogOnlyIndicator:
    """No screen: nothing to show (the notices and the access log carry it)."""

    name = "log"

    def show(self, accesses: list[dict]) -> None:
        log.debug("no display: %d accesses not shown on an indicator", len(accesses))

    def events(self) -> list[dict]:
        return []

    def close(self) -> None:
        pass


class ChildIndicator:
    """An indicator drawn by ``python -m <module>``, told the accesses on its stdin."""

    def __init__(self, name: str, module: str):
        self.name, self.module = name, module
        self.child: WindowProcess | None = None
        self.current: list[dict] = []
        self.restarts = 0
        self._events: queue.Queue = queue.Queue()

    def show(self, accesses: list[dict]) -> None:
        if accesses != self.current:
            self.restarts = 0
        self.current = list(accesses)
        if not self.current:
            self._stop()
            return
        if self.child is None or not self.child.running:
            self._start()
        if self.child is not None:
            self.child.send({"cmd": "show", "accesses": self.current})

    def events(self) -> list[dict]:
        out = []
        while True:
            try:
                child, event = self._events.get_nowait()
            except queue.Empty:
                break
            if event is not None:
                self.restarts = 0 if event.get("event") == "shown" else self.restarts
                out.append(event)
            elif child is self.child:
                self._died(child, gave_up=any(e.get("event") == "unavailable" for e in out))
        return out

    def _died(self, child: WindowProcess, gave_up: bool) -> None:
        """The child ended by itself: while accesses go on it is started again (a few times in a row at most)."""
        child.stop()
        self.child = None
        if not self.current or gave_up:
            return
        self.restarts += 1
        if self.restarts > MAX_RESTARTS:
            log.error("the %s indicator keeps ending (exit %s); the accesses are in notices and the access log only",
                      self.name, child.proc.returncode)
            return
        log.warning("the %s indicator (pid %s) ended by itself; starting it again", self.name, child.pid)
        self._start()
        if self.child is not None:
            self.child.send({"cmd": "show", "accesses": self.current})

    def close(self) -> None:
        self.current = []
        self._stop()

    def _start(self) -> None:
        try:
            self.child = WindowProcess(module_argv(self.module), child_env(), self._events, self.name)
        except OSError as exc:
            log.warning("could not start the %s indicator (%s); the accesses are in notices and the access log", self.name, exc)
            self.child = None

    def _stop(self) -> None:
        child, self.child = self.child, None
        if child is not None:
            child.stop()


def bar() -> ChildIndicator:
    return ChildIndicator("bar", "agent.indicator.bar")


def tray() -> ChildIndicator:
    return ChildIndicator("tray", "agent.indicator.tray")


def xembed_tray_owned(display: str | None = None) -> bool:
    """Whether some client owns ``_NET_SYSTEM_TRAY_S<screen>`` on the X display (an XEmbed tray)."""
    try:
        from Xlib import X
        from Xlib.display import Display
        from Xlib.error import DisplayError
    except ImportError:
        return False
    try:
        conn = Display(display)
    except (DisplayError, OSError, Exception):  # noqa: BLE001 - no X server: no tray
        return False
    try:
        atom = conn.intern_atom(f"_NET_SYSTEM_TRAY_S{conn.get_default_screen()}")
        return conn.get_selection_owner(atom) != X.NONE
    finally:
        conn.close()


def status_notifier_present() -> bool:
    """Whether a StatusNotifierWatcher (KDE, GNOME with the AppIndicator extension...) is on the session bus."""
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS") or shutil.which("dbus-send") is None:
        return False
    argv = ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
            "org.freedesktop.DBus.NameHasOwner", f"string:{STATUS_NOTIFIER}"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=3)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and "boolean true" in done.stdout


def tray_available(env: Mapping[str, str] | None = None) -> bool:
    """A system tray on this desktop that a tray icon can dock into."""
    env = os.environ if env is None else env
    return xembed_tray_owned(env.get("DISPLAY")) or status_notifier_present()


def select_indicator(style: str = "auto", env: Mapping[str, str] | None = None, platform: str | None = None) -> IndicatorBackend:
    """The indicator for this machine: ``style`` is the local policy's ``indicator`` (``auto`` or ``bar``)."""
    platform = sys.platform if platform is None else platform
    if not gui_available(env, platform):
        return LogOnlyIndicator()
    pystray = importlib.util.find_spec("pystray") is not None
    if style == "auto" and platform not in ("win32", "darwin") and pystray and tray_available(env):
        return tray()
    return bar()
