"""A child process that talks JSON lines: commands on its stdin, events on its stdout.

The agent's loop must never block on a window, so a reader thread per child
turns its stdout into items on a shared :class:`queue.Queue` (``(child,
event)``, and ``(child, None)`` at end of file) that the loop drains with
``get_nowait``. The thread's life is the child's: it ends at end of file,
and :meth:`WindowProcess.stop` ends the child.
"""
from __future__ import annotations

import json
import logging
import queue
import subprocess
import threading
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

#: a line from a child longer than this is cut (and then fails to parse)
MAX_LINE_CHARS = 64 * 1024


class WindowProcess:
    """One GUI child: ``send`` commands to it, its events arrive on ``events``."""

    def __init__(self, argv: list[str], env: Mapping[str, str], events: queue.Queue, key: Any):
        self.key = key
        self.events = events
        self.proc = subprocess.Popen(
            argv,
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
        )
        self.eof = False
        self._reader = threading.Thread(target=self._read, name=f"ems-window-{self.proc.pid}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def send(self, command: dict) -> bool:
        """Write one command line; False if the child is gone."""
        try:
            self.proc.stdin.write(json.dumps(command, ensure_ascii=False) + "\n")
            self.proc.stdin.flush()
            return True
        except (OSError, ValueError):  # BrokenPipeError, or stdin already closed
            return False

    def _read(self) -> None:
        stream = self.proc.stdout
        try:
            while True:
                line = stream.readline(MAX_LINE_CHARS)
                if not line:
                    break
                event = _parse(line)
                if event is not None:
                    self.events.put((self, event))
        except (OSError, ValueError) as exc:
            log.debug("window %s: reading stopped: %s", self.proc.pid, exc)
        finally:
            self.events.put((self, None))

    def stop(self, timeout_s: float = 3.0) -> None:
        """Ask the child to close, then make sure it has; wait for the reader to finish."""
        if self.running:
            self.send({"cmd": "close"})
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout_s)
        self._reader.join(timeout_s)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _parse(line: str) -> dict | None:
    try:
        event = json.loads(line)
    except ValueError:
        log.debug("ignoring a line from a window that is not JSON")
        return None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        return None
    return event
