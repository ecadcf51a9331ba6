"""Live thumbnails on the console's client tiles, against a real broker, a real
persister and a REAL `ems agent` on a private Xvfb (pytest-qt, offscreen).

Requests are counted at the worker (``BusWorker.thumbnail_requests``) and at
the agents; the scheduler's timers are parked and its clock injected where a
test drives :meth:`ThumbnailScheduler.tick` itself, so nothing depends on
timing."""
# ruff: noqa: F811  (fixtures imported from test_gui_console are test arguments here)
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import argparse
import io
import shutil

import pytest
from PIL import Image
from PySide6.QtGui import QColor
from test_agent_e2e import xdotool
from test_gui_console import Agents, persister  # noqa: F401  (fixtures)
from test_gui_live_chat import start_agent

from agent.access_log import AccessLog
from bench.harness.pattern import Pattern
from bench.harness.xvfb import Xvfb
from gui import cli as gui_cmd
from broker.core.client import BusClient
from broker.core.envelope import Kind
from gui.bus_worker import BusWorker
from gui.main_window import MainWindow
from gui.thumbnails import MAX_THUMBNAIL_SIDE, ThumbnailConfig, decode_result
from gui.widgets import ClientTileDelegate

from conftest import ManualClock as Clock

WAIT_MS = 20_000
RED, BLUE = (255, 0, 0), (32, 80, 192)
#: timers that never fire within a test: the test calls tick() itself
PARKED = {"tick_s": 3600.0, "settle_ms": 3_600_000}


@pytest.fixture
def display():
    """Xvfb: the left half of the screen red, the right half blue (notices open top right)."""
    if not (Xvfb.installed() and shutil.which("xdotool")):
        pytest.fail("Xvfb and xdotool are needed: run installer/install.sh --dev")
    with Xvfb(1280, 720) as x, Pattern(x.display, 1280, 720, background="#2050c0") as p:
        p.rect("left", 0, 0, 640, 720, "#ff0000")
        yield x.display


