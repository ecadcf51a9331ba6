"""The live-view FRAME body: one module for both ends.

An agent publishes live-view updates as ``Kind.FRAME`` on topic
``frame.<agent>.live`` (best effort, never through the durable outbox).
Each body is a msgpack map::

    {"v": 1, "seq": 17, "ts": 1732560000.123,      # agent wall clock at grab
     "monitor": 1, "width": 1920, "height": 1080,   # the whole screen's size
     "full": False,                                 # True: tiles cover the whole screen
     "part": 0, "parts": 1,                         # an update too big for one message is split
     "copies": [{"x": 64, "y": 128, "w": 832, "h": 448, "dx": 0, "dy": -24}],
     "tiles": [{"x": 128, "y": 576, "w": 832, "h": 32, "jpeg": b"..."}]}

* ``seq`` counts updates. The first update of a view, and any update after
  the operator asks for one (``live.start`` with ``full``), has ``full``
  true and covers the screen; later ones carry only what changed:
  ``copies`` first (a scroll or a window move: paint the rectangle at
  ``x, y`` from the previous picture at ``x - dx, y - dy``; every copy
  reads the picture as it was *before* this update), then ``tiles``, each
  a JPEG at full resolution of a tile-aligned rectangle (32 px tiles).
  Copies travel only in part 0 of a split update.
* A *keep-alive* repeats the last ``seq`` with no tiles, at most every few
  seconds while the screen is idle: if its ``seq`` is not the last one the
  operator applied, an update was lost.
* The end of a view is ``{"v": 1, "seq": n, "end": "<why>"}``.

Operators apply bodies with :class:`LiveCanvas`, which also tells them when
an update was lost (then send ``live.start`` with ``{"full": true}``).
Everything here is checked defensively: a malformed body raises
:class:`~broker.core.errors.ProtocolError`, never anything else.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

from broker.core.envelope import ErrorCode, pack_body, unpack_body
from broker.core.errors import ProtocolError

VERSION = 1
#: topic name under ``frame.<agent>.``
TOPIC_NAME = "live"
#: how an agent's failed look at the screen begins when it has none to look at (no
#: display, a lost display): callers such as the web's frame bridge tell it apart by it
SCREEN_UNAVAILABLE = "screen capture unavailable"
#: largest screen side accepted
MAX_SIDE = 16384
#: most rectangles in one body
MAX_TILES = 20000


@dataclass(slots=True)
class Tile:
    """One changed rectangle, JPEG-encoded at full resolution."""

    x: int
    y: int
    w: int
    h: int
    jpeg: bytes


@dataclass(slots=True)
class Copy:
    """Paint ``w`` x ``h`` at ``x, y`` from the previous picture at ``x - dx, y - dy``."""

    x: int
    y: int
    w: int
    h: int
    dx: int
    dy: int


@dataclass(slots=True)
class Update:
    """A decoded FRAME body (an update, a keep-alive, or the end of the view)."""

    seq: int
    ts: float = 0.0
    monitor: int = 1
    width: int = 0
    height: int = 0
    full: bool = False
    tiles: list[Tile] = field(default_factory=list)
    part: int = 0
    parts: int = 1
    end: str | None = None
    copies: list[Copy] = field(default_factory=list)

    @property
    def keepalive(self) -> bool:
        return self.end is None and not self.tiles and not self.copies and not self.full


def pack_update(u: Update) -> bytes:
    """The FRAME body of an update or keep-alive."""
    return pack_body({
        "v": VERSION, "seq": u.seq, "ts": u.ts, "monitor": u.monitor, "width": u.width, "height": u.height,
        "full": u.full, "part": u.part, "parts": u.parts,
        "copies": [{"x": c.x, "y": c.y, "w": c.w, "h": c.h, "dx": c.dx, "dy": c.dy} for c in u.copies],
        "tiles": [{"x": t.x, "y": t.y, "w": t.w, "h": t.h, "jpeg": t.jpeg} for t in u.tiles],
    })


def pack_end(seq: int, reason: str) -> bytes:
    """The FRAME body that says the live view is over."""
    return pack_body({"v": VERSION, "seq": seq, "end": reason})


def tile_overhead() -> int:
    """Bytes a body spends per tile besides its JPEG (for splitting big updates)."""
    return len(pack_body({"x": 65535, "y": 65535, "w": 65535, "h": 65535, "jpeg": b""}))


def parse(body: bytes, max_bytes: int = 16 * 1024 * 1024) -> Update:
    """Check and decode a FRAME body; ProtocolError(BAD_BODY) for anything malformed."""
    data = unpack_body(body, max_bytes)
    if type(data) is not dict or data.get("v") != VERSION:
        raise _bad("not a version-1 live-view body")
    seq = _int(data, "seq", 0, 2**63)
    if "end" in data:
        end = data["end"]
        if type(end) is not str:
            raise _bad("end must be a string")
        return Update(seq, end=end[:500])
    width, height = _int(data, "width", 1, MAX_SIDE), _int(data, "height", 1, MAX_SIDE)
    ts = data.get("ts")
    if type(ts) not in (int, float):
        raise _bad("ts must be a number")
    full = data.get("full")
    if type(full) is not bool:
        raise _bad("full must be a boolean")
    parts = _int(data, "parts", 1, MAX_TILES)
    part = _int(data, "part", 0, parts - 1)
    tiles_in = data.get("tiles")
    if type(tiles_in) is not list or len(tiles_in) > MAX_TILES:
        raise _bad("tiles must be a list")
    tiles = []
    for t in tiles_in:
        if type(t) is not dict:
            raise _bad("a tile must be a map")
        x, y = _int(t, "x", 0, width - 1), _int(t, "y", 0, height - 1)
        w, h = _int(t, "w", 1, width - x), _int(t, "h", 1, height - y)
        jpeg = t.get("jpeg")
        if type(jpeg) is not bytes or not jpeg:
            raise _bad("a tile's jpeg must be non-empty bytes")
        tiles.append(Tile(x, y, w, h, jpeg))
    copies_in = data.get("copies", [])
    if type(copies_in) is not list or len(copies_in) > MAX_TILES:
        raise _bad("copies must be a list")
    copies = []
    for c in copies_in:
        if type(c) is not dict:
            raise _bad("a copy must be a map")
        x, y = _int(c, "x", 0, width - 1), _int(c, "y", 0, height - 1)
        w, h = _int(c, "w", 1, width - x), _int(c, "h", 1, height - y)
        dx, dy = _int(c, "dx", x + w - width, x), _int(c, "dy", y + h - height, y)  # the source is on the screen
        copies.append(Copy(x, y, w, h, dx, dy))
    return Update(seq, float(ts), _int(data, "monitor", 0, 64), width, height, full, tiles, part, parts, copies=copies)


def _int(data: dict, key: str, lo: int, hi: int) -> int:
    value = data.get(key)
    if type(value) is not int or not lo <= value <= hi:
        raise _bad(f"{key} must be an integer in {lo}..{hi}, not {value!r}")
    return value


def _bad(detail: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_BODY, detail)


#: :meth:`LiveCanvas.apply` outcomes
APPLIED, ALIVE, GAP, WAITING, ENDED = "applied", "alive", "gap", "waiting", "ended"


class LiveCanvas:
    """The operator's copy of a watched screen, kept up to date from FRAME bodies (Pillow).

    ``apply`` returns what happened: ``applied`` (the picture changed),
    ``alive`` (keep-alive, nothing lost), ``gap`` (an update was lost or
    arrived out of order: ask the agent for a full frame), ``waiting``
    (no full frame yet), ``ended`` (the agent ended the view).
    """

    def __init__(self) -> None:
        self.image = None  # PIL.Image.Image in RGB once the first full frame arrived
        self.seq = -1
        self.updates = 0
        self.gaps = 0
        self.ended: str | None = None
        self._broken = False  # a gap was seen: nothing but a full frame repairs the picture

    def apply(self, body: bytes | Update) -> str:
        update = parse(body) if isinstance(body, (bytes, bytearray)) else body
        if update.end is not None:
            self.ended = update.end
            return ENDED
        if update.full and update.part == 0:
            self._start(update)
        elif self.image is None:
            return WAITING
        elif self._broken:
            return GAP
        elif (update.width, update.height) != self.image.size:
            return self._gap()
        elif update.keepalive:
            return ALIVE if update.seq == self.seq else self._gap()
        elif not (update.seq == self.seq + 1 and update.part == 0) and not (update.seq == self.seq and update.part > 0):
            return self._gap()
        self._paint(update)
        self.seq = update.seq
        self.updates += 1
        return APPLIED

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        return self.image.getpixel((x, y))

    def _start(self, update: Update) -> None:
        from PIL import Image

        self.image = Image.new("RGB", (update.width, update.height))
        self._broken = False
        self.ended = None

    def _gap(self) -> str:
        self.gaps += 1
        self._broken = True
        return GAP

    def _paint(self, update: Update) -> None:
        from PIL import Image

        if update.copies:
            before = self.image.copy()
            for c in update.copies:
                self.image.paste(before.crop((c.x - c.dx, c.y - c.dy, c.x - c.dx + c.w, c.y - c.dy + c.h)), (c.x, c.y))
        for t in update.tiles:
            try:
                with Image.open(io.BytesIO(t.jpeg)) as tile_image:
                    if tile_image.size != (t.w, t.h) or tile_image.format != "JPEG":  # checked before decoding
                        raise _bad(f"tile at {t.x},{t.y} is a {tile_image.format} of {tile_image.size}, said JPEG {t.w}x{t.h}")
                    tile_image.load()
                    self.image.paste(tile_image.convert("RGB"), (t.x, t.y))
            except ProtocolError:
                raise
            except Exception as exc:  # Pillow raises several types for a bad image
                raise _bad(f"tile at {t.x},{t.y} is not a JPEG: {exc}") from exc
