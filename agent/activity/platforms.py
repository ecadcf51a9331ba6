"""Which session source this platform has: one small interface, one implementation per platform."""
from __future__ import annotations

import sys

from agent.activity.session import NullSource, SessionSource


def select_source(window_usage: bool = False) -> SessionSource:
    """The session source of this platform (``window_usage``: also the application in front)."""
    if sys.platform.startswith("linux"):
        from agent.activity.linux import LinuxSessionSource  # noqa: PLC0415 - Linux only

        return LinuxSessionSource(window_usage=window_usage)
    return NullSource()
