"""Table models of the operator console, fed by the bus worker's signals.

:class:`ClientsModel` (:mod:`gui.models.clients`) is the fleet: one row per
agent, updated in place as presence and sysinfo arrive (``beginInsertRows``
for a new agent, ``dataChanged`` with the roles that changed for everything
else; it is never reset). :class:`HistoryModel` (:mod:`gui.models.history`)
is one history kind from the store (sessions, security events, ...): filled
once per selected client, then kept live by merging rows by their key;
:class:`CapturesModel` (:mod:`gui.models.captures`) adds the captures'
previews.

The ``*_row`` functions (:mod:`gui.models.rows`) turn live bus items (the
dicts the worker emits) into rows shaped like the store's, so that a live
row and the stored one merge into one line instead of two. How values are
written (times, results, tooltips) is :mod:`gui.models.text`. The names
the console uses are importable from here.
"""
from gui.models.base import RawRole, RowRole
from gui.models.captures import CapturesModel
from gui.models.clients import ClientRow, ClientsModel
from gui.models.history import HistoryModel
from gui.models.rows import (
    audit_concerns,
    audit_row,
    capture_row,
    command_row,
    security_concerns,
    security_row,
    session_row,
)
from gui.models.text import format_time, format_value, result_text, rich_tooltip

__all__ = [
    "CapturesModel",
    "ClientRow",
    "ClientsModel",
    "HistoryModel",
    "RawRole",
    "RowRole",
    "audit_concerns",
    "audit_row",
    "capture_row",
    "command_row",
    "format_time",
    "format_value",
    "result_text",
    "rich_tooltip",
    "security_concerns",
    "security_row",
    "session_row",
]
