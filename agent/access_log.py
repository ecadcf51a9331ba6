"""The local access log: what the employee can read about this agent.

Every start and stop of the agent, and (with the full agent) every live
view and remote-control session, is appended here as one line of text
(``ems agent access-log`` prints it). It is written locally, before
anything is sent, and cannot be turned off from the server.

It is the one file of the agent's data dir that is not 0600: mode 0640,
with the group of the agent's data dir (0710), so that an installer can
let the employee's group read it and nothing else there; by default that
group is the agent's own (:mod:`broker.core.private_files` says why).
"""
from __future__ import annotations

import time
from pathlib import Path

from agent.notice.text import one_line
from broker.core.errors import EmsError
from broker.core.private_files import private_dir, share_with_dir_group


class AccessLog:
    def __init__(self, path: Path):
        self.path = path
        self._shared = False

    def record(self, event: str, detail: str = "") -> str:
        """Append one line (line breaks folded, so no caller can forge a line)."""
        event, detail = one_line(event), one_line(detail)
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {event}" + (f"  {detail}" if detail else "")
        if not self._shared:
            private_dir(self.path.parent)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        if not self._shared:  # once the file exists: its mode and group, every start
            share_with_dir_group(self.path)
            self._shared = True
        return line

    def read(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""
        except PermissionError as exc:
            raise EmsError(
                f"cannot read the access log {self.path}: it is readable by its owner and by the group of "
                f"{self.path.parent} only; an administrator lets you read it with `chgrp YOUR_GROUP {self.path.parent}`"
            ) from exc
