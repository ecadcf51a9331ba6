"""Table models of the operator console, fed by the bus worker's signals.

:class:`ClientsModel` is the fleet: one row per agent, updated in place as
presence and sysinfo arrive (``beginInsertRows`` for a new agent,
``dataChanged`` with the roles that changed for everything else; it is
never reset). :class:`HistoryModel` is one history kind from the store
(sessions, security events, ...): filled once per selected client, then
kept live by merging rows by their key; :class:`CapturesModel` adds the
captures' previews.

The ``*_row`` functions turn live bus items (the dicts the worker emits)
into rows shaped like the store's, so that a live row and the stored one
merge into one line instead of two.
"""
from __future__ import annotations

import bisect
import datetime as dt
import html
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPixmap

from broker.core.vocabulary import DONE, EXPIRED, FAILED, STATUS_RANK
from gui import qtcompat  # noqa: F401  (guards the Qt binding before any Qt call)

_Index = QModelIndex | QPersistentModelIndex
_ROOT = QModelIndex()  # the invalid index: a table's parent

#: values of these columns are epoch seconds
TIME_COLUMNS = frozenset({"ts", "started", "ended", "created", "updated", "last_seen", "first_seen", "status_ts"})

#: column titles shared by every table
TITLES: dict[str, str] = {
    "client_id": "Client",
    "label": "Label",
    "user": "User",
    "state": "State",
    "last_seen": "Last seen",
    "cpu_percent": "CPU %",
    "memory_percent": "Memory %",
    "disk_percent": "Disk %",
    "ts": "Time",
    "started": "Started",
    "ended": "Ended",
    "logged_in_user": "User",
    "end_reason": "End reason",
    "width": "Width",
    "height": "Height",
    "format": "Format",
    "quality": "Quality",
    "operator": "Operator",
    "direction": "Direction",
    "body": "Message",
    "status": "Status",
    "op": "Operation",
    "path": "Path",
    "size": "Size",
    "ok": "OK",
    "error": "Error",
    "event": "Event",
    "severity": "Severity",
    "origin": "Origin",
    "subject": "Subject",
    "detail": "Detail",
    "level": "Level",
    "logger": "Logger",
    "message": "Message",
    "role": "Role",
    "action": "Action",
    "target": "Target",
    "reason": "Reason",
    "name": "Name",
    "data": "Data",
    "created_at": "Created",
    "updated_at": "Updated",
    "result": "Result",
    "id": "Id",
    "thumbnail": "Preview",
}

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
    "audit": ("ts", "operator", "role", "action", "reason", "detail"),
    "metrics": ("ts", "cpu_percent", "memory_percent", "disk_percent"),
    "commands": ("updated", "client_id", "name", "status", "result", "operator", "id"),
}

#: the column a kind's rows are ordered by (newest first)
ORDER_COLUMN: dict[str, str] = {"sessions": "started", "commands": "created", "clients": "last_seen"}

#: the column that identifies a row across the live feed and the store
KEY_COLUMN: dict[str, str] = {"commands": "id", "clients": "client_id"}

#: command statuses in order, with the console's own "sending" (not yet queued) and "refused" (by the broker)
COMMAND_RANK = {"sending": -1, **STATUS_RANK, "refused": 3}

RawRole = Qt.ItemDataRole.UserRole + 1  # the unformatted value (sorting, tests)
RowRole = Qt.ItemDataRole.UserRole + 2  # the whole row dict


# -- formatting ------------------------------------------------------------------
def format_time(ts: float | None, now: float | None = None) -> str:
    """``14:03:22`` today, ``2026-11-24 14:03`` before, ``-`` for nothing."""
    if not ts:
        return "-"
    moment = dt.datetime.fromtimestamp(ts)
    today = dt.datetime.fromtimestamp(now or time.time()).date()
    return moment.strftime("%H:%M:%S") if moment.date() == today else moment.strftime("%Y-%m-%d %H:%M")


