"""One shape for what an agent can do: a :class:`Capability` the runner owns.

A capability has its commands (:meth:`~Capability.handlers`: name ->
``fn(args, ctx) -> dict``, whose docstring is its help), its periodic work
(:meth:`~Capability.poll`, called on every pass of the agent loop, and
:meth:`~Capability.wait_s`, how soon it wants the next pass) and its
:meth:`~Capability.close`, called once when the agent stops. Its state lives
on the object; nothing is kept at module level.

:class:`Commands` is the capability that is only a table of commands (no
state, no periodic work). :func:`command_table` joins the capabilities'
commands into the runner's table; :func:`summary` is the first line of a
handler's help.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping

from agent.context import AgentContext

Handler = Callable[[dict, AgentContext], dict]


class Capability:
    """The base: no commands, no periodic work, nothing to close."""

    #: a short name, for logs
    name = "capability"

    def handlers(self) -> dict[str, Handler]:
        """The commands this capability answers (name -> handler)."""
        return {}

    def poll(self, ctx: AgentContext) -> None:
        """Periodic work, on every pass of the agent loop; never blocks."""

    def wait_s(self) -> float | None:
        """How soon :meth:`poll` wants to run again (None: no hurry)."""
        return None

    def close(self, ctx: AgentContext) -> None:
        """The agent is stopping: end what is open (with its notices) and let go of resources."""


class Commands(Capability):
    """A capability that is a fixed table of command functions and nothing else."""

    def __init__(self, name: str, table: Mapping[str, Handler]):
        self.name = name
        self._table = dict(table)

    def handlers(self) -> dict[str, Handler]:
        return dict(self._table)


def command_table(capabilities: Iterable[Capability]) -> dict[str, Handler]:
    """Every capability's commands in one table; ValueError if two claim one name."""
    table: dict[str, Handler] = {}
    owner: dict[str, str] = {}
    for capability in capabilities:
        for name, handler in capability.handlers().items():
            if name in table:
                raise ValueError(f"command {name!r} is claimed by both {owner[name]} and {capability.name}")
            table[name], owner[name] = handler, capability.name
    return table


def summary(handler: Handler) -> str:
    """The first line of ``handler``'s docstring (its help), or "" if it has none."""
    doc = inspect.getdoc(handler) or ""
    return doc.strip().splitlines()[0].strip() if doc.strip() else ""
