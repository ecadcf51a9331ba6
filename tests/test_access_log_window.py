"""The window "What IT did on this computer" on a real X display (Xvfb): found by its
title and size, exported from the keyboard, and photographed for docs/screenshots."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import mss
from PIL import Image
from test_notice_display import _x_tools, geometry, needs_x, windows_named, x_env, xdotool, xserver  # noqa: F401 (fixtures)

from agent.access_log import AccessEntry, AccessLog
from agent.access_log_window import HEIGHT_PX, WIDTH_PX, WINDOW_TITLE
from conftest import wait_for

#: `make screenshots` sets it to docs/screenshots; a plain test run keeps the picture in its temp dir
SHOTS_ENV = "EMS_SCREENSHOT_DIR"


def fill(log: AccessLog) -> None:
    """A morning's worth of entries, as the agent writes them (previews a minute apart)."""
    start = datetime.now().astimezone().replace(microsecond=0) - timedelta(hours=1)
    at = lambda minutes: start + timedelta(minutes=minutes)  # noqa: E731
    entries = [AccessEntry(at(0), "agent.start", "agent started", detail="version 0.1.0")]
    entries += [AccessEntry(at(2 + m), "thumbnail", "screen thumbnail", "Jane Doe", "client tile in the operator console",
                            "240x135") for m in range(12)]
    entries += [AccessEntry(at(20), "notice", "Screen captured", detail="Jane Doe took a picture of your screen (1280x720)"),
                AccessEntry(at(20), "capture", "screen captured", "Jane Doe", "ticket 4711: printer driver", "1280x720"),
                AccessEntry(at(31), "live_view.start", "live view started", "Bob Lee", "ticket 4712: VPN"),
                AccessEntry(at(33), "file.download", "file download", "Bob Lee", detail="/home/kim/vpn.log"),
                AccessEntry(at(40), "live_view.end", "live view ended", "Bob Lee", "stopped by the operator")]
    log.path.parent.mkdir(parents=True)
    log.path.write_text("".join(e.to_json() + "\n" for e in entries))


@needs_x
def test_the_window_shows_the_sentences_and_exports_them(x_env, tmp_path):
    log = AccessLog(tmp_path / "access" / "access.log")
    fill(log)
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-m", "agent.access_log_window", "--log", str(log.path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        [window] = wait_for(lambda: windows_named(f"^{WINDOW_TITLE}$"), 20, what="the access-log window")
        wait_for(lambda: geometry(window)[2:] == (WIDTH_PX, HEIGHT_PX), 10, what="the window at its size")
        x, y, width, height = geometry(window)
        xdotool("windowfocus", "--sync", window)
        xdotool("key", "--window", window, "ctrl+e")
        exported = home / f"ems-access-log-{date.today().isoformat()}.txt"
        wait_for(exported.exists, 10, what="the export file")
        text = exported.read_text()
        assert text.startswith(f"{WINDOW_TITLE} (from {log.path}")
        lines = text.splitlines()[2:]
        assert "Bob Lee stopped watching your screen (stopped by the operator)." in lines[0]
        assert "12 small previews of your screen by Jane Doe, reason: client tile in the operator console." in text
        assert sum("picture of your screen" in line for line in lines) == 1  # the notice is not told twice
        assert lines[-1].endswith("The EMS agent started (version 0.1.0).")
        with mss.MSS() as grabber:
            shot = grabber.grab({"left": x, "top": y, "width": width, "height": height})
        image = Image.frombytes("RGB", shot.size, shot.rgb)
        assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 4  # text drawn, not an empty frame
        shot = Path(os.environ.get(SHOTS_ENV) or tmp_path) / "access-log-window.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        image.save(shot)
    finally:
        proc.terminate()
        proc.wait(10)


@needs_x
def test_without_a_display_the_window_says_so(tmp_path):
    env = {**os.environ, "DISPLAY": "", "PYTHONPATH": os.getcwd()}
    done = subprocess.run([sys.executable, "-m", "agent.access_log_window", "--log", str(tmp_path / "none.log")],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "cannot open a window" in done.stderr
