"""Per-agent rate limits: one flooding agent cannot crowd out the others.

Every agent (keyed by client id, so reconnecting does not refill it) has
two token buckets over what it publishes (:data:`METERED_KINDS`: events,
logs, security events, screen frames, batches of records): messages per
second and bytes per second, each with a burst. A message is admitted
while both buckets hold at least one token, and then costs one message and
its size in bytes; a large message may take the byte bucket below zero,
which delays the next one, so the long-run rate holds and no legal message
is too big to ever pass. A refused message is dropped and counted per
agent. A batch is one message and its bytes, so the byte rate is what
bounds batched records. An agent's HELLO, heartbeats, command statuses and
results are never metered, nor anything operators and services send
(commands, acks).

The broker asks :meth:`Quotas.notice` after a drop whether to tell the agent
now (at most once per ``notice_s``) and how long it should wait.
"""
from __future__ import annotations

import math

from broker.core.config import RateLimit
from broker.core.envelope import Kind
from broker.core.permissions import ROLE_KINDS

#: what an agent sends that is never limited: its liveness and its answers to commands
UNMETERED_KINDS = frozenset({Kind.HELLO, Kind.HEARTBEAT, Kind.COMMAND_STATUS, Kind.RESULT})
#: everything else an agent may send passes its buckets (a new kind is metered unless listed above)
METERED_KINDS = ROLE_KINDS["agent"] - UNMETERED_KINDS


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` kept; may go below zero
    (a cost larger than the balance is taken whole while one token is left)."""

    __slots__ = ("rate", "burst", "level", "stamp")

    def __init__(self, rate: float, burst: float, now: float):
        self.rate, self.burst, self.level, self.stamp = rate, burst, burst, now

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.level = min(self.burst, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_s(self) -> float:
        """Seconds until the bucket holds one token again (0 if it does)."""
        return max(0.0, 1.0 - self.level) / self.rate


class AgentQuota:
    """One agent's buckets and what it has lost to them."""

    __slots__ = ("msgs", "bytes", "dropped", "dropped_bytes", "next_notice")

    def __init__(self, limits: RateLimit, now: float):
        self.msgs = TokenBucket(limits.msgs_per_s, limits.burst_msgs, now) if limits.msgs_per_s else None
        self.bytes = TokenBucket(limits.bytes_per_s, limits.burst_bytes, now) if limits.bytes_per_s else None
        self.dropped = 0
        self.dropped_bytes = 0
        self.next_notice = now

    def admit(self, size: int, now: float) -> bool:
        msgs, nbytes = self.msgs, self.bytes
        if msgs is not None:
            msgs.refill(now)
            if msgs.level < 1:
                return self._drop(size)
        if nbytes is not None:
            nbytes.refill(now)
            if nbytes.level < 1:
                return self._drop(size)
            nbytes.level -= size
        if msgs is not None:
            msgs.level -= 1
        return True

    def _drop(self, size: int) -> bool:
        self.dropped += 1
        self.dropped_bytes += size
        return False

    def wait_s(self) -> float:
        return max(bucket.wait_s() for bucket in (self.msgs, self.bytes) if bucket is not None)

    def left(self, now: float) -> dict:
        """What the buckets hold now (``msgs_left``, ``bytes_left``), for a WELCOME."""
        out = {}
        for name, bucket in (("msgs_left", self.msgs), ("bytes_left", self.bytes)):
            if bucket is not None:
                bucket.refill(now)
                out[name] = bucket.level
        return out

    def start_from(self, left: dict) -> None:
        """Start from what the broker's buckets hold (``left()`` of its copy), not full:
        a reconnected agent's broker may remember an emptier bucket."""
        for name, bucket in (("msgs_left", self.msgs), ("bytes_left", self.bytes)):
            value = left.get(name)
            if bucket is not None and type(value) in (int, float) and math.isfinite(value):
                bucket.level = min(bucket.burst, max(-bucket.burst, float(value)))


class Quotas:
    """The buckets of every agent that has published since the broker started."""

    def __init__(self, limits: RateLimit):
        self.limits = limits
        self._agents: dict[str, AgentQuota] = {}

    def admit(self, client_id: str, size: int, now: float) -> bool:
        """Take one message of ``size`` bytes from ``client_id``'s buckets;
        False (and counted) if it is over the limit."""
        quota = self._agents.get(client_id)
        if quota is None:
            quota = self._agents[client_id] = AgentQuota(self.limits, now)
        return quota.admit(size, now)

    def notice(self, client_id: str, now: float) -> float | None:
        """After a drop: the retry-after (seconds) to tell the agent now, or
        None if it was told less than ``notice_s`` ago."""
        quota = self._agents[client_id]
        if now < quota.next_notice:
            return None
        quota.next_notice = now + self.limits.notice_s
        return max(self.limits.notice_s, quota.wait_s())

    def left(self, client_id: str, now: float) -> dict:
        """What ``client_id``'s buckets hold now (empty if it has not published yet: full)."""
        quota = self._agents.get(client_id)
        return quota.left(now) if quota else {}

    def dropped(self, client_id: str) -> tuple[int, int]:
        """(messages, bytes) dropped from ``client_id`` since the broker started."""
        quota = self._agents.get(client_id)
        return (quota.dropped, quota.dropped_bytes) if quota else (0, 0)
