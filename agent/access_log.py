"""The local access log: what the employee can read about this agent.

Every start and stop of the agent, every notice, and every look at or
action on this computer by an operator (capture, thumbnail, live view,
control, file access, chat) is appended here as one JSON line (``ts``,
``kind``, ``event``, ``operator``, ``reason``, ``detail``), written locally
before anything is sent; it cannot be turned off from the server.
:mod:`agent.access_summary` turns the entries into plain sentences
(``ems agent access-log``, the "What IT did on this computer" window).
Lines of the older ``DATE TIME  event  key=value ...`` text format are read
too, so no history is lost.

It is the one file of the agent's data dir that is not 0600: mode 0640,
with the group of its directory (0710), so that an installer can let the
employee's group read it and nothing else there; by default that group is
the agent's own (:mod:`broker.core.private_files` says why).
:mod:`agent.access_location` says where the file is.
"""
from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.notice.policy import SILENCE_REFUSED
from agent.notice.text import one_line
from broker.core.errors import EmsError
from broker.core.private_files import private_dir, share_with_dir_group

#: the kind of an entry written by the notifier (a notice shown to the employee)
NOTICE = "notice"
#: what older agents wrote as the event text -> the entry kind it means
_KIND_OF_EVENT = {
    "agent started": "agent.start",
    "agent stopped": "agent.stop",
    "ems agent started": "agent.start",
    "screen captured": "capture",
    "screen thumbnail": "thumbnail",
    "live view started": "live_view.start",
    "live view ended": "live_view.end",
    SILENCE_REFUSED: "notice.silence_refused",
}
_LEGACY_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)  (.*?)(?:  (.*))?$")
_LEGACY_OPERATOR = re.compile(r"(?:^|\s)(?:operator=(\S*)|by ([^:]+):)")
_LEGACY_REASON = re.compile(r"(?:^|\s)reason=(.*)$")
_LEGACY_SIZE = re.compile(r"(?:^|\s)size=(\S+)")


@dataclass(frozen=True)
class AccessEntry:
    """One thing that happened on this computer, as the access log keeps it."""

    ts: datetime
    kind: str
    event: str
    operator: str = ""
    reason: str = ""
    detail: str = ""

    def to_json(self) -> str:
        """The entry as one JSON line (empty fields left out)."""
        fields = asdict(self) | {"ts": self.ts.isoformat(timespec="seconds")}
        return json.dumps({k: v for k, v in fields.items() if v}, ensure_ascii=False, sort_keys=False)

    def as_text(self) -> str:
        """The entry as one line of plain text (``ems agent access-log --raw`` shows JSON instead)."""
        who = f"  by {self.operator}" if self.operator and self.operator not in self.event else ""
        why = f"  reason: {self.reason}" if self.reason else ""
        detail = f"  {self.detail}" if self.detail else ""
        return f"{self.ts.strftime('%Y-%m-%d %H:%M:%S')}  {self.event}{who}{detail}{why}"


def kind_of(event: str) -> str:
    """The entry kind an event text stands for (``file download`` -> ``file.download``)."""
    text = event.strip().lower()
    if text in _KIND_OF_EVENT:
        return _KIND_OF_EVENT[text]
    if text.startswith("message from "):
        return "chat"
    return re.sub(r"[^a-z0-9]+", ".", text).strip(".") or "event"


def parse_line(line: str) -> AccessEntry | None:
    """An entry from one line of either format; None for a line that is neither."""
    line = line.strip()
    if not line:
        return None
    if line.startswith("{"):
        try:
            raw = json.loads(line)
            return AccessEntry(ts=datetime.fromisoformat(raw["ts"]).astimezone(), kind=str(raw["kind"]),
                               event=str(raw.get("event", raw["kind"])), operator=str(raw.get("operator", "")),
                               reason=str(raw.get("reason", "")), detail=str(raw.get("detail", "")))
        except (ValueError, KeyError, TypeError):
            return None
    return _parse_legacy(line)


