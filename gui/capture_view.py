"""Stored screen captures in the console: previews, the full-size window, export.

Where the work happens:

* **Previews** come with the Captures tab's query (``store.query`` of
  ``captures`` with ``thumbnails``): the persister made a ~160 px JPEG of
  each capture when it stored it (:mod:`broker.persister.thumbnails` says
  why), and :func:`decode_thumbnails` turns them into QImages in the bus
  worker thread. The table paints them through
  :class:`~gui.models.CapturesModel`, which makes each QPixmap only when
  its row is first painted.
* **Full size**: :meth:`CaptureViews.open` asks ``store.capture`` (audited by
  the store as ``capture.view``, with the operator's name);
  :func:`decode_capture` decodes the image in the worker thread, and a
  :class:`CaptureWindow` shows it fit to the window or 1:1, painted by the
  live view's :class:`~gui.live_view.FrameView`.
* **Export**: :meth:`CaptureViews.export` asks ``store.capture`` again with
  ``purpose="export"`` (audited as ``capture.export``: the record is written
  before the picture leaves the store), and :func:`write_capture` writes
  the file in the worker thread: the stored JPEG byte for byte, or
  converted to PNG when the name ends in ``.png``.

Viewers may not read captures at all (the store refuses; the tab says so).
Nothing here blocks the GUI thread on the bus, on decoding or on the disk.
"""
from __future__ import annotations

import errno
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSize, Qt, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from gui.bus_worker import BusWorker
from gui.live_view import FrameView
from gui.models import CapturesModel, RowRole, format_time
from gui.widgets import HOT_COLOUR, HistoryTab

#: file suffix for each stored image format, and the formats an export can write
SUFFIXES = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}
EXPORT_FORMATS = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png"}
EXPORT_FILTER = "JPEG image (*.jpg *.jpeg);;PNG image (*.png)"
#: what a capture the store no longer has, or one it has not stored yet, is shown as
GONE = "that capture is no longer stored (retention or deleted)"
NOT_YET_STORED = "This capture is still being stored: try again in a moment."


# -- run in the bus worker thread (BusWorker.submit(prepare=...)) ---------------------
def decode_thumbnails(rows: Any) -> list:
    """``store.query`` rows with ``thumbnail`` bytes -> the same rows with a QImage
    (or ``thumbnail_error`` saying why there is none)."""
    if not isinstance(rows, list):
        raise ValueError(f"the store answered {type(rows).__name__}, not a list of captures")
    for row in rows:
        if not isinstance(row, dict):
            continue
        data = row.get("thumbnail")
        if isinstance(data, (bytes, bytearray)):
            image = QImage.fromData(bytes(data))
            row["thumbnail"] = None if image.isNull() else image
            if image.isNull():
                row["thumbnail_error"] = "the preview cannot be decoded"
    return rows


def decode_capture(capture: Any) -> dict:
    """A ``store.capture`` answer -> ``{"capture": row without the image, "image": QImage | None, "error": str | None}``."""
    if not isinstance(capture, dict):
        raise ValueError(GONE)
    data = capture.get("image")
    row = {k: v for k, v in capture.items() if k != "image"}
    if not isinstance(data, (bytes, bytearray)) or not data:
        return {"capture": row, "image": None, "error": "the store sent no image for this capture"}
    image = QImage.fromData(bytes(data))
    if image.isNull():
        return {"capture": row, "image": None,
                "error": f"the image cannot be decoded ({len(data)} bytes, format {capture.get('format') or 'unknown'})"}
    return {"capture": row, "image": image, "error": None}


def export_path(path: str | os.PathLike, stored_format: str | None) -> tuple[Path, str]:
    """Where an export goes and in which format (``jpeg``/``png``), from the chosen name.

    A name without a suffix gets the stored format's. Raises ValueError for
    a suffix that is neither JPEG nor PNG.
    """
    target = Path(path)
    if not target.suffix:
        target = target.with_suffix(SUFFIXES.get((stored_format or "").lower(), ".jpg"))
    fmt = EXPORT_FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot export as {target.suffix!r}: choose a .jpg or .png file name")
    return target, fmt


