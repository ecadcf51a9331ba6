"""The console's building blocks: client tiles, the CPU/memory/disk chart,
history tabs and the reason dialog. They only draw what models and signals
give them."""
from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from PySide6.QtCharts import QChart, QChartView, QDateTimeAxis, QLineSeries, QValueAxis
from PySide6.QtCore import (
    QDateTime,
    QMargins,
    QModelIndex,
    QPointF,
    QRect,
    QRectF,
    QSize,
    Qt,
)
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QImage,
    QPainter,
    QPalette,
    QPen,
)
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from broker.core.vocabulary import MAX_REASON_CHARS
from gui import qtcompat  # noqa: F401  (guards the Qt binding before any Qt call)
from gui.models import ClientsModel, format_time

CPU_COLOUR = QColor("#388bfd")
MEMORY_COLOUR = QColor("#a371f7")
DISK_COLOUR = QColor("#39c5cf")
WARN_COLOUR = QColor("#d29922")
HOT_COLOUR = QColor("#f85149")


def _load_colour(base: QColor, value: float) -> QColor:
    return HOT_COLOUR if value >= 90 else WARN_COLOUR if value >= 75 else base


class ClientTileDelegate(QStyledItemDelegate):
    """One client as a tile: name, user@host, state and last seen, CPU and memory bars,
    and, with :attr:`thumbnails_shown`, a picture of its screen on top.

    Everything is read from column 0's roles of :class:`ClientsModel`, so a
    ``dataChanged`` on the row repaints the tile. The picture is the
    ``ThumbnailRole`` image (kept fresh by :class:`gui.thumbnails.ThumbnailScheduler`,
    which also sets :attr:`thumbnail_note`: why a tile has none).
    """

    SIZE = QSize(236, 112)
    #: the picture's area (16:9) above the text when thumbnails are shown
    THUMB = QSize(208, 117)
    THUMB_GAP = 6
    SIZE_WITH_THUMB = QSize(SIZE.width(), SIZE.height() + THUMB.height() + THUMB_GAP)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.thumbnails_shown = False
        self.thumbnail_note: Callable[[str], str] = lambda client_id: ""

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        return self.SIZE_WITH_THUMB if self.thumbnails_shown else self.SIZE

    def thumbnail_rect(self, tile: QRect) -> QRect:
        """Where the picture goes in a tile drawn in ``tile`` (the item's rect): where the text starts otherwise."""
        return QRect(tile.left() + 3 + 14, tile.top() + 3 + 8, self.THUMB.width(), self.THUMB.height())

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        pal: QPalette = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        hovered = bool(option.state & QStyle.StateFlag.State_MouseOver)
        online = index.data(ClientsModel.StateRole) == "online"
        rect = QRectF(option.rect).adjusted(3, 3, -3, -3)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        border = pal.color(QPalette.ColorRole.Highlight) if selected else pal.color(QPalette.ColorRole.Mid)
        painter.setPen(QPen(border, 2.0 if selected else 1.0))
        painter.setBrush(pal.color(QPalette.ColorRole.AlternateBase if hovered or selected else QPalette.ColorRole.Base))
        painter.drawRoundedRect(rect, 7, 7)
        state_colour = ClientsModel.ONLINE_COLOUR if online else ClientsModel.OFFLINE_COLOUR
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(state_colour)
        painter.drawRoundedRect(QRectF(rect.left() + 1, rect.top() + 10, 4, rect.height() - 20), 2, 2)

        left = int(rect.left()) + 14
        width = int(rect.width()) - 24
        top = int(rect.top()) + 8
        if self.thumbnails_shown:
            self._thumbnail(painter, pal, option, index, online)
            top += self.THUMB.height() + self.THUMB_GAP

        text_colour = pal.color(QPalette.ColorRole.Text)
        muted = pal.color(QPalette.ColorRole.PlaceholderText)
        name_font = QFont(option.font)
        name_font.setBold(True)
        name_font.setPointSizeF(option.font.pointSizeF() + 1)
        fm = QFontMetrics(name_font)
        painter.setFont(name_font)
        painter.setPen(text_colour)
        name = str(index.data(ClientsModel.NameRole) or "")
        painter.drawText(left, top + fm.ascent(), fm.elidedText(name, Qt.TextElideMode.ElideRight, width))
        top += fm.height() + 2

        small = QFont(option.font)
        sfm = QFontMetrics(small)
        painter.setFont(small)
        painter.setPen(muted)
        user = index.data(ClientsModel.LoggedInRole) or "no user"
        host = index.data(ClientsModel.HostRole) or index.data(ClientsModel.ClientIdRole)
        painter.drawText(left, top + sfm.ascent(), sfm.elidedText(f"{user} @ {host}", Qt.TextElideMode.ElideRight, width))
        top += sfm.height() + 2

        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(state_colour)
        dot = sfm.ascent() - 3
        painter.drawEllipse(QRectF(left, top + (sfm.ascent() - dot) / 2 + 1, dot, dot))
        painter.setPen(text_colour if online else muted)
        seen = index.data(ClientsModel.LastSeenRole)
        state = "online" if online else f"offline · last seen {format_time(seen)}"
        painter.drawText(left + dot + 5, top + sfm.ascent(), sfm.elidedText(state, Qt.TextElideMode.ElideRight, width - dot - 5))
        top += sfm.height() + 6

        for label, role, colour in (("CPU", ClientsModel.CpuRole, CPU_COLOUR), ("MEM", ClientsModel.MemoryRole, MEMORY_COLOUR)):
            self._bar(painter, pal, small, left, top, int(rect.width()) - 24, label, index.data(role), colour, online)
            top += sfm.height() + 3
        painter.restore()

    def _thumbnail(self, painter: QPainter, pal: QPalette, option: QStyleOptionViewItem, index: QModelIndex,
                   online: bool) -> None:
        """The screen's picture, fitted into its area; or a line saying why there is none."""
        area = self.thumbnail_rect(option.rect)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(pal.color(QPalette.ColorRole.Window))
        painter.drawRoundedRect(QRectF(area), 4, 4)
        thumb = index.data(ClientsModel.ThumbnailRole)
        if online and isinstance(thumb, QImage) and not thumb.isNull():
            size = thumb.size().scaled(area.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, size.width(), size.height())
            target.moveCenter(area.center())
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(target, thumb)
            return
        note = "offline" if not online else self.thumbnail_note(str(index.data(ClientsModel.ClientIdRole))) or "waiting for a picture…"
        fm = QFontMetrics(option.font)
        painter.setFont(option.font)
        painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
        painter.drawText(area.adjusted(8, 4, -8, -4), int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap),
                         fm.elidedText(note, Qt.TextElideMode.ElideRight, 3 * (area.width() - 16)))

    @staticmethod
    def _bar(painter: QPainter, pal: QPalette, font: QFont, left: int, top: int, width: int, label: str,
             value: float | None, colour: QColor, online: bool) -> None:
        fm = QFontMetrics(font)
        label_w = fm.horizontalAdvance("MEM ")
        value_w = fm.horizontalAdvance("100 %")
        painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
        painter.drawText(left, top + fm.ascent(), label)
        track = QRectF(left + label_w, top + fm.ascent() / 2 - 1, width - label_w - value_w - 6, 6)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(pal.color(QPalette.ColorRole.Midlight))
        painter.drawRoundedRect(track, 3, 3)
        if value is not None:
            fill = QColor(_load_colour(colour, value))
            if not online:
                fill.setAlpha(110)
            painter.setBrush(fill)
            painter.drawRoundedRect(QRectF(track.left(), track.top(), track.width() * max(0.0, min(value, 100.0)) / 100, track.height()), 3, 3)
        painter.setPen(pal.color(QPalette.ColorRole.Text))
        text = "–" if value is None else f"{value:.0f} %"
        painter.drawText(QRectF(track.right() + 4, top, value_w + 2, fm.height()),
                         int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), text)


