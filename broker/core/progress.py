"""A terminal progress bar for long operations (no dependency)."""
from __future__ import annotations

import sys
import time


class ProgressBar:
    """``bar(done, total)`` redraws one line on stderr: bar, count, rate, ETA."""

    def __init__(self, label: str, stream=sys.stderr, width: int = 30):
        self.label, self.stream, self.width = label, stream, width
        self.started = time.monotonic()
        self._last_draw = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        fraction = done / total if total else 1.0
        filled = int(self.width * fraction)
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        line = f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {done:,}/{total:,} {rate:,.0f}/s"
        line += f" ETA {eta:.0f} s" if done < total else f" in {elapsed:.1f} s\n"
        self.stream.write(line)
        self.stream.flush()
