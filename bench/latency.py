"""The timed round-trip loop behind every latency figure of bench/bus.py and bench/peers.py.

A round trip is ``trip(i) -> ok``; the first ``warmup`` are run but not
counted. :func:`round_trips` is the loop; :class:`RoundTrips` is what it
keeps, usable by hand where the loop cannot be (an asyncio client).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RoundTrips:
    """Latencies (µs) and failures of the counted round trips."""

    warmup: int
    latencies_us: list[float] = field(default_factory=list)
    failures: int = 0

    def add(self, i: int, t0_ns: int, t1_ns: int, ok: bool) -> None:
        """Keep round trip ``i`` (started at ``t0_ns``, answered at ``t1_ns``) unless it is a warm-up one."""
        if i >= self.warmup:
            self.latencies_us.append((t1_ns - t0_ns) / 1000)
            self.failures += not ok

    def result(self) -> dict:
        """The figures a child process reports: ``latencies_us`` and ``failures``."""
        return {"latencies_us": self.latencies_us, "failures": self.failures}


def round_trips(trip: Callable[[int], bool], count: int, warmup: int,
                before: Callable[[int], None] | None = None) -> RoundTrips:
    """Run ``warmup + count`` sequential round trips; ``before(i)`` runs ahead of each, untimed (pacing, a CPU mark)."""
    kept = RoundTrips(warmup)
    for i in range(warmup + count):
        if before is not None:
            before(i)
        t0 = time.perf_counter_ns()
        ok = trip(i)
        kept.add(i, t0, time.perf_counter_ns(), ok)
    return kept
