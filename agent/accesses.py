"""Who is accessing this computer right now: the registry behind the on-screen indicator.

An *access* is one live view, remote-control session, file transfer or
thumbnail series: its kind, the operator, the reason, since when, and a
session id. Handlers (on command lane threads) :meth:`~AccessRegistry.begin`
and :meth:`~AccessRegistry.end` sessions; looks that come as a series
(thumbnails, file chunks) :meth:`~AccessRegistry.touch` one, and the series
ends when nothing touched it for ``series_idle_s`` (:meth:`~AccessRegistry.expire`,
called from the agent's loop). The indicator (:mod:`agent.indicator`) shows
:meth:`~AccessRegistry.snapshot` whenever :attr:`~AccessRegistry.version`
changes. Nothing here imports the rest of the agent.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: access kinds (the same words as the notice kinds where there is one)
LIVE_VIEW = "live_view"
REMOTE_CONTROL = "remote_control"
FILE_TRANSFER = "file_transfer"
THUMBNAILS = "thumbnail"
KINDS = (LIVE_VIEW, REMOTE_CONTROL, FILE_TRANSFER, THUMBNAILS)

#: how the indicator says what an access does, for one sentence: "<who> <is ...>"
DOING = {
    LIVE_VIEW: "is viewing your screen",
    REMOTE_CONTROL: "is controlling this computer",
    FILE_TRANSFER: "is transferring files",
    THUMBNAILS: "sees small previews of your screen",
}


@dataclass(frozen=True)
class ActiveAccess:
    """One access that is going on now."""

    kind: str
    operator: str
    reason: str
    since: float  # wall clock, for people
    session_id: str = ""
    #: the operator as the employee reads it (a person's name); ``operator`` is the key id
    name: str = ""

    @property
    def who(self) -> str:
        return self.name or self.operator

    @property
    def key(self) -> str:
        """Unique among the accesses going on: kind, operator and session."""
        return f"{self.kind}:{self.operator}:{self.session_id}"

    def sentence(self) -> str:
        """"Jane Doe is controlling this computer" (the reason is shown beside it)."""
        return f"{self.who} {DOING.get(self.kind, 'is accessing this computer')}"

    def as_dict(self) -> dict:
        return {"key": self.key, "kind": self.kind, "operator": self.operator, "who": self.who, "reason": self.reason,
                "since": self.since, "session_id": self.session_id, "text": self.sentence()}


class AccessRegistry:
    """The accesses going on now; thread-safe. ``clock`` (monotonic) drives series expiry."""

    def __init__(self, series_idle_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time):
        self.series_idle_s = series_idle_s
        self.clock, self.wall = clock, wall
        #: bumped on every change: the indicator redraws when it moves
        self.version = 0
        self._active: dict[str, ActiveAccess] = {}
        self._last_touch: dict[str, float] = {}  # series only
        self._lock = threading.Lock()

    def begin(self, kind: str, operator: str, reason: str = "", session_id: str = "", name: str = "") -> ActiveAccess:
        """Record a session that lasts until :meth:`end` (a second begin of the same key keeps the first)."""
        access = ActiveAccess(kind, operator, reason, self.wall(), session_id, name)
        with self._lock:
            if access.key in self._active:
                return self._active[access.key]
            self._active[access.key] = access
            self.version += 1
            return access

    def touch(self, kind: str, operator: str, reason: str = "", name: str = "") -> tuple[ActiveAccess, bool]:
        """One more look of a series (thumbnails, file chunks): starts it, or keeps it going.

        Returns the access and whether this look started the series. A new
        reason replaces the shown one.
        """
        with self._lock:
            key = ActiveAccess(kind, operator, "", 0.0).key
            held = self._active.get(key)
            started = held is None
            if held is None or (reason and reason != held.reason):
                held = ActiveAccess(kind, operator, reason or (held.reason if held else ""),
                                    held.since if held else self.wall(), "", name)
                self._active[key] = held
                self.version += 1
            self._last_touch[key] = self.clock()
            return held, started

    def end(self, kind: str, operator: str, session_id: str = "") -> ActiveAccess | None:
        """End one access; returns it (None if it was not going on)."""
        return self.end_key(ActiveAccess(kind, operator, "", 0.0, session_id).key)

    def end_key(self, key: str) -> ActiveAccess | None:
        with self._lock:
            access = self._active.pop(key, None)
            self._last_touch.pop(key, None)
            if access is not None:
                self.version += 1
            return access

    def get(self, key: str) -> ActiveAccess | None:
        with self._lock:
            return self._active.get(key)

    def expire(self) -> list[ActiveAccess]:
        """End the series nothing touched for ``series_idle_s``; returns them."""
        now = self.clock()
        with self._lock:
            idle = [key for key, at in self._last_touch.items() if now - at >= self.series_idle_s]
        return [access for access in map(self.end_key, idle) if access is not None]

    def snapshot(self) -> list[ActiveAccess]:
        """The accesses going on, oldest first."""
        with self._lock:
            return sorted(self._active.values(), key=lambda a: (a.since, a.key))
