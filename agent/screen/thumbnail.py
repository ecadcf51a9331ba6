"""Screen thumbnails for the console's client tiles: small, rare, announced, never kept.

The operator console shows a small picture of each *visible* online
client's screen, refreshed every 10-30 s. How that is done, and why:

* **A command, not a live view.** ``thumbnail`` (in
  :mod:`agent.screen.handlers`) grabs the screen once and answers with a
  small JPEG (240 px wide by default, at most :data:`MAX_WIDTH`, quality
  50) in the command result. A low-rate live-view lease would send the full
  screen as changed 32 px tiles to every ``frame.*`` subscriber and keep a
  grab loop running per client; a picture every 15 s fits a request/answer
  exactly, and the command path already names the operator (the broker
  stamps the sender and audits every command with its reason).
* **Nothing stored.** Unlike ``capture``, the picture is not reported to
  the store. The broker's command queue and the agent's record of
  executed commands keep only the outcome of a ``thumbnail``
  (:data:`broker.command_queue.EPHEMERAL_RESULTS`), so neither
  ``broker.db`` nor ``agent.db`` fills up with screens.
* **Rate-limited here, by local policy.** :class:`ThumbnailGate` allows at
  most ``LocalPolicy.thumbnails_per_minute`` thumbnails a minute from this
  screen, all operators together (default 6, never more than
  :data:`agent.context.MAX_THUMBNAILS_PER_MINUTE`; 0 turns them off). A
  console bug, or a hostile operator, cannot turn thumbnails into a
  recording: the next request is refused with the wait.
* **The employee is told.** The first thumbnail an operator takes, and
  again every ``LocalPolicy.thumbnail_notice_every_s`` while it goes on,
  shows a notice naming the operator (notice kind ``thumbnail``, mandatory
  by default); every single thumbnail is a line in the access log.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from agent.context import MAX_THUMBNAILS_PER_MINUTE, AgentContext, CommandError

#: the command's name (the console, the broker's queue and the agent's record use it)
COMMAND = "thumbnail"
#: the notice kind (``LocalPolicy.mandatory_notices``)
NOTICE_KIND = "thumbnail"
DEFAULT_WIDTH = 240
MIN_WIDTH = 32
#: a thumbnail is never wider: anything bigger is a ``capture``, which is stored and audited as such
MAX_WIDTH = 320
DEFAULT_QUALITY = 50
MAX_QUALITY = 80
#: the rate limit's window
WINDOW_S = 60.0


class ThumbnailGate:
    """This screen's thumbnail budget and who has been told.

    ``per_minute`` thumbnails in any 60 s (sliding window), whoever asks;
    ``notice_every_s``: how long one operator's notice covers. Thread-safe
    (commands run on the agent's lane threads). ``clock`` is injectable.
    """

    def __init__(self, per_minute: int, notice_every_s: float, clock: Callable[[], float] = time.monotonic):
        self.per_minute = max(0, min(int(per_minute), MAX_THUMBNAILS_PER_MINUTE))
        self.notice_every_s = float(notice_every_s)
        self.clock = clock
        self._taken: deque[float] = deque()
        self._told: dict[str, float] = {}
        self._lock = threading.Lock()

    def take(self) -> None:
        """Spend one thumbnail now, or raise :class:`CommandError` saying when the next one is allowed."""
        if self.per_minute == 0:
            raise CommandError("thumbnails are turned off on this computer (thumbnails_per_minute is 0 in its local policy)")
        with self._lock:
            now = self.clock()
            while self._taken and self._taken[0] <= now - WINDOW_S:
                self._taken.popleft()
            if len(self._taken) >= self.per_minute:
                wait = self._taken[0] + WINDOW_S - now
                raise CommandError(f"thumbnail refused: this computer's local policy allows {self.per_minute} a minute; "
                                   f"the next one in {wait:.0f} s")
            self._taken.append(now)

    def give_back(self) -> None:
        """Undo the last :meth:`take` (nothing was grabbed after all)."""
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


_gates: dict[str, ThumbnailGate] = {}
_gates_lock = threading.Lock()


def gate_for(ctx: AgentContext, clock: Callable[[], float] | None = None) -> ThumbnailGate:
    """The gate of this agent (one per data directory), made from its local policy on first use.

    ``clock`` applies when the gate is made (tests); a gate whose settings
    no longer match the policy is replaced.
    """
    key = str(Path(ctx.data_dir).resolve())
    policy = ctx.policy
    with _gates_lock:
        gate = _gates.get(key)
        if gate is None or (gate.per_minute, gate.notice_every_s) != (
                min(policy.thumbnails_per_minute, MAX_THUMBNAILS_PER_MINUTE), float(policy.thumbnail_notice_every_s)):
            gate = _gates[key] = ThumbnailGate(policy.thumbnails_per_minute, policy.thumbnail_notice_every_s,
                                               clock or time.monotonic)
        return gate


def check_width(width) -> int:
    """A thumbnail width in MIN_WIDTH..MAX_WIDTH pixels, or ValueError."""
    if type(width) is not int or not MIN_WIDTH <= width <= MAX_WIDTH:
        raise ValueError(f"width must be an integer from {MIN_WIDTH} to {MAX_WIDTH} pixels, not {width!r} "
                         "(a bigger picture is a capture)")
    return width


def check_quality(quality) -> int:
    """A thumbnail JPEG quality in 1..MAX_QUALITY, or ValueError."""
    if type(quality) is not int or not 1 <= quality <= MAX_QUALITY:
        raise ValueError(f"quality must be an integer from 1 to {MAX_QUALITY}, not {quality!r}")
    return quality


def notice_text(operator: str, gate: ThumbnailGate) -> tuple[str, str]:
    """The notice's title and text: who looks, how often at most, when the employee hears again."""
    again = (f"You will be told again in {round(gate.notice_every_s / 60)} min if it goes on."
             if gate.notice_every_s >= 60 else "You are told each time.")
    return ("Screen thumbnails", f"{operator} sees small pictures of your screen in the operator console "
            f"(at most {gate.per_minute} a minute). {again}")
