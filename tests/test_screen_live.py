"""Live view on a real X server: leases, frame rate, changed tiles only, notices.

The screen is real (Xvfb + a Tk test pattern); time for leases and the
frame-rate cap comes from an injectable clock, so nothing sleeps.
"""
from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from agent.access_log import AccessLog
from agent.context import AgentContext, CommandError, LocalPolicy
from agent.screen import handlers, tiles
from broker.core import screen_frames as protocol
from agent.screen.capture import MssSource
from agent.screen.live import LiveOptions, LiveView
from bench.harness.pattern import Pattern
from broker.core.screen_frames import LiveCanvas
from bench.harness.xvfb import Xvfb
from broker.core.errors import SendError

W, H = 1280, 720
TILE = 64
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def hexcolour(rgb) -> str:
    return "#%02x%02x%02x" % rgb


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def xscreen():
    if not Xvfb.installed():
        pytest.fail("Xvfb is not installed: run installer/install.sh --dev")
    with Xvfb(W, H) as x, Pattern(x.display, W, H) as p:
        yield x, p


@pytest.fixture
def pattern(xscreen, monkeypatch):
    """The pattern in a known state, DISPLAY pointing at it for this test only."""
    x, p = xscreen
    monkeypatch.setenv("DISPLAY", x.display)
    p.clear()
    p.rect("red", 100, 100, 200, 120, hexcolour(RED))
    p.rect("green", 400, 300, 150, 100, hexcolour(GREEN))
    p.window("doc", 700, 80, 500, 400, lines=30)
    return p


class Agentish:
    def __init__(self, root):
        self.access = AccessLog(root / "access.log")
        self.notices: list[tuple[str, str]] = []
        self.reported: list[tuple] = []
        self.ctx = AgentContext(client_id="desk-1", data_dir=root, policy=LocalPolicy(), access_log=self.access.record,
                                notify=lambda title, text: self.notices.append((title, text)),
                                report=lambda *record: self.reported.append(record) or "id", operator="op-a")

    def as_operator(self, operator: str) -> AgentContext:
        return replace(self.ctx, operator=operator)


@pytest.fixture
def agent(tmp_path):
    return Agentish(tmp_path)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def view(pattern, agent, clock):
    source = MssSource()
    v = LiveView(source, None, notify=agent.ctx.notify, access_log=agent.ctx.access_log, clock=clock,
                 options=LiveOptions(tile=TILE))
    yield v
    source.close()


def updates(bodies: list[bytes]) -> list[protocol.Update]:
    return [protocol.parse(b) for b in bodies]


def tiles_of(update: protocol.Update) -> set[tuple[int, int]]:
    """The tiles an update repaints: as JPEG or as copies (never both)."""
    sent = tiles.covered([(t.x, t.y, t.w, t.h) for t in update.tiles], TILE)
    copied = tiles.covered([(c.x, c.y, c.w, c.h) for c in update.copies], TILE)
    assert not sent & copied
    return sent | copied


def tiles_touching(pixels: set[tuple[int, int]]) -> set[tuple[int, int]]:
    return {(x // TILE, y // TILE) for x, y in pixels}


def box(x, y, w, h) -> set[tuple[int, int]]:
    return {(i, j) for i in range(x, x + w) for j in range(y, y + h)}


def close_to(actual, expected, tolerance=16) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected))


def test_first_update_is_the_whole_screen_and_reproduces_it(view, agent):
    state = view.start("op-a", reason="ticket 7")
    assert state["started"] and state["watching"] == ["op-a"] and state["fps"] == 10
    [first] = updates(view.tick())
    assert first.full and first.seq == 1 and (first.width, first.height) == (W, H)
    assert tiles_of(first) == set(tiles.all_tiles(W, H, TILE))
    canvas = LiveCanvas()
    assert canvas.apply(first) == protocol.APPLIED
    assert close_to(canvas.pixel(200, 160), RED) and close_to(canvas.pixel(475, 350), GREEN)
    assert close_to(canvas.pixel(20, 20), (0x20, 0x20, 0x20))
    assert agent.notices == [("Live view started", "op-a is viewing your screen. Reason given: ticket 7.")]
    [entry] = [e for e in agent.access.entries() if e.kind == "live_view.start"]
    assert (entry.operator, entry.reason) == ("op-a", "ticket 7")


