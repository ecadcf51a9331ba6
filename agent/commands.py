"""Commands the agent answers. Each is a small function whose docstring is its help.

A handler takes the command's ``args`` map and returns a result map; an
exception becomes a ``failed`` result with its message.
"""
from __future__ import annotations

import time
from typing import Callable

from agent import sysinfo


def ping(args: dict) -> dict:
    """Answer at once: proves the agent is reachable and executing commands."""
    return {"pong": True, "agent_time": time.time(), "echo": args.get("echo")}


def sysinfo_now(args: dict) -> dict:
    """Collect and return system information now."""
    return sysinfo.collect()


HANDLERS: dict[str, Callable[[dict], dict]] = {
    "ping": ping,
    "sysinfo": sysinfo_now,
}
