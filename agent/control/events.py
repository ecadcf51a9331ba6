"""Remote input events: checked in full before any is executed, and mapped to the screen.

An ``input`` command carries ``events`` (a list of maps) and ``frame_w`` /
``frame_h``, the size of the picture the operator clicked on; optionally
``region`` ``{left, top, width, height}``, the part of the screen that
picture shows (one monitor of several; default: the whole screen). Each
event::

    {"type": "move",  "x": 10, "y": 20}
    {"type": "click", "x": 10, "y": 20, "button": "left", "clicks": 2}   # x, y optional
    {"type": "wheel", "dy": -3, "dx": 0, "x": 10, "y": 20}               # dy > 0 scrolls up
    {"type": "key",   "key": "ctrl+c"}                                    # names as in pyautogui
    {"type": "text",  "text": "hello"}

Error messages name the event's position and field, never a key or text
the operator sent: input is executed, never recorded.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agent.context import CommandError

MAX_EVENTS = 1000
MAX_TEXT_CHARS = 10_000
MAX_CLICKS = 3
MAX_WHEEL_STEPS = 100
MAX_FRAME_PX = 100_000
BUTTONS = ("left", "right", "middle")
TYPES = ("move", "click", "wheel", "key", "text")


@dataclass(frozen=True, slots=True)
class InputEvent:
    """One checked event; ``x``/``y`` are still in frame pixels."""

    type: str
    x: float | None = None
    y: float | None = None
    button: str = "left"
    clicks: int = 1
    dx: int = 0
    dy: int = 0
    keys: tuple[str, ...] = ()
    text: str = ""

    @property
    def positioned(self) -> bool:
        return self.x is not None


@dataclass(frozen=True, slots=True)
class FrameMapper:
    """Maps a point of the operator's frame (``frame_w`` x ``frame_h``) to the screen.

    The frame shows the screen area ``screen_w`` x ``screen_h`` whose top
    left corner is at (``left``, ``top``).
    """

    frame_w: int
    frame_h: int
    screen_w: int
    screen_h: int
    left: int = 0
    top: int = 0

    def to_screen(self, x: float, y: float) -> tuple[int, int]:
        """The screen pixel under frame point (x, y), kept inside the area."""
        sx = min(max(int(x * self.screen_w / self.frame_w), 0), self.screen_w - 1)
        sy = min(max(int(y * self.screen_h / self.frame_h), 0), self.screen_h - 1)
        return self.left + sx, self.top + sy


def _number(raw: Any, where: str) -> float:
    if type(raw) not in (int, float) or not math.isfinite(raw):
        raise CommandError(f"{where} must be a finite number")
    return float(raw)


def _integer(raw: Any, where: str, low: int, high: int) -> int:
    if type(raw) is not int or not low <= raw <= high:
        raise CommandError(f"{where} must be an integer from {low} to {high}")
    return raw


def frame_size(args: dict) -> tuple[int, int] | None:
    """``(frame_w, frame_h)`` from the command, or None when neither is given."""
    if args.get("frame_w") is None and args.get("frame_h") is None:
        return None
    return (
        _integer(args.get("frame_w"), "frame_w", 1, MAX_FRAME_PX),
        _integer(args.get("frame_h"), "frame_h", 1, MAX_FRAME_PX),
    )


def region(args: dict, screen_w: int, screen_h: int) -> tuple[int, int, int, int]:
    """``(left, top, width, height)`` the frame shows: ``args["region"]`` or the whole screen."""
    raw = args.get("region")
    if raw is None:
        return 0, 0, screen_w, screen_h
    if not isinstance(raw, dict):
        raise CommandError("region must be a map {left, top, width, height}")
    left = _integer(raw.get("left", 0), "region.left", -MAX_FRAME_PX, MAX_FRAME_PX)
    top = _integer(raw.get("top", 0), "region.top", -MAX_FRAME_PX, MAX_FRAME_PX)
    width = _integer(raw.get("width"), "region.width", 1, MAX_FRAME_PX)
    height = _integer(raw.get("height"), "region.height", 1, MAX_FRAME_PX)
    return left, top, width, height


def _point(raw: dict, where: str, required: bool) -> tuple[float | None, float | None]:
    if raw.get("x") is None and raw.get("y") is None:
        if required:
            raise CommandError(f"{where} needs x and y")
        return None, None
    return _number(raw.get("x"), f"{where}.x"), _number(raw.get("y"), f"{where}.y")


def _keys(raw: Any, where: str, known: Iterable[str] | None) -> tuple[str, ...]:
    if type(raw) is not str or not raw or len(raw) > 100:
        raise CommandError(f"{where}.key must be a key name such as 'enter' or 'ctrl+c'")
    names = (raw,) if raw == "+" else tuple(part.strip().lower() if len(part.strip()) > 1 else part.strip() for part in raw.split("+"))
    if any(not name for name in names) or len(names) > 6:
        raise CommandError(f"{where}.key is not a valid key combination")
    if known is not None and any(name not in known for name in names):
        raise CommandError(f"{where}.key names a key this agent does not know")
    return names


def parse_one(raw: Any, index: int, known_keys: Iterable[str] | None = None) -> InputEvent:
    """Check one raw event map; raises CommandError naming the event's index."""
    where = f"event {index}"
    if not isinstance(raw, dict):
        raise CommandError(f"{where} must be a map")
    kind = raw.get("type")
    if kind not in TYPES:
        raise CommandError(f"{where}.type must be one of {', '.join(TYPES)}")
    if kind == "move":
        x, y = _point(raw, where, required=True)
        return InputEvent("move", x, y)
    if kind == "click":
        x, y = _point(raw, where, required=False)
        button = raw.get("button", "left")
        if button not in BUTTONS:
            raise CommandError(f"{where}.button must be one of {', '.join(BUTTONS)}")
        clicks = _integer(raw.get("clicks", 1), f"{where}.clicks", 1, MAX_CLICKS)
        return InputEvent("click", x, y, button=button, clicks=clicks)
    if kind == "wheel":
        x, y = _point(raw, where, required=False)
        dx = _integer(raw.get("dx", 0), f"{where}.dx", -MAX_WHEEL_STEPS, MAX_WHEEL_STEPS)
        dy = _integer(raw.get("dy", 0), f"{where}.dy", -MAX_WHEEL_STEPS, MAX_WHEEL_STEPS)
        return InputEvent("wheel", x, y, dx=dx, dy=dy)
    if kind == "key":
        return InputEvent("key", keys=_keys(raw.get("key"), where, known_keys))
    text = raw.get("text")
    if type(text) is not str or not text or len(text) > MAX_TEXT_CHARS:
        raise CommandError(f"{where}.text must be a non-empty string of at most {MAX_TEXT_CHARS} characters")
    return InputEvent("text", text=text)


def parse_events(args: dict, known_keys: Iterable[str] | None = None) -> list[InputEvent]:
    """Every event of an ``input`` command, checked; nothing runs if one is bad."""
    raw = args.get("events")
    if not isinstance(raw, list) or not raw:
        raise CommandError("input needs 'events': a non-empty list")
    if len(raw) > MAX_EVENTS:
        raise CommandError(f"at most {MAX_EVENTS} events per input command, got {len(raw)}")
    known = frozenset(known_keys) if known_keys is not None else None
    events = [parse_one(item, i, known) for i, item in enumerate(raw)]
    if sum(len(e.text) for e in events) > MAX_TEXT_CHARS:
        raise CommandError(f"at most {MAX_TEXT_CHARS} characters of text per input command")
    return events