def jpeg(width: int, height: int, rgb=(10, 200, 10)) -> bytes:
    """A flat JPEG picture."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), rgb).save(out, "JPEG")
    return out.getvalue()


class ScreenAgents(Agents):
    """Agents as BusClients (one thread) that answer ``thumbnail`` with a small green JPEG."""

    PICTURE = jpeg(240, 135)

    def _answer(self, client: BusClient, env) -> None:
        data = env.data()
        if data["name"] != "thumbnail":
            return super()._answer(client, env)
        self.commands.append((client.client_id, data["name"], data.get("args") or {}))
        client.send(Kind.COMMAND_STATUS, data={"status": "delivered"}, corr=env.msg_id)
        client.send(Kind.RESULT, data={"ok": True, "output": {"image": self.PICTURE}}, corr=env.msg_id)


@pytest.fixture
def screen_agents(bus):
    made: list[Agents] = []
    yield lambda hellos: made.append(ScreenAgents(bus, hellos)) or made[-1]
    for a in made:
        a.stop()


@pytest.fixture
def console(bus, qtbot):
    def open_console(config: ThumbnailConfig, client_id: str = "op-gui", role: str = "operator") -> MainWindow:
        pair = bus.enrol(client_id, role=role)
        client_config = bus.client_config()
        window = MainWindow(BusWorker(lambda: BusClient(client_config, pair, hello={"client_id": client_id})), thumbnails=config)
        qtbot.addWidget(window)  # closed (and its worker stopped) at teardown
        window.show()
        qtbot.waitUntil(lambda: window._ready, timeout=WAIT_MS)
        return window

    return open_console


def close_to(colour: QColor, rgb: tuple[int, int, int], tolerance: int = 24) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip((colour.red(), colour.green(), colour.blue()), rgb))


def online(window: MainWindow, *client_ids: str) -> bool:
    rows = [window.clients.client(c) for c in client_ids]
    return all(r is not None and r.online for r in rows)


def test_a_visible_online_tile_shows_the_real_screen_and_the_employee_is_told(bus, persister, console, procs, tmp_path,
                                                                               display, qtbot):
    """With the default settings and a real `ems agent`: the tile shows what is on
    the agent's screen, the employee sees a notice naming the operator, every
    picture is in the access log, the broker audits it, the command log stays clean."""
    start_agent(bus, procs, tmp_path, display)()
    window = console(ThumbnailConfig())  # the defaults: every 15 s, 240 px
    qtbot.waitUntil(lambda: online(window, "desk-1"), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.clients.client("desk-1").thumbnail is not None, timeout=WAIT_MS)

    picture = window.clients.client("desk-1").thumbnail
    assert not picture.isNull() and (picture.width(), picture.height()) == (240, 135)
    assert close_to(picture.pixelColor(60, 100), RED) and close_to(picture.pixelColor(200, 100), BLUE)
    assert window.worker.thumbnail_requests["desk-1"] >= 1
    # the tile paints it: the left of its picture area is red
    proxy_index = window.proxy.mapFromSource(window.clients.index(window.clients.row_of("desk-1"), 0))
    delegate: ClientTileDelegate = window.tiles.itemDelegate()
    area = delegate.thumbnail_rect(window.tiles.visualRect(proxy_index))
    painted = window.tiles.viewport().grab().toImage()
    assert close_to(painted.pixelColor(area.left() + area.width() // 4, area.top() + area.height() * 3 // 4), RED)

    # the employee: a notice window naming the operator, and each picture in the access log
    notices = []
    qtbot.waitUntil(lambda: notices.extend(xdotool(display, "search", "--onlyvisible", "--name",
                                                   "^EMS notice: Screen thumbnails").split()) or bool(notices), timeout=WAIT_MS)
    log = AccessLog(tmp_path / "desk-1" / "access.log").read()
    assert "Screen thumbnails  op-gui sees small pictures of your screen in the operator console" in log
    assert "screen thumbnail  by op-gui  240x135  reason: client tile thumbnail in the operator console" in log

    # the broker's audit trail names the operator; the command log is not flooded with tile pictures
    def audited() -> bool:
        rows = bus.admin.request("store.query", kind="audit", audit_operator="op-gui")
        return any(r.get("action") == "command" and "thumbnail" in str(r.get("detail")) for r in rows)

    qtbot.waitUntil(audited, timeout=WAIT_MS)
    assert "thumbnail" not in window.commands.column_values("name")
    # ...and the store's command history keeps no row per picture (the audit trail is the record)
    stored = bus.admin.request("store.query", kind="commands", client_id="desk-1")
    assert stored is not None and all(r.get("name") != "thumbnail" for r in stored)


def test_only_visible_online_tiles_are_asked_and_nothing_while_hidden(bus, screen_agents, console, qtbot):
    """24 agents (BusClients answering thumbnails with a JPEG) in a window that
    shows a few tiles: a tick asks only for the tiles in the viewport, at most
    max_in_flight at a time; scrolling moves the requests with it (and old
    pictures out of view are dropped beyond max_kept); a hidden or minimised
    window, the table view, an offline agent and a closed window get no request."""
    ids = [f"pc-{i:02d}" for i in range(24)]
    fleet = screen_agents({cid: {"label": cid} for cid in ids})
    window = console(ThumbnailConfig(interval_s=30, max_in_flight=2, max_kept=4, **PARKED))
    window.resize(1200, 900)
    qtbot.waitUntil(lambda: online(window, *ids), timeout=WAIT_MS)
    scheduler, worker, clock = window.thumbnails, window.worker, Clock()
    scheduler.clock = clock

    def asked() -> dict[str, int]:
        return dict(worker.thumbnail_requests)

    def settle() -> None:
        """Tick until every visible due tile has been asked and answered."""
        while True:
            qtbot.waitUntil(lambda: scheduler.in_flight == 0, timeout=WAIT_MS)
            if not scheduler.tick():
                return

    window.tiles.scrollToTop()
    top = scheduler.visible_clients()
    assert 0 < len(top) < len(ids) and top == ids[:len(top)]
    assert len(top) > 2 and len(scheduler.tick()) == 2 and sum(asked().values()) == 2  # the in-flight limit
    settle()
    assert asked() == {cid: 1 for cid in top}
    assert all(close_to(window.clients.client(cid).thumbnail.pixelColor(5, 5), (10, 200, 10)) for cid in top)
    assert window.clients.client(ids[-1]).thumbnail is None

    window.tiles.scrollToBottom()
    bottom = scheduler.visible_clients()
    assert bottom and not set(bottom) & set(top)
    clock.now += 31  # every tile is due again, but only the visible ones are asked
    settle()
    assert asked() == {cid: 1 for cid in top} | {cid: 1 for cid in bottom}
    assert {(cid, name) for cid, name, _ in fleet.commands} == {(cid, "thumbnail") for cid in top + bottom}
    kept = [cid for cid in ids if window.clients.client(cid).thumbnail is not None]
    assert len(top) + len(bottom) > 4 and len(kept) == 4 and set(bottom) <= set(kept)  # the oldest out of view went

    before = asked()
    clock.now += 31
    window.hide()
    assert scheduler.visible_clients() == [] and scheduler.tick() == []
    window.show()
    window.showMinimized()
    qtbot.waitUntil(window.isMinimized, timeout=WAIT_MS)
    assert scheduler.tick() == []
    window.set_fleet_view("table")  # the table has no pictures
    window.showNormal()
    qtbot.waitUntil(lambda: window.isVisible() and not window.isMinimized(), timeout=WAIT_MS)
    assert scheduler.tick() == [] and asked() == before
    window.set_fleet_view("tiles")
    assert scheduler.tick()  # shown again: asked again
    settle()

    window.thumbnails_action.trigger()  # View > Thumbnails off: compact tiles, no requests
    delegate: ClientTileDelegate = window.tiles.itemDelegate()
    assert not delegate.thumbnails_shown and delegate.sizeHint(None, None) == ClientTileDelegate.SIZE
    clock.now += 31
    assert scheduler.tick() == []
    window.thumbnails_action.trigger()
    assert delegate.sizeHint(None, None) == ClientTileDelegate.SIZE_WITH_THUMB

    gone = scheduler.visible_clients()[0]
    fleet.disconnect(gone)
    qtbot.waitUntil(lambda: not online(window, gone), timeout=WAIT_MS)
    before = asked()
    clock.now += 31
    settle()
    others = scheduler.visible_clients()
    assert gone not in others and all(asked().get(c, 0) == before.get(c, 0) + 1 for c in others)
    assert asked().get(gone, 0) == before.get(gone, 0)  # offline: not asked

    window.close()
    clock.now += 31
    assert not scheduler.timer.isActive() and scheduler.tick() == []


def test_a_viewer_console_asks_for_no_screen(bus, screen_agents, console, qtbot):
    """Viewers may not see screens (the broker refuses their commands): their console does not ask."""
    fleet = screen_agents({"pc-1": {}})
    window = console(ThumbnailConfig(**PARKED), client_id="view-gui", role="viewer")
    scheduler = window.thumbnails
    qtbot.waitUntil(lambda: online(window, "pc-1") and scheduler.note("pc-1") == "screens are for operators", timeout=WAIT_MS)
    assert scheduler.visible_clients() == ["pc-1"] and scheduler.tick() == []
    assert not window.worker.thumbnail_requests and fleet.commands == []


def test_thumbnails_can_be_left_off(bus, screen_agents, console, qtbot):
    """``ems gui --thumbnails-s 0``: compact tiles, no request, and no switch to turn them on."""
    fleet = screen_agents({"pc-1": {}})
    window = console(ThumbnailConfig(interval_s=0, **PARKED))
    qtbot.waitUntil(lambda: online(window, "pc-1"), timeout=WAIT_MS)
    assert not window.thumbnails_action.isEnabled() and not window.thumbnails_action.isChecked()
    assert window.tiles.itemDelegate().sizeHint(None, None) == ClientTileDelegate.SIZE
    assert window.thumbnails.tick() == [] and not window.worker.thumbnail_requests and fleet.commands == []


def test_ems_gui_thumbnail_option(capsys):
    """Tried: every 2 s (more often than any agent allows), -1, "often"."""
    parser = argparse.ArgumentParser(prog="ems")
    gui_cmd.configure(parser.add_subparsers().add_parser("gui"))
    assert parser.parse_args(["gui"]).thumbnails_s is None
    assert parser.parse_args(["gui", "--thumbnails-s", "20"]).thumbnails_s == 20.0
    assert parser.parse_args(["gui", "--thumbnails-s", "0"]).thumbnails_s == 0.0
    for bad in ("2", "-1", "often"):
        with pytest.raises(SystemExit):
            parser.parse_args(["gui", "--thumbnails-s", bad])
        assert f"'{bad}': give 0 (no thumbnails) or 5 to 3600 seconds" in capsys.readouterr().err


@pytest.mark.parametrize("body, error", [
    ({"status": "done", "result": {"ok": True, "output": {"image": jpeg(240, 135)}}}, ""),
    ({"status": "failed", "result": {"ok": False, "error": "thumbnail refused: ... the next one in 7 s"}},
     "thumbnail refused: ... the next one in 7 s"),
    ({"status": "expired", "result": None}, "expired"),
    ({"status": "done", "result": {"ok": True, "output": {"image": b"not a jpeg at all"}}}, "no usable JPEG"),
    ({"status": "done", "result": {"ok": True, "output": {"image": jpeg(MAX_THUMBNAIL_SIDE + 1, 8)}}}, "no usable JPEG"),
    ({"status": "done", "result": {"ok": True, "output": {"image": b"\xff" * 300_000}}}, "more than a thumbnail"),
    ({"status": "done", "result": {"ok": True, "output": "a string"}}, "the agent sent no picture"),
    ({"status": "done", "result": "garbage"}, "the agent sent no picture"),
])
def test_an_answer_is_decoded_defensively(body, error):
    """Tried: a refusal, an expiry, bytes that are no JPEG, a JPEG wider than any
    thumbnail (read from its header, never decoded), too many bytes, no image."""
    image, why = decode_result(body)
    assert why.endswith(error) if error else why == ""
    assert image.isNull() == bool(error)
    if not error:
        assert (image.width(), image.height()) == (240, 135) and close_to(image.pixelColor(5, 5), (10, 200, 10))
