"""The console's Captures tab and disk chart against a real broker, a real
persister and agents: a REAL `ems agent` on a private Xvfb for the capture
taken through the GUI, BusClient agents (test_gui_console.Agents) for the
cases a real agent never produces (an undecodable image, a tampered row,
hundreds of captures)."""
# ruff: noqa: F811  (fixtures imported from the other GUI tests are test arguments here)
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import io

from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from test_gui_console import Agents, agents, console, persister  # noqa: F401  (fixtures)
from test_gui_live_chat import display, start_agent  # noqa: F401  (fixtures)

from bench.harness.pattern import Pattern
from broker.core import sqlite_db
from broker.core.envelope import Kind
from gui.models import CapturesModel, RawRole

WAIT_MS = 20_000
RED = "#d01818"


def jpeg(width: int, height: int, colour=(30, 120, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "JPEG", quality=80)
    return out.getvalue()


def captures_of(window):
    return window.history["captures"]


def preview(model: CapturesModel, row: int = 0):
    index = model.index(row, model.columns.index("thumbnail"))
    return index.data(Qt.ItemDataRole.DecorationRole), index.data(Qt.ItemDataRole.DisplayRole)


def audit_rows(bus, action: str) -> list[dict]:
    return [r for r in bus.admin.request("store.query", kind="audit", limit=1000) if r["action"] == action]


def test_a_capture_taken_in_the_console_has_a_preview_opens_full_size_and_exports(
        bus, persister, console, procs, tmp_path, display, qtbot):
    """Capture now (reason dialog) on a real agent on a 1280x720 Xvfb with a
    red box drawn on it: the row gets its preview, Enter opens the 1280x720
    picture, export writes a JPEG and a PNG Pillow reads back; the audit
    trail names the operator for the previews, the view and the export; the
    chart has the agent's disk points."""
    with Pattern(display, 1280, 720) as pattern:
        pattern.rect("box", 100, 100, 400, 200, RED)
        start_agent(bus, procs, tmp_path, display)()
        window = console()
        qtbot.waitUntil(lambda: window.clients.client("desk-1") is not None and window.clients.client("desk-1").online,
                        timeout=WAIT_MS)
        assert window.select_client("desk-1")
        window.tabs.setCurrentWidget(window.tabs_by_kind["captures"])
        qtbot.waitUntil(lambda: "No captures" in window.tabs_by_kind["captures"].message.text(), timeout=WAIT_MS)

        dialog = window.run_action("capture")
        dialog.reason_edit.setText("ticket 7: the user sees a broken dialog")
        dialog.accept()
        model = captures_of(window)
        qtbot.waitUntil(lambda: model.rowCount() == 1 and model.row(0).get("thumbnail") is not None, timeout=WAIT_MS)

    row = model.row(0)
    assert (row["width"], row["height"], row["format"], row["operator"]) == (1280, 720, "jpeg", "op-gui")
    image = model.index(0, 0).data(RawRole)
    assert (image.width(), image.height()) == (160, 90)  # the persister's preview
    pixmap, text = preview(model)
    assert isinstance(pixmap, QPixmap) and not pixmap.isNull()
    assert (pixmap.width(), pixmap.height()) == (128, 72)  # drawn in the 128x72 box, aspect kept
    assert text == ""
    red = pixmap.toImage().pixelColor(int(300 / 10), int(200 / 10))  # the box's middle, scaled 1:10
    assert red.red() > 150 and red.green() < 90

    tab = window.tabs_by_kind["captures"]
    tab.view.selectRow(0)
    assert tab.open_button.isEnabled() and tab.export_button.isEnabled()
    tab.view.setFocus()
    qtbot.keyClick(tab.view, Qt.Key.Key_Return)  # Enter opens it
    qtbot.waitUntil(lambda: row["id"] in window.capture_views.windows, timeout=WAIT_MS)
    full = window.capture_views.windows[row["id"]]
    qtbot.waitUntil(lambda: full.image is not None, timeout=WAIT_MS)
    assert (full.image.width(), full.image.height()) == (1280, 720)
    assert full.image.pixelColor(300, 200).red() > 150
    full.fit_box.setChecked(False)  # 1:1
    assert full.view.size().width() == 1280 and not full.view.fit
    assert f"Capture {row['id']} of " in full.windowTitle()

    exports = {}
    for name in ("shot.jpg", "shot.png"):
        with qtbot.waitSignal(window.capture_views.exported, timeout=WAIT_MS) as done:
            window.capture_views.export(row["id"], tmp_path / name)
        exports[name] = done.args[1]
        with Image.open(tmp_path / name) as written:
            assert written.size == (1280, 720)
            assert written.format == ("JPEG" if name.endswith(".jpg") else "PNG")
            assert written.convert("RGB").getpixel((300, 200))[0] > 150
    stored = bus.admin.request("store.capture", id=row["id"])["image"]
    assert (tmp_path / "shot.jpg").read_bytes() == stored  # the stored JPEG, byte for byte
    assert exports["shot.png"]["format"] == "png"
    assert not list(tmp_path.glob("*.part"))
    assert "exported to" in window.statusBar().currentMessage()

    def audited():
        return {a: audit_rows(bus, a) for a in ("capture.thumbnails", "capture.view", "capture.export")}

    qtbot.waitUntil(lambda: len(audited()["capture.export"]) == 2 and bool(audited()["capture.view"]), timeout=WAIT_MS)
    trail = audited()
    for action, rows in trail.items():
        gui_rows = [r for r in rows if r["operator"] == "op-gui"]
        assert gui_rows, action
        assert all(r["target"] == "desk-1" and r["role"] == "admin" for r in gui_rows), action
    assert any(row["id"] in r["detail"]["capture_ids"] for r in trail["capture.thumbnails"])
    assert {r["detail"]["capture_id"] for r in trail["capture.export"]} == {row["id"]}

    # the chart: the agent's sysinfo reports its fullest disk, and the store keeps it
    qtbot.waitUntil(lambda: window.chart.disk.count() >= 1, timeout=WAIT_MS)
    metrics = bus.admin.request("store.query", kind="metrics", client_id="desk-1")
    point = window.chart.disk.at(0)
    assert 0 <= point.y() <= 100
    assert point.y() in [m["disk_percent"] for m in metrics]


def test_previews_that_cannot_be_shown_say_why_and_nothing_crashes(bus, persister, agents, console, tmp_path, qtbot):
    """Bad input: one capture whose bytes are not a picture, one whose stored
    image and preview were altered in the database (AES-GCM tag mismatch),
    next to a good one. The bad rows say why in place of a preview; opening
    them shows the reason in the capture window; exporting them, or to a
    .gif name or a folder that does not exist, fails with the reason and
    writes nothing; the good row is unaffected."""
    fleet = agents({"a1": {}})
    qtbot.waitUntil(lambda: fleet.ready_ids == {"a1"}, timeout=WAIT_MS)
    fleet.publish("a1", Kind.EVENT, "capture", {"width": 64, "height": 32, "format": "jpeg", "image": b"not a jpeg at all"})
    fleet.publish("a1", Kind.EVENT, "capture", {"width": 320, "height": 180, "format": "jpeg", "image": jpeg(320, 180)})
    fleet.publish("a1", Kind.EVENT, "capture", {"width": 320, "height": 200, "format": "jpeg", "image": jpeg(320, 200, (0, 200, 0))})
    qtbot.waitUntil(lambda: len(bus.admin.request("store.query", kind="captures", client_id="a1")) == 3, timeout=WAIT_MS)
    ids = sorted(r["id"] for r in bus.admin.request("store.query", kind="captures", client_id="a1"))
    garbage, altered, good = ids
    db = sqlite_db.connect(persister.store.path)
    for table, column in (("screen_captures", "image"), ("capture_thumbnails", "thumbnail")):
        blob = bytearray(db.execute(f"SELECT {column} FROM {table} WHERE id = ?", (altered,)).fetchone()[0])
        blob[-5] ^= 0x01
        db.execute(f"UPDATE {table} SET {column} = ? WHERE id = ?", (bytes(blob), altered))
    db.close()

    window = console()
    qtbot.waitUntil(lambda: window.select_client("a1"), timeout=WAIT_MS)
    window.tabs.setCurrentWidget(window.tabs_by_kind["captures"])
    model = captures_of(window)
    qtbot.waitUntil(lambda: model.rowCount() == 3, timeout=WAIT_MS)
    by_id = {model.row(n)["id"]: n for n in range(3)}

    pixmap, text = preview(model, by_id[garbage])
    assert pixmap is None and text.startswith("No preview: the image cannot be decoded")
    pixmap, text = preview(model, by_id[altered])
    assert pixmap is None and "cannot be decrypted" in text and f"capture_thumbnails row {altered}" in text
    colour = model.index(by_id[altered], 0).data(Qt.ItemDataRole.ForegroundRole)
    assert colour == CapturesModel.ERROR_COLOUR
    pixmap, text = preview(model, by_id[good])
    assert not pixmap.isNull() and (pixmap.width(), pixmap.height()) == (115, 72) and text == ""  # 16:10 in 128x72

    bad_window = window.capture_views.open(model.row(by_id[garbage]))
    qtbot.waitUntil(lambda: bad_window.error is not None, timeout=WAIT_MS)
    assert "cannot be decoded" in bad_window.error and "17 bytes" in bad_window.error
    assert bad_window.stack.currentWidget() is bad_window.message and not bad_window.export_button.isEnabled()
    altered_window = window.capture_views.open(model.row(by_id[altered]))
    qtbot.waitUntil(lambda: altered_window.error is not None, timeout=WAIT_MS)
    assert f"screen_captures row {altered} (image)" in altered_window.error

    with qtbot.waitSignal(window.capture_views.export_failed, timeout=WAIT_MS) as failed:
        window.capture_views.export(altered, tmp_path / "altered.jpg")
    assert "screen_captures row" in failed.args[1]
    with qtbot.waitSignal(window.capture_views.export_failed, timeout=WAIT_MS) as failed:
        window.capture_views.export(garbage, tmp_path / "garbage.png")
    assert "cannot be decoded" in failed.args[1] and "nothing was written" in failed.args[1]
    with qtbot.waitSignal(window.capture_views.export_failed, timeout=WAIT_MS) as failed:
        window.capture_views.export(good, tmp_path / "good.gif")
    assert "choose a .jpg or .png" in failed.args[1]
    with qtbot.waitSignal(window.capture_views.export_failed, timeout=WAIT_MS) as failed:
        window.capture_views.export(good, tmp_path / "no-such-folder" / "good.png")
    assert f"cannot write {tmp_path / 'no-such-folder' / 'good.png'}" in failed.args[1]
    assert "Export to" in window.statusBar().currentMessage()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".jpg", ".png", ".gif", ".part")) == []

    tab = window.tabs_by_kind["captures"]
    tab.view.selectRow(by_id[good])
    qtbot.mouseClick(tab.open_button, Qt.MouseButton.LeftButton)  # "Open full size"
    qtbot.waitUntil(lambda: good in window.capture_views.windows, timeout=WAIT_MS)
    good_window = window.capture_views.windows[good]
    qtbot.waitUntil(lambda: good_window.image is not None, timeout=WAIT_MS)
    assert (good_window.image.width(), good_window.image.height()) == (320, 200)
    assert window.worker.isRunning()


