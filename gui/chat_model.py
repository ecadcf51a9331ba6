"""One conversation with a client's user, as a Qt list model.

Rows come from three places and are merged by message id, so that the same
message never shows twice:

* the store (``store.query`` kind ``messages``): what the agent reported,
  both directions, with the latest status, its time and the deleted flag
  (:func:`stored_update`);
* the broker's command queue (``command.list``): operator messages the
  agent has not received yet, still ``queued`` (:func:`command_update`);
* the live bus: ``chat.send`` command statuses and the agent's
  ``event.<agent>.chat`` receipts, replies and deletes (:func:`live_update`).

Status of an operator's message moves forward only:
``sending`` (not yet taken by the broker) → ``queued`` (the agent is
offline) → ``sent`` (the agent has it) → ``delivered`` (on the user's
screen) → ``read``; or ``failed`` (refused, or expired before the agent
came back). A deleted message stays in the list, struck out: the store
keeps it too (a soft delete), for the audit trail.
"""
from __future__ import annotations

import bisect
import time
from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor, QFont

from broker.core.vocabulary import DELIVERED, DONE, EXPIRED, FAILED, OPEN, QUEUED, SENT
from gui import qtcompat  # noqa: F401  (guards the Qt binding before any Qt call)
from gui.models import format_time

RANK = {"sending": 0, "queued": 1, "sent": 2, "delivered": 3, "read": 4, "failed": 5}
MARKS = {"sending": "…", "queued": "◷ queued", "sent": "✓ sent", "delivered": "✓✓ delivered", "read": "✓✓ read",
         "failed": "✗ failed"}
#: command statuses -> message status (a command delivered/done means the agent has it: "sent")
COMMAND_TO_MESSAGE = {QUEUED: "queued", SENT: "sent", DELIVERED: "sent", DONE: "sent", FAILED: "failed", EXPIRED: "failed"}
OPEN_COMMANDS = frozenset(OPEN)
#: deleted rows are drawn in this colour (readable on the dark and the light theme)
DELETED_COLOUR = QColor("#8b949e")

_FIELDS = ("text", "operator", "status", "ts", "status_ts", "deleted", "deleting", "stored_id")


def stored_update(row: Any) -> dict | None:
    """A ``messages`` row of the store as a model update (None if it is not one)."""
    if not isinstance(row, dict) or not isinstance(row.get("msg_id"), str) or row.get("direction") not in ("in", "out"):
        return None
    status = row.get("status") if row.get("status") in RANK else None
    return {"message_id": row["msg_id"], "direction": row["direction"], "text": _text(row.get("body")),
            "operator": _text(row.get("operator")), "status": status, "ts": _number(row.get("ts")),
            "status_ts": _number(row.get("status_ts")), "deleted": bool(row.get("deleted")),
            "stored_id": row.get("id") if type(row.get("id")) is int else None}


def command_update(record: Any, client_id: str) -> dict | None:
    """A ``chat.send`` record of the broker's command queue (``command.list``) as a model update."""
    if not isinstance(record, dict) or record.get("name") != "chat.send" or record.get("target") != client_id:
        return None
    args = record.get("args") if isinstance(record.get("args"), dict) else {}
    message_id, status = args.get("message_id"), COMMAND_TO_MESSAGE.get(record.get("status"))
    if not isinstance(message_id, str) or status is None:
        return None
    return {"message_id": message_id, "direction": "out", "text": _text(args.get("text")), "status": status,
            "operator": _text(record.get("sender")), "ts": _number(record.get("created")),
            "status_ts": _number(record.get("updated"))}


def live_update(item: Any) -> dict | None:
    """An ``event.<agent>.chat`` item from the bus worker as a model update.

    A reply (``direction: "in"``) is a row of its own under its bus message
    id; the agent's copy of an operator's message carries its ``body``; a
    receipt names the message (``message_id``/``ref``) with a status; a
    delete names it with ``deleted: true``.
    """
    if not isinstance(item, dict):
        return None
    ts = _number(item.get("ts"))
    if item.get("direction") == "in":
        body = item.get("body") or item.get("text")
        if not isinstance(item.get("msg_id"), str) or not isinstance(body, str):
            return None
        return {"message_id": item["msg_id"], "direction": "in", "text": body, "status": "delivered", "ts": ts,
                "status_ts": ts, "operator": _text(item.get("operator"))}
    message_id = item.get("message_id") or item.get("ref") or item.get("msg_id")
    if not isinstance(message_id, str):
        return None
    if item.get("deleted") is True:
        return {"message_id": message_id, "deleted": True}
    status = item.get("status")
    if status not in RANK:
        return None
    update = {"message_id": message_id, "direction": "out", "status": status, "status_ts": ts,
              "operator": _text(item.get("operator"))}
    if isinstance(item.get("body"), str):
        update.update(text=item["body"], ts=ts)
    return update


