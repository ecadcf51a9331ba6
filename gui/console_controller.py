"""The console's controller: its bus requests and the selected client's history.

Not a widget. :class:`ConsoleController` sits between the bus worker and
the main window: it sends the window's requests (history pages, metrics,
the command log, commands), routes each answer to its callback, applies
rows to the models, and tells the window by signals what to redraw. The
window (:mod:`gui.main_window`) keeps the layout and the widgets.

Answers are handled on the GUI thread a few at a time
(``INBOX_BUDGET_S``), so that selecting a client, which answers several
queries at once, never blocks painting.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from broker.core.envelope import new_id
from broker.core.store_queries import MAX_THUMBNAIL_ROWS
from gui.bus_worker import BusWorker
from gui.capture_view import decode_thumbnails
from gui.models import (
    ClientsModel,
    HistoryModel,
    audit_concerns,
    audit_row,
    capture_row,
    command_row,
    security_concerns,
    security_row,
    session_row,
)
from gui.thumbnails import COMMAND as THUMBNAIL_COMMAND

Callback = tuple[Callable[[Any], None], Callable[[str], None]]

#: captures asked with their previews at a time (the store's cap; a reply stays ~1 MB)
CAPTURES_LIMIT = MAX_THUMBNAIL_ROWS
#: a capture seen live is looked up in the store (for its id and preview) this long
#: after it arrived, again while it is not there yet, at most CAPTURE_FOLLOW_TRIES times
CAPTURE_FOLLOW_MS = 300
CAPTURE_FOLLOW_TRIES = 20
#: longest stretch the GUI thread spends on answers before the event loop runs again
INBOX_BUDGET_S = 0.008


class ConsoleController(QObject):
    """Requests and answers for the main window; owns which client is selected."""

    #: history rows were applied to a tab's model: kind, refit columns, rows the store sent (None: a live merge)
    history_shown = Signal(str, bool, object)
    #: a tab's history could not be loaded: kind, error
    history_failed = Signal(str, str)
    #: the selected client's stored metrics rows (newest first), or why there are none
    metrics_loaded = Signal(object)
    metrics_failed = Signal(str)
    #: the broker's ``agents`` answer on a refresh
    agents_loaded = Signal(object)
    #: a line for the status bar: text, milliseconds
    notice = Signal(str, int)

    def __init__(self, worker: BusWorker, clients: ClientsModel, commands: HistoryModel, history: dict[str, HistoryModel],
                 *, history_limit: int, metrics_limit: int, audit_scan_limit: int, first_kind: str, parent=None):
        super().__init__(parent)
        self.worker, self.clients, self.commands, self.history = worker, clients, commands, history
        self.history_limit, self.metrics_limit, self.audit_scan_limit = history_limit, metrics_limit, audit_scan_limit
        #: the selected client, the tab on show, and the kinds asked for it (a tab loads when first shown)
        self.client_id: str | None = None
        self.visible_kind = first_kind
        self.loaded_kinds: set[str] = set()
        #: the bus welcomed us; who we are there
        self.ready = False
        self.me = ""
        self.role = ""
        self._calls: dict[str, Callback] = {}
        self._inbox: deque[tuple[Callable[[Any], None], Any]] = deque()
        self._inbox_timer = _single_shot(self, 0, self._drain_inbox)
        self._capture_follow = _single_shot(self, CAPTURE_FOLLOW_MS, self._follow_captures)
        self._capture_follow_tries = 0
        worker.connection_changed.connect(self._on_connection)
        worker.welcomed.connect(self._on_welcomed)
        worker.replied.connect(self._on_replied)
        worker.request_failed.connect(self._on_request_failed)
        worker.command_status.connect(self.merge_commands)
        worker.presence_changed.connect(self._on_presence)
        worker.security_received.connect(self._on_security)
        worker.audit_received.connect(self._on_audit)
        worker.captures_received.connect(self._on_captures)

    # -- requests and their answers -------------------------------------------------
    def call(self, req_id: str, on_reply: Callable[[Any], None], on_error: Callable[[str], None] | None = None) -> None:
        """Route the answer to request ``req_id`` (default on error: a status-bar notice)."""
        self._calls[req_id] = (on_reply, on_error or (lambda error: self.notice.emit(error, 8000)))

    def _on_replied(self, req_id: str, op: str, result: Any) -> None:
        callback = self._calls.pop(req_id, None)
        if callback is not None:
            self._post(callback[0], result)

    def _on_request_failed(self, req_id: str, op: str, error: str) -> None:
        callback = self._calls.pop(req_id, None)
        if callback is not None:
            self._post(callback[1], error)
        elif req_id == "clients":
            self.notice.emit(f"Stored history is not available: {error}", 10000)

    def _post(self, handler: Callable[[Any], None], value: Any) -> None:
        self._inbox.append((handler, value))
        if not self._inbox_timer.isActive():
            self._inbox_timer.start()

    def _drain_inbox(self) -> None:
        """Handle answers for at most INBOX_BUDGET_S, then let the event loop run before the rest."""
        deadline = time.perf_counter() + INBOX_BUDGET_S
        while self._inbox:
            handler, value = self._inbox.popleft()
            handler(value)
            if time.perf_counter() >= deadline:
                break
        if self._inbox:
            self._inbox_timer.start()

    def _on_connection(self, state: str, detail: str) -> None:
        self.ready = state == "ready"

    def _on_welcomed(self, info: dict) -> None:
        self.me, self.role = info.get("client_id", ""), info.get("role", "")
        self.load_commands()
        if self.client_id is not None:
            self.load_details(fresh=not self.loaded_kinds)

    def refresh(self) -> None:
        """Ask again for everything shown (merged in place: nothing flickers)."""
        self.call(self.worker.submit("agents"), self.agents_loaded.emit)
        self.call(self.worker.query("clients", limit=1000), self.clients.load_store_clients)
        self.load_commands()
        if self.client_id is not None:
            self.load_details(fresh=False)

    # -- the selected client's history --------------------------------------------------
    def select(self, client_id: str | None) -> None:
        """Show ``client_id`` (None: nobody); its history loads if the bus is up."""
        self.client_id = client_id
        self.loaded_kinds = set()
        self._capture_follow.stop()
        if client_id is not None and self.ready:
            self.load_details(fresh=True)

    def show_kind(self, kind: str) -> None:
        """The tab for ``kind`` came into view: load it the first time."""
        self.visible_kind = kind
        if self.client_id is not None and self.ready and kind not in self.loaded_kinds:
            self.load_kind(kind, fresh=True)

    def limit(self, kind: str) -> int:
        return min(self.history_limit, CAPTURES_LIMIT) if kind == "captures" else self.history_limit

    def load_details(self, fresh: bool) -> None:
        """The metrics, the tab on show, and (on a refresh) every tab already shown."""
        client_id = self.client_id
        for kind in {self.visible_kind} | self.loaded_kinds:
            self.load_kind(kind, fresh)
        self.call(self.worker.query("metrics", client_id=client_id, limit=self.metrics_limit),
                  partial(self._if_selected, client_id, self.metrics_loaded.emit),
                  partial(self._if_selected, client_id, self.metrics_failed.emit))

    def load_kind(self, kind: str, fresh: bool) -> None:
        client_id = self.client_id
        self.loaded_kinds.add(kind)
        if kind == "captures":
            self._load_captures(client_id, fresh)
            return
        self.call(self.worker.query(kind, client_id=client_id, limit=self.history_limit),
                  partial(self._history_loaded, client_id, kind, fresh), partial(self._history_failed, client_id, kind))
        if kind == "audit":
            # The broker's audit record of a command names its client only inside
            # `detail`, which the store's client filter does not look at: scan the
            # newest records too, so the commands sent to this client show up.
            self.call(self.worker.query("audit", limit=self.audit_scan_limit), partial(self._audit_scan_loaded, client_id),
                      lambda error: None)

    def _load_captures(self, client_id: str, fresh: bool, since: float | None = None) -> None:
        """Captures with their previews, decoded in the worker thread (see gui.capture_view)."""
        filters = {} if since is None else {"since": since}
        request = self.worker.submit("store.query", kind="captures", client_id=client_id, limit=self.limit("captures"),
                                     thumbnails=True, prepare=decode_thumbnails, **filters)
        self.call(request, partial(self._history_loaded, client_id, "captures", fresh),
                  partial(self._history_failed, client_id, "captures"))

    def follow_captures_soon(self, reset: bool = False) -> None:
        """Captures seen live but not stored yet are asked for again shortly (a few times)."""
        if reset:
            self._capture_follow_tries = 0
        pending = any(r.get("id") is None for r in self.history["captures"].rows())
        if pending and self._capture_follow_tries < CAPTURE_FOLLOW_TRIES and not self._capture_follow.isActive():
            self._capture_follow.start()

    def _follow_captures(self) -> None:
        pending = [r["ts"] for r in self.history["captures"].rows() if r.get("id") is None and isinstance(r.get("ts"), (int, float))]
        if self.client_id is None or not pending or not self.ready:
            return
        self._capture_follow_tries += 1
        self._load_captures(self.client_id, fresh=False, since=min(pending))

    def _history_loaded(self, client_id: str, kind: str, fresh: bool, rows: list) -> None:
        if client_id != self.client_id:
            return
        model = self.history[kind]
        first = model.rowCount() == 0
        if first:
            model.set_rows(rows)
        else:
            model.merge(rows)
        self.history_shown.emit(kind, first or fresh, len(rows))
        if kind == "captures":
            self.follow_captures_soon()

    def _history_failed(self, client_id: str, kind: str, error: str) -> None:
        if client_id == self.client_id:
            self.history_failed.emit(kind, error)

    def _audit_scan_loaded(self, client_id: str, rows: list) -> None:
        if client_id == self.client_id:
            mine = [r for r in rows if isinstance(r, dict) and audit_concerns(r, client_id)]
            if mine:
                self.history["audit"].merge(mine)
                self.history_shown.emit("audit", False, None)

    # -- live rows for the selected client's tabs --------------------------------------
    def _on_presence(self, items: list) -> None:
        """The Sessions tab: an online opens a session, an offline ends the open one."""
        sessions = self.history["sessions"]
        for item in items:
            if item["client_id"] != self.client_id:
                continue
            if item.get("state") == "online":
                sessions.merge([session_row(item)])
            else:
                open_rows = [r for r in sessions.rows() if r.get("ended") is None and r.get("msg_id")]
                if open_rows:
                    sessions.merge([{"msg_id": open_rows[0]["msg_id"], "ended": item["ts"],
                                     "end_reason": item.get("reason") or "offline"}])
            self.history_shown.emit("sessions", False, None)

    def _on_security(self, items: list) -> None:
        self._merge_live("security", map(security_row, items), security_concerns)

    def _on_audit(self, items: list) -> None:
        self._merge_live("audit", map(audit_row, items), audit_concerns)

    def _on_captures(self, items: list) -> None:
        self._merge_live("captures", map(capture_row, items), lambda r, c: r.get("client_id") == c)
        self.follow_captures_soon(reset=True)

    def _merge_live(self, kind: str, rows: Iterable[dict], concerns: Callable[[dict, str], bool]) -> None:
        client_id = self.client_id
        if client_id is None:
            return
        mine = [r for r in rows if concerns(r, client_id)]
        if mine:
            self.history[kind].merge(mine)
            self.history_shown.emit(kind, False, None)

    def _if_selected(self, client_id: str, then: Callable[[Any], None], value: Any) -> None:
        if client_id == self.client_id:
            then(value)

    # -- commands -------------------------------------------------------------------------
    def send_command(self, client_id: str, command: str, args: dict) -> str:
        """Send ``command``; its row shows ``sending`` until the broker's status arrives."""
        now = time.time()
        cmd_id = new_id()
        self.commands.merge([{"id": cmd_id, "client_id": client_id, "name": command, "status": "sending",
                              "created": now, "updated": now, "operator": self.me or None}])
        self.worker.send_command(client_id, command, args, cmd_id=cmd_id)
        self.call(cmd_id, lambda status: self.merge_commands([status]), partial(self._command_refused, cmd_id))
        return cmd_id

    def _command_refused(self, cmd_id: str, error: str) -> None:
        self.commands.merge([{"id": cmd_id, "status": "refused", "updated": time.time(), "result": {"ok": False, "error": error}}])
        self.notice.emit(f"Command refused: {error}", 10000)

    def merge_commands(self, items: list) -> None:
        """Command statuses and results (live, or answers) into the command log."""
        self.commands.merge([command_row(i) for i in items if isinstance(i, dict) and i.get("id")])

    def load_commands(self) -> None:
        self.call(self.worker.query("commands", limit=self.history_limit), self._commands_loaded)

    def _commands_loaded(self, rows: list) -> None:
        rows = [r for r in rows if not (isinstance(r, dict) and r.get("name") == THUMBNAIL_COMMAND)]  # tile pictures
        if self.commands.rowCount() == 0:
            self.commands.set_rows(rows)
        else:
            self.commands.merge(rows)


def _single_shot(parent: QObject, interval_ms: int, slot: Callable[[], None]) -> QTimer:
    timer = QTimer(parent)
    timer.setSingleShot(True)
    timer.setInterval(interval_ms)
    timer.timeout.connect(slot)
    return timer
