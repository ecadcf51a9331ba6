"""Commands the agent answers. Each is a small function whose docstring is its help.

A handler takes the command's ``args`` map and the :class:`AgentContext`
and returns a result map; a :class:`~agent.context.CommandError` (or any
other exception) becomes a ``failed`` result with its message.
"""
from __future__ import annotations

import time
from typing import Callable

from agent.context import AgentContext


def ping(args: dict, ctx: AgentContext) -> dict:
    """Answer at once: proves the agent is reachable and executing commands."""
    return {"pong": True, "agent_time": time.time(), "echo": args.get("echo")}


HANDLERS: dict[str, Callable[[dict, AgentContext], dict]] = {
    "ping": ping,
}
