"""PNGs of the console for the docs (the ``make screenshots`` target).

    python -m bench.harness.screenshots docs/screenshots         # against a demo stack it starts
    python -m bench.harness.screenshots OUT --data-dir var       # against a running `ems up`

Without a display it renders offscreen. The demo stack (:mod:`bench.harness.demo`) is
eight simulated agents, two of them offline, with a few hours of history.
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QEventLoop, QTimer

from broker.core.profile import load as load_profile
from gui import theme
from gui.bus_worker import BusWorker, profile_client_factory
from gui.main_window import MainWindow

log = logging.getLogger(__name__)


def run_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Run the Qt event loop until ``predicate()`` holds; RuntimeError after ``timeout_s``."""
    loop = QEventLoop()
    deadline = time.monotonic() + timeout_s
    timer = QTimer()
    timer.timeout.connect(lambda: loop.quit() if predicate() or time.monotonic() > deadline else None)
    timer.start(25)
    if not predicate():
        loop.exec()
    timer.stop()
    if not predicate():
        raise RuntimeError(f"screenshots: timed out after {timeout_s:.0f} s waiting for {what}")


def pause(seconds: float) -> None:
    """Let the event loop run (live updates arrive, widgets repaint)."""
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def save_screenshots(out_dir: str | Path, data_dir: str | Path | None = None, client_id: str | None = None,
                     timeout_s: float = 30.0) -> list[Path]:
    """Save PNGs of the console to ``out_dir``; returns their paths.

    With ``data_dir`` the console connects to that running stack (its
    operator profile); without, a :class:`~bench.harness.demo.DemoStack` is started in
    this process and stopped afterwards. ``client_id`` picks the client shown
    in the details (default: the busiest online one).
    """
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from gui.app import application

    app = application()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stack = None
    if data_dir is None:
        from bench.harness.demo import DemoStack

        stack = DemoStack(Path(tempfile.mkdtemp(prefix="ems-screenshots-"))).start()
        data_dir = stack.data_dir
    window = MainWindow(BusWorker(profile_client_factory(str(data_dir))), theme_name=theme.DARK)
    saved: list[Path] = []

    def save(widget, name: str) -> None:
        _save(widget, out / name, saved)

    try:
        window.resize(1440, 900)
        window.show()
        clients = window.clients
        run_until(lambda: window._ready and clients.rowCount() > 0, timeout_s, "the console to connect")
        run_until(lambda: all(c.cpu_percent is not None for c in map(clients.client, clients.client_ids()) if c.online),
                  timeout_s, "every online client's first sysinfo")
        if client_id is None:
            online = [clients.client(c) for c in clients.client_ids() if clients.client(c).online]
            client_id = max(online, key=lambda c: c.cpu_percent or 0).client_id if online else clients.client_ids()[0]
        run_until(lambda: window.select_client(client_id), timeout_s, f"client {client_id}")
        run_until(lambda: window.history["sessions"].rowCount() > 0 and window.chart.cpu.count() > 0,
                  timeout_s, "the selected client's history")
        run_until(lambda: all(clients.client(c).thumbnail is not None or not clients.client(c).online
                              for c in window.thumbnails.visible_clients()), timeout_s, "the visible tiles' thumbnails")
        window.tabs.setCurrentWidget(window.tabs_by_kind["security"])
        pause(2.5)  # a few live sysinfo points after the stored ones; the command log fills
        save(window, "console-dark.png")
        save(window.fleet_stack, "grid-tiles.png")
        save(window.details, "details-security.png")

        window.tabs.setCurrentWidget(window.tabs_by_kind["captures"])
        captures = window.history["captures"]
        run_until(lambda: captures.rowCount() > 0 and all(r.get("thumbnail") is not None for r in captures.rows()),
                  timeout_s, "the capture previews")
        pause(0.3)
        save(window.details, "captures.png")

        dialog = window.run_action("reboot")
        if dialog is not None:
            dialog.reason_edit.setText("user reports a frozen desktop; agreed on the phone")
            pause(0.3)
            save(dialog, "confirm-reboot.png")
            dialog.reject()

        chat = window.open_chat(client_id)
        if chat is not None:
            chat.resize(520, 420)
            for text in ("Hi, this is IT. We will restart your PC at 12:00 for an update.",
                         "Please save your work before then."):
                chat.text.setText(text)
                message_id = chat.send()
                run_until(lambda m=message_id: (chat.model.status(m) or "sending") != "sending", timeout_s,
                          "the broker to take the chat message")
            pause(0.5)
            save(chat, "chat.png")
            chat.close()

        if stack is not None:
            save_live_view(window, stack, out, saved, timeout_s)

        window.set_theme(theme.LIGHT)
        window.set_fleet_view("table")
        window.tabs.setCurrentWidget(window.tabs_by_kind["audit"])
        pause(1.0)
        save(window, "console-light-table.png")
    finally:
        window.close()
        if stack is not None:
            stack.stop()
    app.processEvents()
    return saved


