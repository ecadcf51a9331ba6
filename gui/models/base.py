"""What every table model of the console shares: the index types and the two user roles of a row.
"""
from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt

from gui import qtcompat  # noqa: F401  (guards the Qt binding before any Qt call)


Index = QModelIndex | QPersistentModelIndex
ROOT = QModelIndex()  # the invalid index: a table's parent

RawRole = Qt.ItemDataRole.UserRole + 1  # the unformatted value (sorting, tests)
RowRole = Qt.ItemDataRole.UserRole + 2  # the whole row dict
