"""Scrolls and window moves: changed tiles that are old pixels in a new place.

When text scrolls or a window is dragged, most changed tiles hold pixels
the operator already has, shifted. Sending them as JPEG costs far more
than a *copy*: "paint this rectangle from your previous picture at
``(x - dx, y - dy)``". :func:`find_copies` looks for such shifts:

1. group the changed tiles into 4-connected regions; small regions (a
   blinking cursor, a clock) are left alone;
2. try the shifts of the previous update first (a scroll or a drag goes on
   for many frames at the same speed);
3. for what is left, take a few sample rows of the new frame and look
   their middle part up in the old frame (``bytes.find``, C speed), close
   rows first, then up to ``max_shift`` rows away: each hit is a candidate;
4. a tile becomes a copy only if *every* one of its rows equals the old
   frame at the shifted place (exact bytes, no guess). Runs of tiles in a
   tile row are checked together and split in halves only where they
   differ.

What no shift explains stays a changed tile and goes as JPEG.
"""
from __future__ import annotations

from collections import deque
from typing import Iterable, Iterator

#: regions with fewer changed tiles than this are not searched
MIN_REGION_TILES = 4
#: a shift must explain at least this many tiles to be used
MIN_COPY_TILES = 2

Shift = tuple[int, int]


def regions(changed: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """The 4-connected groups of ``(column, row)`` tiles."""
    left = set(changed)
    out = []
    for start in changed:
        if start not in left:
            continue
        left.discard(start)
        group, todo = [], deque([start])
        while todo:
            tx, ty = todo.popleft()
            group.append((tx, ty))
            for n in ((tx + 1, ty), (tx - 1, ty), (tx, ty + 1), (tx, ty - 1)):
                if n in left:
                    left.discard(n)
                    todo.append(n)
        out.append(group)
    return out


class _Frames:
    """The two frames and their geometry, shared by the helpers below."""

    def __init__(self, prev, cur, width: int, height: int, tile: int):
        self.prev, self.view = prev, memoryview(cur)
        self.same = prev.startswith
        self.width, self.height, self.tile = width, height, tile
        self.stride = width * 4


def find_copies(prev: bytes | bytearray, cur: bytes | bytearray, width: int, height: int, tile: int,
                changed: list[tuple[int, int]], max_shift: int = 256, samples: int = 3,
                hints: Iterable[Shift] = ()) -> tuple[dict[Shift, list[tuple[int, int]]], list[tuple[int, int]]]:
    """Split changed tiles into copies and the rest.

    Returns ``({(dx, dy): [tiles whose pixels are the old frame's at
    (x - dx, y - dy)]}, [tiles that must be sent as pixels])``. ``hints``
    are shifts to try first (those of the previous update).
    """
    f = _Frames(prev, cur, width, height, tile)
    hints = list(hints)
    copies: dict[Shift, list[tuple[int, int]]] = {}
    rest: list[tuple[int, int]] = []
    for group in regions(changed):
        tried: set[Shift] = set()
        explained: list[Shift] = []  # shifts that explained part of this region
        todo = _explain(f, group, hints, tried, explained, copies)
        todo = _explain(f, todo, _candidates(f, todo, max_shift, samples, explained), tried, explained, copies)
        rest.extend(todo)
    return copies, sorted(rest, key=lambda t: (t[1], t[0]))


def _explain(f: _Frames, todo: list[tuple[int, int]], shifts: Iterable[Shift], tried: set[Shift],
             explained: list[Shift], copies: dict[Shift, list[tuple[int, int]]]) -> list[tuple[int, int]]:
    """Try ``shifts`` in turn on ``todo``; record the tiles each explains in ``copies``; return the rest.

    ``shifts`` may be a lazy generator: it is not advanced once fewer than
    :data:`MIN_REGION_TILES` tiles are left.
    """
    if len(todo) < MIN_REGION_TILES:
        return todo
    for shift in shifts:
        if shift in tried:
            continue
        tried.add(shift)
        if not _probe(f, todo, shift):
            continue
        matched, unmatched = _split(f, todo, shift)
        if len(matched) >= MIN_COPY_TILES:
            copies.setdefault(shift, []).extend(matched)
            explained.append(shift)
            todo = unmatched
            if len(todo) < MIN_REGION_TILES:
                break
    return todo


def _candidates(f: _Frames, tiles: list[tuple[int, int]], max_shift: int, samples: int,
                explained: list[Shift]) -> Iterator[Shift]:
    """Shifts suggested by looking sample rows of the tiles' bounding box up in the old frame.

    For each sample row: straight up and down first (scrolling; one
    ``startswith`` per row offset), then along the same row (a sideways
    move; one ``find``), then, as long as ``explained`` is empty (once a
    shift explained part of the region, what is left is probably new
    content), anywhere within ``max_shift`` rows, near rows first (a drag).
    """
    t, stride = f.tile, f.stride
    x0 = min(tx for tx, _ in tiles) * t
    y0 = min(ty for _, ty in tiles) * t
    x1 = min(f.width, (max(tx for tx, _ in tiles) + 1) * t)
    y1 = min(f.height, (max(ty for _, ty in tiles) + 1) * t)
    w = x1 - x0
    needle_w = w if w < 32 else max(16, w // 2)
    nx = x0 + (w - needle_w) // 2
    tried = 0
    for frac in (0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875):
        if tried >= samples:
            return
        y = y0 + int((y1 - y0 - 1) * frac)
        start = y * stride + nx * 4
        needle = f.view[start:start + needle_w * 4]
        if needle.tobytes() == needle[:4].tobytes() * needle_w:
            continue  # a flat row matches anywhere
        tried += 1
        yield from _vertical(f, needle, nx, y, max_shift)
        yield from _hits(f, needle, needle_w, nx, y, y, y + 1)
        if explained:
            continue
        searched_lo = searched_hi = y  # rows [searched_lo, searched_hi) already searched
        for reach in (16, 64, max_shift):
            lo, hi = max(0, y - reach), min(f.height, y + reach + 1)
            hits = 0
            for a, b in ((lo, searched_lo), (searched_hi, hi)) if searched_hi > searched_lo else ((lo, hi),):
                for shift in _hits(f, needle, needle_w, nx, y, a, b):
                    hits += 1
                    yield shift
            searched_lo, searched_hi = lo, hi
            if hits:
                break


def _vertical(f: _Frames, needle, nx: int, y: int, max_shift: int, limit: int = 3) -> Iterator[Shift]:
    """Row offsets ``dy`` (nearest first) where the old frame holds ``needle`` straight above or below."""
    found = 0
    for d in range(1, max_shift + 1):
        for py in (y - d, y + d):
            if 0 <= py < f.height and f.same(needle, py * f.stride + nx * 4):
                found += 1
                yield 0, y - py
                if found >= limit:
                    return


def _hits(f: _Frames, needle, needle_w: int, nx: int, y: int, row_lo: int, row_hi: int, limit: int = 3) -> Iterator[Shift]:
    """Where ``needle`` (row ``y`` of the new frame at ``nx``) appears in old rows ``row_lo..row_hi``."""
    lo, hi = row_lo * f.stride, row_hi * f.stride
    pos, found = f.prev.find(needle, lo, hi), 0
    while pos >= 0 and found < limit:
        if pos % 4 == 0:
            py, px = divmod(pos // 4, f.width)
            if (px, py) != (nx, y) and px + needle_w <= f.width:
                found += 1
                yield nx - px, y - py
        pos = f.prev.find(needle, pos + 1, hi)


def _probe(f: _Frames, tiles: list[tuple[int, int]], shift: Shift, count: int = 8) -> bool:
    """Does ``shift`` explain at least one of a few tiles spread over ``tiles``? (Rejects most wrong shifts cheaply.)"""
    step = max(1, len(tiles) // count)
    return any(_run_matches(f, tx, tx + 1, ty, shift) for tx, ty in tiles[::step])


def _split(f: _Frames, tiles: list[tuple[int, int]], shift: Shift) -> tuple[list, list]:
    """``(tiles equal to the old frame shifted by shift, the others)``."""
    by_row: dict[int, list[int]] = {}
    for tx, ty in tiles:
        by_row.setdefault(ty, []).append(tx)
    matched, others = [], []
    for ty, cols in by_row.items():
        cols.sort()
        stack = []
        start = 0
        for i in range(1, len(cols) + 1):  # runs of neighbouring columns
            if i == len(cols) or cols[i] != cols[i - 1] + 1:
                stack.append((cols[start], cols[i - 1] + 1))
                start = i
        while stack:
            c0, c1 = stack.pop()
            if _run_matches(f, c0, c1, ty, shift):
                matched.extend((tx, ty) for tx in range(c0, c1))
            elif c1 - c0 == 1:
                others.append((c0, ty))
            else:
                mid = (c0 + c1) // 2
                stack.append((c0, mid))
                stack.append((mid, c1))
    return matched, others


def _run_matches(f: _Frames, c0: int, c1: int, ty: int, shift: Shift) -> bool:
    """Do tiles ``c0..c1-1`` of tile row ``ty`` equal the old frame shifted by ``shift``?"""
    dx, dy = shift
    t, stride = f.tile, f.stride
    x, y = c0 * t, ty * t
    w, h = min(c1 * t, f.width) - x, min(t, f.height - y)
    sx, sy = x - dx, y - dy
    if not (0 <= sx and sx + w <= f.width and 0 <= sy and sy + h <= f.height):
        return False
    n, same, view = w * 4, f.same, f.view
    o, so = y * stride + x * 4, sy * stride + sx * 4
    for _ in range(h):
        if not same(view[o:o + n], so):
            return False
        o += stride
        so += stride
    return True