def test_many_captures_load_with_previews_but_pixmaps_are_made_only_for_rows_shown(
        bus, persister, agents, console, qtbot):
    """150 captures: one query brings every preview (decoded in the worker),
    and the GUI thread turns into pixmaps only the rows the table paints."""
    fleet = agents({"a1": {}})
    qtbot.waitUntil(lambda: fleet.ready_ids == {"a1"}, timeout=WAIT_MS)
    for n in range(150):
        fleet.publish("a1", Kind.EVENT, "capture", {"width": 320, "height": 180, "format": "jpeg",
                                                    "image": jpeg(320, 180, (n, 255 - n, 90))})
    qtbot.waitUntil(lambda: len(bus.admin.request("store.query", kind="captures", client_id="a1", limit=200)) == 150,
                    timeout=WAIT_MS)
    window = console()
    qtbot.waitUntil(lambda: window.select_client("a1"), timeout=WAIT_MS)
    tab = window.tabs_by_kind["captures"]
    window.tabs.setCurrentWidget(tab)
    model = captures_of(window)
    qtbot.waitUntil(lambda: model.rowCount() == 150, timeout=WAIT_MS)
    assert all(r.get("thumbnail") is not None and not r["thumbnail"].isNull() for r in model.rows())
    tab.view.viewport().grab()  # paint what is visible
    shown = model.cached_pixmaps()
    assert 0 < shown < 40
    tab.view.scrollToBottom()
    tab.view.viewport().grab()
    assert shown < model.cached_pixmaps() < 80
    assert "150 captures" in tab.message.text()


def test_live_sysinfo_adds_disk_points_and_names_the_fullest_mount(bus, persister, agents, console, qtbot):
    fleet: Agents = agents({"a1": {}})
    qtbot.waitUntil(lambda: fleet.ready_ids == {"a1"}, timeout=WAIT_MS)
    window = console()
    qtbot.waitUntil(lambda: window.select_client("a1"), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.details.metrics_loaded, timeout=WAIT_MS)
    for disk in (71.5, 72.0):
        fleet.publish("a1", Kind.EVENT, "sysinfo", {"cpu_percent": 5.0, "memory_percent": 40.0, "disk_percent": disk,
                                                    "disk_percent_mount": "/home"})
    qtbot.waitUntil(lambda: window.chart.disk.count() == 2, timeout=WAIT_MS)
    assert [window.chart.disk.at(i).y() for i in range(2)] == [71.5, 72.0]
    assert window.chart.disk.name() == "Disk % (/home)"
    fleet.publish("a1", Kind.EVENT, "sysinfo", {"cpu_percent": 6.0})  # an old agent: no disk figure
    qtbot.waitUntil(lambda: window.chart.cpu.count() == 3, timeout=WAIT_MS)
    assert window.chart.disk.count() == 2
