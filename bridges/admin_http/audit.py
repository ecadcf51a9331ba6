"""The admin HTTP listener's own audit trail: one JSON line per HTTP call.

Every call is written, refused ones included (a wrong token, a foreign
``Host``), with who asked, what, from where and how it ended. The bus keeps
its own audit of the commands themselves (``audit.admin-http`` events,
stored by the persister); this file also shows the calls that never reached
the bus.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class AuditLog:
    """Appends JSON records to a file; safe to call from any thread."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._file = None

    def open(self) -> AuditLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        return self

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` (with a ``ts``) as one line and flush it."""
        line = json.dumps({"ts": time.time(), **record}, sort_keys=True, default=str)
        with self._lock:
            if self._file is None:
                log.error("audit log %s is closed: dropped %s", self.path, line)
                return
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
