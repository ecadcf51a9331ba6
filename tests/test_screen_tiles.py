"""Change detection, rectangle merging and the FRAME body format (no display needed)."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.screen import motion, tiles

from broker.core import screen_frames as protocol
from agent.screen.capture import Frame, encode_region, output_size, platform_support
from broker.core.screen_frames import LiveCanvas, Tile, Update
from broker.core.envelope import pack_body
from broker.core.errors import ProtocolError


def reference_changed(prev: bytes, cur: bytes, width: int, height: int, tile: int) -> list[tuple[int, int]]:
    """Pixel-by-pixel: the obviously right answer."""
    out = set()
    for y in range(height):
        for x in range(width):
            o = (y * width + x) * 4
            if prev[o:o + 4] != cur[o:o + 4]:
                out.add((x // tile, y // tile))
    return sorted(out, key=lambda t: (t[1], t[0]))


def paint(buf: bytearray, width: int, x: int, y: int, w: int, h: int, bgra: bytes) -> None:
    for row in range(y, y + h):
        o = (row * width + x) * 4
        buf[o:o + w * 4] = bgra * w


@settings(max_examples=150, deadline=None)
@given(width=st.integers(1, 150), height=st.integers(1, 90), tile=st.sampled_from([8, 16, 64]), seed=st.integers(0, 10**6),
       changes=st.integers(0, 6))
def test_changed_tiles_match_a_pixel_by_pixel_reference(width, height, tile, seed, changes):
    rng = random.Random(seed)
    prev = bytearray(rng.randbytes(width * height * 4))
    cur = bytearray(prev)
    for _ in range(changes):
        if rng.random() < 0.5:  # one byte (one channel of one pixel) flips
            i = rng.randrange(len(cur))
            cur[i] ^= 1 + rng.randrange(255)
        else:
            x, y = rng.randrange(width), rng.randrange(height)
            paint(cur, width, x, y, rng.randint(1, width - x), rng.randint(1, height - y), rng.randbytes(4))
    assert tiles.changed_tiles(bytes(prev), bytes(cur), width, height, tile) == reference_changed(prev, cur, width, height, tile)


@settings(max_examples=200, deadline=None)
@given(width=st.integers(1, 700), height=st.integers(1, 500), tile=st.sampled_from([16, 64, 128]),
       picks=st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), max_size=80), max_rows=st.integers(1, 9))
def test_merged_rectangles_cover_exactly_the_changed_tiles(width, height, tile, picks, max_rows):
    cols, rows = tiles.grid(width, height, tile)
    chosen = {(x % cols, y % rows) for x, y in picks}
    rects = tiles.merge_tiles(chosen, width, height, tile, max_rows)
    area = sum(w * h for _, _, w, h in rects)
    assert tiles.covered(rects, tile) == chosen
    assert area == sum(min(tile, width - tx * tile) * min(tile, height - ty * tile) for tx, ty in chosen)  # no overlap
    assert all(x + w <= width and y + h <= height and h <= max_rows * tile for x, y, w, h in rects)


def test_a_full_screen_merges_into_few_rectangles():
    rects = tiles.merge_tiles(tiles.all_tiles(1920, 1080, 64), 1920, 1080, 64, max_rows=8)
    assert rects == [(0, 0, 1920, 512), (0, 512, 1920, 512), (0, 1024, 1920, 56)]


def test_frames_of_different_sizes_are_refused():
    with pytest.raises(ValueError):
        tiles.changed_tiles(bytes(16), bytes(32), 2, 2, 64)


def test_platform_check_lives_in_one_place_and_explains_itself():
    assert platform_support("linux", {"DISPLAY": ":0"}) == (True, "")
    ok, why = platform_support("linux", {})
    assert not ok and "DISPLAY is not set" in why
    ok, why = platform_support("linux", {"WAYLAND_DISPLAY": "wayland-0"})
    assert not ok and "Wayland" in why
    assert platform_support("win32", {}) == (True, "")
    assert platform_support("darwin", {}) == (True, "")
    ok, why = platform_support("sunos5", {})
    assert not ok and "sunos5" in why


def test_output_size_shrinks_never_enlarges_and_checks_its_arguments():
    assert output_size(1280, 720) == (1280, 720)
    assert output_size(1280, 720, max_width=640) == (640, 360)
    assert output_size(1280, 720, scale=0.25) == (320, 180)
    assert output_size(1280, 720, max_width=4000) == (1280, 720)
    assert output_size(1280, 720, max_width=1000, scale=0.5) == (640, 360)
    for bad in ({"scale": 0}, {"scale": 1.5}, {"scale": "1"}, {"max_width": 0}, {"max_width": 10.5}):
        with pytest.raises(ValueError):
            output_size(1280, 720, **bad)


def solid_frame(width: int, height: int, rgb: tuple[int, int, int]) -> Frame:
    r, g, b = rgb
    return Frame(width, height, bytes([b, g, r, 255]) * (width * height))


def test_live_canvas_applies_updates_and_notices_a_lost_one():
    frame = solid_frame(128, 64, (200, 30, 30))
    full = Update(1, 1.0, 1, 128, 64, True, [Tile(0, 0, 128, 64, encode_region(frame, 0, 0, 128, 64, 90))])
    canvas = LiveCanvas()
    assert canvas.apply(protocol.pack_update(Update(0, 1.0, 1, 128, 64))) == protocol.WAITING
    assert canvas.apply(protocol.pack_update(full)) == protocol.APPLIED
    assert all(abs(a - b) < 12 for a, b in zip(canvas.pixel(100, 40), (200, 30, 30)))
    green = solid_frame(64, 64, (20, 200, 20))
    patch = Update(2, 2.0, 1, 128, 64, False, [Tile(64, 0, 64, 64, encode_region(green, 0, 0, 64, 64, 90))])
    assert canvas.apply(protocol.pack_update(patch)) == protocol.APPLIED
    assert all(abs(a - b) < 12 for a, b in zip(canvas.pixel(100, 40), (20, 200, 20)))
    assert canvas.apply(protocol.pack_update(Update(2, 3.0, 1, 128, 64))) == protocol.ALIVE
    # update 3 is lost: the keep-alive after it says so, and so does update 4
    assert canvas.apply(protocol.pack_update(Update(3, 4.0, 1, 128, 64))) == protocol.GAP
    assert canvas.apply(protocol.pack_update(Update(4, 5.0, 1, 128, 64, False, patch.tiles))) == protocol.GAP
    assert canvas.apply(protocol.pack_update(Update(5, 6.0, 1, 128, 64, True, full.tiles))) == protocol.APPLIED
    assert canvas.apply(protocol.pack_end(5, "lease expired")) == protocol.ENDED and canvas.ended == "lease expired"


@pytest.mark.parametrize("data", [
    None, [], {"v": 2, "seq": 1}, {"v": 1}, {"v": 1, "seq": -1, "end": "x"}, {"v": 1, "seq": 1, "end": 5},
    {"v": 1, "seq": 1, "ts": 0, "width": 0, "height": 10, "full": True, "part": 0, "parts": 1, "tiles": []},
    {"v": 1, "seq": 1, "ts": "now", "width": 10, "height": 10, "full": True, "part": 0, "parts": 1, "tiles": []},
    {"v": 1, "seq": 1, "ts": 0, "width": 10, "height": 10, "full": 1, "part": 0, "parts": 1, "tiles": []},
    {"v": 1, "seq": 1, "ts": 0, "width": 10, "height": 10, "full": False, "part": 1, "parts": 1, "tiles": []},
    {"v": 1, "seq": 1, "ts": 0, "width": 10, "height": 10, "full": False, "part": 0, "parts": 1, "tiles": [1]},
    {"v": 1, "seq": 1, "ts": 0, "width": 10, "height": 10, "full": False, "part": 0, "parts": 1,
     "tiles": [{"x": 8, "y": 0, "w": 4, "h": 4, "jpeg": b"x"}]},  # sticks out of the screen
    {"v": 1, "seq": 1, "ts": 0, "width": 10, "height": 10, "full": False, "part": 0, "parts": 1,
     "tiles": [{"x": 0, "y": 0, "w": 4, "h": 4, "jpeg": ""}]},
])
def test_malformed_bodies_are_protocol_errors(data):
    with pytest.raises(ProtocolError):
        protocol.parse(pack_body(data))


def test_a_tile_that_is_not_the_jpeg_it_claims_is_a_protocol_error():
    frame = solid_frame(64, 64, (1, 2, 3))
    canvas = LiveCanvas()
    wrong_size = Update(1, 0.0, 1, 128, 64, True, [Tile(0, 0, 128, 64, encode_region(frame, 0, 0, 64, 64, 50))])
    with pytest.raises(ProtocolError, match="said JPEG 128x64"):
        canvas.apply(protocol.pack_update(wrong_size))
    junk = Update(1, 0.0, 1, 128, 64, True, [Tile(0, 0, 64, 64, b"\xff\xd8 not really")])
    with pytest.raises(ProtocolError, match="not a JPEG"):
        LiveCanvas().apply(protocol.pack_update(junk))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_escape_as_anything_but_protocol_errors(raw):
    try:
        LiveCanvas().apply(raw)
    except ProtocolError:
        pass


def shifted_copy(prev: bytearray, width: int, box: tuple[int, int, int, int], dx: int, dy: int) -> bytearray:
    """``prev`` with the pixels of ``box`` moved by ``dx, dy`` (what a drag or scroll does)."""
    cur = bytearray(prev)
    x, y, w, h = box
    for row in range(h):
        src = ((y + row) * width + x) * 4
        dst = ((y + dy + row) * width + x + dx) * 4
        cur[dst:dst + w * 4] = prev[src:src + w * 4]
    return cur


def tile_equals_shifted(prev, cur, width, height, tile, tx, ty, dx, dy) -> bool:
    for y in range(ty * tile, min(height, (ty + 1) * tile)):
        for x in range(tx * tile, min(width, (tx + 1) * tile)):
            sx, sy = x - dx, y - dy
            if not (0 <= sx < width and 0 <= sy < height):
                return False
            if cur[(y * width + x) * 4:(y * width + x) * 4 + 4] != prev[(sy * width + sx) * 4:(sy * width + sx) * 4 + 4]:
                return False
    return True


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), dx=st.integers(-40, 40), dy=st.integers(-40, 40), noise=st.booleans())
def test_copies_are_exact_and_copies_plus_rest_are_the_changed_tiles(seed, dx, dy, noise):
    width, height, tile = 256, 192, 16
    rng = random.Random(seed)
    prev = bytearray(rng.randbytes(width * height * 4))
    cur = shifted_copy(prev, width, (60, 50, 120, 90), dx, dy)
    if noise:
        paint(cur, width, rng.randrange(200), rng.randrange(150), 20, 20, rng.randbytes(4))
    changed = tiles.changed_tiles(prev, cur, width, height, tile)
    copies, rest = motion.find_copies(bytes(prev), bytes(cur), width, height, tile, changed, max_shift=64)
    copied = [t for group in copies.values() for t in group]
    assert sorted(copied + rest) == sorted(changed) and len(set(copied)) == len(copied)
    for (sdx, sdy), group in copies.items():
        for tx, ty in group:
            assert tile_equals_shifted(prev, cur, width, height, tile, tx, ty, sdx, sdy)
    if (dx, dy) != (0, 0) and not noise:
        inside = [(tx, ty) for tx, ty in changed if 60 + dx <= tx * tile and (tx + 1) * tile <= 180 + dx
                  and 50 + dy <= ty * tile and (ty + 1) * tile <= 140 + dy]
        assert set(inside) <= set(copies.get((dx, dy), []))  # every tile wholly inside the moved box is a copy


def test_live_canvas_applies_copies_from_the_picture_before_the_update():
    from broker.core.screen_frames import Copy
    left, right = solid_frame(64, 64, (250, 0, 0)), solid_frame(64, 64, (0, 0, 250))
    full = Update(1, 0.0, 1, 128, 64, True, [Tile(0, 0, 64, 64, encode_region(left, 0, 0, 64, 64, 90)),
                                             Tile(64, 0, 64, 64, encode_region(right, 0, 0, 64, 64, 90))])
    canvas = LiveCanvas()
    canvas.apply(protocol.pack_update(full))
    swap = Update(2, 0.0, 1, 128, 64, False, [], copies=[Copy(0, 0, 64, 64, -64, 0), Copy(64, 0, 64, 64, 64, 0)])
    assert canvas.apply(protocol.pack_update(swap)) == protocol.APPLIED
    assert close(canvas.pixel(10, 10), (0, 0, 250)) and close(canvas.pixel(100, 10), (250, 0, 0))
    with pytest.raises(ProtocolError, match="dx must be"):  # a source off the screen
        protocol.parse(protocol.pack_update(Update(3, 0.0, 1, 128, 64, False, [], copies=[Copy(0, 0, 64, 64, 10, 0)])))


def close(actual, expected, tolerance=12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(actual, expected))
