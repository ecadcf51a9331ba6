""":class:`ClientsModel`, the fleet: one row per agent, updated in place as presence and sysinfo arrive.

``beginInsertRows`` for a new agent, ``dataChanged`` with the roles that
changed for everything else; it is never reset.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt
from PySide6.QtGui import QColor, QImage

from gui.models.base import ROOT, Index
from gui.models.text import TITLES, format_time, rich_tooltip


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
    def rowCount(self, parent: Index = ROOT) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = ROOT) -> int:
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole and 0 <= section < len(self.COLUMNS):
            return TITLES[self.COLUMNS[section]]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
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
