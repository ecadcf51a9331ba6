"""The session on Linux: logind (``loginctl``) for logins and locks, X for idle time.

* logins and locks: systemd-logind through ``loginctl`` (sessions of class
  ``user``, their ``LockedHint``); without logind (no systemd as PID 1,
  a container) the logged-in users come from utmp (``psutil.users()``)
  and locks are unknown, and :meth:`LinuxSessionSource.blind_spots` says so;
* idle time: the X server's MIT-SCREEN-SAVER extension (what ``xprintidle``
  asks), on the display in ``DISPLAY``; unknown without one;
* the application in front (only with ``window_usage``): the ``WM_CLASS``
  of the window ``_NET_ACTIVE_WINDOW`` names; never its title.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time

import psutil

from agent.activity.session import SessionState

log = logging.getLogger(__name__)

LOGINCTL_TIMEOUT_S = 3.0
#: after logind could not be asked, ask again no sooner than this
LOGIND_RETRY_S = 60.0


class Logind:
    """Logged-in users and the lock state from systemd-logind, through ``loginctl``."""

    def __init__(self, loginctl: str | None = None):
        self.loginctl = loginctl or shutil.which("loginctl")
        self.why_not = "" if self.loginctl else "logind: loginctl is not installed"
        self._retry_at = 0.0

    def read(self) -> tuple[frozenset[str], bool | None] | None:
        """(users, locked) or None when logind cannot be asked (``why_not`` says why)."""
        if not self.loginctl or time.monotonic() < self._retry_at:
            return None
        listing = self._run("list-sessions", "--no-legend")
        if listing is None:
            self._retry_at = time.monotonic() + LOGIND_RETRY_S  # no systemd here: not every few seconds
            return None
        users, locks = set(), []
        for session_id in [line.split()[0] for line in listing.splitlines() if line.split()]:
            props = self._properties(session_id)
            if props.get("Class") != "user":
                continue
            users.add(props.get("Name", ""))
            if props.get("Active") == "yes":
                locks.append(props.get("LockedHint") == "yes")
        self.why_not = ""
        return frozenset(u for u in users if u), (any(locks) if locks else None)

    def _properties(self, session_id: str) -> dict[str, str]:
        out = self._run("show-session", session_id, "-p", "Name", "-p", "Class", "-p", "Active", "-p", "LockedHint") or ""
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def _run(self, *args: str) -> str | None:
        try:
            done = subprocess.run([self.loginctl, "--no-pager", *args], capture_output=True, text=True, timeout=LOGINCTL_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError) as exc:
            self.why_not = f"logind: {exc}"
            return None
        if done.returncode != 0:
            self.why_not = "logind: " + (done.stderr.strip().splitlines() or [f"loginctl exit {done.returncode}"])[0]
            return None
        return done.stdout


class XSession:
    """Idle time (and the application in front) from the X display in ``DISPLAY``."""

    def __init__(self, display_name: str | None = None):
        self.display_name = display_name
        self.display = None
        self.why_not = ""

    def idle_s(self) -> float | None:
        """Seconds since the last keyboard or mouse input (never which input), or None."""
        display = self._display()
        if display is None:
            return None
        try:
            return display.screen().root.screensaver_query_info().idle / 1000.0
        except Exception as exc:  # a display that went away
            self._lost(exc)
            return None

    def application(self) -> str | None:
        """The ``WM_CLASS`` class of the active window ("" when none), or None."""
        display = self._display()
        if display is None:
            return None
        try:
            root = display.screen().root
            active = root.get_full_property(display.intern_atom("_NET_ACTIVE_WINDOW"), 0)
            if active is None or not active.value or not active.value[0]:
                return ""
            wm_class = display.create_resource_object("window", active.value[0]).get_wm_class()
            return wm_class[1] if wm_class else ""
        except Exception as exc:
            self._lost(exc)
            return None

    def close(self) -> None:
        if self.display is not None:
            try:
                self.display.close()
            except Exception:
                pass
            self.display = None

    def _display(self):
        if self.display is not None:
            return self.display
        name = self.display_name or os.environ.get("DISPLAY", "")
        if not name:
            self.why_not = "idle time: no X display (DISPLAY is not set)"
            return None
        try:
            from Xlib import display as xdisplay  # noqa: PLC0415 - only with a display

            display = xdisplay.Display(name)
            if not display.has_extension("MIT-SCREEN-SAVER"):
                display.close()
                self.why_not = f"idle time: the X server on {name} has no MIT-SCREEN-SAVER extension"
                return None
        except Exception as exc:
            self.why_not = f"idle time: cannot open the X display {name}: {exc}"
            return None
        self.display, self.why_not = display, ""
        return display

    def _lost(self, exc: Exception) -> None:
        log.info("lost the X display: %s", exc)
        self.close()
        self.why_not = f"idle time: the X display went away ({exc})"


class LinuxSessionSource:
    """logind + X, with utmp for users when logind is absent."""

    name = "linux"

    def __init__(self, window_usage: bool = False, logind: Logind | None = None, x: XSession | None = None):
        self.window_usage = window_usage
        self.logind = logind or Logind()
        self.x = x or XSession()

    def read(self) -> SessionState:
        found = self.logind.read()
        if found is None:
            users, locked = _utmp_users(), None
        else:
            users, locked = found
        application = self.x.application() if self.window_usage else None
        return SessionState(users=users, locked=locked, idle_s=self.x.idle_s(), application=application)

    def blind_spots(self) -> list[str]:
        spots = []
        if self.logind.why_not:
            spots.append(f"{self.logind.why_not} (so: users from utmp, lock and unlock unknown)")
        if self.x.why_not:
            spots.append(self.x.why_not)
        return spots

    def close(self) -> None:
        self.x.close()


def _utmp_users() -> frozenset[str] | None:
    try:
        return frozenset(u.name for u in psutil.users() if u.name)
    except Exception:
        return None
