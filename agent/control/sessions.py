"""Remote-control sessions: who may send input right now, and until when.

At most one session at a time: one operator holds the screen. It ends when
that operator closes it, when no input arrives for ``idle_timeout_s``, or
when the agent stops. This module keeps the state only; notices and the
access log are :mod:`agent.control.service`'s job.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.context import CommandError
from broker.core.envelope import new_id

DEFAULT_IDLE_TIMEOUT_S = 300.0
NOT_OPEN = "no remote-control session open"
ENDED_BY_USER = "the user ended your session"


@dataclass
class ControlSession:
    """One operator's remote-control session."""

    session_id: str
    operator: str
    reason: str
    opened_at: float  # wall clock, for people
    last_active: float  # session clock, for the idle timeout
    #: the operator as the employee reads it
    name: str = ""

    @property
    def who(self) -> str:
        return self.name or self.operator

    def summary(self) -> dict:
        return {"session_id": self.session_id, "operator": self.operator, "reason": self.reason, "opened_at": self.opened_at}


class ControlSessions:
    """The open session (if any); ``clock`` is injectable for tests."""

    def __init__(self, idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S, clock: Callable[[], float] = time.monotonic):
        self.idle_timeout_s = idle_timeout_s
        self.clock = clock
        self.current: ControlSession | None = None
        #: operator -> when the user last ended their session (wall clock), until they open a new one
        self.ended_by_user: dict[str, float] = {}

    def refuse_if_held(self, operator: str) -> ControlSession | None:
        """``operator``'s own open session (or None); CommandError while another operator holds one."""
        held = self.current
        if held is not None and held.operator != operator:
            raise CommandError(f"remote control is already held by {held.who} (since {_hhmm(held.opened_at)}); they must close it first")
        return held

    def open(self, operator: str, reason: str, name: str = "") -> tuple[ControlSession, bool]:
        """The operator's session and whether it is new; refuses while another operator holds one."""
        held = self.refuse_if_held(operator)
        if held is not None:
            held.last_active = self.clock()
            return held, False
        self.ended_by_user.pop(operator, None)
        self.current = ControlSession(new_id(), operator, reason, time.time(), self.clock(), name)
        return self.current, True

    def end_by_user(self, session_id: str) -> ControlSession | None:
        """The user ended session ``session_id`` on their screen; returns it (None if it is no longer open)."""
        held = self.current
        if held is None or held.session_id != session_id:
            return None
        self.current = None
        self.ended_by_user[held.operator] = time.time()
        return held

    def require(self, operator: str) -> ControlSession:
        """The open session of ``operator``; CommandError("no remote-control session open: ...") otherwise."""
        held = self.current
        if (held is None or held.operator != operator) and operator in self.ended_by_user:
            raise CommandError(f"{NOT_OPEN}: {ENDED_BY_USER} at {_hhmm(self.ended_by_user[operator])}")
        if held is None:
            raise CommandError(f"{NOT_OPEN}: send control.open with a reason first")
        if held.operator != operator:
            raise CommandError(f"{NOT_OPEN}: {operator or 'this sender'} has no session here ({held.operator} is controlling this screen)")
        return held

    def touch(self, session: ControlSession) -> None:
        session.last_active = self.clock()

    def close(self, operator: str) -> ControlSession:
        """End ``operator``'s session and return it."""
        session = self.require(operator)
        self.current = None
        return session

    def expire(self) -> ControlSession | None:
        """End the session if it has been idle too long; returns the ended one."""
        held = self.current
        if held is not None and self.clock() - held.last_active >= self.idle_timeout_s:
            self.current = None
            return held
        return None

    def end(self) -> ControlSession | None:
        """End whatever session is open (agent stopping)."""
        held, self.current = self.current, None
        return held


def _hhmm(wall: float) -> str:
    return time.strftime("%H:%M", time.localtime(wall))
