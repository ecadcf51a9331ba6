"""The console's building blocks: client tiles, the CPU/memory chart, history
tabs and the dialogs. They only draw what models and signals give them."""
from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable

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
    QPixmap,
)
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QLineEdit,
    QScrollArea,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from gui import qtcompat  # noqa: F401  (guards the Qt binding before any Qt call)
from gui.models import ClientsModel, format_time

CPU_COLOUR = QColor("#388bfd")
MEMORY_COLOUR = QColor("#a371f7")
WARN_COLOUR = QColor("#d29922")
HOT_COLOUR = QColor("#f85149")


def _load_colour(base: QColor, value: float) -> QColor:
    return HOT_COLOUR if value >= 90 else WARN_COLOUR if value >= 75 else base


class ClientTileDelegate(QStyledItemDelegate):
    """One client as a tile: name, user@host, state and last seen, CPU and memory bars.

    Everything is read from column 0's roles of :class:`ClientsModel`, so a
    ``dataChanged`` on the row repaints the tile.
    """

    SIZE = QSize(236, 112)
    THUMB = QSize(96, 54)

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        return self.SIZE

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
        thumb = index.data(ClientsModel.ThumbnailRole)
        if isinstance(thumb, QImage) and not thumb.isNull():  # HOOK(live view): the latest frame
            target = QRect(int(rect.right()) - self.THUMB.width() - 8, top, self.THUMB.width(), self.THUMB.height())
            painter.drawImage(target, thumb.scaled(self.THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                                   Qt.TransformationMode.SmoothTransformation))
            width -= self.THUMB.width() + 8

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


class MetricsChart(QChartView):
    """CPU and memory of one client over time: stored metrics, then live sysinfo."""

    def __init__(self, max_points: int = 1440, parent=None):
        super().__init__(parent)
        self.max_points = max_points
        self.cpu = QLineSeries()
        self.cpu.setName("CPU %")
        self.memory = QLineSeries()
        self.memory.setName("Memory %")
        chart = QChart()
        chart.addSeries(self.cpu)
        chart.addSeries(self.memory)
        self.x_axis = QDateTimeAxis()
        self.x_axis.setFormat("HH:mm")
        self.x_axis.setTickCount(7)
        self.y_axis = QValueAxis()
        self.y_axis.setRange(0, 100)
        self.y_axis.setLabelFormat("%d")
        self.y_axis.setTickCount(6)
        chart.addAxis(self.x_axis, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(self.y_axis, Qt.AlignmentFlag.AlignLeft)
        for series in (self.cpu, self.memory):
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
        self.cpu.setPen(QPen(CPU_COLOUR, 2))
        self.memory.setPen(QPen(MEMORY_COLOUR, 2))

    def set_title(self, text: str) -> None:
        self.chart().setTitle(text)

    def clear(self) -> None:
        self.cpu.clear()
        self.memory.clear()
        self._fit()

    def set_history(self, samples: Iterable[tuple[float, float | None, float | None]]) -> None:
        """Replace the lines with ``(ts, cpu %, memory %)`` samples, oldest first."""
        samples = list(samples)[-self.max_points:]
        self.cpu.replace([QPointF(ts * 1000, cpu) for ts, cpu, _ in samples if cpu is not None])
        self.memory.replace([QPointF(ts * 1000, mem) for ts, _, mem in samples if mem is not None])
        self._fit()

    def append(self, samples: Iterable[tuple[float, float | None, float | None]]) -> None:
        for ts, cpu, mem in samples:
            for series, value in ((self.cpu, cpu), (self.memory, mem)):
                if value is not None:
                    series.append(ts * 1000, value)
        for series in (self.cpu, self.memory):
            extra = series.count() - self.max_points
            if extra > 0:
                series.removePoints(0, extra)
        self._fit()

    def point_count(self) -> int:
        return self.cpu.count() + self.memory.count()

    def last_ts(self) -> float | None:
        counts = [s.at(s.count() - 1).x() / 1000 for s in (self.cpu, self.memory) if s.count()]
        return max(counts) if counts else None

    def _fit(self) -> None:
        xs = [p.x() for s in (self.cpu, self.memory) if s.count() for p in (s.at(0), s.at(s.count() - 1))]
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
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.message)
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
        self.reason_edit.setPlaceholderText("Reason (required; recorded in the audit trail with your name)")
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


class CaptureDialog(QDialog):
    """A stored screen capture (opening it is audited by the store)."""

    def __init__(self, title: str, image: bytes, parent=None):
        super().__init__(parent)
        self.setWindowTitle(title)
        pixmap = QPixmap()
        label = QLabel()
        if pixmap.loadFromData(image):
            label.setPixmap(pixmap)
        else:
            label.setText("This capture's image cannot be shown.")
        area = QScrollArea()
        area.setWidget(label)
        layout = QVBoxLayout(self)
        layout.addWidget(area)
        self.resize(min(1280, pixmap.width() + 40 if not pixmap.isNull() else 400),
                     min(800, pixmap.height() + 40 if not pixmap.isNull() else 200))
