"""What an operator's console may ask of a screen thumbnail: the command's name and its bounds.

The console builds the request, the agent checks it (``agent.screen.thumbnail``
keeps the rate limit and the notices); both read these.
"""
from __future__ import annotations

#: the command's name (the console, the broker's queue and the agent's record use it)
COMMAND = "thumbnail"
DEFAULT_WIDTH = 240
MIN_WIDTH = 32
#: a thumbnail is never wider: anything bigger is a ``capture``, which is stored and audited as such
MAX_WIDTH = 320
DEFAULT_QUALITY = 50
MAX_QUALITY = 80


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