def write_capture(path: str | os.PathLike, capture: Any) -> dict:
    """Write a ``store.capture`` answer to ``path``; returns ``{path, format, bytes, width, height}``.

    The stored bytes are written unchanged when they already are what the
    name asks for (told by their first bytes, not by the format the agent
    claimed), else the image is converted (JPEG -> PNG, PNG -> JPEG at
    quality 95). The file appears whole or not at all (written beside it,
    then renamed). Raises ValueError (no image, undecodable, unknown
    suffix) or OSError (cannot write there).
    """
    if not isinstance(capture, dict) or not isinstance(capture.get("image"), (bytes, bytearray)):
        raise ValueError(GONE)
    data = bytes(capture["image"])
    target, fmt = export_path(path, capture.get("format"))
    image = QImage.fromData(data)
    if image.isNull():
        raise ValueError(f"the capture's image cannot be decoded ({len(data)} bytes): nothing was written")
    partial_file = target.with_name(target.name + ".part")
    try:
        if _sniffed_format(data) == fmt:
            partial_file.write_bytes(data)
        elif not image.save(str(partial_file), "PNG" if fmt == "png" else "JPEG", -1 if fmt == "png" else 95):
            raise OSError(errno.EIO, f"it could not be saved as {fmt.upper()}")
        os.replace(partial_file, target)
    except OSError as exc:
        raise OSError(f"cannot write {target}: {exc.strerror or exc}; check that the folder exists and is writable") from exc
    finally:
        partial_file.unlink(missing_ok=True)
    return {"path": str(target), "format": fmt, "bytes": target.stat().st_size,
            "width": image.width(), "height": image.height(), "capture_id": capture.get("id")}


def _sniffed_format(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    return None


# -- widgets ---------------------------------------------------------------------------
class CapturesTab(HistoryTab):
    """The Captures history tab: a preview on each row, "Open full size" and "Export…".

    Double-click or Enter on a row opens it (the view's ``activated``).
    """

    open_requested = Signal(dict)
    export_requested = Signal(dict)

    def __init__(self, model: CapturesModel, empty_text: str, parent=None):
        super().__init__(model, empty_text, parent)
        size: QSize = model.PREVIEW_SIZE
        self.view.setIconSize(size)
        self.view.verticalHeader().setDefaultSectionSize(size.height() + 6)
        self.open_button = QPushButton("Open full size")
        self.open_button.setToolTip("Open the selected capture in its own window (Enter; audited with your name)")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Save the selected capture as a JPEG or PNG file (audited with your name)")
        for button in (self.open_button, self.export_button):
            button.setEnabled(False)
            self.bar.addWidget(button)
        self.open_button.clicked.connect(lambda: self._emit(self.open_requested))
        self.export_button.clicked.connect(lambda: self._emit(self.export_requested))
        self.view.activated.connect(lambda index: self._emit(self.open_requested, index.row()))
        self.view.selectionModel().selectionChanged.connect(self._update_buttons)
        model.modelReset.connect(self._update_buttons)
        model.dataChanged.connect(self._update_buttons)

    def selected_row(self) -> dict | None:
        rows = self.view.selectionModel().selectedRows()
        return self.model.index(rows[0].row(), 0).data(RowRole) if rows else None

    def _emit(self, signal, row_number: int | None = None) -> None:
        row = self.model.row(row_number) if row_number is not None else self.selected_row()
        if row is not None:
            signal.emit(row)

    def _update_buttons(self, *_) -> None:
        row = self.selected_row()
        stored = row is not None and row.get("id") is not None
        self.open_button.setEnabled(stored)
        self.export_button.setEnabled(stored)

    def fit_columns(self) -> None:
        super().fit_columns()
        self.view.horizontalHeader().resizeSection(0, self.model.PREVIEW_SIZE.width() + 12)


class CaptureWindow(QWidget):
    """One stored capture, full size, in its own window: fit to the window or 1:1, and "Export…".

    It opens at once saying it is loading; :meth:`show_capture` or
    :meth:`show_error` fills it when the store has answered.
    """

    def __init__(self, capture_id: int, title: str, on_export: Callable[[], None], parent=None):
        super().__init__(parent, Qt.WindowType.Window)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.capture_id = capture_id
        self.capture: dict = {}
        self.image: QImage | None = None
        self.error: str | None = None
        self.setWindowTitle(title)
        self.info = QLabel("Loading…")
        self.info.setTextFormat(Qt.TextFormat.PlainText)
        self.fit_box = QCheckBox("Fit to window")
        self.fit_box.setChecked(True)
        self.fit_box.toggled.connect(self.set_fit)
        self.export_button = QPushButton("Export…")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(on_export)
        self.view = FrameView()
        self.area = QScrollArea()
        self.area.setWidget(self.view)
        self.area.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message = QLabel(f"Loading capture {capture_id}…")
        self.message.setTextFormat(Qt.TextFormat.PlainText)
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.message)
        self.stack.addWidget(self.area)
        bar = QHBoxLayout()
        bar.addWidget(self.info, 1)
        bar.addWidget(self.fit_box)
        bar.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addWidget(self.stack, 1)
        self.resize(1000, 640)
        self.set_fit(True)

    def show_capture(self, decoded: dict) -> None:
        """A :func:`decode_capture` result: the picture, or why there is none."""
        self.capture = decoded.get("capture") or {}
        if decoded.get("image") is None:
            self.show_error(decoded.get("error") or "the capture cannot be shown")
            return
        self.image = decoded["image"]
        self.view.set_image(self.image)
        self.set_fit(self.fit_box.isChecked())
        c = self.capture
        self.info.setText(f"{self.image.width()}×{self.image.height()} · {c.get('format') or '?'} · taken "
                          f"{format_time(c.get('ts'))} for {c.get('operator') or 'an operator'}")
        self.export_button.setEnabled(True)
        self.stack.setCurrentWidget(self.area)

    def show_error(self, error: str) -> None:
        self.error = error
        self.info.setText("Not shown.")
        self.message.setText(f"Capture {self.capture_id} cannot be shown: {error}")
        self.message.setStyleSheet(f"color: {HOT_COLOUR.name()};")
        self.stack.setCurrentWidget(self.message)

    def set_fit(self, fit: bool) -> None:
        """Fit the picture to the window, or show it 1:1 with scroll bars."""
        self.view.set_fit(fit)
        self.area.setWidgetResizable(fit)
        if fit or self.image is None:
            self.view.setMinimumSize(320, 180)
            self.view.setMaximumSize(16_777_215, 16_777_215)
        else:
            self.view.setFixedSize(self.image.size())


