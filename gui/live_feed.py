"""The console's live messages, sorted into batches for the GUI thread.

:class:`LiveFeed` runs on the bus thread (it is the bus worker's
``on_envelope``): it sorts each live message into plain Python lists
(presence, sysinfo, security, audit, command status/results...) and hands
them to the GUI together at most every ``flush_s``, so that 500 agents
reporting every second cost the GUI thread ten small updates a second, not
five hundred. Watched screens are applied to a canvas here, off the GUI
thread, and come out as thumbnails (and full size for a live-view window).
"""
from __future__ import annotations

import logging
import time
from typing import Any

from PySide6.QtGui import QImage

from broker.core.envelope import Envelope, Kind
from broker.core.errors import ProtocolError
from gui.thumbnails import COMMAND as THUMBNAIL_COMMAND
from gui.thumbnails import decode_result as decode_thumbnail

log = logging.getLogger(__name__)

#: what the console keeps of a sysinfo report
SYSINFO_FIELDS = ("hostname", "logged_in_user", "os", "cpu_percent", "memory_percent", "disk_percent", "disk_percent_mount")

#: bucket -> name of the worker's signal that carries it
BUCKET_SIGNALS = {
    "presence": "presence_changed",
    "sysinfo": "sysinfo_received",
    "security": "security_received",
    "audit": "audit_received",
    "captures": "captures_received",
    "status": "command_status",
    "results": "command_result",
    "chat": "chat_received",
}


class LiveFeed:
    """Sorts envelopes into buckets and emits them through ``signals`` (the Qt bus worker)."""

    def __init__(self, signals: Any, flush_s: float, thumbnail_width: int, thumbnail_interval_s: float, stats: dict):
        self.signals = signals
        self.flush_s = flush_s
        self.thumbnail_width = thumbnail_width
        self.thumbnail_interval_s = thumbnail_interval_s
        self.stats = stats
        #: command ids sent and not finished (asked about after a reconnect)
        self.open_commands: set[str] = set()
        #: clients with a live-view window open (full-size frames); set from the GUI thread
        self.full_views: set[str] = set()
        self._pending: dict[str, list] = {}
        self._last_flush = 0.0
        self._canvases: dict = {}  # client id -> broker.core.screen_frames.LiveCanvas
        self._thumbnail_at: dict[str, float] = {}

    def remember(self, item: dict, bucket: str) -> None:
        self._pending.setdefault(bucket, []).append(item)

    def forget_frames(self, client_id: str) -> None:
        self._canvases.pop(client_id, None)

    def next_flush_s(self) -> float | None:
        """Seconds until pending items are due (None: nothing pending)."""
        if not self._pending:
            return None
        return max(0.0, self._last_flush + self.flush_s - time.monotonic())

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self._pending or (not force and now - self._last_flush < self.flush_s):
            return
        self._last_flush = now
        pending, self._pending = self._pending, {}
        self.stats["flushes"] += 1
        for bucket, items in pending.items():
            getattr(self.signals, BUCKET_SIGNALS[bucket]).emit(items)

    def take(self, env: Envelope) -> None:
        """Sort one live message (called on the bus thread)."""
        self.stats["received"] += 1
        kind = env.kind
        if kind is Kind.FRAME:
            self._take_frame(env)
            return
        if kind not in (Kind.PRESENCE, Kind.EVENT, Kind.SECURITY, Kind.COMMAND_STATUS, Kind.RESULT):
            return  # late replies, acks...
        try:
            data = env.data()
        except ProtocolError as exc:
            self.stats["undecodable"] += 1
            log.debug("dropped an undecodable %s on %s: %s", kind.name, env.topic, exc)
            return
        if not isinstance(data, dict):
            self.stats["undecodable"] += 1
            return
        self._sort(env, data, {"msg_id": env.msg_id, "ts": env.header.ts})

    def _sort(self, env: Envelope, data: dict, meta: dict) -> None:
        kind, topic = env.kind, env.topic
        if kind is Kind.PRESENCE:
            client_id = topic.split(".", 1)[1] if "." in topic else data.get("client_id", "")
            self.remember({**meta, "client_id": client_id, "state": data.get("state"), "reason": data.get("reason"),
                           "info": data.get("info") if isinstance(data.get("info"), dict) else {}}, "presence")
        elif kind is Kind.SECURITY:
            self.remember({**data, **meta, "sender": env.sender, "topic": topic}, "security")
        elif kind is Kind.COMMAND_STATUS:
            if data.get("name") != THUMBNAIL_COMMAND:  # tile thumbnails stay out of the command log
                self.remember(data, "status")
        elif kind is Kind.RESULT and data.get("name") == THUMBNAIL_COMMAND:
            self.signals.thumbnail_received.emit(str(data.get("id")), str(data.get("target")), *decode_thumbnail(data))
        elif kind is Kind.RESULT:
            self.open_commands.discard(str(data.get("id")))
            self.remember(data, "results")
        elif topic.startswith("audit."):
            self.remember({**data, **meta}, "audit")
        elif topic.startswith("event."):
            self._take_event(env, data, meta)

    def _take_event(self, env: Envelope, data: dict, meta: dict) -> None:
        parts = env.topic.split(".", 2)
        if len(parts) < 3 or not env.sender:
            return
        name = parts[2]
        if name == "sysinfo":  # the few fields the console shows (a full report carries disks, networks...)
            self.remember({k: data.get(k) for k in SYSINFO_FIELDS} | meta | {"client_id": env.sender}, "sysinfo")
        elif name == "chat":
            self.remember({**data, **meta, "client_id": env.sender}, "chat")
        elif name == "capture":  # a notice only: the image stays out of the GUI thread
            image = data.get("image")
            self.remember({k: data.get(k) for k in ("width", "height", "format", "quality", "operator")}
                          | meta | {"client_id": env.sender, "size": len(image) if isinstance(image, (bytes, bytearray)) else None},
                          "captures")

    def _take_frame(self, env: Envelope) -> None:
        """A watched screen's updates (bodies per :mod:`broker.core.screen_frames`), applied here."""
        from broker.core.screen_frames import APPLIED, GAP, LiveCanvas, parse  # only when someone watches

        sender = env.sender
        if not env.topic.startswith(f"frame.{sender}."):
            return
        canvas = self._canvases.get(sender)
        if canvas is None:
            canvas = self._canvases[sender] = LiveCanvas()
        try:
            update = parse(env.body)
            outcome = canvas.apply(update)
        except ProtocolError as exc:
            self.stats["frames_dropped"] += 1
            log.debug("dropped a live-view update from %s: %s", sender, exc)
            return
        if sender in self.full_views:
            if outcome == GAP:
                self.signals.live_gap.emit(sender)
            elif outcome == APPLIED and canvas.image is not None and update.part == update.parts - 1:
                self.signals.live_frame.emit(sender, _qimage(canvas.image), update.ts, canvas.updates)
        now = time.monotonic()
        if outcome != APPLIED or canvas.image is None or now - self._thumbnail_at.get(sender, 0.0) < self.thumbnail_interval_s:
            return
        self._thumbnail_at[sender] = now
        picture = canvas.image.copy()
        picture.thumbnail((self.thumbnail_width, self.thumbnail_width))
        self.signals.frame_received.emit(sender, _qimage(picture))


def _qimage(picture) -> QImage:
    """A PIL image as a QImage that owns its pixels."""
    rgb = picture if picture.mode == "RGB" else picture.convert("RGB")
    return QImage(rgb.tobytes(), rgb.width, rgb.height, 3 * rgb.width, QImage.Format.Format_RGB888).copy()
