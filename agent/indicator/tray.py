"""The tray indicator: ``python -m agent.indicator.tray`` (Qt's QSystemTrayIcon).

The same JSON-lines protocol as the privacy bar (:mod:`agent.indicator.bar`):
a red eye icon in the system tray while accesses go on; its tooltip and
menu name who and why, with "End ..." entries where the agent allows one
and "Access log"; each change shows a balloon message. When the desktop has
no usable tray it prints ``{"event": "unavailable"}`` and exits 3, and the
agent shows the bar instead.
"""
from __future__ import annotations

import json
import queue
import sys
import threading

from agent.indicator.bar import WINDOW_TITLE as TITLE
from agent.indicator.bar import _line, read_commands

PUMP_MS = 50


def _emit(**event) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def _icon():
    from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap

    pixmap = QPixmap(32, 32)
    pixmap.fill(QColor(0, 0, 0, 0))
    painter = QPainter(pixmap)
    painter.setBrush(QColor("#c0392b"))
    painter.drawEllipse(2, 8, 28, 16)
    painter.setBrush(QColor("#ffffff"))
    painter.drawEllipse(11, 11, 10, 10)
    painter.end()
    return QIcon(pixmap)


class TrayIndicator:
    """The icon, its menu, and the pump that applies the agent's commands."""

    def __init__(self, app, commands: queue.Queue):
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QMenu, QSystemTrayIcon

        self.app, self.commands = app, commands
        self.menu = QMenu()
        self.icon = QSystemTrayIcon(_icon())
        self.icon.setContextMenu(self.menu)
        self.icon.setToolTip(TITLE)
        self.timer = QTimer()
        self.timer.timeout.connect(self.pump)
        self.timer.start(PUMP_MS)

    def show(self, accesses: list) -> None:
        self.menu.clear()
        lines = []
        for access in (a for a in accesses if isinstance(a, dict)):
            lines.append(_line(access))
            self.menu.addAction(lines[-1]).setEnabled(False)
            if access.get("endable"):
                key = str(access.get("key", ""))
                self.menu.addAction("End: " + str(access.get("text", ""))).triggered.connect(lambda _=False, k=key: _emit(event="end", key=k))
        self.menu.addSeparator()
        self.menu.addAction("Access log").triggered.connect(lambda: _emit(event="access_log"))
        self.icon.setToolTip(TITLE + "\n" + "\n".join(lines))
        self.icon.show()
        self.icon.showMessage(TITLE, "\n".join(lines))
        _emit(event="shown", count=len(lines))

    def pump(self) -> None:
        while True:
            try:
                command = self.commands.get_nowait()
            except queue.Empty:
                return
            if command is None or command.get("cmd") == "close":
                self.icon.hide()
                self.app.quit()
                return
            if command.get("cmd") == "show" and isinstance(command.get("accesses"), list):
                self.show(command["accesses"])


def main(argv: list[str] | None = None) -> int:
    try:
        from PySide6.QtWidgets import QApplication, QSystemTrayIcon
    except ImportError as exc:
        sys.stderr.write(f"EMS tray indicator: Qt is not installed: {exc}\n")
        _emit(event="unavailable")
        return 3
    app = QApplication(sys.argv[:1])
    app.setQuitOnLastWindowClosed(False)
    if not QSystemTrayIcon.isSystemTrayAvailable():
        _emit(event="unavailable")
        return 3
    commands: queue.Queue = queue.Queue()
    threading.Thread(target=read_commands, args=(commands,), name="stdin", daemon=True).start()
    TrayIndicator(app, commands)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
