"""Full screen captures under this computer's local policy: rate-limited, each one announced.

A ``capture`` (:func:`agent.screen.handlers.capture`) is a full picture of
the screen, stored on the server. Whatever its size, quality or monitor,
it passes the gate :func:`make_gate` makes: at most ``LocalPolicy.captures_per_minute``
in any 60 s, all operators together (default 4, never more than
:data:`agent.context.MAX_CAPTURES_PER_MINUTE`; 0 turns captures off), so a
small ``max_width`` cannot turn captures into thumbnails without their cap.
Every capture that is taken is shown to the employee (notice kind
``capture``, always mandatory), naming the operator and the reason.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from agent.context import MAX_CAPTURES_PER_MINUTE, LocalPolicy
from agent.notice.who import reason_sentence
from agent.screen.gate import LookGate

#: the command's name and the gate's
COMMAND = "capture"
#: the notice kind (``LocalPolicy.mandatory_notices``)
NOTICE_KIND = "capture"


def make_gate(policy: LocalPolicy, clock: Callable[[], float] = time.monotonic) -> LookGate:
    """A capture gate made from this computer's local policy (the screen capability keeps one)."""
    return LookGate(COMMAND, "captures_per_minute", policy.captures_per_minute, MAX_CAPTURES_PER_MINUTE, 0.0, clock)


def notice_text(operator: str, reason: str, width: int, height: int) -> tuple[str, str]:
    """The notice's title and text: who took a picture of the screen, why, and where it goes."""
    return ("Screen captured",
            f"{operator} took a picture of your screen ({width}x{height}); it is stored on the server. {reason_sentence(reason)}")