class Sample(NamedTuple):
    """One point in time of a client's load, in percent (None: not reported)."""

    ts: float
    cpu: float | None
    memory: float | None
    disk: float | None


def sample_of(row: dict) -> Sample:
    """A stored ``metrics`` row or a live sysinfo item as a :class:`Sample`."""
    def percent(key: str) -> float | None:
        value = row.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    return Sample(float(row["ts"]), percent("cpu_percent"), percent("memory_percent"), percent("disk_percent"))


class MetricsChart(QChartView):
    """CPU, memory and disk of one client over time: stored metrics, then live sysinfo.

    Disk is the agent's ``disk_percent``: the use of its *fullest* local
    disk, the one an operator must act on first (:mod:`agent.sysinfo`), and
    the one the store keeps per report; :meth:`set_disk_mount` names it.
    """

    #: (Sample field, series name, colour), drawn in this order
    SERIES = (("cpu", "CPU %", CPU_COLOUR), ("memory", "Memory %", MEMORY_COLOUR), ("disk", "Disk % (fullest)", DISK_COLOUR))

    def __init__(self, max_points: int = 1440, parent=None):
        super().__init__(parent)
        self.max_points = max_points
        self.series: dict[str, QLineSeries] = {}
        chart = QChart()
        for key, name, _ in self.SERIES:
            series = self.series[key] = QLineSeries()
            series.setName(name)
            chart.addSeries(series)
        self.cpu, self.memory, self.disk = self.series["cpu"], self.series["memory"], self.series["disk"]
        self.x_axis = QDateTimeAxis()
        self.x_axis.setFormat("HH:mm")
        self.x_axis.setTickCount(7)
        self.y_axis = QValueAxis()
        self.y_axis.setRange(0, 100)
        self.y_axis.setLabelFormat("%d")
        self.y_axis.setTickCount(6)
        chart.addAxis(self.x_axis, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(self.y_axis, Qt.AlignmentFlag.AlignLeft)
        for series in self.series.values():
            series.attachAxis(self.x_axis)
            series.attachAxis(self.y_axis)
        chart.legend().setAlignment(Qt.AlignmentFlag.AlignTop)
        chart.setMargins(QMargins(4, 4, 4, 4))
        chart.setBackgroundRoundness(0)
        self.setChart(chart)
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.setMinimumHeight(180)
        self._style_series()

    def set_dark(self, dark: bool) -> None:
        self.chart().setTheme(QChart.ChartTheme.ChartThemeDark if dark else QChart.ChartTheme.ChartThemeLight)
        self.chart().setBackgroundRoundness(0)
        self._style_series()

    def _style_series(self) -> None:
        for key, _, colour in self.SERIES:
            pen = QPen(colour, 2)
            if key == "disk":
                pen.setStyle(Qt.PenStyle.DashLine)  # slow-moving: dashed, so it reads apart from CPU
            self.series[key].setPen(pen)

    def set_title(self, text: str) -> None:
        self.chart().setTitle(text)

    def set_disk_mount(self, mount: Any) -> None:
        """Name the fullest disk's mount point in the legend (None: unknown)."""
        self.disk.setName(f"Disk % ({mount})" if isinstance(mount, str) and mount else "Disk % (fullest)")

    def clear(self) -> None:
        for series in self.series.values():
            series.clear()
        self.set_disk_mount(None)
        self._fit()

    def set_history(self, samples: Iterable[Sample]) -> None:
        """Replace the lines with samples, oldest first."""
        samples = list(samples)[-self.max_points:]
        for key, series in self.series.items():
            series.replace([QPointF(s.ts * 1000, getattr(s, key)) for s in samples if getattr(s, key) is not None])
        self._fit()

    def append(self, samples: Iterable[Sample]) -> None:
        for sample in samples:
            for key, series in self.series.items():
                value = getattr(sample, key)
                if value is not None:
                    series.append(sample.ts * 1000, value)
        for series in self.series.values():
            extra = series.count() - self.max_points
            if extra > 0:
                series.removePoints(0, extra)
        self._fit()

    def point_count(self) -> int:
        return sum(series.count() for series in self.series.values())

    def last_ts(self) -> float | None:
        counts = [s.at(s.count() - 1).x() / 1000 for s in self.series.values() if s.count()]
        return max(counts) if counts else None

    def _fit(self) -> None:
        xs = [p.x() for s in self.series.values() if s.count() for p in (s.at(0), s.at(s.count() - 1))]
        now = dt.datetime.now().timestamp() * 1000
        first, last = (min(xs), max(xs)) if xs else (now - 600_000, now)
        if last - first < 120_000:
            first = last - 120_000
        self.x_axis.setFormat("HH:mm:ss" if last - first < 900_000 else "HH:mm" if last - first < 86_400_000 else "dd.MM HH:mm")
        self.x_axis.setRange(QDateTime.fromMSecsSinceEpoch(int(first)), QDateTime.fromMSecsSinceEpoch(int(last)))


def compact_rows(view: QTableView) -> None:
    """Rows one text line high (the style's default is roomier than a log needs)."""
    view.verticalHeader().setDefaultSectionSize(QFontMetrics(view.font()).height() + 6)
    view.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)


