"""Is there a screen the user sees, and how to start a small GUI program on it.

Notices, chat windows and remote input all need the logged-in user's
display. On Windows and macOS the agent runs in the user's session and
always has one; on Linux and other X11 systems it is the ``DISPLAY``
variable (a Wayland session provides one through XWayland). GUI pieces run
as child processes (``python -m agent.notice.window ...``) so that a
toolkit crash or a hung window can never take the agent down with it.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path

#: the directory that holds the ``agent`` package: children must import it
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def has_display(env: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    """True when a GUI can be shown to the user (checked at each call)."""
    platform = sys.platform if platform is None else platform
    if platform in ("win32", "darwin"):
        return True
    env = os.environ if env is None else env
    return bool(env.get("DISPLAY", "").strip())


@functools.cache
def tk_installed() -> bool:
    """Whether this Python has Tk (Debian: python3-tk), which the notice and chat windows use."""
    return importlib.util.find_spec("_tkinter") is not None


def gui_available(env: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    """A display to show windows on, and Tk to draw them with."""
    return has_display(env, platform) and tk_installed()


def module_argv(module: str, *args: str) -> list[str]:
    """The argv that runs ``python -m module args...`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a GUI child: ours, able to import ``agent``, UTF-8 pipes."""
    out = dict(os.environ if env is None else env)
    path = out.get("PYTHONPATH", "")
    if _PACKAGE_ROOT not in path.split(os.pathsep):
        out["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, path) if p)
    out["PYTHONIOENCODING"] = "utf-8"
    return out