def test_an_idle_screen_sends_only_rare_keepalives(view, clock):
    view.start("op-a")
    first = sum(map(len, view.tick()))
    later = []
    for _ in range(100):  # ten seconds at 10 fps
        clock.advance(0.1)
        later += view.tick()
    sent = updates(later)
    assert view.stats["grabs"] == 101
    assert all(u.keepalive and u.seq == 1 for u in sent)
    assert 4 <= len(sent) <= 6  # one every 2 s
    idle_bytes = sum(map(len, later))
    print(f"\nfirst frame {first} B; then {len(sent)} keep-alives, {idle_bytes} B in 10 s ({idle_bytes * 8 / 10:.0f} bit/s)")
    assert idle_bytes < 1000


def test_a_recoloured_box_sends_exactly_its_tiles(view, pattern, clock):
    view.start("op-a")
    canvas = LiveCanvas()
    canvas.apply(view.tick()[0])
    pattern.rect("red", 100, 100, 200, 120, hexcolour(BLUE))
    clock.advance(0.1)
    [update] = updates(view.tick())
    assert not update.full and update.seq == 2
    assert tiles_of(update) == tiles_touching(box(100, 100, 200, 120))  # cols 1-4, rows 1-3
    assert len(update.tiles) == 1 and not update.copies  # 4 x 3 tiles merged into one JPEG
    assert canvas.apply(update) == protocol.APPLIED
    assert close_to(canvas.pixel(200, 160), BLUE) and close_to(canvas.pixel(475, 350), GREEN)


def test_a_moved_box_sends_the_tiles_of_what_it_left_and_what_it_covers(view, pattern, clock):
    view.start("op-a")
    canvas = LiveCanvas()
    canvas.apply(view.tick()[0])
    pattern.rect("green", 460, 340, 150, 100, hexcolour(GREEN))  # from 400,300
    clock.advance(0.1)
    [update] = updates(view.tick())
    old, new = box(400, 300, 150, 100), box(460, 340, 150, 100)
    assert tiles_of(update) == tiles_touching(old ^ new)
    canvas.apply(update)
    assert close_to(canvas.pixel(420, 320), (0x20, 0x20, 0x20)) and close_to(canvas.pixel(600, 430), GREEN)


def test_frame_rate_is_capped(view, pattern, clock):
    with pytest.raises(ValueError, match="fps must be a number from 0.1 to 30"):
        view.start("op-a", fps=31)
    view.start("op-a", fps=5)
    view.tick()
    sent = 0
    for step in range(200):  # 2 s in 10 ms steps while the screen keeps changing
        clock.advance(0.01)
        pattern.rect("red", 100, 100, 200, 120, hexcolour((step % 250, 0, 0)))
        sent += len(view.tick())
        assert 0 <= view.wait_s() <= 0.2 + 1e-9
    assert 9 <= view.stats["grabs"] - 1 <= 10  # at t = 0.2, 0.4 ... 2.0: 5 a second
    assert sent == view.stats["grabs"] - 1  # and each one carried the latest change


def test_leases_expire_renew_and_stop_with_notices(view, agent, clock):
    view.start("op-a", lease_s=5)
    view.start("op-b", lease_s=10)
    view.tick()
    clock.advance(4)
    view.start("op-a", lease_s=5)  # renewed: no new notice, no new full frame
    assert [u.full for u in updates(view.tick())] in ([], [False])
    clock.advance(6)  # now +10: op-a's renewed lease ran to +9, op-b's to +10
    bodies = updates(view.tick())
    assert view.watchers == {} and bodies[-1].end == "the viewer closed or lost its connection"
    assert ("Live view ended", "op-a stopped viewing your screen (the viewer closed or lost its connection)") in agent.notices
    assert ("Live view ended", "op-b stopped viewing your screen (the viewer closed or lost its connection)") in agent.notices
    assert view.wait_s() is None
    clock.advance(1)
    assert view.tick() == []  # nobody watches: nothing is grabbed or sent
    log = agent.access.read()
    assert log.count("live view started") == 2 and log.count("live view ended") == 2


