"""The console's live-view and chat windows against a real broker, a real
persister and a REAL `ems agent` process on a private Xvfb (the user played
with xdotool on that display)."""
# ruff: noqa: F811  (fixtures imported from test_gui_console are test arguments here)
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import shutil

import pytest
from PySide6.QtCore import QPoint, Qt
from test_agent_e2e import xdotool
from test_gui_console import console, persister  # noqa: F401  (fixtures)

from bench.harness.xvfb import Xvfb
from broker.core import keys

WAIT_MS = 20_000

@pytest.fixture(autouse=True, scope="module")
def _x_tools():
    """Xvfb and xdotool come with installer/install.sh --dev: missing, the tests fail (never skip)."""
    if not (Xvfb.installed() and shutil.which("xdotool")):
        pytest.fail("Xvfb and xdotool are needed: run installer/install.sh --dev")


@pytest.fixture
def display():
    with Xvfb(1280, 720) as x:
        yield x.display


def start_agent(bus, procs, tmp_path, display: str, client_id: str = "desk-1"):
    agent_dir = tmp_path / client_id
    pair = keys.load_or_create(agent_dir / "keys", "agent")
    bus.admin.request("keys.add", public_key=pair.public, client_id=client_id, role="agent")
    return lambda: procs.ems(client_id, "agent", "--data-dir", str(agent_dir), "--server", bus.endpoint,
                             f"--server-key={bus.server_key}", "--id", client_id, "--heartbeat-s", "0.5",
                             "--access-dir", str(agent_dir), env={"DISPLAY": display})


def test_chat_goes_queued_sent_delivered_read(bus, persister, console, procs, tmp_path, display, qtbot):
    run_agent = start_agent(bus, procs, tmp_path, display)
    window = console()
    chat = window.open_chat("desk-1")
    qtbot.addWidget(chat)
    chat.text.setText("Please save your work, IT will reboot at noon")
    qtbot.mouseClick(chat.send_button, Qt.MouseButton.LeftButton)
    assert chat.model.rowCount() == 1
    message_id = chat.model.rows()[0]["message_id"]
    seen: list[str] = []
    chat.model.dataChanged.connect(lambda *_: seen.append(chat.model.status(message_id)))
    qtbot.waitUntil(lambda: chat.model.status(message_id) == "queued", timeout=WAIT_MS)  # the agent is offline

    run_agent()
    qtbot.waitUntil(lambda: chat.model.status(message_id) == "delivered", timeout=WAIT_MS)
    assert "sent" in seen and seen.index("sent") < seen.index("delivered")

    windows = []
    qtbot.waitUntil(lambda: windows.extend(xdotool(display, "search", "--onlyvisible", "--name", "^EMS message from ").split())
                    or bool(windows), timeout=WAIT_MS)
    geometry = dict(line.split("=", 1) for line in xdotool(display, "getwindowgeometry", "--shell", windows[0]).split())
    x, y, width, height = (int(geometry[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
    xdotool(display, "mousemove", str(x + width - 60), str(y + height - 20), "click", "1")  # the Read button
    qtbot.waitUntil(lambda: chat.model.status(message_id) == "read", timeout=WAIT_MS)
    assert [s for s in dict.fromkeys(seen) if s] == ["queued", "sent", "delivered", "read"]
    assert "read" in chat.model.index(0, 0).data()


def test_live_view_shows_frames_and_a_click_moves_the_real_pointer(bus, persister, console, procs, tmp_path, display, qtbot):
    run_agent = start_agent(bus, procs, tmp_path, display)
    run_agent()
    window = console()
    qtbot.waitUntil(lambda: window.clients.client("desk-1") is not None and window.clients.client("desk-1").online,
                    timeout=WAIT_MS)
    live = window.open_live_view("desk-1", "the user asked for help")
    qtbot.addWidget(live)
    live.resize(800, 500)
    qtbot.waitUntil(lambda: live.frames > 0 and live.view.image is not None, timeout=WAIT_MS)
    image = live.view.image
    assert (image.width(), image.height()) == (1280, 720)
    painted = live.view.grab().toImage()
    assert not painted.isNull() and painted.width() > 0
    assert live.latency_s is not None and live.latency_s < 10

    live._ask_reason = lambda: "helping with the printer dialog"
    qtbot.mouseClick(live.control_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: live.control == "on", timeout=WAIT_MS)

    rect = live.view.target_rect()
    point = QPoint(int(rect.x() + rect.width() * 0.3), int(rect.y() + rect.height() * 0.6))
    expected = live.view.to_frame(point.toPointF())
    qtbot.mouseClick(live.view, Qt.MouseButton.LeftButton, pos=point)

    def pointer():
        fields = dict(f.split(":", 1) for f in xdotool(display, "getmouselocation").split() if ":" in f)
        return int(fields.get("x", -1)), int(fields.get("y", -1))

    qtbot.waitUntil(lambda: abs(pointer()[0] - expected[0]) <= 2 and abs(pointer()[1] - expected[1]) <= 2, timeout=WAIT_MS)

    qtbot.mouseClick(live.control_button, Qt.MouseButton.LeftButton)  # release
    assert live.control == "off"
    live.close()
    qtbot.waitUntil(lambda: "desk-1" not in window._live_windows, timeout=WAIT_MS)
