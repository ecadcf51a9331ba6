"""The operator console's main window.

Left: the fleet as tiles (or a table), filtered by the search box. Right:
the selected client: a CPU/memory/disk chart (stored metrics, then live
sysinfo) and history tabs filled from the store and kept live from the bus
where the bus carries it; the Captures tab shows previews and opens or
exports a capture (:mod:`gui.capture_view`). Below: the command log, whose
status column follows every command from ``sending`` to ``done``/``failed``.
Actions go to the selected client; the ones that disrupt a user or look at
their screen ask for a reason, which the broker writes to the audit trail.

The window keeps the layout and never touches the bus: its
:class:`~gui.console_controller.ConsoleController` (not a widget) sends the
requests through the :class:`~gui.bus_worker.BusWorker`, pages the selected
client's history into the models and tells the window by signals what to
redraw; the fleet views are built in :mod:`gui.fleet_view`, the selected
client's pane in :mod:`gui.client_details`, and the actions and tabs are
data in :mod:`gui.console_actions`.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from PySide6.QtCore import (
    QItemSelectionModel,
    QModelIndex,
    Qt,
    QTimer,
)
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QImage,
    QKeySequence,
    QShortcut,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QDockWidget,
    QLabel,
    QLineEdit,
    QMainWindow,
    QSplitter,
    QStackedWidget,
    QTableView,
    QToolBar,
)

from broker.core.vocabulary import pending_key_advice
from gui import theme
from gui.bus_worker import BusWorker
from gui.capture_view import CaptureViews
from gui.client_details import ClientDetails
from gui.console_actions import ACTION_BY_KEY, ACTIONS, HISTORY_TABS, ActionSpec
from gui.console_controller import ConsoleController
from gui.fleet_view import fleet_proxy, table_view, tile_view
from gui.models import CapturesModel, ClientsModel, HistoryModel, result_text
from gui.thumbnails import ThumbnailConfig, ThumbnailScheduler
from gui.widgets import ReasonDialog, compact_rows

log = logging.getLogger(__name__)


#: the search box filters this long after the last keystroke
SEARCH_DELAY_MS = 150


class MainWindow(QMainWindow):
    """The console. Give it a BusWorker that is not started yet; it starts it and stops it on close."""

    def __init__(self, worker: BusWorker, *, theme_name: str = theme.DARK, history_limit: int = 200,
                 metrics_limit: int = 720, audit_scan_limit: int = 500, thumbnails: ThumbnailConfig | None = None,
                 parent=None):
        super().__init__(parent)
        self.worker = worker
        self.thumbnail_config = thumbnails or ThumbnailConfig()
        self.history_limit = history_limit
        self.metrics_limit = metrics_limit
        self.audit_scan_limit = audit_scan_limit
        self.clients = ClientsModel(self)
        self.commands = HistoryModel("commands", parent=self)
        self.history: dict[str, HistoryModel] = {
            kind: CapturesModel(self) if kind == "captures" else HistoryModel(kind, parent=self) for kind, _, _ in HISTORY_TABS
        }
        self.command_actions: dict[str, QAction] = {}
        self.dialog: ReasonDialog | None = None
        #: requests, answers and the selected client's history (not a widget)
        self.controller = ConsoleController(worker, self.clients, self.commands, self.history, history_limit=history_limit,
                                            metrics_limit=metrics_limit, audit_scan_limit=audit_scan_limit,
                                            first_kind=HISTORY_TABS[0][0], parent=self)
        self._live_windows: dict = {}  # client id -> LiveViewWindow
        self._chat_windows: dict = {}  # client id -> ChatView
        self.operations_window = None  # approvals, bulk runs, templates (gui.operations_view), once opened
        #: full-size capture windows and exports
        self.capture_views = CaptureViews(worker, self.controller.call, self._name, self.statusBar().showMessage, self)
        self._theme = theme_name
        self.setWindowTitle("EMS operator console")
        self.setObjectName("emsConsole")
        self._build_fleet()
        self._build_details()
        self._build_command_log()
        self._build_actions()
        self._build_status()
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setObjectName("mainSplitter")
        splitter.addWidget(self.fleet_stack)
        splitter.addWidget(self.details)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setChildrenCollapsible(False)
        self.setCentralWidget(splitter)
        self._connect_worker()
        self.set_theme(theme_name)
        self._show_client(None)
        self.resize(1440, 900)
        worker.start()
        self.thumbnails.start()

    # -- building ------------------------------------------------------------------
    def _build_fleet(self) -> None:
        self.proxy = fleet_proxy(self.clients, self)
        self.tiles = tile_view(self.proxy)
        self.thumbnails = ThumbnailScheduler(self.worker, self.tiles, self.clients, self.tiles.itemDelegate(),
                                             self.thumbnail_config, parent=self)
        self.table = table_view(self.proxy, self.tiles)
        self.fleet_stack = QStackedWidget()
        self.fleet_stack.setObjectName("fleet")
        self.fleet_stack.addWidget(self.tiles)
        self.fleet_stack.addWidget(self.table)
        self.tiles.selectionModel().currentRowChanged.connect(self._on_current_changed)
        self.clients.dataChanged.connect(self._on_clients_changed)
        self.clients.rowsInserted.connect(self._update_counts)

    def _build_details(self) -> None:
        self.details = ClientDetails(self.clients, self.history, self.controller, self.capture_views, self._name,
                                     self.metrics_limit)
        # the pane's parts, as tests and harnesses reach them
        self.header, self.chart, self.tabs, self.tabs_by_kind = (
            self.details.header, self.details.chart, self.details.tabs, self.details.tabs_by_kind)

    def _build_command_log(self) -> None:
        self.command_log = QTableView()
        self.command_log.setObjectName("commandLog")
        self.command_log.setModel(self.commands)
        self.command_log.setAlternatingRowColors(True)
        self.command_log.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.command_log.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.command_log.verticalHeader().setVisible(False)
        self.command_log.horizontalHeader().setStretchLastSection(True)
        for column, width in enumerate((90, 150, 120, 80, 380, 170)):
            self.command_log.setColumnWidth(column, width)
        compact_rows(self.command_log)
        dock = QDockWidget("Commands", self)
        dock.setObjectName("commandLogDock")
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        dock.setWidget(self.command_log)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        self.resizeDocks([dock], [170], Qt.Orientation.Vertical)
        self.command_dock = dock

    def _build_search(self) -> QLineEdit:
        self.search = QLineEdit()
        self.search.setObjectName("search")
        self.search.setPlaceholderText("Search clients (Ctrl+F): name, user, id, online...")
        self.search.setClearButtonEnabled(True)
        self.search.setMinimumWidth(300)
        # filter once typing pauses: with 500 clients one pass costs tens of ms
        self._filter_timer = QTimer(self)
        self._filter_timer.setSingleShot(True)
        self._filter_timer.setInterval(SEARCH_DELAY_MS)
        self._filter_timer.timeout.connect(lambda: self.proxy.setFilterFixedString(self.search.text()))
        self.search.textChanged.connect(self._filter_timer.start)
        clear = QShortcut(QKeySequence(Qt.Key.Key_Escape), self.search)
        clear.setContext(Qt.ShortcutContext.WidgetShortcut)
        clear.activated.connect(self.search.clear)
        return self.search

    def _build_actions(self) -> None:
        bar = QToolBar("Actions")
        bar.setObjectName("mainToolBar")
        bar.setMovable(False)
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.addToolBar(bar)
        bar.addWidget(self._build_search())
        self.find_action = self._action("Search", QKeySequence.StandardKey.Find, self._focus_search)
        group = QActionGroup(self)
        self.tiles_action = self._action("Tiles", "Ctrl+1", partial(self.set_fleet_view, "tiles"), checkable=True)
        self.table_action = self._action("Table", "Ctrl+2", partial(self.set_fleet_view, "table"), checkable=True)
        for action in (self.tiles_action, self.table_action):
            group.addAction(action)
            bar.addAction(action)
        self.tiles_action.setChecked(True)
        bar.addSeparator()

        for spec in ACTIONS:
            action = self._action(spec.label, spec.shortcut, partial(self.run_action, spec.key))
            action.setObjectName(f"action_{spec.key}")
            self.command_actions[spec.key] = action
            bar.addAction(action)
        for key, label, shortcut, slot in (("live_view", "Live view", "Ctrl+L", self.ask_live_view),
                                           ("chat", "Chat", "Ctrl+M", self.open_chat)):
            action = self._action(label, shortcut, slot)
            action.setObjectName(f"action_{key}")
            self.command_actions[key] = action
            bar.addAction(action)
        bar.addSeparator()
        self.refresh_action = self._action("Refresh", QKeySequence.StandardKey.Refresh, self.refresh)
        self.theme_action = self._action("Dark theme", "Ctrl+T", self._toggle_theme, checkable=True)
        self.thumbnails_action = self._action("Thumbnails", "Ctrl+3", lambda: self.thumbnails.set_enabled(
            self.thumbnails_action.isChecked()), checkable=True)
        self.thumbnails_action.setChecked(self.thumbnails.enabled)
        self.thumbnails_action.setEnabled(self.thumbnail_config.interval_s > 0)  # ems gui --thumbnails-s 0
        self.quit_action = self._action("Quit", QKeySequence.StandardKey.Quit, self.close)
        self.operations_action = self._action("Operations", "Ctrl+Shift+O", self.open_operations)
        bar.addAction(self.operations_action)
        bar.addAction(self.refresh_action)
        bar.addAction(self.theme_action)
        self._build_menus()

    def _build_menus(self) -> None:
        menu = self.menuBar()
        console = menu.addMenu("&Console")
        for action in (self.operations_action, self.refresh_action, self.quit_action):
            console.addAction(action)
        view = menu.addMenu("&View")
        for action in (self.find_action, self.tiles_action, self.table_action, self.thumbnails_action, self.theme_action):
            view.addAction(action)
        client = menu.addMenu("C&lient")
        for action in self.command_actions.values():
            client.addAction(action)

    def _action(self, text: str, shortcut, slot: Callable, checkable: bool = False) -> QAction:
        action = QAction(text, self)
        keys = QKeySequence(shortcut)
        action.setShortcut(keys)
        action.setToolTip(f"{text} ({keys.toString(QKeySequence.SequenceFormat.NativeText)})")
        action.setCheckable(checkable)
        action.triggered.connect(lambda *_: slot())
        self.addAction(action)  # shortcuts work while the toolbar or menu is hidden
        return action

    def _build_status(self) -> None:
        self.connection_label = QLabel("starting…")
        self.connection_label.setObjectName("connectionState")
        self.connection_label.setTextFormat(Qt.TextFormat.PlainText)
        self.count_label = QLabel("")
        self.count_label.setObjectName("clientCount")
        self.live_label = QLabel("")
        self.statusBar().addWidget(self.connection_label, 1)
        self.statusBar().addPermanentWidget(self.count_label)
        self.statusBar().addPermanentWidget(self.live_label)

    def _connect_worker(self) -> None:
        w = self.worker
        w.connection_changed.connect(self._on_connection)
        w.welcomed.connect(self._on_welcomed)
        w.agents_loaded.connect(self._on_agents)
        w.clients_loaded.connect(self.clients.load_store_clients)
        w.presence_changed.connect(self._on_presence)
        w.sysinfo_received.connect(self._on_sysinfo)
        w.command_result.connect(self._on_command_result)
        w.frame_received.connect(self._on_frame)
        w.stats_changed.connect(self._on_stats)
        c = self.controller
        c.history_shown.connect(self.details.history_shown)
        c.history_failed.connect(self.details.history_failed)
        c.metrics_loaded.connect(self.details.metrics_rows)
        c.metrics_failed.connect(self.details.metrics_failed)
        c.agents_loaded.connect(self._on_agents)
        c.notice.connect(self.statusBar().showMessage)

    # -- public API (tests, screenshots, shortcuts) ---------------------------------
    @property
    def current_client(self) -> str | None:
        return self.controller.client_id

    @property
    def _ready(self) -> bool:
        """The bus is up (the controller's word; read by tests and harnesses)."""
        return self.controller.ready

    def select_client(self, client_id: str) -> bool:
        """Make ``client_id`` the selected client (False if unknown or filtered out)."""
        row = self.clients.row_of(client_id)
        if row < 0:
            return False
        index = self.proxy.mapFromSource(self.clients.index(row, 0))
        if not index.isValid():
            return False
        flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        self.tiles.selectionModel().setCurrentIndex(index, flags)
        self.current_view().scrollTo(index)
        return True

    def current_view(self) -> QAbstractItemView:
        return self.tiles if self.fleet_stack.currentWidget() is self.tiles else self.table

    def set_fleet_view(self, name: str) -> None:
        view = self.tiles if name == "tiles" else self.table
        self.fleet_stack.setCurrentWidget(view)
        (self.tiles_action if name == "tiles" else self.table_action).setChecked(True)

    def set_theme(self, name: str) -> None:
        self._theme = name
        app = QApplication.instance()
        if isinstance(app, QApplication):
            theme.apply(app, name)
        self.details.chart.set_dark(name == theme.DARK)
        self.theme_action.setChecked(name == theme.DARK)
        self.details.update_header()

    def run_action(self, key: str) -> ReasonDialog | None:
        """Start action ``key`` on the selected client: asks for a reason first where needed."""
        spec = ACTION_BY_KEY[key]
        client_id = self.current_client
        if client_id is None:
            self.statusBar().showMessage("Select a client first.", 5000)
            return None
        if not self._ready:
            self.statusBar().showMessage("Not connected to the bus.", 5000)
            return None
        name = self._name(client_id)
        if not spec.needs_reason:
            self._send_command(spec, client_id, "")
            return None
        if self.dialog is not None:
            self.dialog.close()
        dialog = ReasonDialog(f"{spec.label}: {name}", spec.explain.format(name=name), spec.label, spec.destructive, self)
        dialog.setObjectName(f"confirm_{spec.key}")
        dialog.accepted.connect(lambda: self._send_command(spec, client_id, dialog.reason()))
        dialog.finished.connect(self._dialog_finished)
        self.dialog = dialog
        dialog.open()
        return dialog

    def refresh(self) -> None:
        """F5: ask again for everything shown (merged in place: nothing flickers)."""
        if not self._ready:
            return
        self.controller.refresh()
        self.statusBar().showMessage("Refreshed.", 2000)

    # -- the selected client -------------------------------------------------------
    def _on_current_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        client_id = current.data(ClientsModel.ClientIdRole) if current.isValid() else None
        if client_id != self.current_client:
            self._show_client(client_id)

    def _show_client(self, client_id: str | None) -> None:
        self.controller.select(client_id)  # its answers come later, through the event loop
        self.details.show_client(client_id)
        self._update_actions()

    def _update_actions(self) -> None:
        allowed = self._ready and self.current_client is not None and self.controller.role != "viewer"
        for action in self.command_actions.values():
            action.setEnabled(allowed)
            if self.controller.role == "viewer":
                action.setToolTip("Viewers cannot send commands")

    # -- worker signals ------------------------------------------------------------
    def _on_connection(self, state: str, detail: str) -> None:
        texts = {
            "connecting": f"Connecting to {detail}…",
            "pending": f"This console's key is pending at {detail}: {pending_key_advice()}.",
            "ready": f"Connected as {detail}",
            "revoked": f"Access revoked: {detail}",
            "failed": f"Bus connection failed: {detail}",
            "closed": "Disconnected.",
        }
        self.connection_label.setText(texts.get(state, f"{state}: {detail}"))
        colour = {"ready": ClientsModel.ONLINE_COLOUR.name(), "failed": "#f85149", "revoked": "#f85149"}.get(state, "#d29922")
        self.connection_label.setStyleSheet(f"color: {colour};")
        self._update_actions()

    def _on_welcomed(self, info: dict) -> None:
        self._update_actions()  # the controller loads the command log and the selected client

    def _on_agents(self, agents: list) -> None:
        self.clients.load_agents(agents)
        self._update_counts()

    def _on_presence(self, items: list) -> None:
        self.clients.apply_presence(items)  # the Sessions tab: the controller
        self._update_counts()

    def _on_sysinfo(self, items: list) -> None:
        self.clients.apply_sysinfo(items)
        self.details.add_sysinfo(items)

    def _on_command_result(self, items: list) -> None:
        self.controller.merge_commands(items)
        for item in items:
            name = self._name(item.get("target") or "")
            self.statusBar().showMessage(f"{item.get('name')} on {name}: {item.get('status')} ({result_text(item.get('result'))})", 10000)

    def _on_frame(self, client_id: str, image: QImage) -> None:
        """HOOK(live view): the newest frame of a watched client becomes its tile's thumbnail."""
        self.clients.set_thumbnail(client_id, image)

    def _on_stats(self, stats: dict) -> None:
        dropped = stats.get("dropped_backlog", 0) + stats.get("undecodable", 0)
        self.live_label.setText(f"live messages: {stats.get('received', 0)}" + (f", dropped {dropped}" if dropped else ""))

    def _on_clients_changed(self, top_left: QModelIndex, bottom_right: QModelIndex, roles=()) -> None:
        if self.current_client is None:
            return
        row = self.clients.row_of(self.current_client)
        if top_left.row() <= row <= bottom_right.row():
            self.details.update_header()

    def _update_counts(self, *_) -> None:
        total = self.clients.rowCount()
        self.count_label.setText(f"{self.clients.online_count()} of {total} online")

    # -- commands ----------------------------------------------------------------------
    def _send_command(self, spec: ActionSpec, client_id: str, reason: str) -> None:
        self.controller.send_command(client_id, spec.command, {"reason": reason} if reason else {})  # the broker checks it
        self.statusBar().showMessage(f"{spec.label}: sent to {self._name(client_id)}", 5000)

    def _dialog_finished(self, result: int) -> None:
        dialog, self.dialog = self.dialog, None
        if dialog is not None:
            dialog.deleteLater()

    # -- small helpers -----------------------------------------------------------------
    def _name(self, client_id: str | None) -> str:
        client = self.clients.client(client_id) if client_id else None
        return client.name if client else (client_id or "")

    def _focus_search(self) -> None:
        self.search.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search.selectAll()

    def _toggle_theme(self) -> None:
        self.set_theme(theme.DARK if self.theme_action.isChecked() else theme.LIGHT)

    # -- live view and chat windows (top-level, one per client) -----------------------
    def ask_live_view(self, client_id: str | None = None) -> ReasonDialog | None:
        """Ask the operator why they look (a live view is an access: the broker
        refuses one without a reason), then open the live view with it."""
        client_id = client_id or self.current_client
        if not client_id:
            self.statusBar().showMessage("Select a client first.", 5000)
            return None
        if client_id in self._live_windows:
            return self.open_live_view(client_id, "")  # already watching, with its reason
        if self.dialog is not None:
            self.dialog.close()
        name = self._name(client_id)
        dialog = ReasonDialog(f"Live view: {name}", f"Watches the screen of {name} live. The user is told who "
                              "watches and why; the reason is kept in the audit trail.", "Watch", False, self)
        dialog.setObjectName("confirm_live_view")
        dialog.accepted.connect(lambda: self.open_live_view(client_id, dialog.reason()))
        dialog.finished.connect(self._dialog_finished)
        self.dialog = dialog
        dialog.open()
        return dialog

    def open_live_view(self, client_id: str | None, reason: str):
        """The live view of ``client_id`` (opened with ``reason``, or the open one); None without a reason."""
        from gui.live_view import LiveViewWindow

        client_id = client_id or self.current_client
        if client_id not in self._live_windows and not reason.strip():
            self.statusBar().showMessage("A live view needs a reason.", 5000)
            return None
        return self._open_window(self._live_windows, LiveViewWindow, client_id, reason=reason.strip())

    def open_chat(self, client_id: str | None = None):
        from gui.chat_view import ChatView

        return self._open_window(self._chat_windows, ChatView, client_id or self.current_client)

    def open_operations(self):
        """The one Operations window (approvals, bulk runs, templates), shown and raised."""
        from gui.operations_view import OperationsWindow

        self.operations_window = self.operations_window or OperationsWindow(self.worker, self)
        for step in (self.operations_window.show, self.operations_window.raise_):
            step()
        return self.operations_window

    def _open_window(self, windows: dict, cls, client_id: str | None, **kw):
        if not client_id:
            return None
        window = windows.get(client_id)
        if window is None:
            window = windows[client_id] = cls(self.worker, client_id, self._name(client_id), **kw)
            window.destroyed.connect(lambda *_: windows.pop(client_id, None))
        window.show()
        window.raise_()
        window.activateWindow()
        return window

    def closeEvent(self, event: QCloseEvent) -> None:
        for window in [*getattr(self, "_live_windows", {}).values(), *getattr(self, "_chat_windows", {}).values(),
                       *filter(None, [self.operations_window])]:
            window.close()  # live.stop goes out before the worker stops
        if self.dialog is not None:
            self.dialog.reject()
        self.capture_views.close_all()
        self.thumbnails.stop()  # no thumbnail request after this
        self.worker.stop()
        super().closeEvent(event)
