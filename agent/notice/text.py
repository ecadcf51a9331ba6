"""Making operator-supplied words safe for one log line and one small window."""
from __future__ import annotations

import re

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def one_line(text: str) -> str:
    """``text`` with line breaks and control characters folded into spaces.

    The access log is one event per line: a reason or message with a line
    break in it must not be able to forge a line of its own.
    """
    return _CONTROL_CHARS.sub(" ", str(text)).strip()


def clip(value: str, limit: int) -> str:
    """``value`` in at most ``limit`` characters, marked with an ellipsis when cut."""
    value = str(value)
    return value if len(value) <= limit else value[: limit - 1] + "\u2026"
