""":class:`CapturesModel`: the captures' history with their previews, each QPixmap made when first painted.
"""
from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QImage, QPixmap

from gui.models.base import Index, RawRole, RowRole
from gui.models.history import HistoryModel
from gui.models.text import rich_tooltip


class CapturesModel(HistoryModel):
    """Screen captures and their previews.

    A stored row's ``thumbnail`` is a QImage the bus worker decoded from the
    store's ~160 px JPEG (``thumbnail_error`` says why a row has none). The
    QPixmap the table paints is made only when the view asks for it, that
    is for rows scrolled into view, scaled once to :data:`PREVIEW_SIZE` and
    cached by image: a tab of 200 captures costs nothing until it is painted.
    """

    #: previews are drawn at most this big (the aspect ratio is kept)
    PREVIEW_SIZE = QSize(128, 72)
    ERROR_COLOUR = QColor("#f85149")

    def __init__(self, parent=None):
        super().__init__("captures", parent=parent)
        self._pixmaps: dict[int, QPixmap] = {}

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        if index.isValid() and 0 <= index.row() < len(self._rows) and self.columns[index.column()] == "thumbnail":
            return self._preview_data(self._rows[index.row()], role)
        return super().data(index, role)

    def _preview_data(self, row: dict, role: int):
        if role == Qt.ItemDataRole.DecorationRole:
            return self.pixmap(row)
        if role == Qt.ItemDataRole.DisplayRole:  # asked for every row (column sizing): makes no pixmap
            image = row.get("thumbnail")
            return "" if isinstance(image, QImage) and not image.isNull() else preview_note(row)
        if role == Qt.ItemDataRole.ToolTipRole:
            note = preview_note(row)
            return rich_tooltip(note) if note else None
        if role == Qt.ItemDataRole.ForegroundRole:
            return self.ERROR_COLOUR if row.get("thumbnail_error") else None
        if role == RawRole:
            return row.get("thumbnail")
        if role == RowRole:
            return row
        return None

    def pixmap(self, row: dict) -> QPixmap | None:
        """The preview of ``row`` as painted (made on first use, then cached); None without one."""
        image = row.get("thumbnail")
        if not isinstance(image, QImage) or image.isNull():
            return None
        pixmap = self._pixmaps.get(image.cacheKey())
        if pixmap is None:
            scaled = image.scaled(self.PREVIEW_SIZE, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
            pixmap = self._pixmaps[image.cacheKey()] = QPixmap.fromImage(scaled)
        return pixmap

    def cached_pixmaps(self) -> int:
        """How many previews have been turned into pixmaps so far."""
        return len(self._pixmaps)

    def set_rows(self, rows: Iterable[dict]) -> None:
        self._pixmaps.clear()
        super().set_rows(rows)


def preview_note(row: dict) -> str:
    """What a capture row says in place of a preview: why there is none, or that it is coming."""
    if row.get("thumbnail_error"):
        return f"No preview: {row['thumbnail_error']}"
    if row.get("id") is None:
        return "storing…"
    return ""
