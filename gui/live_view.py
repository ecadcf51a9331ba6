"""The live-view window: one client's screen, full size, and remote control.

:class:`LiveViewWindow` is a top-level window. Opening it subscribes to the
client's frames through the worker (:meth:`BusWorker.watch_live`) and sends
``live.start`` (short ttl), renewed every ``lease_s / 3``; a lost update asks
for a full frame. Closing it sends ``live.stop`` and unsubscribes.

"Take control" asks for a reason and sends ``control.open``; once the agent
answers, mouse and key events on the picture become ``input`` commands,
in frame pixels (``frame_w``/``frame_h`` = the frame's size): moves are
batched (at most one command every ``INPUT_BATCH_MS``), clicks, wheel and
keys flush the batch at once. "Release" sends ``control.close``.
All bus I/O goes through the worker: signals in, its queue out.
"""
from __future__ import annotations

import time
from collections import deque

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import (
    QCloseEvent,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from broker.core.envelope import new_id
from broker.core.vocabulary import DONE
from gui.bus_worker import BusWorker

FPS = 10
QUALITY = 60
LEASE_S = 30.0
#: ttl of live.start: a view nobody renews must not start minutes later
START_TTL_S = 10.0
INPUT_BATCH_MS = 30

BUTTONS = {Qt.MouseButton.LeftButton: "left", Qt.MouseButton.RightButton: "right", Qt.MouseButton.MiddleButton: "middle"}
KEYS = {
    Qt.Key.Key_Return: "enter", Qt.Key.Key_Enter: "enter", Qt.Key.Key_Escape: "esc", Qt.Key.Key_Tab: "tab",
    Qt.Key.Key_Backspace: "backspace", Qt.Key.Key_Delete: "delete", Qt.Key.Key_Left: "left", Qt.Key.Key_Right: "right",
    Qt.Key.Key_Up: "up", Qt.Key.Key_Down: "down", Qt.Key.Key_Home: "home", Qt.Key.Key_End: "end",
    Qt.Key.Key_PageUp: "pageup", Qt.Key.Key_PageDown: "pagedown", Qt.Key.Key_Space: "space",
    **{getattr(Qt.Key, f"Key_F{n}"): f"f{n}" for n in range(1, 13)},
}


class FrameView(QWidget):
    """Paints the newest frame (fit to the widget, or 1:1) and turns input into frame-pixel events."""

    #: an input event map (x, y already in frame pixels)
    input_event = Signal(dict)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.image: QImage | None = None
        self.fit = True
        self.setMinimumSize(320, 180)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)

    def set_image(self, image: QImage) -> None:
        self.image = image
        self.update()

    def set_fit(self, fit: bool) -> None:
        self.fit = fit
        self.update()

    def target_rect(self) -> QRectF:
        """Where the frame is painted, in widget coordinates."""
        if self.image is None or self.image.isNull():
            return QRectF()
        w, h = self.image.width(), self.image.height()
        if not self.fit:
            return QRectF(0, 0, w, h)
        scale = min(self.width() / w, self.height() / h)
        sw, sh = w * scale, h * scale
        return QRectF((self.width() - sw) / 2, (self.height() - sh) / 2, sw, sh)

    def to_frame(self, pos: QPointF) -> tuple[int, int] | None:
        """A widget point in frame pixels (None outside the picture)."""
        rect = self.target_rect()
        if rect.isEmpty() or not rect.contains(pos):
            return None
        x = (pos.x() - rect.x()) * self.image.width() / rect.width()
        y = (pos.y() - rect.y()) * self.image.height() / rect.height()
        return min(int(x), self.image.width() - 1), min(int(y), self.image.height() - 1)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), Qt.GlobalColor.black)
        if self.image is not None and not self.image.isNull():
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.fit)
            painter.drawImage(self.target_rect(), self.image)
        else:
            painter.setPen(Qt.GlobalColor.lightGray)
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Waiting for the first frame…")
        painter.end()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        point = self.to_frame(event.position())
        if point is not None:
            self.input_event.emit({"type": "move", "x": point[0], "y": point[1]})

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        point, button = self.to_frame(event.position()), BUTTONS.get(event.button())
        if point is not None and button is not None:
            self.input_event.emit({"type": "click", "x": point[0], "y": point[1], "button": button, "clicks": 1})

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        self.mousePressEvent(event)  # the second click of a double click

    def wheelEvent(self, event: QWheelEvent) -> None:
        point = self.to_frame(event.position())
        delta = event.angleDelta()
        dx, dy = int(delta.x() / 120), int(delta.y() / 120)
        if point is not None and (dx or dy):
            self.input_event.emit({"type": "wheel", "x": point[0], "y": point[1], "dx": dx, "dy": dy})

    def keyPressEvent(self, event: QKeyEvent) -> None:
        name = KEYS.get(event.key())
        mods = event.modifiers()
        prefix = "".join(p for flag, p in ((Qt.KeyboardModifier.ControlModifier, "ctrl+"),
                                           (Qt.KeyboardModifier.AltModifier, "alt+")) if mods & flag)
        if name is not None:
            self.input_event.emit({"type": "key", "key": prefix + name})
        elif prefix and event.text() and event.text().isprintable():
            self.input_event.emit({"type": "key", "key": prefix + event.text().lower()})
        elif event.text() and event.text().isprintable():
            self.input_event.emit({"type": "text", "text": event.text()})
        else:
            super().keyPressEvent(event)


