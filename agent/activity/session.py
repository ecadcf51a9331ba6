"""The employee's session as a snapshot, and the events between two snapshots.

A :class:`SessionSource` reads a :class:`SessionState`: who is logged in,
whether the session is locked, how long since the last input, and (only
when local policy allows) which application is in front. Whatever a
platform cannot tell is ``None``, and :meth:`SessionSource.blind_spots`
says so in words. :func:`changes` is pure: two snapshots in, event names
and data out.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SessionState:
    """One look at the session; ``None`` where the platform cannot tell."""

    users: frozenset[str] | None = None
    locked: bool | None = None
    idle_s: float | None = None
    application: str | None = None


class SessionSource(Protocol):
    """A platform's way to read the session (one small class per platform)."""

    name: str

    def read(self) -> SessionState:
        """The session now; never raises (what it cannot read is ``None``)."""

    def blind_spots(self) -> list[str]:
        """What this source cannot see here, in words ("" list when it sees everything)."""

    def close(self) -> None:
        """Let go of connections (a display, a bus)."""


class NullSource:
    """For platforms without a source yet: sees nothing and says so."""

    name = "none"

    def __init__(self, why: str = f"no session source for {sys.platform} yet"):
        self.why = why

    def read(self) -> SessionState:
        return SessionState()

    def blind_spots(self) -> list[str]:
        return [self.why]

    def close(self) -> None:
        pass


def changes(before: SessionState, after: SessionState, idle_after_s: float) -> list[tuple[str, dict]]:
    """The session events from ``before`` to ``after`` (name, data), in a stable order.

    ``session.login``/``session.logout`` per user, ``session.lock``/``unlock``,
    ``session.idle`` once the idle time passes ``idle_after_s`` and
    ``session.active`` when input comes back, ``app.focus`` when the
    application in front changes. Unknown values (``None``) make no event.
    """
    events: list[tuple[str, dict]] = []
    if before.users is not None and after.users is not None:
        events += [("session.login", {"user": u}) for u in sorted(after.users - before.users)]
        events += [("session.logout", {"user": u}) for u in sorted(before.users - after.users)]
    if before.locked is not None and after.locked is not None and before.locked != after.locked:
        events.append(("session.lock" if after.locked else "session.unlock", {}))
    was_idle, is_idle = _idle(before, idle_after_s), _idle(after, idle_after_s)
    if was_idle is not None and is_idle is not None and was_idle != is_idle:
        if is_idle:
            events.append(("session.idle", {"idle_s": round(after.idle_s or 0.0, 1)}))
        else:
            events.append(("session.active", {"idle_s": round(before.idle_s or 0.0, 1)}))
    if after.application is not None and after.application != before.application:
        events.append(("app.focus", {"application": after.application}))
    return events


def _idle(state: SessionState, idle_after_s: float) -> bool | None:
    return None if state.idle_s is None else state.idle_s >= idle_after_s

