"""A chat with one client's user: the conversation window of the console.

Opening it loads the conversation from the store (the newest ``page_size``
messages, both directions, deleted ones included and shown struck out;
"Load older" pages back), then what the broker still queues for the agent
(operator messages it has not received yet: ``queued``), and stays live
from the bus. Everything merges by message id (:mod:`gui.chat_model`), so
history and live updates never show a message twice.

Sending is the agent's ``chat.send`` command; deleting one of the
operators' messages (Delete key or the context menu, after a confirmation)
is its ``chat.delete`` command: the user's chat window hides it, the agent
flags the stored copy deleted (a soft delete: the row stays, auditable),
and the broker's audit trail names the operator. Mistakes (an unknown
message, a user's reply, a message that never reached the user) are
explained in the line above the conversation; nothing is sent.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from PySide6.QtCore import QEvent, QObject, QPoint, Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from broker.core.envelope import new_id
from broker.core.vocabulary import DONE, EXPIRED, is_final
from gui.bus_worker import BusWorker
from gui.chat_model import (
    COMMAND_TO_MESSAGE,
    OPEN_COMMANDS,
    RANK,
    ChatModel,
    command_update,
    live_update,
    stored_update,
)
from gui.models import result_text

#: messages fetched per page of history
PAGE_SIZE = 200
#: the most recent chat commands of the client scanned for queued messages and pending deletes
COMMANDS_SCANNED = 1000
#: the broker's command queue is asked for these only (thumbnails and the rest never crowd them out)
CHAT_COMMANDS = ["chat.send", "chat.delete"]

__all__ = ["ChatModel", "ChatView", "PAGE_SIZE"]


class ChatView(QWidget):
    """The conversation with ``client_id``'s user (a top-level window)."""

    def __init__(self, worker: BusWorker, client_id: str, title: str | None = None, parent=None, *,
                 page_size: int = PAGE_SIZE):
        super().__init__(parent, Qt.WindowType.Window)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.worker, self.client_id, self.page_size = worker, client_id, page_size
        self.title = title or client_id
        self.setWindowTitle(f"Chat with {self.title}")
        self.model = ChatModel(self, me=worker.identity.get("client_id", ""))
        self._commands: dict[str, str] = {}  # chat.send command id -> message id
        self._deletes: dict[str, str] = {}  # chat.delete command id -> message id
        self._calls: dict[str, tuple[Callable[[Any], None], Callable[[str], None]]] = {}
        self._oldest_stored_id: int | None = None
        #: history requests not answered yet (0: the view shows what the store and the broker know)
        self.loading = 0
        #: the store holds older messages than those shown ("Load older")
        self.has_older = False
        #: the last problem shown to the operator ("" when none)
        self.last_error = ""
        self._build()
        self._connections = [
            (worker.replied, self._on_replied),
            (worker.request_failed, self._on_failed),
            (worker.command_status, self._on_command_status),
            (worker.command_result, self._on_command_status),
            (worker.chat_received, self._on_chat),
            (worker.welcomed, self._on_welcomed),
        ]
        for signal, slot in self._connections:
            signal.connect(slot)
        self.model.rowsInserted.connect(self._follow_new_rows)
        self.text.setFocus()  # type at once (and no message looks selected)
        self.reload()

    def _build(self) -> None:
        """The widgets: "Load older" and a notice, the messages, the line to type in and Send."""
        self.older_button = QPushButton("Load older", self)
        self.older_button.setEnabled(False)
        self.older_button.clicked.connect(self.load_older)
        self.notice = QLabel("Loading the conversation…", self)
        self.notice.setTextFormat(Qt.TextFormat.PlainText)
        self.notice.setWordWrap(True)
        self.list = QListView(self)
        self.list.setModel(self.model)
        self.list.setWordWrap(True)
        self.list.setUniformItemSizes(False)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._context_menu)
        self.list.installEventFilter(self)
        self.text = QLineEdit(self)
        self.text.setPlaceholderText("Message to the user…")
        self.text.returnPressed.connect(self.send)
        self.send_button = QPushButton("Send", self)
        self.send_button.clicked.connect(self.send)
        refresh = QShortcut(QKeySequence(QKeySequence.StandardKey.Refresh), self)
        refresh.activated.connect(self.reload)
        top = QHBoxLayout()
        top.addWidget(self.older_button)
        top.addWidget(self.notice, 1)
        row = QHBoxLayout()
        row.addWidget(self.text, 1)
        row.addWidget(self.send_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.list, 1)
        layout.addLayout(row)
        self.resize(480, 520)

    # -- sending and deleting -------------------------------------------------------------------
    def send(self) -> str | None:
        """Send what is typed as a new message; returns its message id (None if nothing is typed)."""
        text = self.text.text().strip()
        if not text:
            return None
        message_id = new_id()
        cmd_id = new_id()
        self._commands[cmd_id] = message_id
        self.model.upsert(message_id, "out", text, "sending", operator=self.model.me or None)
        self.worker.send_command(self.client_id, "chat.send", {"message_id": message_id, "text": text}, cmd_id=cmd_id)
        self.text.clear()
        return message_id

    def delete_message(self, message_id: str, confirm: bool = True) -> str | None:
        """Soft-delete one of the operators' messages: the user's window hides it, the store flags it.

        Asks for a confirmation first (unless ``confirm`` is False) and
        returns the ``chat.delete`` command id; None, with the reason shown
        above the conversation, when there is nothing to delete.
        """
        row = self.model.row(message_id) if isinstance(message_id, str) else None
        problem = _why_not_deletable(message_id, row)
        if problem:
            self.show_error(problem)
            return None
        if confirm and not self._confirm_delete(row):
            return None
        cmd_id = new_id()
        self._deletes[cmd_id] = message_id
        self.model.upsert(message_id, deleting=True)
        # the reason goes into the broker's audit trail beside the operator's name
        self.worker.send_command(self.client_id, "chat.delete",
                                 {"message_id": message_id, "reason": f"delete chat message {message_id}"}, cmd_id=cmd_id)
        self.show_info("Deleting the message: the user's window hides it once the agent has the request.")
        return cmd_id

    def delete_selected(self) -> str | None:
        """Delete the selected message (the Delete key)."""
        index = self.list.currentIndex()
        if not index.isValid():
            self.show_error("Select one of your messages to delete it.")
            return None
        return self.delete_message(index.data(ChatModel.MessageIdRole))

    def _confirm_delete(self, row: dict) -> bool:
        """Ask the operator; True to go ahead."""
        text = row["text"] if len(row["text"]) <= 200 else row["text"][:199] + "…"
        answer = QMessageBox.question(
            self, "Delete message",
            f"Delete this message for the user of {self.title}?\n\n“{text}”\n\n"
            "It disappears from the user's chat window. The store keeps it, marked deleted, "
            "and the audit trail records that you deleted it.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    # -- history --------------------------------------------------------------------------------
    def reload(self) -> None:
        """Load the newest page of the conversation from the store again (F5); merges, never duplicates."""
        self._load_page(None)

    def load_older(self) -> None:
        """The page of stored messages before the oldest one shown."""
        if self._oldest_stored_id is not None:
            self.older_button.setEnabled(False)
            self._load_page(self._oldest_stored_id)

    def _load_page(self, before_id: int | None) -> None:
        self.loading += 1
        req_id = self.worker.query("messages", client_id=self.client_id, limit=self.page_size, order="desc",
                                   include_deleted=True, before_id=before_id)
        self._calls[req_id] = (partial(self._page_loaded, before_id), partial(self._page_failed, before_id))

    def _page_loaded(self, before_id: int | None, rows: Any) -> None:
        rows = rows if isinstance(rows, list) else []
        first_load = self._oldest_stored_id is None
        for row in rows:
            self.model.merge(stored_update(row))
        ids = [r["id"] for r in rows if isinstance(r, dict) and type(r.get("id")) is int]
        if ids:
            self._oldest_stored_id = min(ids + ([self._oldest_stored_id] if self._oldest_stored_id is not None else []))
        if before_id is not None or first_load:
            self.has_older = len(rows) >= self.page_size
        self.older_button.setEnabled(self.has_older)
        if before_id is not None:
            self._loaded()
            return
        # what the broker still holds for the agent: messages not received yet, deletes on their way
        req_id = self.worker.submit("command.list", target=self.client_id, limit=COMMANDS_SCANNED, names=CHAT_COMMANDS)
        self._calls[req_id] = (self._commands_loaded, self._commands_failed)

    def _page_failed(self, before_id: int | None, error: str) -> None:
        self.older_button.setEnabled(self.has_older)
        if before_id is not None:
            self._loaded(f"Older messages could not be loaded: {error}")
            return
        req_id = self.worker.submit("command.list", target=self.client_id, limit=COMMANDS_SCANNED, names=CHAT_COMMANDS)
        self._calls[req_id] = (partial(self._commands_loaded, error=f"No stored history ({error}); "
                                                                       "new messages still show live."),
                               self._commands_failed)

    def _commands_loaded(self, records: Any, error: str = "") -> None:
        records = sorted((r for r in records if isinstance(r, dict)) if isinstance(records, list) else [],
                         key=lambda r: (r.get("created") or 0, str(r.get("id"))))
        window_start = self.model.oldest_ts() if self.has_older else None
        for record in records:
            status, args = record.get("status"), record.get("args")
            message_id = args.get("message_id") if isinstance(args, dict) else None
            if record.get("target") != self.client_id or not isinstance(message_id, str):
                continue
            if record.get("name") == "chat.send":
                created = record.get("created") or 0
                if status in OPEN_COMMANDS:
                    self._commands[str(record.get("id"))] = message_id  # its live statuses move the row on
                elif window_start is not None and created < window_start:
                    continue  # older than the page shown: "Load older" shows the stored copy
                self.model.merge(command_update(record, self.client_id))
            elif record.get("name") == "chat.delete" and self.model.row(message_id) is not None:
                if status in OPEN_COMMANDS:
                    self._deletes[str(record.get("id"))] = message_id
                    self.model.upsert(message_id, deleting=True)
                elif status == DONE:
                    self.model.upsert(message_id, deleted=True)
        self._loaded(error)

    def _commands_failed(self, error: str) -> None:
        self._loaded(f"Messages still queued for the agent are not shown: {error}")

    def _loaded(self, error: str = "") -> None:
        self.loading = max(0, self.loading - 1)
        if error:
            self.show_error(error)
        elif not self.loading and not self.last_error:
            self.show_info("" if self.model.rowCount() else "No messages yet.")

    # -- the worker's signals ----------------------------------------------------------------------
    def _on_welcomed(self, info: dict) -> None:
        self.model.set_me(info.get("client_id", ""))

    def _on_replied(self, req_id: str, op: str, result: Any) -> None:
        call = self._calls.pop(req_id, None)
        if call is not None:
            call[0](result)
            return
        message_id = self._commands.get(req_id)
        if message_id is not None and isinstance(result, dict):
            self._command_moved(message_id, result.get("status"))

    def _on_failed(self, req_id: str, op: str, error: str) -> None:
        call = self._calls.pop(req_id, None)
        if call is not None:
            call[1](error)
            return
        message_id = self._commands.pop(req_id, None)
        if message_id is not None:
            self.model.upsert(message_id, "out", status="failed")
            self.show_error(f"The message could not be sent: {error}")
        message_id = self._deletes.pop(req_id, None)
        if message_id is not None:
            self.model.upsert(message_id, deleting=False)
            self.show_error(f"The message could not be deleted: {error}")

    def _on_command_status(self, items: list) -> None:
        for item in items:
            cmd_id = str(item.get("id"))
            message_id = self._commands.get(cmd_id)
            if message_id is not None:
                self._command_moved(message_id, item.get("status"))
            message_id = self._deletes.get(cmd_id)
            if message_id is not None:
                self._delete_moved(message_id, item.get("status"), item.get("result"))

    def _command_moved(self, message_id: str, status: Any) -> None:
        mapped = COMMAND_TO_MESSAGE.get(status) if isinstance(status, str) else None
        if mapped is not None:
            if mapped == "failed" and RANK.get(self.model.status(message_id) or "", 0) >= RANK["sent"]:
                return  # the agent has it; a late failure of the command does not unsend it
            self.model.upsert(message_id, "out", status=mapped)

    def _delete_moved(self, message_id: str, status: Any, result: Any) -> None:
        if status == DONE:
            self.model.upsert(message_id, deleted=True)
            output = result.get("output") if isinstance(result, dict) else None
            if isinstance(output, dict) and output.get("known") is False:
                self.show_info("Deleted. The agent had restarted since this message, so no window showed it any more; "
                               "the stored copy is marked deleted.")
            elif isinstance(output, dict):
                self.show_info("Deleted: hidden from the user, kept in the store marked deleted.")
        elif is_final(status):
            self.model.upsert(message_id, deleting=False)
            why = result_text(result) if result is not None else ("the agent did not come back in time" if status == EXPIRED
                                                                   else "the agent refused it")
            self.show_error(f"The message was not deleted: {why}")

    def _on_chat(self, items: list) -> None:
        for item in items:
            if item.get("client_id") != self.client_id:
                continue
            update = live_update(item)
            if update is None:
                continue
            if self.model.row(update["message_id"]) is None and update.get("text") is None:
                continue  # a receipt or delete of a message this window does not show (older than its history)
            self.model.merge(update)

    # -- the window ------------------------------------------------------------------------------
    def show_error(self, text: str) -> None:
        """Show a problem above the conversation (kept in ``last_error``)."""
        self.last_error = text
        self.notice.setText(text)
        self.notice.setStyleSheet("color: #e5534b;")

    def show_info(self, text: str) -> None:
        self.last_error = ""
        self.notice.setText(text)
        self.notice.setStyleSheet("")

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.list and event.type() == QEvent.Type.KeyPress and event.matches(QKeySequence.StandardKey.Delete):
            self.delete_selected()
            return True
        return super().eventFilter(watched, event)

    def _context_menu(self, pos: QPoint) -> None:
        index = self.list.indexAt(pos)
        if not index.isValid():
            return
        self.list.setCurrentIndex(index)
        message_id = index.data(ChatModel.MessageIdRole)
        menu = QMenu(self)
        action = menu.addAction("Delete message…")
        action.setShortcut(QKeySequence(QKeySequence.StandardKey.Delete))
        action.setEnabled(not _why_not_deletable(message_id, self.model.row(message_id)))
        action.triggered.connect(lambda: self.delete_message(message_id))
        menu.exec(self.list.viewport().mapToGlobal(pos))

    def _follow_new_rows(self, _parent, _first: int, last: int) -> None:
        if self.notice.text() == "No messages yet.":
            self.show_info("")
        if last == self.model.rowCount() - 1:  # a new message at the end: keep the newest in sight
            self.list.scrollToBottom()

    def closeEvent(self, event) -> None:
        for signal, slot in self._connections:
            try:
                signal.disconnect(slot)
            except (RuntimeError, TypeError):
                pass
        self._connections = []
        super().closeEvent(event)


def _why_not_deletable(message_id: Any, row: dict | None) -> str:
    """Why a message cannot be deleted ("" if it can)."""
    if row is None:
        return f"No message {message_id!r} in this conversation: nothing was deleted."
    if row["direction"] == "in":
        return "Only operators' messages can be deleted; the user's replies stay as they are."
    if row["deleted"]:
        return "This message is deleted already."
    if row["deleting"]:
        return "This message is being deleted: the agent has not confirmed it yet."
    if row["status"] == "failed":
        return "This message never reached the user: there is nothing to delete on their side."
    return ""