class LiveViewWindow(QWidget):
    """A separate top-level window showing ``client_id``'s screen live."""

    #: control state: off, opening, on
    control_changed = Signal(str)

    def __init__(self, worker: BusWorker, client_id: str, title: str | None = None, lease_s: float = LEASE_S,
                 fps: int = FPS, quality: int = QUALITY, ask_reason=None, parent=None, *, reason: str):
        super().__init__(parent, Qt.WindowType.Window)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.worker, self.client_id = worker, client_id
        self.lease_s, self.fps, self.quality = lease_s, fps, quality
        #: why the operator watches: sent with every live.start (the broker refuses one without)
        self.reason = reason
        self.setWindowTitle(f"Live view: {title or client_id}")
        self.frames = 0
        self.latency_s: float | None = None
        self.control = "off"
        self._ask_reason = ask_reason or self._reason_dialog
        self._arrivals: deque[float] = deque(maxlen=60)
        self._pending_input: list[dict] = []
        self._my_commands: dict[str, str] = {}  # command id -> what it was (control.open...)
        self._closed = False

        self.view = FrameView(self)
        self.view.input_event.connect(self._on_input)
        self.stats_label = QLabel("connecting…")
        self.fit_box = QCheckBox("Fit to window")
        self.fit_box.setChecked(True)
        self.fit_box.toggled.connect(self.view.set_fit)
        self.full_button = QPushButton("Full screen")
        self.full_button.clicked.connect(self._toggle_full_screen)
        self.control_button = QPushButton("Take control")
        self.control_button.clicked.connect(self._toggle_control)
        self.control_label = QLabel("")
        bar = QHBoxLayout()
        for w in (self.stats_label, self.control_label):
            bar.addWidget(w)
        bar.addStretch(1)
        for w in (self.fit_box, self.full_button, self.control_button):
            bar.addWidget(w)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addWidget(self.view, 1)
        self.resize(960, 600)

        worker.live_frame.connect(self._on_frame)
        worker.live_gap.connect(self._on_gap)
        worker.command_result.connect(self._on_results)
        worker.request_failed.connect(self._on_failed)
        self._renew_timer = QTimer(self, interval=int(lease_s / 3 * 1000))
        self._renew_timer.timeout.connect(lambda: self._start(full=False))
        self._input_timer = QTimer(self, interval=INPUT_BATCH_MS, singleShot=True)
        self._input_timer.timeout.connect(self._flush_input)
        self._stats_timer = QTimer(self, interval=500)
        self._stats_timer.timeout.connect(self._update_stats)

        worker.watch_live(client_id)
        self._start(full=True)
        self._renew_timer.start()
        self._stats_timer.start()

    # -- the view ----------------------------------------------------------------------
    def _command(self, name: str, args: dict, ttl_s: float | None = None) -> str:
        cmd_id = new_id()
        self._my_commands[cmd_id] = name
        return self.worker.send_command(self.client_id, name, args, ttl_s=ttl_s, cmd_id=cmd_id)

    def _start(self, full: bool) -> None:
        self._command("live.start", {"fps": self.fps, "quality": self.quality, "lease_s": self.lease_s, "full": full,
                                     "reason": self.reason},
                      ttl_s=START_TTL_S)

    def _on_frame(self, client_id: str, image: QImage, ts: float, updates: int) -> None:
        if client_id != self.client_id:
            return
        self.frames += 1
        now = time.time()
        self.latency_s = max(0.0, now - ts) if ts else None
        self._arrivals.append(time.monotonic())
        self.view.set_image(image)

    def _on_gap(self, client_id: str) -> None:
        if client_id == self.client_id:
            self._start(full=True)

    def frame_rate(self) -> float:
        arrivals = [t for t in self._arrivals if time.monotonic() - t <= 3.0]
        if len(arrivals) < 2:
            return 0.0
        return (len(arrivals) - 1) / max(arrivals[-1] - arrivals[0], 1e-6)

    def _update_stats(self) -> None:
        size = f"{self.view.image.width()}×{self.view.image.height()}" if self.view.image is not None else "no frame yet"
        latency = f"{self.latency_s * 1000:.0f} ms" if self.latency_s is not None else "–"
        self.stats_label.setText(f"{size} · {self.frame_rate():.1f} fps · latency {latency} · {self.frames} frames")

    def _toggle_full_screen(self) -> None:
        if self.isFullScreen():
            self.showNormal()
            self.full_button.setText("Full screen")
        else:
            self.showFullScreen()
            self.full_button.setText("Leave full screen")

    # -- control -----------------------------------------------------------------------
    def _reason_dialog(self) -> str | None:
        text, ok = QInputDialog.getText(self, "Take control", "Reason (shown to the user, kept in the access log):")
        return text.strip() if ok and text.strip() else None

    def take_control(self, reason: str) -> None:
        if not reason.strip() or self.control != "off":
            return
        self._set_control("opening")
        self._command("control.open", {"reason": reason.strip()}, ttl_s=START_TTL_S)

    def release_control(self) -> None:
        if self.control == "off":
            return
        self._flush_input()
        self._set_control("off")
        self._command("control.close", {}, ttl_s=START_TTL_S)

    def _toggle_control(self) -> None:
        if self.control == "off":
            reason = self._ask_reason()
            if reason:
                self.take_control(reason)
        else:
            self.release_control()

    def _set_control(self, state: str, detail: str = "") -> None:
        self.control = state
        self.control_button.setText("Take control" if state == "off" else "Release")
        self.control_label.setText({"opening": "asking for control…", "on": "IN CONTROL"}.get(state, detail))
        self.view.setCursor(Qt.CursorShape.CrossCursor if state == "on" else Qt.CursorShape.ArrowCursor)
        self.control_changed.emit(state)

    def _on_results(self, items: list) -> None:
        for item in items:
            name = self._my_commands.pop(str(item.get("id")), None)
            if name is None:
                continue
            ok = item.get("status") == DONE
            if name == "control.open" and self.control == "opening":
                if ok:
                    self._set_control("on")
                else:
                    self._set_control("off", f"control refused: {_error(item)}")
            elif name == "input" and not ok and self.control == "on":
                self._set_control("off", f"input failed: {_error(item)}")

    def _on_failed(self, req_id: str, op: str, error: str) -> None:
        name = self._my_commands.pop(req_id, None)
        if name == "control.open" and self.control == "opening":
            self._set_control("off", f"control refused: {error}")

    def _on_input(self, event: dict) -> None:
        if self.control != "on":
            return
        if event["type"] == "move":
            if self._pending_input and self._pending_input[-1]["type"] == "move":
                self._pending_input[-1] = event  # the newest position is what counts
            else:
                self._pending_input.append(event)
            if not self._input_timer.isActive():
                self._input_timer.start()
            return
        self._pending_input.append(event)
        self._flush_input()

    def _flush_input(self) -> None:
        self._input_timer.stop()
        if not self._pending_input or self.view.image is None:
            return
        events, self._pending_input = self._pending_input, []
        self._command("input", {"events": events, "frame_w": self.view.image.width(), "frame_h": self.view.image.height()},
                      ttl_s=START_TTL_S)

    # -- closing -----------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._closed:
            self._closed = True
            for timer in (self._renew_timer, self._input_timer, self._stats_timer):
                timer.stop()
            if self.control != "off":
                self.release_control()
            self._command("live.stop", {"reason": "the operator closed the live view"}, ttl_s=START_TTL_S)
            self.worker.unwatch_frames(self.client_id)
            for signal, slot in ((self.worker.live_frame, self._on_frame), (self.worker.live_gap, self._on_gap),
                                 (self.worker.command_result, self._on_results),
                                 (self.worker.request_failed, self._on_failed)):
                try:
                    signal.disconnect(slot)
                except (RuntimeError, TypeError):
                    pass
        super().closeEvent(event)


def _error(item: dict) -> str:
    result = item.get("result")
    if isinstance(result, dict):
        return str(result.get("error") or item.get("status"))
    return str(item.get("status"))