class HistoryTab(QWidget):
    """A history table with a line above it saying what it shows (or why not)."""

    def __init__(self, model, empty_text: str, parent=None):
        super().__init__(parent)
        self.model = model
        self.empty_text = empty_text
        self.message = QLabel(empty_text)
        self.message.setObjectName("historyMessage")
        self.message.setTextFormat(Qt.TextFormat.PlainText)  # errors quote what the server said
        self.message.setContentsMargins(4, 2, 4, 2)
        self.view = QTableView()
        self.view.setModel(model)
        self.view.setAlternatingRowColors(True)
        self.view.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(QTableView.EditTrigger.NoEditTriggers)
        self.view.setWordWrap(False)
        self.view.verticalHeader().setVisible(False)
        compact_rows(self.view)
        header = self.view.horizontalHeader()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setDefaultSectionSize(140)
        #: the line above the table: the message, then any buttons a tab adds
        self.bar = QHBoxLayout()
        self.bar.setContentsMargins(0, 0, 4, 0)
        self.bar.addWidget(self.message, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(self.bar)
        layout.addWidget(self.view)

    def set_message(self, text: str, error: bool = False) -> None:
        self.message.setText(text)
        colour = HOT_COLOUR.name() if error else self.palette().color(QPalette.ColorRole.PlaceholderText).name()
        self.message.setStyleSheet(f"color: {colour};")

    def fit_columns(self) -> None:
        """Size columns to what the first rows hold (cheap: at most 50 rows looked at)."""
        header = self.view.horizontalHeader()
        fm = QFontMetrics(self.view.font())
        rows = min(self.model.rowCount(), 50)
        for column in range(self.model.columnCount() - 1):
            texts = [str(self.model.headerData(column, Qt.Orientation.Horizontal) or "")]
            texts += [str(self.model.index(r, column).data() or "") for r in range(rows)]
            header.resizeSection(column, min(320, max(60, max(fm.horizontalAdvance(t) for t in texts) + 24)))


class ReasonDialog(QDialog):
    """Asks for the reason of an action (recorded in the audit trail); OK only with one."""

    def __init__(self, title: str, text: str, ok_text: str, destructive: bool, parent=None):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setWindowModality(Qt.WindowModality.WindowModal)
        self.setMinimumWidth(440)
        heading = QLabel(f"<b>{html.escape(title)}</b>")  # client labels come from agents: shown, never rendered
        heading.setTextFormat(Qt.TextFormat.RichText)
        explanation = QLabel(text)
        explanation.setTextFormat(Qt.TextFormat.PlainText)
        explanation.setWordWrap(True)
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("Reason (required; shown to the user, recorded in the audit trail with your name)")
        self.reason_edit.setMaxLength(MAX_REASON_CHARS)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText(ok_text)
        self.ok_button.setEnabled(False)
        if destructive:
            self.ok_button.setStyleSheet(f"color: {HOT_COLOUR.name()}; font-weight: bold;")
        self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setDefault(True)
        self.reason_edit.textChanged.connect(lambda t: self.ok_button.setEnabled(bool(t.strip())))
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(heading)
        layout.addWidget(explanation)
        layout.addWidget(self.reason_edit)
        layout.addWidget(self.buttons)

    def reason(self) -> str:
        return self.reason_edit.text().strip()

    def accept(self) -> None:
        if self.reason():
            super().accept()
