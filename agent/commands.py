"""Commands every agent answers: ``ping`` and ``help``. Each is a small function whose docstring is its help.

A handler takes the command's ``args`` map and the :class:`AgentContext`
and returns a result map; a :class:`~agent.context.CommandError` (or any
other exception) becomes a ``failed`` result with its message.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from agent.capability import Capability, Handler, summary
from agent.context import AgentContext, CommandError


def ping(args: dict, ctx: AgentContext) -> dict:
    """Answer at once: proves the agent is reachable and executing commands."""
    return {"pong": True, "agent_time": time.time(), "echo": args.get("echo")}


class Basics(Capability):
    """``ping`` and ``help``; ``help`` lists the runner's whole command table (``table()``)."""

    name = "basics"

    def __init__(self, table: Callable[[], Mapping[str, Handler]]):
        self._table = table

    def handlers(self) -> dict[str, Handler]:
        return {"ping": ping, "help": self.help}

    def help(self, args: dict, ctx: AgentContext) -> dict:
        """List every command this agent answers, with the first line of its help.

        Returns ``commands`` (name -> that line) and ``text`` (the same, one
        command a line, for a person: ``ems send AGENT help --wait``).
        """
        if args:
            raise CommandError(f"help takes no arguments, not {', '.join(sorted(map(str, args)))}")
        lines = {name: summary(handler) for name, handler in sorted(self._table().items())}
        width = max(map(len, lines), default=0)
        text = "\n".join(f"{name.ljust(width)}  {line}" for name, line in lines.items())
        return {"commands": lines, "text": text}
