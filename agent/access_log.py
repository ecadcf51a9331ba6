"""The local access log: what the employee can read about this agent.

Every start and stop of the agent, and (with the full agent) every live
view and remote-control session, is appended here as one line of text
(``ems agent access-log`` prints it). It is written locally, before
anything is sent, and cannot be turned off from the server.
"""
from __future__ import annotations

import time
from pathlib import Path

from agent.notice.text import one_line


class AccessLog:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, event: str, detail: str = "") -> str:
        """Append one line (line breaks folded, so no caller can forge a line)."""
        event, detail = one_line(event), one_line(detail)
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {event}" + (f"  {detail}" if detail else "")
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        return line

    def read(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""
