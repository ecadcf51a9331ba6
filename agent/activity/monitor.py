"""The agent capability that fills the store's ``activity_logs``.

It reports, as events the persister keeps in ``activity_logs`` (topic
``event.<agent>.<name>``):

* ``agent.start`` / ``agent.stop`` (version, and what this computer's session
  source cannot see);
* the employee's session: ``session.login``, ``session.logout``,
  ``session.lock``, ``session.unlock``, ``session.idle``, ``session.active``
  (:func:`agent.activity.session.changes`), and ``app.focus`` only when the
  local policy's ``window_usage`` is on;
* ``access.<kind>``: what operators did here, from the access log's entries
  (small previews once per series, like the access-log summary groups them).

Never keystrokes, never window titles, never screen content.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from agent.access_log import NOTICE, AccessEntry
from agent.access_summary import THUMBNAIL_GAP
from agent.activity.platforms import select_source
from agent.activity.session import SessionSource, SessionState, changes
from agent.capability import Capability
from agent.context import AgentContext, LocalPolicy
from broker.core.envelope import Kind

log = logging.getLogger(__name__)


class ActivityMonitor(Capability):
    """Reads the session every ``policy.session_poll_s`` and reports what changed."""

    name = "activity"

    def __init__(self, policy: LocalPolicy, report: Callable[..., str], source: SessionSource | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.policy = policy
        self.report = report
        self.source = source if source is not None else select_source(window_usage=policy.window_usage)
        self.clock = clock
        self._last: SessionState | None = None
        self._next = 0.0
        self._series: dict[tuple[str, str], datetime] = {}

    def started(self, version: str) -> None:
        """Report ``agent.start``, with what the session source cannot see here (after a first look)."""
        self._last = self.source.read()
        self._send("agent.start", {"version": version, "session_source": self.source.name,
                                   "blind_spots": self.source.blind_spots(), "window_usage": self.policy.window_usage})

    def poll(self, ctx: AgentContext) -> None:
        now = self.clock()
        if now < self._next:
            return
        self._next = now + self.policy.session_poll_s
        state = self.source.read()
        if self._last is not None:
            for name, data in changes(self._last, state, self.policy.idle_after_s):
                self._send(name, data)
        self._last = state

    def wait_s(self) -> float | None:
        return max(0.0, self._next - self.clock())

    def close(self, ctx: AgentContext) -> None:
        self.source.close()
        self._send("agent.stop", {})

    def access(self, entry: AccessEntry) -> None:
        """An access-log entry: operators' actions become ``access.<kind>`` (previews once per series)."""
        if entry.kind == NOTICE or not entry.operator:
            return
        if entry.kind == "thumbnail":
            key = (entry.operator, entry.reason)
            last, self._series[key] = self._series.get(key), entry.ts
            if last is not None and entry.ts - last <= THUMBNAIL_GAP:
                return
        self._send(f"access.{entry.kind}", {"operator": entry.operator, "reason": entry.reason,
                                            "event": entry.event, "detail": entry.detail})

    def _send(self, name: str, data: dict) -> None:
        try:
            self.report(Kind.EVENT, name, {**data, "ts": time.time()})
        except Exception as exc:  # reporting must never stop the agent or a command
            log.warning("could not keep the activity event %s: %s", name, exc)
