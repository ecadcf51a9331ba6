"""How the console writes values: column titles, times, values of any shape, results, tooltips.
"""
from __future__ import annotations

import datetime as dt
import html
import time
from typing import Any


#: values of these columns are epoch seconds
TIME_COLUMNS = frozenset({"ts", "started", "ended", "created", "updated", "last_seen", "first_seen", "status_ts", "expires",
                          "decided_at", "opened_at", "resolved_at", "acked_at"})

#: column titles shared by every table
TITLES: dict[str, str] = {
    "client_id": "Client",
    "label": "Label",
    "user": "User",
    "state": "State",
    "last_seen": "Last seen",
    "cpu_percent": "CPU %",
    "memory_percent": "Memory %",
    "disk_percent": "Disk %",
    "ts": "Time",
    "started": "Started",
    "ended": "Ended",
    "logged_in_user": "User",
    "end_reason": "End reason",
    "width": "Width",
    "height": "Height",
    "format": "Format",
    "quality": "Quality",
    "operator": "Operator",
    "operator_name": "Person",
    "via": "Via",
    "direction": "Direction",
    "body": "Message",
    "status": "Status",
    "op": "Operation",
    "path": "Path",
    "size": "Size",
    "ok": "OK",
    "error": "Error",
    "event": "Event",
    "severity": "Severity",
    "origin": "Origin",
    "subject": "Subject",
    "detail": "Detail",
    "level": "Level",
    "logger": "Logger",
    "message": "Message",
    "role": "Role",
    "action": "Action",
    "target": "Target",
    "reason": "Reason",
    "name": "Name",
    "data": "Data",
    "created_at": "Created",
    "updated_at": "Updated",
    "result": "Result",
    "id": "Id",
    "thumbnail": "Preview",
    "expires": "Expires",
    "summary": "What",
    "requester_name": "Asked by",
    "decided_name": "Decided by",
    "decided_reason": "Their reason",
    "selector": "Selector",
    "count": "Targets",
    "counts": "Progress",
    "sender": "Started by",
    "why": "Why",
    "command": "Command",
    "params": "Parameters",
    "approval": "Needs approval",
    "description": "Description",
    "read": "Read",
    "kind": "Kind",
    "title": "Title",
    "text": "Text",
    "rule": "Rule",
    "opened_at": "Opened",
    "acked_name": "Acknowledged by",
    "ack_reason": "Their reason",
    "suppressed": "Suppressed",
    "steps": "Steps",
    "next_due_text": "Next run",
    "cron": "Cron",
    "tz": "Zone",
    "owner_name": "Owner",
    "person": "Sent by",
}

#: the columns each history kind shows, in order (the allowlist: other keys


def format_time(ts: float | None, now: float | None = None) -> str:
    """``14:03:22`` today, ``2026-11-24 14:03`` before, ``-`` for nothing."""
    if not ts:
        return "-"
    moment = dt.datetime.fromtimestamp(ts)
    today = dt.datetime.fromtimestamp(now or time.time()).date()
    return moment.strftime("%H:%M:%S") if moment.date() == today else moment.strftime("%Y-%m-%d %H:%M")


def format_value(column: str, value: Any, limit: int = 120) -> str:
    """A table cell's text."""
    if value is None:
        return ""
    if column in TIME_COLUMNS and isinstance(value, (int, float)):
        return format_time(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict) and list(value) == ["detail"]:  # {"detail": "3 failed logins"}: just the text
        text = short(value["detail"])
    elif isinstance(value, dict):
        text = ", ".join(f"{k}={short(v)}" for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        text = ", ".join(short(v) for v in value)
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def rich_tooltip(text: str) -> str:
    """Tooltip text shown verbatim: Qt renders anything that looks like HTML as
    rich text, and labels and log lines come from agents."""
    return "<p style='white-space:pre-wrap'>" + html.escape(text) + "</p>"


def short(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + format_value("", value, 60) + "}"
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def result_text(result: Any) -> str:
    """A command result ``{"ok": .., "output"/"error": ..}`` in a few words."""
    if not isinstance(result, dict):
        return format_value("result", result)
    if result.get("error"):
        return str(result["error"])
    output = result.get("output")
    if output is None:
        return "ok" if result.get("ok") else ""
    return format_value("result", output)
