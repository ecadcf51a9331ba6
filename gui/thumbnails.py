"""Live thumbnails on the client tiles: which tiles, how often, how many at once.

:class:`ThumbnailScheduler` asks the agents behind the tiles that are
*visible* in the grid's viewport, and online, for a small picture of their
screen (the agent's ``thumbnail`` command, see
:mod:`agent.screen.thumbnail` for why a command and what the employee is
told), one every ``interval_s`` per tile. Requests go through the
:class:`~gui.bus_worker.BusWorker` (``request_thumbnail``), at most
``max_in_flight`` at a time; answers are decoded in the worker thread
(:func:`decode_result`) and arrive as ``thumbnail_received``, which puts
the picture on the tile (``ClientsModel.set_thumbnail``).

Nothing is asked for a tile scrolled out of view, an offline agent, the
table view, a hidden or minimised window, or after :meth:`stop` (the
window closing). The timer only looks at the viewport (a binary search
over the rows, which the grid lays out in reading order), so hundreds of
clients cost nothing while the console is idle. The agent has the last
word: its local policy rate-limits thumbnails whatever a console asks, and
a refusal shows on the tile.
"""
from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QObject, QTimer
from PySide6.QtGui import QImage, QImageReader
from PySide6.QtWidgets import QAbstractItemView

from broker.core.thumbnail_request import COMMAND, DEFAULT_QUALITY, DEFAULT_WIDTH, MAX_WIDTH
from broker.core.vocabulary import DONE
from gui import qtcompat  # noqa: F401  (guards the Qt binding before any Qt call)
from gui.models import ClientsModel

log = logging.getLogger(__name__)

#: a thumbnail answer bigger than this, or with larger sides, is not decoded
MAX_THUMBNAIL_BYTES = 256 * 1024
MAX_THUMBNAIL_SIDE = 2 * MAX_WIDTH

__all__ = ["COMMAND", "ThumbnailConfig", "ThumbnailScheduler", "decode_result"]


@dataclass
class ThumbnailConfig:
    """How the console refreshes tile thumbnails (the agent's policy may refuse more)."""

    #: each visible online tile is refreshed this often (0: no thumbnails)
    interval_s: float = 15.0
    #: thumbnail requests waiting for an answer, at most
    max_in_flight: int = 4
    #: how often the viewport is looked at
    tick_s: float = 1.0
    #: after a scroll or a change of the grid, ask once it has been still this long
    settle_ms: int = 300
    width: int = DEFAULT_WIDTH
    quality: int = DEFAULT_QUALITY
    #: a request not run by then expires (broker and agent): a picture is for now or never
    ttl_s: float = 20.0
    #: a request never answered frees its slot after this
    give_up_s: float = 30.0
    #: the reason the broker's audit trail and the employee's access log record
    reason: str = "client tile thumbnail in the operator console"
    #: pictures kept for tiles out of view at most (the oldest go first; ~130 KB each)
    max_kept: int = 200


def decode_result(data: dict) -> tuple[QImage, str]:
    """A ``thumbnail`` RESULT body as ``(image, "")``, or ``(null image, why not)``.

    Runs in the worker thread. The JPEG's size is read from its header
    before anything is decoded: an agent cannot make the console allocate
    a huge picture.
    """
    result = data.get("result") if isinstance(data.get("result"), dict) else {}
    if data.get("status") != DONE:
        return QImage(), str(result.get("error") or data.get("status") or "failed")
    output = result.get("output") if isinstance(result.get("output"), dict) else {}
    jpeg = output.get("image")
    if not isinstance(jpeg, (bytes, bytearray)) or not jpeg:
        return QImage(), "the agent sent no picture"
    if len(jpeg) > MAX_THUMBNAIL_BYTES:
        return QImage(), f"the agent sent {len(jpeg)} bytes, more than a thumbnail"
    buffer = QBuffer()
    buffer.setData(QByteArray(bytes(jpeg)))
    buffer.open(QIODevice.OpenModeFlag.ReadOnly)
    reader = QImageReader(buffer, b"jpeg")
    size = reader.size()
    if not size.isValid() or size.width() > MAX_THUMBNAIL_SIDE or size.height() > MAX_THUMBNAIL_SIDE:
        return QImage(), "the agent sent no usable JPEG"
    image = reader.read()
    if image.isNull():
        return QImage(), f"the agent sent no usable JPEG ({reader.errorString()})"
    return image, ""