class ChatModel(QAbstractListModel):
    """One row per message, ordered by time (oldest first); keyed by message id.

    ``me`` is the operator's own client id: their messages read "you", other
    operators' messages carry the operator's name.
    """

    MessageIdRole = Qt.ItemDataRole.UserRole + 1
    StatusRole = Qt.ItemDataRole.UserRole + 2
    DirectionRole = Qt.ItemDataRole.UserRole + 3
    DeletedRole = Qt.ItemDataRole.UserRole + 4

    def __init__(self, parent=None, me: str = ""):
        super().__init__(parent)
        self.me = me
        self._rows: list[dict] = []
        self._index: dict[str, int] = {}

    # -- Qt -------------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex | None = None) -> int:
        return 0 if parent is not None and parent.isValid() else len(self._rows)

    def data(self, index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return self._line(row)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return Qt.AlignmentFlag.AlignLeft if row["direction"] == "in" else Qt.AlignmentFlag.AlignRight
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._details(row)
        if role == Qt.ItemDataRole.FontRole and row["deleted"]:
            font = QFont()
            font.setStrikeOut(True)
            return font
        if role == Qt.ItemDataRole.ForegroundRole and row["deleted"]:
            return DELETED_COLOUR
        if role == self.MessageIdRole:
            return row["message_id"]
        if role == self.StatusRole:
            return row["status"]
        if role == self.DirectionRole:
            return row["direction"]
        if role == self.DeletedRole:
            return row["deleted"]
        return None

    def roleNames(self) -> dict:
        return {**super().roleNames(), self.MessageIdRole: b"messageId", self.StatusRole: b"status",
                self.DirectionRole: b"direction", self.DeletedRole: b"deleted"}

    # -- reading ----------------------------------------------------------------------------
    def status(self, message_id: str) -> str | None:
        i = self._index.get(message_id)
        return None if i is None else self._rows[i]["status"]

    def row(self, message_id: str) -> dict | None:
        """A copy of one message's row, or None."""
        i = self._index.get(message_id)
        return None if i is None else dict(self._rows[i])

    def rows(self) -> list[dict]:
        return [dict(r) for r in self._rows]

    def row_of(self, message_id: str) -> int:
        """The row number of a message, -1 if it is not here."""
        return self._index.get(message_id, -1)

    def oldest_ts(self) -> float | None:
        return self._rows[0]["ts"] if self._rows else None

    # -- changing -----------------------------------------------------------------------------
    def set_me(self, me: str) -> None:
        """Who "you" is (the operator's client id, known once the worker is welcomed)."""
        if me and me != self.me:
            self.me = me
            if self._rows:
                self.dataChanged.emit(self.index(0, 0), self.index(len(self._rows) - 1, 0), [Qt.ItemDataRole.DisplayRole])

    def upsert(self, message_id: str, direction: str | None = None, text: str | None = None, status: str | None = None,
               ts: float | None = None, **more: Any) -> bool:
        """Add a message, or merge into the one with this id; False if nothing changed.

        A new message needs a ``direction``; it is placed by ``ts``. For an
        existing one the status only moves forward, ``deleted`` stays once
        set, a missing text or operator is filled in; ``deleting`` (a delete
        on its way) can be set and cleared. Unknown fields are refused.
        """
        unknown = set(more) - set(_FIELDS)
        if unknown:
            raise TypeError(f"unknown message fields: {', '.join(sorted(unknown))}")
        i = self._index.get(message_id)
        if i is None:
            if direction not in ("in", "out"):
                return False
            self._insert({"message_id": message_id, "direction": direction, "text": text or "",
                          "operator": more.get("operator"), "status": status or ("delivered" if direction == "in" else "sent"),
                          "ts": ts or time.time(), "status_ts": more.get("status_ts"), "deleted": bool(more.get("deleted")),
                          "deleting": bool(more.get("deleting")) and not more.get("deleted"),
                          "stored_id": more.get("stored_id")})
            return True
        row, changed = self._rows[i], set()
        if status is not None and RANK.get(status, 0) > RANK.get(row["status"], 0):
            row["status"] = status
            row["status_ts"] = more.get("status_ts") or row["status_ts"]
            changed.add(self.StatusRole)
        for name, value in (("text", text), ("operator", more.get("operator")), ("stored_id", more.get("stored_id"))):
            if value and not row[name]:
                row[name] = value
                changed.add(Qt.ItemDataRole.DisplayRole)
        if more.get("deleted") and not row["deleted"]:
            row["deleted"], row["deleting"] = True, False
            changed.add(self.DeletedRole)
        elif "deleting" in more and not row["deleted"] and bool(more["deleting"]) != row["deleting"]:
            row["deleting"] = bool(more["deleting"])
            changed.add(Qt.ItemDataRole.DisplayRole)
        if changed:
            index = self.index(i, 0)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole,
                                                 Qt.ItemDataRole.FontRole, Qt.ItemDataRole.ForegroundRole, *changed])
        return bool(changed)

    def merge(self, update: dict | None) -> bool:
        """Apply one update made by :func:`stored_update`, :func:`command_update` or :func:`live_update`."""
        if update is None:
            return False
        fields = dict(update)
        return self.upsert(fields.pop("message_id"), fields.pop("direction", None), fields.pop("text", None),
                           fields.pop("status", None), fields.pop("ts", None), **fields)

    def _insert(self, row: dict) -> None:
        at = bisect.bisect_right(self._rows, row["ts"], key=lambda r: r["ts"])
        self.beginInsertRows(QModelIndex(), at, at)
        self._rows.insert(at, row)
        for n in range(at, len(self._rows)):
            self._index[self._rows[n]["message_id"]] = n
        self.endInsertRows()

    # -- text -----------------------------------------------------------------------------------
    def _line(self, row: dict) -> str:
        when = format_time(row["ts"])
        if row["direction"] == "in":
            return f"{when}  user: {row['text']}"
        who = "you" if not row["operator"] or row["operator"] == self.me else row["operator"]
        if row["deleted"]:
            mark = "deleted"
        elif row["deleting"]:
            mark = "deleting…"
        else:
            mark = MARKS.get(row["status"], row["status"])
        return f"{when}  {who}: {row['text']}    {mark}"

    @staticmethod
    def _details(row: dict) -> str:
        parts = [f"message {row['message_id']}"]
        if row["direction"] == "out" and row["status_ts"]:
            parts.append(f"{row['status']} at {format_time(row['status_ts'])}")
        if row["deleted"]:
            parts.append("deleted: hidden from the user, kept in the store")
        return "\n".join(parts)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None
