"""A private X server (Xvfb) for tests and benchmarks.

Xvfb picks a free display number itself (``-displayfd``) and writes it
once it accepts connections; :class:`Xvfb` waits for that (and for the
socket ``/tmp/.X11-unix/X<n>``) with a timeout and stops the server by its
pid. It never touches ``DISPLAY``: pass :attr:`Xvfb.display` to whatever
needs it::

    with Xvfb(1280, 720) as x:
        env = {**os.environ, "DISPLAY": x.display}
"""
from __future__ import annotations

import logging
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)


class XvfbError(RuntimeError):
    """Xvfb is not installed or did not come up."""


class Xvfb:
    """One Xvfb process with a ``width`` x ``height`` x 24 screen."""

    def __init__(self, width: int = 1280, height: int = 720, depth: int = 24, timeout_s: float = 10.0):
        self.width, self.height, self.depth = width, height, depth
        self.timeout_s = timeout_s
        self.number: int | None = None
        self.proc: subprocess.Popen | None = None
        self._errors = None  # Xvfb's stderr, read if it fails to start

    @staticmethod
    def installed() -> bool:
        return shutil.which("Xvfb") is not None

    @property
    def display(self) -> str:
        if self.number is None:
            raise XvfbError("Xvfb is not running")
        return f":{self.number}"

    @property
    def socket_path(self) -> Path:
        return Path(f"/tmp/.X11-unix/X{self.number}")

    def start(self) -> "Xvfb":
        if not self.installed():
            raise XvfbError("Xvfb is not installed (installer/install.sh --dev installs it)")
        read_fd, write_fd = os.pipe()
        self._errors = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{self.width}x{self.height}x{self.depth}",
                 "-nolisten", "tcp", "-noreset"],
                pass_fds=(write_fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._errors,
            )
            os.close(write_fd)
            write_fd = -1
            self.number = self._read_display(read_fd)
        except BaseException:
            self.stop()
            raise
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
        deadline = time.monotonic() + self.timeout_s
        while not self.socket_path.exists():
            if time.monotonic() > deadline:
                self.stop()
                raise XvfbError(f"Xvfb :{self.number} did not create {self.socket_path} within {self.timeout_s} s")
            time.sleep(0.01)
        log.info("Xvfb %s (%dx%d) running as pid %d", self.display, self.width, self.height, self.proc.pid)
        return self

    def _read_display(self, fd: int) -> int:
        deadline = time.monotonic() + self.timeout_s
        data = b""
        while not data.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None:
                self._errors.seek(0)
                err = self._errors.read().decode(errors="replace").strip()[-500:]
                raise XvfbError(f"Xvfb did not come up within {self.timeout_s} s: {err or 'no message'}")
            ready, _, _ = select.select([fd], [], [], min(remaining, 0.2))
            if ready:
                chunk = os.read(fd, 64)
                if not chunk:
                    continue
                data += chunk
        return int(data.strip())

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self.timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(self.timeout_s)
        if self._errors is not None:
            self._errors.close()
            self._errors = None

    def screenshot(self, path: str | Path) -> Path:
        """Save the whole screen as a PNG (mss + its PNG writer); returns the path."""
        import mss
        import mss.tools

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with mss.MSS(display=self.display) as grabber:
            shot = grabber.grab(grabber.monitors[0])
            mss.tools.to_png(shot.rgb, shot.size, output=str(path))
        return path

    def __enter__(self) -> "Xvfb":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
