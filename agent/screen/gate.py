"""A local rate limit on looks at the screen (thumbnails, captures).

:class:`LookGate` allows at most ``per_minute`` looks of one kind in any
60 s (a sliding window, all operators together), never more than a
ceiling fixed in code, and remembers when each operator was last told.
:class:`agent.screen.handlers.Screen` (the screen capability) owns one gate
per kind, made from the agent's local policy (``policy.json``, set at
install; the server cannot change it).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from agent.context import CommandError

#: the rate limit's window
WINDOW_S = 60.0


class LookGate:
    """One kind of look's budget on this screen, and who has been told.

    ``what`` names the look in messages ("thumbnail", "capture"); ``setting``
    is the policy key that sets ``per_minute`` (clamped to 0..``ceiling``;
    0 turns the look off); ``notice_every_s``: how long one operator's
    notice covers. Thread-safe (commands run on lane threads).
    """

    def __init__(self, what: str, setting: str, per_minute: int, ceiling: int, notice_every_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self.what, self.setting = what, setting
        self.per_minute = max(0, min(int(per_minute), ceiling))
        self.notice_every_s = float(notice_every_s)
        self.clock = clock
        self._taken: deque[float] = deque()
        self._told: dict[str, float] = {}
        self._lock = threading.Lock()

    def take(self) -> None:
        """Spend one look now, or raise :class:`CommandError` saying when the next one is allowed."""
        if self.per_minute == 0:
            raise CommandError(f"{self.what}s are turned off on this computer ({self.setting} is 0 in its local policy)")
        with self._lock:
            now = self.clock()
            while self._taken and self._taken[0] <= now - WINDOW_S:
                self._taken.popleft()
            if len(self._taken) >= self.per_minute:
                wait = self._taken[0] + WINDOW_S - now
                raise CommandError(f"{self.what} refused: this computer's local policy allows {self.per_minute} a minute; "
                                   f"the next one in {wait:.0f} s")
            self._taken.append(now)

    def give_back(self) -> None:
        """Undo the last :meth:`take` (nothing was looked at after all)."""
        with self._lock:
            if self._taken:
                self._taken.pop()

    def notice_due(self, operator: str) -> bool:
        """True (and remembered) when ``operator`` has not been announced within ``notice_every_s``."""
        with self._lock:
            now = self.clock()
            told = self._told.get(operator)
            if told is not None and now - told < self.notice_every_s:
                return False
            self._told[operator] = now
            return True
