"""On-demand screen capture on a real X server (Xvfb) showing a known test pattern."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from agent.access_log import AccessLog
from agent.context import AgentContext, CommandError, LocalPolicy
from agent.outbox import Outbox
from agent.screen import handlers
from agent.screen.capture import ENCODERS, MssSource, encode_jpeg
from bench.harness.pattern import Pattern
from bench.harness.xvfb import Xvfb
from broker.core.envelope import Kind, pack_body, unpack_body

W, H = 1280, 720
BACKGROUND = (0x20, 0x20, 0x20)
#: name -> (x, y, w, h, colour)
BOXES = {
    "red": (100, 100, 200, 120, (255, 0, 0)),
    "green": (400, 100, 200, 120, (0, 255, 0)),
    "blue": (700, 100, 200, 120, (0, 0, 255)),
    "white": (1000, 100, 200, 120, (255, 255, 255)),
    "yellow": (100, 400, 300, 200, (255, 255, 0)),
}
TOLERANCE = 16  # per channel, after JPEG (4:2:0) in the middle of a flat box


def hexcolour(rgb) -> str:
    return "#%02x%02x%02x" % rgb


@pytest.fixture(scope="module")
def screen():
    """Xvfb with the test pattern drawn by a real X client."""
    if not Xvfb.installed():
        pytest.fail("Xvfb is not installed: run installer/install.sh --dev")
    with Xvfb(W, H) as x, Pattern(x.display, W, H, background=hexcolour(BACKGROUND)) as p:
        for name, (bx, by, bw, bh, rgb) in BOXES.items():
            p.rect(name, bx, by, bw, bh, hexcolour(rgb))
        p.window("doc", 500, 330, 700, 340, lines=40)  # text: gives JPEG quality something to chew on
        yield x


@pytest.fixture
def display(screen, monkeypatch):
    monkeypatch.setenv("DISPLAY", screen.display)
    return screen.display


class Agentish:
    """The agent's real services a handler uses: an outbox, an access log, notices."""

    def __init__(self, root):
        self.outbox = Outbox(root / "outbox.db")
        self.access = AccessLog(root / "access.log")
        self.notices: list[tuple[str, str]] = []
        self.ctx = AgentContext(
            client_id="desk-1", data_dir=root, policy=LocalPolicy(), access_log=self.access.record,
            notify=lambda title, text: self.notices.append((title, text)),
            report=lambda kind, name, data: self.outbox.put(kind, name, pack_body(data)), operator="op-kim",
        )
        self.capability = handlers.Screen(self.ctx)

    def stored(self) -> list[dict]:
        return [unpack_body(r.body) | {"_topic": r.topic, "_kind": r.kind, "_id": r.msg_id} for r in self.outbox.due(100)]


@pytest.fixture
def agent(tmp_path):
    a = Agentish(tmp_path)
    yield a
    a.outbox.close()


def close_to(actual, expected, tolerance=TOLERANCE) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected))


def check_pattern(image: Image.Image, factor: float = 1.0) -> None:
    assert image.mode == "RGB"
    for name, (bx, by, bw, bh, rgb) in BOXES.items():
        cx, cy = int((bx + bw / 2) * factor), int((by + bh / 2) * factor)
        assert close_to(image.getpixel((cx, cy)), rgb), f"{name} box at {cx},{cy} is {image.getpixel((cx, cy))}"
    assert close_to(image.getpixel((int(50 * factor), int(50 * factor))), BACKGROUND)


def test_the_source_sees_the_pattern_exactly(display):
    with MssSource() as source:
        assert source.available() == (True, "")
        frame = source.grab()
        assert (frame.width, frame.height) == (W, H)
        for name, (bx, by, bw, bh, rgb) in BOXES.items():
            assert frame.pixel(bx, by) == rgb and frame.pixel(bx + bw - 1, by + bh - 1) == rgb, name
            assert frame.pixel(bx - 1, by) == BACKGROUND and frame.pixel(bx + bw, by + bh) == BACKGROUND, name
        with pytest.raises(ValueError, match="no monitor 7"):
            source.grab(7)


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("resize, size", [({}, (W, H)), ({"max_width": 640}, (640, 360)), ({"scale": 0.25}, (320, 180)),
                                          ({"max_width": 960, "scale": 0.5}, (640, 360))])
def test_both_encoders_give_the_right_size_and_colours(display, encoder, resize, size):
    with MssSource() as source:
        jpeg = encode_jpeg(source.grab(), 80, encoder=encoder, **resize)
    image = Image.open(io.BytesIO(jpeg))
    assert image.format == "JPEG" and image.size == size
    check_pattern(image.convert("RGB"), size[0] / W)


def test_capture_command_stores_the_picture_for_the_persister(display, agent):
    result = agent.capability.capture({"quality": 60, "max_width": 640, "reason": "ticket 42"}, agent.ctx)
    assert result["width"] == 640 and result["height"] == 360 and result["format"] == "jpeg"
    assert result["screen"] == [W, H] and result["bytes"] > 1000
    [record] = agent.stored()
    assert record["_id"] == result["msg_id"] and record["_kind"] == Kind.EVENT and record["_topic"] == "capture"
    assert {k: record[k] for k in ("width", "height", "quality", "format", "operator")} == {
        "width": 640, "height": 360, "quality": 60, "format": "jpeg", "operator": "op-kim"}
    assert len(record["image"]) == result["bytes"]
    check_pattern(Image.open(io.BytesIO(record["image"])).convert("RGB"), 0.5)
    assert "screen captured  by op-kim  640x360  reason: ticket 42" in agent.access.read()


def test_quality_changes_the_size(display, agent):
    sizes = [agent.capability.capture({"quality": q}, agent.ctx)["bytes"] for q in (20, 50, 90)]
    assert sizes[0] < sizes[1] < sizes[2], sizes


@pytest.mark.parametrize("args, message", [
    ({"quality": 0}, "quality must be an integer from 1 to 95"),
    ({"quality": "high"}, "quality must be"),
    ({"scale": 2}, "scale must be a number in"),
    ({"max_width": -5}, "max_width must be a positive integer"),
    ({"monitor": 3}, "no monitor 3"),
    ({"monitor": "1"}, "no monitor '1'"),
    ({"qualty": 50}, "capture does not take qualty"),
])
def test_bad_arguments_are_command_errors(display, agent, args, message):
    with pytest.raises(CommandError, match=message):
        agent.capability.capture(args, agent.ctx)
    assert agent.stored() == []
