"""Running the console as an application (what ``ems gui`` calls)."""
from __future__ import annotations

import os
import signal
import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from broker.core.errors import EmsError
from gui import theme
from gui.bus_worker import BusWorker, ClientFactory
from gui.main_window import MainWindow
from gui.thumbnails import ThumbnailConfig


def ensure_display() -> None:
    """Fail with advice instead of Qt aborting the process when there is no display."""
    if sys.platform.startswith("linux") and not os.environ.get("QT_QPA_PLATFORM") \
            and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise EmsError("no display: run the console in a desktop session (or over ssh -X), "
                       "or set QT_QPA_PLATFORM=offscreen for a headless run")


def application(argv: list[str] | None = None) -> QApplication:
    """The QApplication (made once)."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else sys.argv[:1])
        app.setApplicationName("EMS console")
        app.setOrganizationName("EMS")
    return app


def run_console(client_factory: ClientFactory, theme_name: str = theme.DARK, thumbnails: ThumbnailConfig | None = None) -> int:
    """Open the console and run until its window closes; the exit code of the event loop."""
    ensure_display()
    app = application()
    window = MainWindow(BusWorker(client_factory), theme_name=theme_name, thumbnails=thumbnails)
    # Ctrl-C / SIGTERM in the terminal close the window (Python handlers need
    # the interpreter to run now and then while Qt's loop waits)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: window.close())
    ticker = QTimer(window)
    ticker.timeout.connect(lambda: None)
    ticker.start(250)
    window.show()
    return app.exec()