def test_stop_ends_one_lease_and_the_view_only_with_the_last(view, agent, clock):
    view.start("op-a")
    view.start("op-b")
    view.tick()
    assert view.stop("op-a")["stopped"] is True
    assert view.stop("op-a")["stopped"] is False  # already gone: harmless
    assert view.active and view.tick() == []  # op-b still watches (nothing changed yet)
    view.stop("op-b", "done helping")
    [end] = updates(view.tick())
    assert end.end == "done helping" and not view.active
    assert agent.notices[-1] == ("Live view ended", "op-b stopped viewing your screen (done helping)")


def test_a_new_watcher_or_a_request_gets_a_full_frame(view, clock):
    view.start("op-a")
    assert updates(view.tick())[0].full
    clock.advance(0.1)
    view.start("op-b")
    assert updates(view.tick())[0].full
    clock.advance(0.1)
    assert view.tick() == []
    view.start("op-a", full=True)  # op-a missed an update
    clock.advance(0.1)
    assert updates(view.tick())[0].full


def test_a_body_the_bus_refuses_is_dropped_and_repaired_by_a_full_frame(view, pattern, clock):
    sent, refuse = [], [True]

    def publish(body):
        if refuse[0]:
            refuse[0] = False
            raise SendError("send queue is full")
        sent.append(body)

    view.publish = publish
    view.start("op-a")
    assert view.pump() == 0 and view.stats["dropped"] == 1
    clock.advance(0.1)
    pattern.rect("red", 100, 100, 200, 120, hexcolour(GREEN))
    assert view.pump() == 1
    assert updates(sent)[0].full  # not just the red box: the first frame was lost


def test_handlers_need_an_attached_view_and_check_arguments(pattern, agent, clock):
    with pytest.raises(CommandError, match="live view is not available"):
        handlers.Screen(agent.ctx).live_start({}, agent.ctx)  # a screen without a frame publisher
    sent: list[bytes] = []
    screen = handlers.Screen(agent.ctx, sent.append, clock=clock)
    view = screen.view
    try:
        for args, message in [({"fps": 60}, "fps must be"), ({"quality": 0}, "quality must be"),
                              ({"lease_s": 0.1}, "lease_s must be"), ({"monitor": 9}, "no monitor 9"),
                              ({"full": "yes"}, "full must be true or false"), ({"zoom": 2}, "does not take zoom")]:
            with pytest.raises(CommandError, match=message):
                screen.live_start(args, agent.ctx)
        assert not view.active and agent.notices == []
        state = screen.live_start({"fps": 15, "lease_s": 20, "reason": "printer issue"}, agent.as_operator("op-kim"))
        assert state["topic"] == "frame.desk-1.live" and state["watching"] == ["op-kim"] and state["fps"] == 15
        assert handlers.poll_timeout(view, 0.25) == 0.0  # a frame is due now
        assert view.pump() == 1 and protocol.parse(sent[0]).full
        assert handlers.poll_timeout(view, 0.25) == pytest.approx(1 / 15)
        assert screen.live_stop({}, agent.as_operator("op-kim"))["watching"] == []
        assert handlers.poll_timeout(view, 0.25) == 0.0  # the end body is due
        view.pump()
        assert protocol.parse(sent[-1]).end == "stopped by the operator"
        assert handlers.poll_timeout(view, 0.25) == 0.25
        screen.live_start({}, agent.ctx)
    finally:
        screen.close(agent.ctx)
    assert protocol.parse(sent[-1]).end == "the agent is stopping"
    assert agent.notices[-1] == ("Live view ended", "op-a stopped viewing your screen (the agent is stopping)")
    assert screen.view is None and screen.wait_s() is None
    screen.close(agent.ctx)  # closing twice is harmless


