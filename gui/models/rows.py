"""Live bus items (the dicts the worker emits) as rows shaped like the store's.

A live row and the stored one then merge into one line instead of two.
"""
from __future__ import annotations

import time
from typing import Any


def session_row(item: dict) -> dict:
    """A presence ``online`` item as the session it opens."""
    info = item.get("info") or {}
    return {"msg_id": item["msg_id"], "client_id": item["client_id"], "started": item["ts"], "ended": None,
            "logged_in_user": info.get("user") or None, "end_reason": None}


def security_row(item: dict) -> dict:
    """A live security item (``sender`` + the event's fields) as a store row.

    An agent reports about itself (origin ``agent``); the broker and services
    report about a client they name in ``client_id`` (the row's subject).
    """
    data = {k: v for k, v in item.items() if k not in ("msg_id", "ts", "sender", "topic")}
    sender = item.get("sender") or ""
    topic = item.get("topic") or ""
    from_agent = bool(sender) and topic.startswith(f"security.{sender}") and sender not in ("broker", "persister")
    rest = {k: v for k, v in data.items() if k not in ("event", "severity")}
    return {
        "msg_id": item["msg_id"],
        "ts": item["ts"],
        "event": data.get("event"),
        "severity": data.get("severity"),
        "origin": "agent" if from_agent else (data.get("origin") or "broker"),
        "client_id": sender if from_agent else None,
        "subject": None if from_agent else (data.get("client_id") or None),
        "detail": rest or None,
    }


def security_concerns(row: dict, client_id: str) -> bool:
    return client_id in (row.get("client_id"), row.get("subject"))


def audit_row(item: dict) -> dict:
    """A live ``audit.<operator>`` item as a store row."""
    detail = item.get("detail")
    inner = detail if isinstance(detail, dict) else {}
    return {
        "msg_id": item["msg_id"],
        "ts": item["ts"],
        "operator": item.get("operator"),
        "operator_name": item.get("operator_name") or inner.get("operator_name") or None,
        "via": item.get("via") or inner.get("via") or "",
        "role": item.get("role"),
        "action": item.get("action"),
        "target": item.get("target") or audit_target(inner),
        "reason": item.get("reason") or inner.get("reason") or None,
        "detail": detail,
    }


def audit_target(detail: Any) -> str | None:
    """The client an audit record is about: ``target`` or ``client_id`` of its detail."""
    if not isinstance(detail, dict):
        return None
    for key in ("target", "client_id"):
        if isinstance(detail.get(key), str) and detail[key]:
            return detail[key]
    return None


def audit_concerns(row: dict, client_id: str) -> bool:
    return row.get("target") == client_id or audit_target(row.get("detail")) == client_id


def capture_row(item: dict) -> dict:
    return {k: item.get(k) for k in ("msg_id", "ts", "client_id", "width", "height", "format", "quality", "operator")}


def command_row(item: dict) -> dict:
    """A COMMAND_STATUS or RESULT item as a ``commands`` row."""
    row = {"id": item["id"], "client_id": item.get("target") or item.get("client_id"), "name": item.get("name"),
           "status": item.get("status"), "updated": item.get("updated") or time.time()}
    for key in ("created", "operator", "reason"):
        if item.get(key) is not None:
            row[key] = item[key]
    if "result" in item:
        row["result"] = item["result"]
    return row
