"""Which parts of the screen changed: tile comparison and rectangle merging.

The screen is cut into square tiles (live view uses 32 x 32 px; the last
column and row are smaller when the size is not a multiple).
:func:`changed_tiles` compares two frames of the same size and returns the
tiles whose pixels differ; :func:`merge_tiles` joins them into few
rectangles (one JPEG each, so fewer headers and fewer block seams).

The comparison is plain bytes, no numpy: ``buf.startswith(view, offset)``
compares a zero-copy ``memoryview`` slice of one frame with the other at
C ``memcmp`` speed, and the search narrows down from the whole frame to
bands of tile rows, to pixel rows, to runs of tiles split in halves. An
unchanged 1080p screen costs one 8 MB compare (about 0.2 ms here).
"""
from __future__ import annotations

from typing import Iterable

Rect = tuple[int, int, int, int]  # x, y, w, h in pixels


def grid(width: int, height: int, tile: int) -> tuple[int, int]:
    """The number of tile columns and rows covering ``width`` x ``height``."""
    return -(-width // tile), -(-height // tile)


def all_tiles(width: int, height: int, tile: int) -> list[tuple[int, int]]:
    """Every tile of the screen, as ``(column, row)``."""
    cols, rows = grid(width, height, tile)
    return [(tx, ty) for ty in range(rows) for tx in range(cols)]


def changed_tiles(prev: bytes | bytearray, cur: bytes | bytearray, width: int, height: int,
                  tile: int) -> list[tuple[int, int]]:
    """The ``(column, row)`` of every tile whose pixels differ between two BGRA frames.

    Both buffers hold ``height`` rows of ``width * 4`` bytes. The result is
    sorted by row, then column.
    """
    stride = width * 4
    if len(prev) != len(cur) or len(cur) != stride * height:
        raise ValueError("frames of different sizes cannot be compared")
    if prev == cur:
        return []
    same = prev.startswith  # same(view, offset): does prev hold view's bytes at offset?
    view = memoryview(cur)
    cols, rows = grid(width, height, tile)
    tile_bytes = tile * 4
    bounds = [(tx * tile_bytes, min(stride, (tx + 1) * tile_bytes)) for tx in range(cols)]
    out: list[tuple[int, int]] = []
    for ty in range(rows):
        band_start = ty * tile * stride
        band_end = min(height, (ty + 1) * tile) * stride
        if same(view[band_start:band_end], band_start):
            continue
        marked = [False] * cols
        left = cols
        runs = [(0, cols)]  # runs of unmarked columns
        for base in range(band_start, band_end, stride):
            if same(view[base:base + stride], base):
                continue
            # split each run of unmarked columns in halves until the changes are pinned to tiles
            stack = list(runs)
            found = False
            while stack:
                lo, hi = stack.pop()
                start, end = base + bounds[lo][0], base + bounds[hi - 1][1]
                if same(view[start:end], start):
                    continue
                if hi - lo == 1:
                    marked[lo] = True
                    left -= 1
                    found = True
                else:
                    mid = (lo + hi) // 2
                    stack.append((lo, mid))
                    stack.append((mid, hi))
            if not left:
                break
            if found:
                runs = _unmarked_runs(marked)
        out.extend((tx, ty) for tx in range(cols) if marked[tx])
    return out


def _unmarked_runs(marked: list[bool]) -> list[tuple[int, int]]:
    runs, start = [], None
    for i, m in enumerate(marked):
        if not m and start is None:
            start = i
        elif m and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(marked)))
    return runs


def merge_tiles(tiles: Iterable[tuple[int, int]], width: int, height: int, tile: int,
                max_rows: int = 8) -> list[Rect]:
    """Join tiles into rectangles covering exactly the same pixels.

    Runs of neighbouring tiles in a row become one strip; strips with the
    same columns in consecutive rows stack into one rectangle, at most
    ``max_rows`` tiles high (so no single JPEG grows too big). Rectangles
    are clipped to the screen and sorted top to bottom.
    """
    by_row: dict[int, list[int]] = {}
    for tx, ty in tiles:
        by_row.setdefault(ty, []).append(tx)
    done: list[tuple[int, int, int, int]] = []  # col0, col1 (exclusive), row0, row1 (inclusive)
    growing: dict[tuple[int, int], list[int]] = {}  # (col0, col1) -> [row0, row1]
    for ty in sorted(by_row):
        following: dict[tuple[int, int], list[int]] = {}
        for span in _runs(sorted(set(by_row[ty]))):
            rows = growing.pop(span, None)
            if rows is not None and rows[1] == ty - 1 and ty - rows[0] < max_rows:
                rows[1] = ty
            else:
                if rows is not None:
                    done.append((*span, *rows))
                rows = [ty, ty]
            following[span] = rows
        done.extend((*span, *rows) for span, rows in growing.items())
        growing = following
    done.extend((*span, *rows) for span, rows in growing.items())
    rects = []
    for c0, c1, r0, r1 in done:
        x, y = c0 * tile, r0 * tile
        rects.append((x, y, min(width, c1 * tile) - x, min(height, (r1 + 1) * tile) - y))
    rects.sort(key=lambda r: (r[1], r[0]))
    return rects


def _runs(cols: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for c in cols:
        if runs and runs[-1][1] == c:
            runs[-1] = (runs[-1][0], c + 1)
        else:
            runs.append((c, c + 1))
    return runs


def covered(rects: Iterable[Rect], tile: int) -> set[tuple[int, int]]:
    """The tiles a list of tile-aligned rectangles covers (the inverse of :func:`merge_tiles`)."""
    out = set()
    for x, y, w, h in rects:
        for ty in range(y // tile, -(-(y + h) // tile)):
            for tx in range(x // tile, -(-(x + w) // tile)):
                out.add((tx, ty))
    return out