def mean_error(canvas: LiveCanvas, frame, box) -> float:
    """Mean absolute difference per channel between the operator's picture and the screen inside ``box``."""
    from PIL import Image, ImageChops, ImageStat

    truth = Image.frombuffer("RGB", (frame.width, frame.height), bytes(frame.bgra), "raw", "BGRX", 0, 1)
    x, y, w, h = box
    diff = ImageChops.difference(canvas.image.crop((x, y, x + w, y + h)), truth.crop((x, y, x + w, y + h)))
    return sum(ImageStat.Stat(diff).mean) / 3


def test_scrolled_text_goes_as_a_copy_plus_the_new_lines(view, pattern, clock):
    pattern.window("doc", 700, 80, 500, 400, lines=200)
    view.start("op-a")
    canvas = LiveCanvas()
    canvas.apply(view.tick()[0])
    jpeg_error = mean_error(canvas, view.source.grab(), (700, 80, 500, 400))  # what JPEG alone costs on text
    pattern.scroll_by("doc", 54)
    clock.advance(0.1)
    [update] = updates(view.tick())
    assert [(c.dx, c.dy) for c in update.copies] == [(0, -54)]
    assert sum(c.w * c.h for c in update.copies) >= 500 * 250  # most of the text area is copied, not re-encoded
    sent_px = sum(t.w * t.h for t in update.tiles)
    assert sent_px <= 640 * (54 + 2 * TILE + 24)  # the new lines, the tiles at the edges, the title bar seam
    canvas.apply(update)
    assert mean_error(canvas, view.source.grab(), (700, 80, 500, 400)) < jpeg_error + 0.5


def test_a_dragged_window_goes_as_a_copy(view, pattern, clock):
    view.start("op-a")
    canvas = LiveCanvas()
    canvas.apply(view.tick()[0])
    jpeg_error = mean_error(canvas, view.source.grab(), (600, 0, 680, 600))
    pattern.place("doc", 737, 103)  # from 700, 80
    clock.advance(0.1)
    [update] = updates(view.tick())
    assert {(c.dx, c.dy) for c in update.copies} == {(37, 23)}
    canvas.apply(update)
    assert mean_error(canvas, view.source.grab(), (600, 0, 680, 600)) < jpeg_error + 0.5


def test_a_request_to_hide_the_start_notice_is_refused_and_reported(pattern, agent, clock):
    screen = handlers.Screen(agent.ctx, lambda body: None, clock=clock)
    try:
        screen.live_start({"silent": True}, agent.as_operator("op-sneaky"))
    finally:
        screen.close(agent.ctx)
    assert agent.notices[0] == ("Live view started", "op-sneaky is viewing your screen. No reason was given.")
    assert "notice silencing refused" in agent.access.read()
    [(kind, name, data)] = agent.reported
    assert name == "notice_silence_refused" and data["operator"] == "op-sneaky" and data["notice"] == "live_view"


def test_commands_on_a_lane_thread_while_the_loop_pumps(pattern, agent):
    """The runner runs handlers on worker threads: start / stop must not race the loop's ticks."""
    sent: list[bytes] = []
    screen = handlers.Screen(agent.ctx, sent.append)
    view = screen.view
    errors: list[BaseException] = []

    def lane() -> None:
        try:
            for i in range(15):
                screen.live_start({"fps": 30}, agent.as_operator(f"op-{i % 3}"))
                screen.live_stop({}, agent.as_operator(f"op-{(i + 1) % 3}"))
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    worker = threading.Thread(target=lane, name="ems-command")
    try:
        worker.start()
        deadline = time.monotonic() + 20
        while worker.is_alive() and time.monotonic() < deadline:
            view.pump()
            worker.join(min(0.002, view.wait_s() or 0.002))  # stands for the loop's bus poll
        worker.join(5)
        assert not worker.is_alive() and errors == []
        for body in sent:
            protocol.parse(body)  # every body is well formed
        started = sum(1 for title, _ in agent.notices if title == "Live view started")
        ended = sum(1 for title, _ in agent.notices if title == "Live view ended")
        assert started - ended == len(view.watchers)
    finally:
        screen.close(agent.ctx)
