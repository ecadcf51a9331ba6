"""The fleet as tiles or as a table: two views of one filtered, sorted model.

Built here, laid out by the window (:mod:`gui.main_window`). Both views
share the proxy (search box filter, sort) and one selection model, so
switching views keeps the selected client.
"""
from __future__ import annotations

from PySide6.QtCore import QObject, QSortFilterProxyModel, Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QListView, QTableView

from gui.models import ClientsModel
from gui.widgets import ClientTileDelegate, compact_rows

#: the table's column widths (0: stretches)
TABLE_WIDTHS = (100, 0, 80, 58, 72, 54, 74)


def fleet_proxy(clients: ClientsModel, parent: QObject) -> QSortFilterProxyModel:
    """The clients, filtered by one search string per client (id, label, host, user, state), sorted by label."""
    proxy = QSortFilterProxyModel(parent)
    proxy.setSourceModel(clients)
    proxy.setSortRole(ClientsModel.SortRole)
    proxy.setFilterKeyColumn(0)
    proxy.setFilterRole(ClientsModel.SearchRole)
    proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
    proxy.setDynamicSortFilter(True)
    proxy.sort(1, Qt.SortOrder.AscendingOrder)
    return proxy


def tile_view(proxy: QSortFilterProxyModel) -> QListView:
    """Clients as tiles (:class:`gui.widgets.ClientTileDelegate`), wrapping left to right."""
    tiles = QListView()
    tiles.setObjectName("clientTiles")
    tiles.setViewMode(QListView.ViewMode.IconMode)
    tiles.setResizeMode(QListView.ResizeMode.Adjust)
    tiles.setMovement(QListView.Movement.Static)
    tiles.setFlow(QListView.Flow.LeftToRight)
    tiles.setWrapping(True)
    tiles.setUniformItemSizes(True)
    tiles.setSpacing(4)
    tiles.setMouseTracking(True)
    tiles.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    tiles.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    tiles.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    tiles.setItemDelegate(ClientTileDelegate(tiles))
    tiles.setModel(proxy)
    return tiles


def table_view(proxy: QSortFilterProxyModel, tiles: QListView) -> QTableView:
    """Clients as a sortable table sharing the tiles' selection."""
    table = QTableView()
    table.setObjectName("clientTable")
    table.setModel(proxy)
    table.setSelectionModel(tiles.selectionModel())
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setAlternatingRowColors(True)
    table.verticalHeader().setVisible(False)
    header = table.horizontalHeader()
    header.setSortIndicator(1, Qt.SortOrder.AscendingOrder)
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)  # the label takes what is left
    table.setSortingEnabled(True)
    for column, width in enumerate(TABLE_WIDTHS):
        if width:
            table.setColumnWidth(column, width)
    compact_rows(table)
    return table
