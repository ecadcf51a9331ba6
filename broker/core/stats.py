"""Counters and log throttling: every drop is counted, no flood floods the log."""
from __future__ import annotations

import time
from collections import Counter
from typing import Callable


class Counters(Counter):
    """Named monotonic counters (``routed``, ``dropped_hwm``, ...)."""

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self.items()))


class LogThrottle:
    """Allow ``burst`` messages per key per ``window_s``; count the rest.

    ``allow(key)`` says whether to log now; when a window closes with
    suppressed messages, the next allowed call reports how many were held
    back through ``suppressed(key)``.
    """

    def __init__(self, burst: int = 5, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.burst, self.window_s, self.clock = burst, window_s, clock
        self._state: dict[object, list] = {}

    def allow(self, key: object) -> bool:
        now = self.clock()
        state = self._state.get(key)
        if state is None or now - state[0] >= self.window_s:
            held = state[2] if state else 0
            self._state[key] = [now, 1, 0, held]
            if len(self._state) > 10_000:  # bounded memory under key floods
                self._state.clear()
            return True
        if state[1] < self.burst:
            state[1] += 1
            return True
        state[2] += 1
        return False

    def suppressed(self, key: object) -> int:
        """How many messages for ``key`` were held back in the last window."""
        state = self._state.get(key)
        return state[3] if state else 0
