"""A chat with one client's user: a conversation model and its view.

Status of an operator's message: ``queued`` / ``sent`` come from the
``chat.send`` command's status (queued while the agent is offline),
``delivered`` / ``read`` from the agent's ``event.<agent>.chat`` receipts.
A status never goes back. Replies (``direction: "in"``) are rows of their own.
"""
from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLineEdit,
    QListView,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from broker.envelope import new_id
from gui.bus_worker import BusWorker

RANK = {"sending": 0, "queued": 1, "sent": 2, "delivered": 3, "read": 4, "failed": 5}
MARKS = {"sending": "…", "queued": "🕓 queued", "sent": "✓ sent", "delivered": "✓✓ delivered", "read": "✓✓ read",
         "failed": "✗ failed"}
#: command statuses -> message status (a command delivered/done means the agent has it: "sent")
COMMAND_TO_MESSAGE = {"queued": "queued", "sent": "sent", "delivered": "sent", "done": "sent",
                      "failed": "failed", "expired": "failed"}


class ChatModel(QAbstractListModel):
    """One row per message, oldest first; keyed by message id."""

    MessageIdRole = Qt.ItemDataRole.UserRole + 1
    StatusRole = Qt.ItemDataRole.UserRole + 2
    DirectionRole = Qt.ItemDataRole.UserRole + 3

    def __init__(self, parent=None):
        super().__init__(parent)
        self._rows: list[dict] = []
        self._index: dict[str, int] = {}

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex | None = None) -> int:
        return 0 if parent is not None and parent.isValid() else len(self._rows)

    def data(self, index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            when = time.strftime("%H:%M", time.localtime(row.get("ts") or time.time()))
            if row["direction"] == "in":
                return f"{when}  user: {row['text']}"
            return f"{when}  you: {row['text']}    {MARKS.get(row['status'], row['status'])}"
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return Qt.AlignmentFlag.AlignLeft if row["direction"] == "in" else Qt.AlignmentFlag.AlignRight
        if role == Qt.ItemDataRole.ToolTipRole:
            return row.get("message_id")
        if role == self.MessageIdRole:
            return row.get("message_id")
        if role == self.StatusRole:
            return row.get("status")
        if role == self.DirectionRole:
            return row.get("direction")
        return None

    def roleNames(self) -> dict:
        return {**super().roleNames(), self.MessageIdRole: b"messageId", self.StatusRole: b"status",
                self.DirectionRole: b"direction"}

    def status(self, message_id: str) -> str | None:
        i = self._index.get(message_id)
        return None if i is None else self._rows[i]["status"]

    def rows(self) -> list[dict]:
        return [dict(r) for r in self._rows]

    def upsert(self, message_id: str, direction: str, text: str | None = None, status: str | None = None,
               ts: float | None = None) -> None:
        """Add a message, or move an existing one's status forward (never back)."""
        i = self._index.get(message_id)
        if i is None:
            self.beginInsertRows(QModelIndex(), len(self._rows), len(self._rows))
            self._index[message_id] = len(self._rows)
            self._rows.append({"message_id": message_id, "direction": direction, "text": text or "",
                               "status": status or "sent", "ts": ts or time.time()})
            self.endInsertRows()
            return
        row, roles = self._rows[i], []
        if status is not None and RANK.get(status, 0) > RANK.get(row["status"], 0):
            row["status"] = status
            roles.append(self.StatusRole)
        if text and not row["text"]:
            row["text"] = text
        if roles or text:
            index = self.index(i, 0)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DisplayRole, *roles])


class ChatView(QWidget):
    """The conversation with ``client_id``'s user (a top-level window)."""

    def __init__(self, worker: BusWorker, client_id: str, title: str | None = None, parent=None):
        super().__init__(parent, Qt.WindowType.Window)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.worker, self.client_id = worker, client_id
        self.setWindowTitle(f"Chat with {title or client_id}")
        self.model = ChatModel(self)
        self._commands: dict[str, str] = {}  # chat.send command id -> message id
        self.list = QListView(self)
        self.list.setModel(self.model)
        self.list.setWordWrap(True)
        self.list.setUniformItemSizes(False)
        self.text = QLineEdit(self)
        self.text.setPlaceholderText("Message to the user…")
        self.text.returnPressed.connect(self.send)
        self.send_button = QPushButton("Send", self)
        self.send_button.clicked.connect(self.send)
        row = QHBoxLayout()
        row.addWidget(self.text, 1)
        row.addWidget(self.send_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list, 1)
        layout.addLayout(row)
        self.resize(480, 520)
        self._connections = [
            (worker.replied, self._on_replied),
            (worker.request_failed, self._on_failed),
            (worker.command_status, self._on_command_status),
            (worker.command_result, self._on_command_status),
            (worker.chat_received, self._on_chat),
        ]
        for signal, slot in self._connections:
            signal.connect(slot)

    def send(self) -> str | None:
        text = self.text.text().strip()
        if not text:
            return None
        message_id = new_id()
        cmd_id = new_id()
        self._commands[cmd_id] = message_id
        self.model.upsert(message_id, "out", text, "sending")
        self.worker.send_command(self.client_id, "chat.send", {"message_id": message_id, "text": text}, cmd_id=cmd_id)
        self.text.clear()
        return message_id

    def _on_replied(self, req_id: str, op: str, result: Any) -> None:
        message_id = self._commands.get(req_id)
        if message_id is not None and isinstance(result, dict):
            self._command_moved(message_id, result.get("status"))

    def _on_failed(self, req_id: str, op: str, error: str) -> None:
        message_id = self._commands.pop(req_id, None)
        if message_id is not None:
            self.model.upsert(message_id, "out", status="failed")

    def _on_command_status(self, items: list) -> None:
        for item in items:
            message_id = self._commands.get(str(item.get("id")))
            if message_id is not None:
                self._command_moved(message_id, item.get("status"))

    def _command_moved(self, message_id: str, status: Any) -> None:
        mapped = COMMAND_TO_MESSAGE.get(status) if isinstance(status, str) else None
        if mapped is not None:
            if mapped == "failed" and RANK.get(self.model.status(message_id) or "", 0) >= RANK["sent"]:
                return  # the agent has it; a late failure of the command does not unsend it
            self.model.upsert(message_id, "out", status=mapped)

    def _on_chat(self, items: list) -> None:
        for item in items:
            if item.get("client_id") != self.client_id:
                continue
            if item.get("direction") == "in":
                body = item.get("body") or item.get("text") or ""
                self.model.upsert(str(item.get("msg_id") or new_id()), "in", str(body), "delivered", item.get("ts"))
                continue
            message_id = item.get("message_id") or item.get("ref") or item.get("msg_id")
            status = item.get("status")
            if not message_id or status not in RANK:
                continue
            if self.model.status(str(message_id)) is None and not item.get("body"):
                continue  # a receipt for a message this window did not send or see
            self.model.upsert(str(message_id), "out", item.get("body"), status, item.get("ts"))

    def closeEvent(self, event) -> None:
        for signal, slot in self._connections:
            try:
                signal.disconnect(slot)
            except (RuntimeError, TypeError):
                pass
        self._connections = []
        super().closeEvent(event)
