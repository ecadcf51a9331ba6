"""A byte budget per receiving peer: bounded broker memory for slow readers.

libzmq bounds a ROUTER's queue to each peer in *messages* (``send_hwm``)
and cannot say how many bytes wait in it, so a subscriber that stops
reading could hold ``send_hwm`` large messages in the broker's memory.
:class:`FlowControl` counts instead, per greeted connection, the bytes the
broker has sent (every message, whatever its kind) and the bytes the peer
says it has taken (its HEARTBEAT credit, ``broker.core.envelope.credit_of``).
Best-effort traffic (live fan-out, records of batches fanned out, screen
frames) that would put more than ``budget_bytes`` in flight to one peer is
dropped and counted, for that peer and in total; commands, results,
replies, errors and acks are never dropped here (the HWM still bounds
them). Screen frames are drops too: they are deltas, and a viewer that
misses one asks for a full frame, so holding "the latest" would not help.

A peer from before credits (its heartbeats are empty) is trusted to have
read everything sent up to each heartbeat: it can hold at most about one
budget beyond what it reads per heartbeat, and a stalled one none more
once it stops heartbeating. A peer that lies about its credit is bounded
by the HWM alone, as before.
"""
from __future__ import annotations

from dataclasses import dataclass

from broker.core.envelope import flow_offer

#: one drop notice per peer per this many seconds at most (the log throttle limits it further)
NOTICE_INTERVAL_S = 10.0


@dataclass(slots=True)
class PeerBudget:
    """What one connection has been sent and has taken, in bytes."""

    sent: int = 0
    acked: int = 0
    dropped: int = 0
    dropped_bytes: int = 0
    #: credits this connection reported (0: a peer from before credits, or silent)
    credits: int = 0
    #: clock time of the last drop notice
    noticed: float = float("-inf")

    @property
    def in_flight(self) -> int:
        return self.sent - self.acked


class FlowControl:
    """Per-connection byte budgets, keyed by ROUTER routing id.

    The broker calls :meth:`start` when it welcomes a connection (the
    peer's credit count starts at the WELCOME too), :meth:`forget` when it
    drops it, :meth:`sent` for everything it sends and :meth:`admit`
    before each best-effort send.
    """

    def __init__(self, budget_bytes: int, credit_every_bytes: int):
        self.budget_bytes = max(1, int(budget_bytes))
        #: several reports per budget, so a reading peer never looks stalled
        self.credit_every_bytes = max(1, min(int(credit_every_bytes), self.budget_bytes // 4))
        #: routing id -> budget; the broker reads it directly on its hot path
        self.peers: dict[bytes, PeerBudget] = {}
        self.dropped = 0
        self.dropped_bytes = 0

    def start(self, rid: bytes) -> None:
        """A (re)welcomed connection: counting starts again on both sides."""
        self.peers[rid] = PeerBudget()

    def forget(self, rid: bytes) -> None:
        self.peers.pop(rid, None)

    def fits(self, rid: bytes, size: int) -> bool:
        """Whether a message of ``size`` bytes is within this peer's budget (nothing counted)."""
        budget = self.peers.get(rid)
        return budget is None or budget.sent - budget.acked + size <= self.budget_bytes

    def admit(self, rid: bytes, size: int) -> bool:
        """Whether a best-effort message of ``size`` bytes fits this peer's
        budget; if not, it is counted as dropped."""
        budget = self.peers.get(rid)  # fits(), inlined: this runs per subscriber per message
        if budget is None or budget.sent - budget.acked + size <= self.budget_bytes:
            return True
        budget.dropped += 1
        budget.dropped_bytes += size
        self.dropped += 1
        self.dropped_bytes += size
        return False

    def credit(self, rid: bytes, received: int | None) -> None:
        """A heartbeat: ``received`` bytes taken since the WELCOME, or None
        from a peer that does not report (then all sent counts as taken)."""
        budget = self.peers.get(rid)
        if budget is None:
            return
        if received is None:
            if not budget.credits:
                budget.acked = budget.sent
            return
        budget.credits += 1
        budget.acked = max(budget.acked, min(received, budget.sent))

    def notice_due(self, rid: bytes, now: float) -> PeerBudget | None:
        """The peer's budget if a drop notice is due now (at most one per
        :data:`NOTICE_INTERVAL_S`), else None."""
        budget = self.peers.get(rid)
        if budget is None or now - budget.noticed < NOTICE_INTERVAL_S:
            return None
        budget.noticed = now
        return budget

    def offer(self) -> dict:
        """The WELCOME's ``flow`` field: how often a peer should report its credit."""
        return flow_offer(self.budget_bytes, self.credit_every_bytes)

    def status(self, names: dict[bytes, str]) -> dict:
        """Totals and the peers that had drops or have bytes in flight, for ``ems status``."""
        peers = [
            {"client_id": names.get(rid, "?"), "in_flight_bytes": b.in_flight, "dropped": b.dropped, "dropped_bytes": b.dropped_bytes,
             "reports_credit": bool(b.credits)}
            for rid, b in self.peers.items() if b.dropped or b.in_flight > self.credit_every_bytes
        ]
        peers.sort(key=lambda p: -p["dropped_bytes"])
        return {"budget_bytes": self.budget_bytes, "credit_every_bytes": self.credit_every_bytes,
                "dropped": self.dropped, "dropped_bytes": self.dropped_bytes, "peers": peers[:50]}