def save_live_view(window: MainWindow, stack, out: Path, saved: list[Path], timeout_s: float) -> None:
    """The live-view window on a real agent: a private Xvfb showing a scrolling
    text window (a real X client), a real ``ems agent`` on it, enrolled in the
    demo stack. Skipped, with a message, where Xvfb is not installed."""
    from bench.harness.pattern import Pattern
    from bench.harness.xvfb import Xvfb, XvfbError
    from broker.core import keys
    from broker.core.client import BusClient
    from broker.core.config import ClientConfig

    agent_dir = stack.root / "agents" / "desk-live"
    pair = keys.load_or_create(agent_dir / "keys", "agent")
    profile = load_profile(stack.data)
    admin = BusClient(ClientConfig(server=profile.server, server_key=profile.server_key), keys.load(stack.data.keys, profile.key_name))
    try:
        admin.connect()
        admin.wait_ready(timeout_s)
        admin.request("keys.add", public_key=pair.public, client_id="desk-live", role="agent", label="Front desk (live)")
    finally:
        admin.close()
    try:
        xvfb = Xvfb(1280, 720).start()
    except XvfbError as exc:
        print(f"no live-view screenshot: {exc}", file=sys.stderr)
        return
    agent = None
    try:
        with Pattern(xvfb.display, 1280, 720) as pattern:
            pattern.window("doc", 60, 50, 900, 560)
            pattern.rect("note", 1000, 80, 220, 140, "#3b7dd8")
            pattern.scroll("doc", step_px=4, interval_ms=80)
            agent = subprocess.Popen([sys.executable, "-m", "broker.cli.main", "--log-level", "WARNING", "agent", "--data-dir",
                                      str(agent_dir), "--server", profile.server, f"--server-key={profile.server_key}", "--id", "desk-live",
                                      "--heartbeat-s", "0.5", "--access-dir", str(agent_dir / "access")],
                                     env={**os.environ, "DISPLAY": xvfb.display},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            run_until(lambda: "desk-live" in window.clients.client_ids() and window.clients.client("desk-live").online,
                      timeout_s, "the live agent to come online")
            live = window.open_live_view("desk-live", "the user asked for help with a dialog")
            live.resize(1000, 640)
            run_until(lambda: live.frames >= 5, timeout_s, "live frames")
            pause(1.0)
            _save(live, out / "live-view.png", saved)
            live.close()
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(10)
        xvfb.stop()


def _save(widget, path: Path, saved: list[Path]) -> None:
    if not widget.grab().save(str(path)):
        raise RuntimeError(f"could not write {path}")
    saved.append(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", nargs="?", default="docs/screenshots", help="where the PNGs go (default %(default)s)")
    p.add_argument("--data-dir", help="a running stack's data dir (default: start a demo stack)")
    p.add_argument("--client", help="the client shown in the details")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for path in save_screenshots(args.out_dir, args.data_dir, args.client):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
