"""The console's Operations window: inbox, approvals, alerts, bulk runs,
playbooks, templates (:data:`gui.operations_tabs.OPS_TABS`), one tab each,
kept current.

Each tab (:class:`OpsTable`) asks for its list when shown and every
``refresh_s`` while the window is open, and again after one of its actions
was answered. An action on a row asks for a reason first
(:class:`~gui.widgets.ReasonDialog`); the answer or the refusal (the
broker's own words: "a request is approved or denied by another person")
is shown under the table. A list whose service is not connected says so
and what to do (the broker's error text), instead of an empty table.
"""
from __future__ import annotations

from functools import partial

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QAbstractItemView, QHBoxLayout, QLabel, QPushButton, QTableView, QTabWidget, QVBoxLayout, QWidget

from gui.bus_worker import BusWorker
from gui.models import HistoryModel
from gui.operations_tabs import OPS_TABS, OpsTab, RowAction
from gui.widgets import ReasonDialog

#: how often an open window asks for its lists again
REFRESH_S = 5.0


class _Row(dict):
    """A row for an explanation's ``{field}``s: a missing field reads as ``?``, not an error."""

    def __missing__(self, key: str) -> str:
        return "?"


class OpsTable(QWidget):
    """One tab: a list from one request, and buttons for the selected row."""

    def __init__(self, worker: BusWorker, tab: OpsTab, parent=None):
        super().__init__(parent)
        self.worker, self.tab = worker, tab
        self.setObjectName(f"ops_{tab.key}")
        self.model = HistoryModel(tab.key, tab.columns, parent=self, key_column=tab.key_column, order_column=tab.order_column)
        self.dialog: ReasonDialog | None = None
        self._listing: str | None = None
        self._acting: dict[str, RowAction] = {}
        explain = QLabel(tab.explain)
        explain.setWordWrap(True)
        explain.setTextFormat(Qt.TextFormat.PlainText)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().hide()
        self.status = QLabel("")
        self.status.setObjectName("opsStatus")
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        self.buttons: dict[str, QPushButton] = {}
        for action in tab.actions:
            button = self.buttons[action.label] = QPushButton(action.label)
            button.clicked.connect(partial(self.ask, action))
            buttons.addWidget(button)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        buttons.addStretch(1)
        buttons.addWidget(refresh)
        layout = QVBoxLayout(self)
        for part in (explain, self.table, self.status):
            layout.addWidget(part)
        layout.addLayout(buttons)
        self.table.selectionModel().selectionChanged.connect(self._enable)
        worker.replied.connect(self._on_reply)
        worker.request_failed.connect(self._on_failed)
        self._enable()

    # -- asking ------------------------------------------------------------------------
    def refresh(self) -> None:
        """Ask for the list again (one request at a time)."""
        if self._listing is None:
            self._listing = self.worker.submit(self.tab.op, **self.tab.args)

    def selected(self) -> dict | None:
        rows = self.table.selectionModel().selectedRows()
        return self.model.row(rows[0].row()) if rows else None

    def ask(self, action: RowAction) -> ReasonDialog | None:
        """Confirm ``action`` on the selected row with a reason; it is sent when the operator says so."""
        row = self.selected()
        if row is None or not action.applies(row):
            return None
        if not action.needs_reason:
            self._act(action, row, "")
            return None
        if self.dialog is not None:
            self.dialog.close()
        dialog = ReasonDialog(action.label, action.explain.format_map(_Row(row)), action.label, action.destructive, self)
        dialog.setObjectName(f"confirm_{self.tab.key}_{action.label.lower().replace(' ', '_')}")
        dialog.accepted.connect(lambda: self._act(action, row, dialog.reason()))
        self.dialog = dialog
        dialog.open()
        return dialog

    def _act(self, action: RowAction, row: dict, reason: str) -> None:
        request = self.worker.submit(action.op, **action.args(row), **({"reason": reason} if action.needs_reason else {}))
        self._acting[request] = action
        self.status.setText(f"{action.label}: sent…")

    # -- answers -----------------------------------------------------------------------
    def _on_reply(self, req_id: str, op: str, answer) -> None:
        if req_id == self._listing:
            self._listing = None
            self.model.set_rows(self.tab.rows(answer))
            self.table.resizeColumnsToContents()
            self._enable()
            self.window_titled()
        elif req_id in self._acting:
            action = self._acting.pop(req_id)
            self.status.setText(f"{action.label}: done.")
            self.refresh()

    def _on_failed(self, req_id: str, op: str, why: str) -> None:
        if req_id == self._listing:
            self._listing = None
            self.status.setText(f"Cannot show {self.tab.title.lower()}: {why}")
        elif req_id in self._acting:
            action = self._acting.pop(req_id)
            self.status.setText(f"{action.label} refused: {why}")

    def _enable(self, *_) -> None:
        row = self.selected()
        for action in self.tab.actions:
            self.buttons[action.label].setEnabled(row is not None and action.applies(row))

    def count(self) -> int | None:
        """How many rows the tab's title counts (None: it counts none)."""
        if self.tab.counts is None:
            return None
        return sum(1 for row in self.model.rows() if self.tab.counts(row))

    def window_titled(self) -> None:
        parent = self.window()
        if isinstance(parent, OperationsWindow):
            parent.retitle(self)


class OperationsWindow(QWidget):
    """The operations lists in tabs; asks for them while it is open."""

    def __init__(self, worker: BusWorker, parent=None, refresh_s: float = REFRESH_S):
        super().__init__(parent, Qt.WindowType.Window)
        self.setObjectName("operationsWindow")
        self.setWindowTitle("EMS operations")
        self.tabs = QTabWidget()
        self.tables: dict[str, OpsTable] = {}
        for tab in OPS_TABS:
            table = self.tables[tab.key] = OpsTable(worker, tab, self)
            self.tabs.addTab(table, tab.title)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        self.timer = QTimer(self)
        self.timer.setInterval(int(refresh_s * 1000))
        self.timer.timeout.connect(self.refresh)
        self.resize(1100, 600)

    def refresh(self) -> None:
        for table in self.tables.values():
            table.refresh()

    def retitle(self, table: OpsTable) -> None:
        count = table.count()
        title = table.tab.title if not count else f"{table.tab.title} ({count})"
        self.tabs.setTabText(self.tabs.indexOf(table), title)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        self.refresh()
        self.timer.start()

    def hideEvent(self, event) -> None:  # noqa: N802
        self.timer.stop()
        super().hideEvent(event)