def _parse_legacy(line: str) -> AccessEntry | None:
    """``2026-12-04 10:02:03  screen thumbnail  operator=alice size=240x135 reason=ticket 7``."""
    match = _LEGACY_LINE.match(line)
    if match is None:
        return None
    stamp, event, detail = match.group(1), match.group(2), match.group(3) or ""
    ts = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").astimezone()
    if event[:1].isupper():  # older notices were titles (free text after them), actions lower case
        return AccessEntry(ts, NOTICE, event, detail=detail.strip())
    operator = reason = ""
    if (found := _LEGACY_REASON.search(detail)) is not None:
        reason, detail = found.group(1).strip(), detail[: found.start()]
    if (found := _LEGACY_OPERATOR.search(detail)) is not None:
        operator = (found.group(1) or found.group(2) or "").strip()
        detail = (detail[: found.start()] + detail[found.end():]).strip()
    if (found := _LEGACY_SIZE.search(detail)) is not None:
        detail = (detail[: found.start()] + " " + found.group(1) + detail[found.end():]).strip()
    if event.lower().startswith("message from "):
        operator = operator or event[len("message from "):]
    return AccessEntry(ts, kind_of(event), event, operator, reason, detail.strip())


class AccessLog:
    """Appends entries to one file and reads them back (both formats).

    ``on_entry`` (optional) is called with each new entry after it is
    written: the agent reports operators' actions to the store from it.
    """

    def __init__(self, path: Path, on_entry: Callable[[AccessEntry], Any] | None = None):
        self.path = Path(path)
        self.on_entry = on_entry
        self._shared = False
        self._lock = threading.Lock()

    def record(self, event: str, detail: str = "", *, operator: str = "", reason: str = "", kind: str = "") -> str:
        """Append one entry; every text is folded to one line, so no caller can forge an entry.

        Returns the entry's JSON line.
        """
        event = one_line(event)
        entry = AccessEntry(ts=datetime.now().astimezone().replace(microsecond=0), kind=one_line(kind) or kind_of(event),
                            event=event, operator=one_line(operator), reason=one_line(reason), detail=one_line(detail))
        line = entry.to_json()
        with self._lock:
            self._append([line])
        if self.on_entry is not None:
            self.on_entry(entry)
        return line

    def take_over(self, old: Path) -> int:
        """Move the lines of an access log kept elsewhere (an older agent's) into this one.

        Appended as they are, then the old file is removed; a crash between
        the two leaves duplicates, which the summary drops. Returns the count.
        """
        old = Path(old)
        if old.resolve() == self.path.resolve() or not old.is_file():
            return 0
        lines = [line for line in old.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        with self._lock:
            self._append(lines)
        old.unlink()
        return len(lines)

    def entries(self) -> list[AccessEntry]:
        """Every entry, in file order; unreadable lines are skipped."""
        return [entry for entry in map(parse_line, self._lines()) if entry is not None]

    def read(self) -> str:
        """The log as plain text, one line per entry, oldest first ("" when there is none)."""
        return "".join(entry.as_text() + "\n" for entry in self.entries())

    def raw(self) -> str:
        """The file as it is."""
        return "".join(line + "\n" for line in self._lines())

    def _lines(self) -> Iterable[str]:
        try:
            return self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return []
        except PermissionError as exc:
            raise EmsError(
                f"cannot read the access log {self.path}: it is readable by its owner and by the group of "
                f"{self.path.parent} only; an administrator lets you read it with `chgrp YOUR_GROUP {self.path.parent}`"
            ) from exc

    def _append(self, lines: list[str]) -> None:
        if not self._shared:
            private_dir(self.path.parent)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.writelines(line + "\n" for line in lines)
        if not self._shared:  # once the file exists: its mode and group, every start
            share_with_dir_group(self.path)
            self._shared = True
