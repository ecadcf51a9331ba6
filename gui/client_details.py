"""The right-hand pane of the console: the selected client's header, chart and history tabs.

:class:`ClientDetails` shows what the :class:`~gui.console_controller.ConsoleController`
loads for the selected client: a header (name, user, host, state, load), a
CPU/memory/disk chart (stored metrics, then live sysinfo appended) and one
tab per history kind (the Captures tab opens and exports captures through
:class:`~gui.capture_view.CaptureViews`). It never touches the bus; the
main window calls :meth:`~ClientDetails.show_client` when the selection
changes and connects the controller's answers to it.
"""
from __future__ import annotations

import html
from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QLabel, QTabWidget, QVBoxLayout, QWidget

from gui.capture_view import CapturesTab, CaptureViews
from gui.console_actions import HISTORY_TABS, LIVE_KINDS, NOUNS
from gui.console_controller import ConsoleController
from gui.models import ClientsModel, HistoryModel, format_time
from gui.widgets import HistoryTab, MetricsChart, Sample, sample_of


class ClientDetails(QWidget):
    """Header, chart and history tabs of one client (``None``: nothing selected)."""

    def __init__(self, clients: ClientsModel, history: dict[str, HistoryModel], controller: ConsoleController,
                 capture_views: CaptureViews, name: Callable[[str | None], str], metrics_limit: int, parent=None):
        super().__init__(parent)
        self.setObjectName("details")
        self.clients, self.history, self.controller = clients, history, controller
        self._name = name
        self.metrics_limit = metrics_limit
        self.client_id: str | None = None
        self.metrics_loaded = False
        self._live_samples: list[Sample] = []
        self.header = QLabel()
        self.header.setObjectName("clientHeader")
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.header.setWordWrap(True)
        self.header.setContentsMargins(6, 4, 6, 4)
        self.chart = MetricsChart(max_points=metrics_limit * 2)
        self.tabs_by_kind: dict[str, HistoryTab] = {}
        self.tabs = self._build_tabs(capture_views)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 0, 0, 0)
        layout.addWidget(self.header)
        layout.addWidget(self.chart, 2)
        layout.addWidget(self.tabs, 3)

    def _build_tabs(self, capture_views: CaptureViews) -> QTabWidget:
        tabs = QTabWidget()
        tabs.setObjectName("historyTabs")
        tabs.setDocumentMode(True)
        for index, (kind, title, what) in enumerate(HISTORY_TABS):
            tab_class = CapturesTab if kind == "captures" else HistoryTab
            tab = tab_class(self.history[kind], f"{what}. Select a client.")
            tab.setObjectName(f"tab_{kind}")
            self.tabs_by_kind[kind] = tab
            tabs.addTab(tab, title)
            tabs.setTabToolTip(index, what)
        captures = self.tabs_by_kind["captures"]
        captures.open_requested.connect(capture_views.open)
        captures.export_requested.connect(lambda row: capture_views.ask_export(row, self))
        tabs.currentChanged.connect(lambda _index: self.controller.show_kind(self.current_kind()))
        return tabs

    def current_kind(self) -> str:
        """The history kind of the tab in front."""
        return HISTORY_TABS[max(0, self.tabs.currentIndex())][0]

    def show_client(self, client_id: str | None) -> None:
        """Empty everything for ``client_id`` (its rows come later, from the controller)."""
        self.client_id = client_id
        self._live_samples = []
        self.metrics_loaded = False
        self.chart.clear()
        self.chart.set_title(f"{self._name(client_id)}: CPU, memory and disk" if client_id else "CPU, memory and disk")
        for tab in self.tabs_by_kind.values():
            tab.model.clear()
            tab.set_message(tab.empty_text if client_id is None else "Loading…")
        self.update_header()

    # -- the controller's answers ----------------------------------------------------
    def history_shown(self, kind: str, refit: bool, stored: int | None) -> None:
        """A kind's rows are in its model: fit the columns (a new data set) and say what is shown."""
        if refit:
            self.tabs_by_kind[kind].fit_columns()
        self._describe_tab(kind, stored)

    def _describe_tab(self, kind: str, stored: int | None = None) -> None:
        model, tab = self.history[kind], self.tabs_by_kind[kind]
        noun = NOUNS[kind]
        if model.rowCount() == 0:
            text = f"No {noun} stored for this client."
        elif stored is not None and stored >= self.controller.limit(kind):
            text = f"The newest {model.rowCount()} {noun}, newest first."
        else:
            text = f"{model.rowCount()} {noun}, newest first."
        text += " Live." if kind in LIVE_KINDS else " F5 refreshes."
        tab.set_message(text)

    def history_failed(self, kind: str, error: str) -> None:
        self.tabs_by_kind[kind].set_message(f"Not available: {error}", error=True)

    def metrics_rows(self, rows: list) -> None:
        """Stored metrics (newest first) under the live samples that came in meanwhile."""
        samples = [sample_of(r) for r in reversed(rows) if isinstance(r, dict) and isinstance(r.get("ts"), (int, float))]
        newest = samples[-1].ts if samples else 0.0
        self.chart.set_history(samples + [s for s in self._live_samples if s.ts > newest])
        self.metrics_loaded = True

    def metrics_failed(self, error: str) -> None:
        self.chart.set_history(self._live_samples)
        self.metrics_loaded = True
        self.chart.set_title(f"{self._name(self.client_id)}: live only ({error})")

    def add_sysinfo(self, items: list) -> None:
        """Live sysinfo items: the selected client's become chart samples."""
        if self.client_id is None:
            return
        mine = [i for i in items if i.get("client_id") == self.client_id and isinstance(i.get("ts"), (int, float))]
        if not mine:
            return
        samples = [sample_of(i) for i in mine]
        self.chart.set_disk_mount(mine[-1].get("disk_percent_mount"))
        self._live_samples = (self._live_samples + samples)[-self.metrics_limit:]
        if self.metrics_loaded:
            self.chart.append(samples)

    def update_header(self) -> None:
        """Name, id, user @ host, state and load of the selected client (or a hint to select one)."""
        client = self.clients.client(self.client_id) if self.client_id else None
        muted = self.palette().color(QPalette.ColorRole.PlaceholderText).name()
        if client is None:
            self.header.setText(f"<span style='color:{muted}'>Select a client in the grid to see its history, "
                                "its CPU, memory and disk, and to act on it.</span>")
            return
        esc = html.escape
        colour = (ClientsModel.ONLINE_COLOUR if client.online else ClientsModel.OFFLINE_COLOUR).name()
        state = "online" if client.online else f"offline, last seen {format_time(client.last_seen)}"
        load = []
        if client.cpu_percent is not None:
            load.append(f"CPU {client.cpu_percent:.0f} %")
        if client.memory_percent is not None:
            load.append(f"memory {client.memory_percent:.0f} %")
        self.header.setText(
            f"<span style='font-size:14pt; font-weight:600'>{esc(client.name)}</span>"
            f"&nbsp;&nbsp;<span style='color:{muted}'>{esc(client.client_id)}</span><br>"
            f"{esc(client.user or 'no user')} @ {esc(client.hostname or '?')} &nbsp;·&nbsp; "
            f"<span style='color:{colour}'>●</span> {esc(state)}"
            + (f" &nbsp;·&nbsp; {esc(', '.join(load))}" if load else "")
        )
