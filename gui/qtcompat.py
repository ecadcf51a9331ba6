"""Guard against a reference-count bug of the Qt binding. Every GUI module imports this first.

PySide6 6.12.0 on CPython 3.11 returns ``None`` from every void method
(``painter.setPen(...)``, ``model.beginInsertRows(...)``...) and ``True``
from every ``signal.emit(...)`` without owning a reference to it. Each such
call lowers that singleton's reference count by one; a console paints and
emits thousands of times a second, so within seconds to minutes the count
reaches zero and the interpreter aborts with ``Fatal Python error:
none_dealloc`` (or ``bool_dealloc``). PySide6 6.11.3 does not do this, and
from CPython 3.12 on these objects are immortal (PEP 683), so the bug is
harmless there.

At import this module measures whether the binding in use loses such
references. If it does, it raises the reference counts of ``None``,
``True`` and ``False`` by 2**50: what 3.12 does for them with immortality.
These objects are static and never freed, so the only visible effect is a
large ``sys.getrefcount``; at a loss of a million references a second the
margin lasts for decades. With a sound binding nothing is changed.

The proper fix is a binding without the bug: ``PySide6<6.12`` on Python
3.11 (or Python 3.12+).
"""
from __future__ import annotations

import ctypes
import logging
import sys

from PySide6 import __version__ as PYSIDE_VERSION
from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)

#: added to each singleton's reference count when the binding leaks
IMMORTAL_MARGIN = 2**50

_SINGLETONS = (None, True, False)


class _Probe(QObject):
    ping = Signal()


def _losses(samples: int = 256) -> dict[str, int]:
    """References to None (void calls) and True (emits) one call loses."""
    probe = _Probe()
    before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(samples):
        probe.setObjectName("probe")
    after_void = sys.getrefcount(None)
    for _ in range(samples):
        probe.ping.emit()
    after_emit = sys.getrefcount(True)
    lost_none, lost_true = before[0] - after_void, before[1] - after_emit
    _add_references(None, max(0, lost_none))  # pay the probe's own losses back
    _add_references(True, max(0, lost_true))
    return {"None": max(0, round(lost_none / samples)), "True": max(0, round(lost_true / samples))}


def _add_references(obj: object, count: int) -> None:
    if count:
        ctypes.c_ssize_t.from_address(id(obj)).value += count


def _guard() -> dict[str, int]:
    if sys.version_info >= (3, 12):
        return {"None": 0, "True": 0}  # immortal already
    losses = _losses()
    if any(losses.values()):
        for obj in _SINGLETONS:
            _add_references(obj, IMMORTAL_MARGIN)
        log.warning("PySide6 %s on Python %d.%d loses references to None/True on every call (%s): made them immortal "
                    "as on Python 3.12 so the console cannot crash; install PySide6<6.12 to be rid of this",
                    PYSIDE_VERSION, *sys.version_info[:2], ", ".join(f"{k} {v}/call" for k, v in losses.items()))
    return losses


#: what the binding in use loses per call, measured once at import
REFERENCE_LOSSES = _guard()
