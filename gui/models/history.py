""":class:`HistoryModel`: one history kind from the store (sessions, security events, ...).

Filled once per selected client, then kept live by merging rows by their
key (:data:`KEY_COLUMN`), newest first.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt
from PySide6.QtGui import QColor

from broker.core.vocabulary import DONE, EXPIRED, FAILED, STATUS_RANK
from gui.models.base import ROOT, Index, RawRole, RowRole
from gui.models.text import TITLES, format_value, result_text, rich_tooltip


#: the columns each history kind shows, in order (the allowlist: other keys
#: of a row, such as message ids or packed blobs, stay out of the table)
HISTORY_COLUMNS: dict[str, tuple[str, ...]] = {
    "sessions": ("started", "ended", "logged_in_user", "end_reason"),
    "captures": ("thumbnail", "ts", "width", "height", "format", "quality", "operator", "id"),
    "messages": ("ts", "direction", "operator", "status", "body"),
    "fileops": ("ts", "operator", "op", "path", "size", "ok", "error"),
    "security": ("ts", "severity", "event", "origin", "subject", "detail"),
    "logs": ("ts", "level", "logger", "message"),
    "activity": ("ts", "name", "data"),
    # the person (a key's display name, or whom a service vouched for), the service, the key
    "audit": ("ts", "operator_name", "via", "operator", "role", "action", "reason", "detail"),
    "metrics": ("ts", "cpu_percent", "memory_percent", "disk_percent"),
    "commands": ("updated", "client_id", "name", "status", "result", "operator", "id"),
}

#: the column a kind's rows are ordered by (newest first)
ORDER_COLUMN: dict[str, str] = {"sessions": "started", "commands": "created", "clients": "last_seen"}

#: the column that identifies a row across the live feed and the store
KEY_COLUMN: dict[str, str] = {"commands": "id", "clients": "client_id"}

#: command statuses in order, with the console's own "sending" (not yet queued) and "refused" (by the broker)
COMMAND_RANK = {"sending": -1, **STATUS_RANK, "refused": 3}


class HistoryModel(QAbstractTableModel):
    """Rows of one history kind, newest first, keyed for live merging.

    ``set_rows`` loads a new data set (another client: the one reset);
    ``merge`` inserts rows it has not seen and updates the ones it has
    (``beginInsertRows`` / ``dataChanged``), so the live feed and later
    store answers combine without duplicates or resets.
    """

    def __init__(self, kind: str, columns: Iterable[str] | None = None, max_rows: int = 2000, parent=None, *,
                 key_column: str | None = None, order_column: str | None = None):
        super().__init__(parent)
        self.kind = kind
        self.columns: list[str] = list(columns or HISTORY_COLUMNS.get(kind, ()))
        self.order_column = order_column or ORDER_COLUMN.get(kind, "ts")
        self.key_column = key_column or KEY_COLUMN.get(kind, "msg_id")
        self.max_rows = max_rows
        self._rows: list[dict] = []
        self._keys: dict[str, dict] = {}

    # -- Qt model API -----------------------------------------------------------
    def rowCount(self, parent: Index = ROOT) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = ROOT) -> int:
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal and 0 <= section < len(self.columns):
            name = self.columns[section]
            return TITLES.get(name, name.replace("_", " ").capitalize())
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        column = self.columns[index.column()]
        value = row.get(column)
        if role == Qt.ItemDataRole.DisplayRole:
            if column == "result":
                return result_text(value)
            return format_value(column, value)
        if role == Qt.ItemDataRole.ToolTipRole:
            text = result_text(value) if column == "result" else format_value(column, value, limit=2000)
            return rich_tooltip(text) if text else None
        if role == RawRole:
            return value
        if role == RowRole:
            return row
        if role == Qt.ItemDataRole.ForegroundRole:
            return self._colour(column, row)
        return None

    def _colour(self, column: str, row: dict) -> QColor | None:
        value = row.get(column)
        if column == "status" and self.kind == "commands":
            return {DONE: QColor("#2ea043"), FAILED: QColor("#f85149"), EXPIRED: QColor("#d29922"),
                    "refused": QColor("#f85149")}.get(value)
        if column in ("severity", "level") and isinstance(value, str):
            return {"critical": QColor("#f85149"), "error": QColor("#f85149"), "high": QColor("#f85149"),
                    "warning": QColor("#d29922"), "medium": QColor("#d29922")}.get(value.lower())
        if column == "ok" and value is False:
            return QColor("#f85149")
        return None

    # -- contents -----------------------------------------------------------------
    def rows(self) -> list[dict]:
        return list(self._rows)

    def row(self, number: int) -> dict:
        return self._rows[number]

    def column_values(self, column: str) -> list:
        return [r.get(column) for r in self._rows]

    def key_of(self, row: dict) -> str | None:
        key = row.get(self.key_column)
        if key is None and self.key_column != "id":
            key = row.get("id")
            return None if key is None else f"id:{key}"
        return None if key is None else str(key)

    def set_rows(self, rows: Iterable[dict]) -> None:
        """Replace everything (a new client or kind was chosen)."""
        self.beginResetModel()
        self._rows, self._keys = [], {}
        for row in sorted((dict(r) for r in rows if isinstance(r, dict)), key=self._order, reverse=True):
            key = self.key_of(row)
            if key is not None and key in self._keys:
                continue
            self._rows.append(row)
            if key is not None:
                self._keys[key] = row
        del self._rows[self.max_rows:]
        self.endResetModel()

    def clear(self) -> None:
        self.set_rows([])

    def merge(self, rows: Iterable[dict]) -> int:
        """Insert unseen rows in order and update known ones; returns how many are new."""
        added = 0
        for incoming in rows:
            if not isinstance(incoming, dict):
                continue
            key = self.key_of(incoming)
            known = self._keys.get(key) if key is not None else None
            if known is not None:
                self._update(known, incoming)
                continue
            row = dict(incoming)
            position = self._position(row)
            if position >= self.max_rows:
                continue
            self.beginInsertRows(QModelIndex(), position, position)
            self._rows.insert(position, row)
            if key is not None:
                self._keys[key] = row
            self.endInsertRows()
            added += 1
        if len(self._rows) > self.max_rows:
            self.beginRemoveRows(QModelIndex(), self.max_rows, len(self._rows) - 1)
            for row in self._rows[self.max_rows:]:
                self._keys.pop(self.key_of(row), None)
            del self._rows[self.max_rows:]
            self.endRemoveRows()
        return added

    def _update(self, row: dict, incoming: dict) -> None:
        changed = False
        for name, value in incoming.items():
            if value is None or row.get(name) == value:
                continue  # a store answer older than the live feed never blanks a field
            if name == "status" and self.kind == "commands" and COMMAND_RANK.get(value, 0) < COMMAND_RANK.get(row.get(name), 0):
                continue  # and never moves a command back to an earlier status
            row[name] = value
            changed = True
        if changed:
            number = next(i for i, r in enumerate(self._rows) if r is row)
            self.dataChanged.emit(
                self.index(number, 0),
                self.index(number, max(0, len(self.columns) - 1)),
                [int(Qt.ItemDataRole.DisplayRole), int(Qt.ItemDataRole.ToolTipRole), int(RawRole),
                 int(Qt.ItemDataRole.ForegroundRole), int(Qt.ItemDataRole.DecorationRole)],
            )

    def _order(self, row: dict) -> float:
        value = row.get(self.order_column)
        if not isinstance(value, (int, float)):
            value = row.get("ts") or row.get("updated") or 0.0
        return float(value) if isinstance(value, (int, float)) else 0.0

    def _position(self, row: dict) -> int:
        """Where ``row`` goes in newest-first order (after rows of the same time)."""
        keys = [-self._order(r) for r in self._rows]
        return bisect.bisect_right(keys, -self._order(row))