def format_value(column: str, value: Any, limit: int = 120) -> str:
    """A table cell's text."""
    if value is None:
        return ""
    if column in TIME_COLUMNS and isinstance(value, (int, float)):
        return format_time(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict) and list(value) == ["detail"]:  # {"detail": "3 failed logins"}: just the text
        text = _short(value["detail"])
    elif isinstance(value, dict):
        text = ", ".join(f"{k}={_short(v)}" for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        text = ", ".join(_short(v) for v in value)
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def rich_tooltip(text: str) -> str:
    """Tooltip text shown verbatim: Qt renders anything that looks like HTML as
    rich text, and labels and log lines come from agents."""
    return "<p style='white-space:pre-wrap'>" + html.escape(text) + "</p>"


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + format_value("", value, 60) + "}"
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def result_text(result: Any) -> str:
    """A command result ``{"ok": .., "output"/"error": ..}`` in a few words."""
    if not isinstance(result, dict):
        return format_value("result", result)
    if result.get("error"):
        return str(result["error"])
    output = result.get("output")
    if output is None:
        return "ok" if result.get("ok") else ""
    return format_value("result", output)


# -- live items -> store-shaped rows ---------------------------------------------
def session_row(item: dict) -> dict:
    """A presence ``online`` item as the session it opens."""
    info = item.get("info") or {}
    return {"msg_id": item["msg_id"], "client_id": item["client_id"], "started": item["ts"], "ended": None,
            "logged_in_user": info.get("user") or None, "end_reason": None}


def security_row(item: dict) -> dict:
    """A live security item (``sender`` + the event's fields) as a store row.

    An agent reports about itself (origin ``agent``); the broker and services
    report about a client they name in ``client_id`` (the row's subject).
    """
    data = {k: v for k, v in item.items() if k not in ("msg_id", "ts", "sender", "topic")}
    sender = item.get("sender") or ""
    topic = item.get("topic") or ""
    from_agent = bool(sender) and topic.startswith(f"security.{sender}") and sender not in ("broker", "persister")
    rest = {k: v for k, v in data.items() if k not in ("event", "severity")}
    return {
        "msg_id": item["msg_id"],
        "ts": item["ts"],
        "event": data.get("event"),
        "severity": data.get("severity"),
        "origin": "agent" if from_agent else (data.get("origin") or "broker"),
        "client_id": sender if from_agent else None,
        "subject": None if from_agent else (data.get("client_id") or None),
        "detail": rest or None,
    }


def security_concerns(row: dict, client_id: str) -> bool:
    return client_id in (row.get("client_id"), row.get("subject"))


def audit_row(item: dict) -> dict:
    """A live ``audit.<operator>`` item as a store row."""
    detail = item.get("detail")
    inner = detail if isinstance(detail, dict) else {}
    return {
        "msg_id": item["msg_id"],
        "ts": item["ts"],
        "operator": item.get("operator"),
        "role": item.get("role"),
        "action": item.get("action"),
        "target": item.get("target") or audit_target(inner),
        "reason": item.get("reason") or inner.get("reason") or None,
        "detail": detail,
    }


def audit_target(detail: Any) -> str | None:
    """The client an audit record is about: ``target`` or ``client_id`` of its detail."""
    if not isinstance(detail, dict):
        return None
    for key in ("target", "client_id"):
        if isinstance(detail.get(key), str) and detail[key]:
            return detail[key]
    return None


def audit_concerns(row: dict, client_id: str) -> bool:
    return row.get("target") == client_id or audit_target(row.get("detail")) == client_id


def capture_row(item: dict) -> dict:
    return {k: item.get(k) for k in ("msg_id", "ts", "client_id", "width", "height", "format", "quality", "operator")}


def command_row(item: dict) -> dict:
    """A COMMAND_STATUS or RESULT item as a ``commands`` row."""
    row = {"id": item["id"], "client_id": item.get("target") or item.get("client_id"), "name": item.get("name"),
           "status": item.get("status"), "updated": item.get("updated") or time.time()}
    for key in ("created", "operator", "reason"):
        if item.get(key) is not None:
            row[key] = item[key]
    if "result" in item:
        row["result"] = item["result"]
    return row


# -- the fleet -------------------------------------------------------------------
@dataclass
class ClientRow:
    client_id: str
    label: str = ""
    hostname: str = ""
    user: str = ""
    state: str = "unknown"
    last_seen: float = 0.0
    cpu_percent: float | None = None
    memory_percent: float | None = None
    #: HOOK(live view): the newest live-frame thumbnail; nothing fills it until
    #: the agent streams ``frame.<agent>.live`` (see BusWorker.frame_received)
    thumbnail: QImage | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.label or self.hostname or self.client_id

    @property
    def online(self) -> bool:
        return self.state == "online"


class ClientsModel(QAbstractTableModel):
    """One row per agent: id, label, user, state, last seen, CPU %, memory %."""

    COLUMNS = ("client_id", "label", "user", "state", "last_seen", "cpu_percent", "memory_percent")

    ClientIdRole = Qt.ItemDataRole.UserRole + 10
    NameRole = Qt.ItemDataRole.UserRole + 11
    StateRole = Qt.ItemDataRole.UserRole + 12
    LastSeenRole = Qt.ItemDataRole.UserRole + 13
    CpuRole = Qt.ItemDataRole.UserRole + 14
    MemoryRole = Qt.ItemDataRole.UserRole + 15
    HostRole = Qt.ItemDataRole.UserRole + 16
    LoggedInRole = Qt.ItemDataRole.UserRole + 17
    ThumbnailRole = Qt.ItemDataRole.UserRole + 18
    SortRole = Qt.ItemDataRole.UserRole + 19
    SearchRole = Qt.ItemDataRole.UserRole + 20  # column 0: the text the search box matches

    #: roles that change when a field changes (dataChanged names them)
    _FIELD_ROLES: ClassVar[dict[str, list[int]]] = {
        "label": [NameRole, SearchRole],
        "hostname": [NameRole, HostRole, SearchRole],
        "user": [LoggedInRole, SearchRole],
        "state": [StateRole, Qt.ItemDataRole.ForegroundRole, SearchRole],
        "last_seen": [LastSeenRole],
        "cpu_percent": [CpuRole],
        "memory_percent": [MemoryRole],
        "thumbnail": [ThumbnailRole],
    }
    _FIELD_COLUMN: ClassVar[dict[str, int]] = {"label": 1, "hostname": 1, "user": 2, "state": 3, "last_seen": 4, "cpu_percent": 5,
                     "memory_percent": 6, "thumbnail": 0}

    ONLINE_COLOUR = QColor("#2ea043")
    OFFLINE_COLOUR = QColor("#8b949e")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._rows: list[ClientRow] = []
        self._index: dict[str, int] = {}

    # -- Qt model API -----------------------------------------------------------
    def rowCount(self, parent: _Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: _Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole and 0 <= section < len(self.COLUMNS):
            return TITLES[self.COLUMNS[section]]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        column = self.COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(row, column)
        if role == self.SearchRole:
            return f"{row.client_id} {row.label} {row.hostname} {row.user} {row.state}"
        if role == self.SortRole:
            value = row.name.lower() if column == "label" else getattr(row, column)
            return -1.0 if value is None else value
        if role == Qt.ItemDataRole.ToolTipRole:
            return rich_tooltip(f"{row.name} ({row.client_id})\n{row.user or 'no user'} on {row.hostname or '?'}\n"
                                f"{row.state}, last seen {format_time(row.last_seen)}")
        if role == Qt.ItemDataRole.ForegroundRole and column == "state":
            return self.ONLINE_COLOUR if row.online else self.OFFLINE_COLOUR
        if role == Qt.ItemDataRole.TextAlignmentRole and column in ("cpu_percent", "memory_percent"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return self._role_value(row, role)

    def _role_value(self, row: ClientRow, role: int):
        if role == self.ClientIdRole:
            return row.client_id
        if role == self.NameRole:
            return row.name
        if role == self.StateRole:
            return row.state
        if role == self.LastSeenRole:
            return row.last_seen
        if role == self.CpuRole:
            return row.cpu_percent
        if role == self.MemoryRole:
            return row.memory_percent
        if role == self.HostRole:
            return row.hostname
        if role == self.LoggedInRole:
            return row.user
        if role == self.ThumbnailRole:
            return row.thumbnail
        return None

    @staticmethod
    def _display(row: ClientRow, column: str) -> str:
        if column == "label":
            return row.name
        if column == "last_seen":
            return "now" if row.online else format_time(row.last_seen)
        if column in ("cpu_percent", "memory_percent"):
            value = getattr(row, column)
            return "" if value is None else f"{value:.0f}"
        return str(getattr(row, column) or "")

    # -- lookups ----------------------------------------------------------------
    def client(self, client_id: str) -> ClientRow | None:
        row = self._index.get(client_id)
        return None if row is None else self._rows[row]

    def row_of(self, client_id: str) -> int:
        return self._index.get(client_id, -1)

    def client_ids(self) -> list[str]:
        return [r.client_id for r in self._rows]

    def online_count(self) -> int:
        return sum(1 for r in self._rows if r.online)

    # -- updates from the bus -----------------------------------------------------
    def load_agents(self, agents: Iterable[dict]) -> None:
        """The broker's ``agents`` answer: every accepted agent and its state."""
        self._apply(
            (a["client_id"], {
                "label": a.get("label") or None,
                "hostname": a.get("hostname") or None,
                "user": a.get("user") or None,
                "state": a.get("state"),
                "last_seen": a.get("last_seen"),
            })
            for a in agents if isinstance(a, dict) and a.get("client_id")
        )

    def load_store_clients(self, rows: Iterable[dict]) -> None:
        """Stored facts (``store.query kind=clients``) for agents the broker knows.

        Fills what the broker does not keep (user, last CPU/memory); a client
        only the store knows (its key was removed) is not added.
        """
        changes = []
        for r in rows:
            if not isinstance(r, dict) or r.get("client_id") not in self._index:
                continue
            info = r.get("last_sysinfo") if isinstance(r.get("last_sysinfo"), dict) else {}
            current = self._rows[self._index[r["client_id"]]]
            fields = {"hostname": r.get("hostname") or None, "user": r.get("logged_in_user") or None}
            if not current.label:
                fields["label"] = r.get("label") or None
            if current.cpu_percent is None:
                fields["cpu_percent"] = _percent(info.get("cpu_percent"))
                fields["memory_percent"] = _percent(info.get("memory_percent"))
            if isinstance(r.get("last_seen"), (int, float)) and r["last_seen"] > current.last_seen:
                fields["last_seen"] = r["last_seen"]
            changes.append((r["client_id"], fields))
        self._apply(changes)

    def apply_presence(self, items: Iterable[dict]) -> None:
        """Presence items ``{client_id, state, ts, info}``, oldest first."""
        changes = []
        for item in items:
            info = item.get("info") or {}
            changes.append((item["client_id"], {
                "state": item.get("state"),
                "last_seen": item.get("ts"),
                "label": info.get("label") or None,
                "hostname": info.get("hostname") or None,
                "user": info.get("user") or None,
            }))
        self._apply(changes, keep_label=True)

    def apply_sysinfo(self, items: Iterable[dict]) -> None:
        """Sysinfo items ``{client_id, ts, cpu_percent, memory_percent, ...}``."""
        self._apply(
            ((item["client_id"], {
                "last_seen": item.get("ts"),
                "cpu_percent": _percent(item.get("cpu_percent")),
                "memory_percent": _percent(item.get("memory_percent")),
                "hostname": item.get("hostname") or None,
                "user": item.get("logged_in_user") or None,
            }) for item in items),
            add=False,
        )

    def set_thumbnail(self, client_id: str, image: QImage | None) -> None:
        """HOOK(live view): show the newest frame of ``client_id`` on its tile."""
        self._apply([(client_id, {"thumbnail": image})], add=False, allow_none=("thumbnail",))

    def _apply(self, changes: Iterable[tuple[str, dict]], add: bool = True, keep_label: bool = False,
               allow_none: tuple[str, ...] = ()) -> None:
        """Merge field changes; insert unknown clients in one block; announce
        every changed row with the roles that changed, in contiguous runs."""
        changed: dict[int, set[str]] = {}
        new: list[ClientRow] = []
        new_index: dict[str, ClientRow] = {}
        for client_id, fields in changes:
            if not isinstance(client_id, str) or not client_id:
                continue
            row_no = self._index.get(client_id)
            row = self._rows[row_no] if row_no is not None else new_index.get(client_id)
            if row is None:
                if not add:
                    continue
                row = new_index[client_id] = ClientRow(client_id)
                new.append(row)
            for name, value in fields.items():
                if value is None and name not in allow_none:
                    continue
                if name == "label" and keep_label and row.label:
                    continue  # the operator-set label in the registry wins over what a hello claims
                if name == "last_seen" and (not isinstance(value, (int, float)) or value < row.last_seen):
                    continue
                if getattr(row, name) != value:
                    setattr(row, name, value)
                    if row_no is not None:
                        changed.setdefault(row_no, set()).add(name)
        if new:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
            for offset, row in enumerate(new):
                self._index[row.client_id] = first + offset
            self._rows.extend(new)
            self.endInsertRows()
        self._announce(changed)

    def _announce(self, changed: dict[int, set[str]]) -> None:
        run: list[int] = []
        fields: set[str] = set()
        for row_no in sorted(changed):
            if run and row_no != run[-1] + 1:
                self._emit_changed(run[0], run[-1], fields)
                run, fields = [], set()
            run.append(row_no)
            fields |= changed[row_no]
        if run:
            self._emit_changed(run[0], run[-1], fields)

    def _emit_changed(self, first: int, last: int, fields: set[str]) -> None:
        """dataChanged for rows ``first..last``: column 0 (the tile view draws
        every field from column 0's roles) and the columns of the changed
        fields, in contiguous column runs. A run that does not span the sort
        column lets a sorting proxy skip re-sorting; roles without the
        search role let it skip re-filtering."""
        roles = {int(Qt.ItemDataRole.DisplayRole), int(Qt.ItemDataRole.ToolTipRole), int(self.SortRole)}
        for name in fields:
            roles.update(int(r) for r in self._FIELD_ROLES[name])
        ordered = sorted(roles)
        runs: list[list[int]] = []
        for column in sorted({0} | {self._FIELD_COLUMN[name] for name in fields}):
            if runs and column == runs[-1][1] + 1:
                runs[-1][1] = column
            else:
                runs.append([column, column])
        for left, right in runs:
            self.dataChanged.emit(self.index(first, left), self.index(last, right), ordered)


def _percent(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# -- history -----------------------------------------------------------------------
class HistoryModel(QAbstractTableModel):
    """Rows of one history kind, newest first, keyed for live merging.

    ``set_rows`` loads a new data set (another client: the one reset);
    ``merge`` inserts rows it has not seen and updates the ones it has
    (``beginInsertRows`` / ``dataChanged``), so the live feed and later
    store answers combine without duplicates or resets.
    """

    def __init__(self, kind: str, columns: Iterable[str] | None = None, max_rows: int = 2000, parent=None):
        super().__init__(parent)
        self.kind = kind
        self.columns: list[str] = list(columns or HISTORY_COLUMNS.get(kind, ()))
        self.order_column = ORDER_COLUMN.get(kind, "ts")
        self.key_column = KEY_COLUMN.get(kind, "msg_id")
        self.max_rows = max_rows
        self._rows: list[dict] = []
        self._keys: dict[str, dict] = {}

    # -- Qt model API -----------------------------------------------------------
    def rowCount(self, parent: _Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: _Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal and 0 <= section < len(self.columns):
            name = self.columns[section]
            return TITLES.get(name, name.replace("_", " ").capitalize())
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole):
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


class CapturesModel(HistoryModel):
    """Screen captures and their previews.

    A stored row's ``thumbnail`` is a QImage the bus worker decoded from the
    store's ~160 px JPEG (``thumbnail_error`` says why a row has none). The
    QPixmap the table paints is made only when the view asks for it, that
    is for rows scrolled into view, scaled once to :data:`PREVIEW_SIZE` and
    cached by image: a tab of 200 captures costs nothing until it is painted.
    """

    #: previews are drawn at most this big (the aspect ratio is kept)
    PREVIEW_SIZE = QSize(128, 72)
    ERROR_COLOUR = QColor("#f85149")

    def __init__(self, parent=None):
        super().__init__("captures", parent=parent)
        self._pixmaps: dict[int, QPixmap] = {}

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole):
        if index.isValid() and 0 <= index.row() < len(self._rows) and self.columns[index.column()] == "thumbnail":
            return self._preview_data(self._rows[index.row()], role)
        return super().data(index, role)

    def _preview_data(self, row: dict, role: int):
        if role == Qt.ItemDataRole.DecorationRole:
            return self.pixmap(row)
        if role == Qt.ItemDataRole.DisplayRole:  # asked for every row (column sizing): makes no pixmap
            image = row.get("thumbnail")
            return "" if isinstance(image, QImage) and not image.isNull() else preview_note(row)
        if role == Qt.ItemDataRole.ToolTipRole:
            note = preview_note(row)
            return rich_tooltip(note) if note else None
        if role == Qt.ItemDataRole.ForegroundRole:
            return self.ERROR_COLOUR if row.get("thumbnail_error") else None
        if role == RawRole:
            return row.get("thumbnail")
        if role == RowRole:
            return row
        return None

    def pixmap(self, row: dict) -> QPixmap | None:
        """The preview of ``row`` as painted (made on first use, then cached); None without one."""
        image = row.get("thumbnail")
        if not isinstance(image, QImage) or image.isNull():
            return None
        pixmap = self._pixmaps.get(image.cacheKey())
        if pixmap is None:
            scaled = image.scaled(self.PREVIEW_SIZE, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
            pixmap = self._pixmaps[image.cacheKey()] = QPixmap.fromImage(scaled)
        return pixmap

    def cached_pixmaps(self) -> int:
        """How many previews have been turned into pixmaps so far."""
        return len(self._pixmaps)

    def set_rows(self, rows: Iterable[dict]) -> None:
        self._pixmaps.clear()
        super().set_rows(rows)


def preview_note(row: dict) -> str:
    """What a capture row says in place of a preview: why there is none, or that it is coming."""
    if row.get("thumbnail_error"):
        return f"No preview: {row['thumbnail_error']}"
    if row.get("id") is None:
        return "storing…"
    return ""
