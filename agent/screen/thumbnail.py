"""Screen thumbnails for the console's client tiles: small, rare, announced, never kept.

The operator console shows a small picture of each *visible* online
client's screen, refreshed every 10-30 s. How that is done, and why:

* **A command, not a live view.** ``thumbnail`` (in
  :mod:`agent.screen.handlers`) grabs the screen once and answers with a
  small JPEG (240 px wide by default, at most :data:`broker.core.thumbnail_request.MAX_WIDTH`, quality
  50) in the command result. A low-rate live-view lease would send the full
  screen as changed 32 px tiles to every ``frame.*`` subscriber and keep a
  grab loop running per client; a picture every 15 s fits a request/answer
  exactly, and the command path already names the operator (the broker
  stamps the sender and audits every command with its reason).
* **Nothing stored.** Unlike ``capture``, the picture is not reported to
  the store. The broker's command queue and the agent's record of
  executed commands keep only the outcome of a ``thumbnail``
  (:data:`broker.core.vocabulary.EPHEMERAL_RESULTS`), so neither
  ``broker.db`` nor ``agent.db`` fills up with screens.
* **Rate-limited here, by local policy.** :class:`ThumbnailGate` (a
  :class:`agent.screen.gate.LookGate`) allows at
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

import time
from collections.abc import Callable

from agent.context import MAX_THUMBNAILS_PER_MINUTE, LocalPolicy
from agent.notice.who import reason_sentence
from agent.screen import gate as gates
from agent.screen.gate import LookGate
from broker.core.thumbnail_request import COMMAND, DEFAULT_QUALITY, DEFAULT_WIDTH, check_quality, check_width  # noqa: F401 (the screen capability's names)

#: the notice kind (``LocalPolicy.mandatory_notices``)
NOTICE_KIND = "thumbnail"
#: the rate limit's window
WINDOW_S = gates.WINDOW_S


class ThumbnailGate(LookGate):
    """This screen's thumbnail budget and who has been told (see :class:`LookGate`)."""

    def __init__(self, per_minute: int, notice_every_s: float, clock: Callable[[], float] = time.monotonic):
        super().__init__(COMMAND, "thumbnails_per_minute", per_minute, MAX_THUMBNAILS_PER_MINUTE, notice_every_s, clock)


def make_gate(policy: LocalPolicy, clock: Callable[[], float] = time.monotonic) -> ThumbnailGate:
    """A thumbnail gate made from this computer's local policy (the screen capability keeps one)."""
    return ThumbnailGate(policy.thumbnails_per_minute, policy.thumbnail_notice_every_s, clock)


def notice_text(operator: str, gate: LookGate, reason: str = "") -> tuple[str, str]:
    """The notice's title and text: who looks, why, how often at most, when the employee hears again."""
    again = (f"You will be told again in {round(gate.notice_every_s / 60)} min if it goes on."
             if gate.notice_every_s >= 60 else "You are told each time.")
    return ("Screen thumbnails", f"{operator} sees small pictures of your screen in the operator console "
            f"(at most {gate.per_minute} a minute). {reason_sentence(reason)} {again}")