class ThumbnailScheduler(QObject):
    """Keeps the visible tiles' thumbnails fresh. ``start()`` once the worker runs; ``stop()`` on close.

    ``worker`` is the :class:`~gui.bus_worker.BusWorker`; ``view`` shows
    the clients (its model's rows carry ``ClientsModel`` roles);
    ``clients`` is the model whose ``set_thumbnail`` shows a picture;
    ``delegate`` (optional) is the tile delegate, told whether thumbnails
    are shown and what to say on a tile without one. ``clock`` is
    injectable (tests drive :meth:`tick` themselves).
    """

    def __init__(self, worker, view: QAbstractItemView, clients: ClientsModel, delegate=None,
                 config: ThumbnailConfig | None = None, clock: Callable[[], float] = time.monotonic, parent=None):
        super().__init__(parent)
        self.worker = worker
        self.view = view
        self.clients = clients
        self.delegate = delegate
        self.config = config or ThumbnailConfig()
        self.clock = clock
        self.enabled = self.config.interval_s > 0
        self._running = False
        self._ready = False
        self._in_flight: dict[str, tuple[str, float]] = {}  # command id -> (client id, sent at)
        self._due: dict[str, float] = {}  # client id -> when its next picture is due
        self._notes: dict[str, str] = {}  # client id -> why its tile has no fresh picture
        self._kept: dict[str, float] = {}  # client id -> when its picture was set (oldest first)
        self._may_look = True  # viewers may not see screens (the broker refuses their commands)
        self.timer = QTimer(self)
        self.timer.setInterval(int(self.config.tick_s * 1000))
        self.timer.timeout.connect(self.tick)
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(self.config.settle_ms)
        self._settle.timeout.connect(self.tick)
        worker.connection_changed.connect(self._on_connection)
        worker.welcomed.connect(self._on_welcomed)
        worker.thumbnail_received.connect(self._on_thumbnail)
        worker.request_failed.connect(self._on_request_failed)
        view.verticalScrollBar().valueChanged.connect(self._soon)
        model = view.model()
        for signal in (model.rowsInserted, model.rowsRemoved, model.layoutChanged, model.modelReset):
            signal.connect(self._soon)
        self._tell_delegate()

    # -- life --------------------------------------------------------------------
    def start(self) -> None:
        """Begin looking at the viewport every ``tick_s``."""
        self._running = True
        if self.enabled:
            self.timer.start()

    def stop(self) -> None:
        """No more requests (the window is closing); answers still in flight are ignored."""
        self._running = False
        self.timer.stop()
        self._settle.stop()
        self._in_flight.clear()

    def set_enabled(self, on: bool) -> None:
        """Show thumbnails on the tiles (and refresh them) or not."""
        self.enabled = bool(on) and self.config.interval_s > 0
        self._tell_delegate()
        if self.enabled and self._running:
            self.timer.start()
            self._soon()
        else:
            self.timer.stop()
            self._settle.stop()

    @property
    def active(self) -> bool:
        """True when a tick may ask for pictures: running, enabled, connected, the grid on screen."""
        view = self.view
        return (self._running and self.enabled and self._ready and self._may_look and view.isVisible()
                and not view.window().isMinimized())

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def note(self, client_id: str) -> str:
        """Why ``client_id``'s tile shows no fresh picture ("" when nothing went wrong)."""
        if not self._may_look:
            return "screens are for operators"
        return self._notes.get(client_id, "")

    # -- the work ----------------------------------------------------------------
    def visible_clients(self) -> list[str]:
        """Online clients whose tile intersects the viewport, top to bottom (empty while not shown)."""
        view = self.view
        if not view.isVisible() or view.window().isMinimized():
            return []
        model = view.model()
        area = view.viewport().rect()
        rows = model.rowCount()

        def rect(row: int):
            return view.visualRect(model.index(row, 0))

        first = bisect.bisect_left(range(rows), area.top(), key=lambda row: rect(row).bottom())
        ids = []
        for row in range(first, rows):
            tile = rect(row)
            if tile.top() > area.bottom():
                break
            index = model.index(row, 0)
            if tile.intersects(area) and index.data(ClientsModel.StateRole) == "online":
                ids.append(index.data(ClientsModel.ClientIdRole))
        return ids

    def tick(self) -> list[str]:
        """Ask for the pictures that are due, within the in-flight limit; the client ids asked."""
        now = self.clock()
        for cmd_id, (client_id, sent) in list(self._in_flight.items()):
            if now - sent > self.config.give_up_s:  # lost on the way (a reconnect): free the slot
                self._finish(cmd_id, QImage(), "no answer from the agent")
        if not self.active:
            return []
        free = self.config.max_in_flight - len(self._in_flight)
        if free <= 0:
            return []
        busy = {client_id for client_id, _ in self._in_flight.values()}
        due = [c for c in self.visible_clients() if c not in busy and self._due.get(c, 0.0) <= now]
        due.sort(key=lambda c: self._due.get(c, 0.0))  # never shown first, then the longest waiting
        args = {"width": self.config.width, "quality": self.config.quality, "reason": self.config.reason}
        for client_id in due[:free]:
            cmd_id = self.worker.request_thumbnail(client_id, args, self.config.ttl_s)
            self._in_flight[cmd_id] = (client_id, now)
        return due[:free]

    # -- signals -------------------------------------------------------------------
    def _soon(self, *_: Any) -> None:
        if self._running and self.enabled:
            self._settle.start()

    def _on_connection(self, state: str, detail: str) -> None:
        self._ready = state == "ready"
        if self._ready:
            self._soon()

    def _on_welcomed(self, info: dict) -> None:
        self._may_look = info.get("role") in ("operator", "admin")

    def _on_thumbnail(self, cmd_id: str, client_id: str, image: QImage, error: str) -> None:
        self._finish(cmd_id, image, error)

    def _on_request_failed(self, req_id: str, op: str, error: str) -> None:
        if req_id in self._in_flight:
            self._finish(req_id, QImage(), error)

    def _finish(self, cmd_id: str, image: QImage, error: str) -> None:
        entry = self._in_flight.pop(cmd_id, None)
        if entry is None:
            return  # after stop(), or not ours
        client_id = entry[0]  # ours, whatever the answer claims
        self._due[client_id] = self.clock() + self.config.interval_s
        if image.isNull():
            if self._notes.get(client_id) != error:
                self._notes[client_id] = error
                self.view.viewport().update()  # the tile says why
            log.debug("no thumbnail of %s: %s", client_id, error)
        else:
            self._notes.pop(client_id, None)
            self.clients.set_thumbnail(client_id, image)
            self._kept.pop(client_id, None)
            self._kept[client_id] = self.clock()
            self._forget_old()
        self._soon()  # a slot is free: the next due tile need not wait for the timer

    def _forget_old(self) -> None:
        """Drop the oldest pictures of tiles out of view beyond ``max_kept``."""
        extra = len(self._kept) - self.config.max_kept
        if extra <= 0:
            return
        visible = set(self.visible_clients())
        for client_id in [c for c in self._kept if c not in visible][:extra]:
            del self._kept[client_id]
            self.clients.set_thumbnail(client_id, None)

    def _tell_delegate(self) -> None:
        if self.delegate is None:
            return
        self.delegate.thumbnails_shown = self.enabled
        self.delegate.thumbnail_note = self.note
        self.view.doItemsLayout()  # the tile size depends on it
        self.view.viewport().update()
