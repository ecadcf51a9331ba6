"""The access log in plain sentences, newest first, for the employee.

:func:`summarise` turns :class:`~agent.access_log.AccessEntry` s into
:class:`Sentence` s: duplicates dropped (the same entry twice, and the
notice that only repeats an operator's action logged beside it), small
previews grouped per operator and reason ("12 small previews of your
screen by Jane Doe, 10:02–10:14, reason: ticket 7"), every other entry one
sentence of its own.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from agent.access_log import NOTICE, AccessEntry

#: previews closer together than this (same operator and reason) make one group
THUMBNAIL_GAP = timedelta(minutes=10)
#: a notice this close to an operator's action, naming that operator, repeats it
NOTICE_ECHO = timedelta(seconds=5)


@dataclass(frozen=True)
class Sentence:
    """One line for the employee: when (a span for a group) and what happened."""

    start: datetime
    end: datetime
    text: str

    def when(self) -> str:
        """``2026-12-04 10:02`` or ``2026-12-04 10:02–10:14`` (a span)."""
        first = self.start.strftime("%Y-%m-%d %H:%M")
        if self.end - self.start < timedelta(minutes=1) and self.end.minute == self.start.minute:
            return first
        last = self.end.strftime("%H:%M" if self.end.date() == self.start.date() else "%Y-%m-%d %H:%M")
        return f"{first}\u2013{last}"

    def line(self) -> str:
        return f"{self.when()}  {self.text}"


def summarise(entries: Iterable[AccessEntry]) -> list[Sentence]:
    """Plain sentences for ``entries``, newest first (see the module docstring)."""
    ordered = sorted(dict.fromkeys(entries), key=lambda e: e.ts)  # the same entry twice is told once; file order within a second
    actions = [e for e in ordered if e.kind != NOTICE]
    sentences: list[tuple[int, Sentence]] = []  # (position of its last entry, sentence)
    groups: dict[tuple[str, str], tuple[int, list[AccessEntry]]] = {}
    for position, entry in enumerate(ordered):
        if entry.kind == NOTICE and _echoes(entry, actions):
            continue
        if entry.kind == "thumbnail":
            key = (entry.operator, entry.reason)
            _, group = groups.get(key, (0, []))
            if group and entry.ts - group[-1].ts <= THUMBNAIL_GAP:
                group.append(entry)
                groups[key] = (position, group)
                continue
            if group:
                sentences.append((groups[key][0], _previews(group)))
            groups[key] = (position, [entry])
            continue
        sentences.append((position, Sentence(entry.ts, entry.ts, describe(entry))))
    sentences.extend((position, _previews(group)) for position, group in groups.values())
    return [s for _, s in sorted(sentences, key=lambda p: (p[1].end, p[0]), reverse=True)]


def describe(entry: AccessEntry) -> str:
    """One entry as a sentence."""
    who = entry.operator or "An operator"
    why = f" Reason: {entry.reason}." if entry.reason else ""
    kind, detail = entry.kind, entry.detail
    if kind == "agent.start":
        return "The EMS agent started" + (f" ({detail})." if detail.startswith("version ") else ".")
    if kind == "agent.stop":
        return "The EMS agent stopped."
    if kind == "capture":
        return f"{who} took a picture of your screen{_size(detail)}; it is stored on the server.{why}"
    if kind == "live_view.start":
        return f"{who} started watching your screen live.{why}"
    if kind == "live_view.end":
        return f"{who} stopped watching your screen" + (f" ({entry.reason})." if entry.reason else ".")
    if kind == "control.start":
        return f"{who} took control of your screen (mouse and keyboard).{why}"
    if kind == "control.end":
        return f"{detail[:1].upper()}{detail[1:]}." if detail else f"{who}'s control of your screen ended."
    if kind in ("power.reboot", "power.shutdown"):
        verb = "restart" if kind == "power.reboot" else "shut down"
        return f"{who} ordered this computer to {verb}" + (f" ({detail})" if detail else "") + f".{why}"
    if kind == "update.apply":
        return f"{who} installed operating system updates" + (f" ({detail})" if detail else "") + f".{why}"
    if kind == "chat":
        return f"{who} sent you a message: \u201c{detail}\u201d"
    if kind.startswith("file."):
        return _file_sentence(who, kind[5:], detail) + why
    if kind == "notice.silence_refused":
        return f"{who} asked to hide a notice; this computer's policy refused and showed it. {detail}".rstrip()
    if kind == NOTICE:
        return f"You were shown: {entry.event}" + (f" \u2014 {detail}" if detail else "")
    by = f" (by {entry.operator})" if entry.operator else ""
    return f"{entry.event[:1].upper()}{entry.event[1:]}{by}" + (f": {detail}" if detail else "") + f".{why}"


#: file operation -> (what was done, what was tried)
_FILE_VERBS = {"list": ("listed the folder", "tried to list the folder"),
               "download": ("copied from this computer the file", "tried to copy from this computer the file"),
               "upload": ("put on this computer the file", "tried to put on this computer the file"),
               "stat": ("looked at the file", "tried to look at the file"),
               "move": ("moved the file", "tried to move the file"),
               "delete": ("deleted the file", "tried to delete the file"),
               "roots": ("listed the shared folders", "tried to list the shared folders")}
_REFUSED = " (refused: "


def _file_sentence(who: str, op: str, detail: str) -> str:
    done, tried = _FILE_VERBS.get(op, (f"used ({op}) the file", f"tried to use ({op}) the file"))
    if _REFUSED in detail:
        path, error = detail.split(_REFUSED, 1)
        return f"{who} {tried} {path}; this computer refused: {error.rstrip(')')}."
    return f"{who} {done} {detail}."


def _size(detail: str) -> str:
    return " (" + detail.replace("x", "\u00d7") + ")" if detail else ""


def _previews(group: list[AccessEntry]) -> Sentence:
    first, last = group[0], group[-1]
    count = len(group)
    what = "1 small preview" if count == 1 else f"{count} small previews"
    why = f", reason: {first.reason}" if first.reason else ", no reason given"
    return Sentence(first.ts, last.ts, f"{what} of your screen by {first.operator or 'an operator'}{why}.")


def _echoes(notice: AccessEntry, actions: list[AccessEntry]) -> bool:
    """True when an entry logged within :data:`NOTICE_ECHO` tells the same: it names the same
    operator, or (no operator: the agent's own start) the notice's title ends with its event."""
    text, title = f"{notice.event} {notice.detail}", notice.event.lower()
    return any(abs(a.ts - notice.ts) <= NOTICE_ECHO and (a.operator in text if a.operator else title.endswith(a.event.lower()))
               for a in actions)


def summary_text(entries: Iterable[AccessEntry]) -> str:
    """The sentences as text, one per line, newest first."""
    sentences = summarise(entries)
    if not sentences:
        return "Nothing has been recorded on this computer yet.\n"
    return "".join(s.line() + "\n" for s in sentences)