class CaptureViews(QObject):
    """Opens and exports stored captures for the main window, through its bus worker.

    ``call(request_id, on_reply, on_error)`` is how the main window routes
    answers back; ``name_of(client_id)`` names a client; ``notify(text,
    ms)`` shows a status line.
    """

    #: an export finished: path, {path, format, bytes, width, height, capture_id}
    exported = Signal(str, object)
    #: an export failed: path, why
    export_failed = Signal(str, str)

    def __init__(self, worker: BusWorker, call, name_of: Callable[[str | None], str],
                 notify: Callable[[str, int], None], parent=None):
        super().__init__(parent)
        self.worker = worker
        self._call = call
        self._name_of = name_of
        self._notify = notify
        self.windows: dict[int, CaptureWindow] = {}

    def title(self, row: dict) -> str:
        return f"Capture {row.get('id')} of {self._name_of(row.get('client_id'))}, {format_time(row.get('ts'))}"

    def open(self, row: dict) -> CaptureWindow | None:
        """Show the capture of ``row`` (a Captures tab row) full size; one window per capture."""
        capture_id = row.get("id")
        if not isinstance(capture_id, int):
            self._notify(NOT_YET_STORED, 5000)
            return None
        window = self.windows.get(capture_id)
        if window is None:
            window = self.windows[capture_id] = CaptureWindow(capture_id, self.title(row), lambda: self.ask_export(row, window))
            window.destroyed.connect(lambda *_: self.windows.pop(capture_id, None))
            request = self.worker.submit("store.capture", id=capture_id, purpose="view", prepare=decode_capture)
            self._call(request, window.show_capture, window.show_error)
        window.show()
        window.raise_()
        window.activateWindow()
        return window

    def ask_export(self, row: dict, parent: QWidget | None = None) -> None:
        """Ask where to save ``row``'s capture, then :meth:`export` it there."""
        capture_id = row.get("id")
        if not isinstance(capture_id, int):
            self._notify(NOT_YET_STORED, 5000)
            return
        name = f"capture-{row.get('client_id') or 'client'}-{capture_id}{SUFFIXES.get((row.get('format') or '').lower(), '.jpg')}"
        path, _ = QFileDialog.getSaveFileName(parent, f"Export capture {capture_id}", str(Path.home() / name), EXPORT_FILTER)
        if path:
            self.export(capture_id, path)

    def export(self, capture_id: int, path: str | os.PathLike) -> str:
        """Fetch capture ``capture_id`` (audited as an export) and write it to ``path``; returns the request id.

        The outcome comes as :attr:`exported` or :attr:`export_failed`.
        """
        request = self.worker.submit("store.capture", id=capture_id, purpose="export", prepare=partial(write_capture, path))
        self._call(request, partial(self._exported, str(path)), partial(self._export_failed, str(path)))
        return request

    def _exported(self, path: str, info: dict) -> None:
        self._notify(f"Capture {info.get('capture_id')} exported to {info['path']} ({info['bytes']} bytes, "
                     f"{info['width']}×{info['height']} {info['format'].upper()}).", 10000)
        self.exported.emit(path, info)

    def _export_failed(self, path: str, error: str) -> None:
        self._notify(f"Export to {path} failed: {error}", 10000)
        self.export_failed.emit(path, error)

    def close_all(self) -> None:
        for window in list(self.windows.values()):
            window.close()
