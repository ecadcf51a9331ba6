"""Validation and routing of one store record, before the write transaction.

:class:`Preparer` checks a :class:`~broker.persister.tables.Record`'s
identity fields and its kind's ``data``, seals the encrypted fields, makes
the capture preview, and returns an :class:`~broker.persister.apply._Op`:
what to run inside the batch transaction. A malformed record raises
:class:`~broker.persister.tables._Reject` with the reason. Where each kind
goes is listed in :meth:`broker.persister.writer.Writer.write_batch`.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable

from broker.persister.apply import (
    _CHAT_RANK,
    _COMMAND_RANK,
    _apply_chat_update,
    _apply_command_status,
    _apply_offline,
    _apply_online,
    _apply_reply,
    _apply_stamped,
    _apply_sysinfo,
    _insert_preview,
    _insert_sql,
    _Op,
    _pack,
)
from broker.persister.crypto import SecurityManager, aad_for
from broker.persister.tables import BROKER_IDS, KINDS, MAX_ID_CHARS, Record, _Reject
from broker.persister.thumbnails import thumbnail_or_reason as _thumbnail

#: Event names with their own table; any other event goes to activity_logs.
_EVENT_ROUTES = {
    "sysinfo": "_prepare_sysinfo",
    "capture": "_prepare_capture",
    "chat": "_prepare_chat",
    "fileop": "_prepare_fileop",
}

# the types record.data's keys may have
_STR_ONLY = frozenset({str})


class Preparer:
    """Turns records into :class:`_Op` s; ``crypto`` seals the encrypted fields."""

    def __init__(self, crypto: SecurityManager):
        self.crypto = crypto
        #: record kind -> the method that validates and routes it
        self._preparers: dict[str, Callable[[Record], _Op]] = {kind: getattr(self, f"_prepare_{kind}") for kind in KINDS}

    def prepare(self, record: Record) -> _Op:
        """The checked record, ready to apply; raises :class:`_Reject` with the reason."""
        if not isinstance(record, Record):
            raise _Reject(f"not a Record but {type(record).__name__}")
        kind, client_id, msg_id, ts = record.kind, record.client_id, record.msg_id, record.ts
        prepare = self._preparers.get(kind) if type(kind) is str else None
        if prepare is None:
            raise _Reject(f"unknown kind {kind!r}")
        if type(client_id) is not str or len(client_id) > MAX_ID_CHARS:
            raise _Reject("client_id must be a string of up to 200 chars")
        if type(msg_id) is not str or not 0 < len(msg_id) <= MAX_ID_CHARS:
            raise _Reject("msg_id must be a non-empty string of up to 200 chars")
        if type(ts) not in (int, float) or not math.isfinite(ts) or ts < 0:
            raise _Reject("ts must be a finite, non-negative number")
        if type(record.topic) is not str:
            raise _Reject("topic must be a string")
        if type(record.data) is not dict or not _STR_ONLY.issuperset(map(type, record.data)):
            raise _Reject("data must be a dict with string keys")
        if client_id in BROKER_IDS and kind not in ("security", "audit", "quarantine"):
            raise _Reject(f"{kind} records need a client_id")
        return prepare(record)

    def _seal(self, table: str, column: str, record: Record, value: bytes) -> bytes:
        return self.crypto.encrypt(value, aad_for(table, column, record.client_id, record.msg_id))

    def _insert(self, record: Record, table: str, values: dict[str, Any], client: str | None = None) -> _Op:
        sql, params = _insert_sql(table, tuple(values)), tuple(values.values())
        return _Op(record, client, None, sql, params)

    def _prepare_log(self, r: Record) -> _Op:
        d = r.data
        message = _text(d, "message", required=True)
        values = {
            "client_id": r.client_id,
            "msg_id": r.msg_id,
            "ts": r.ts,
            "level": _text(d, "level") or "INFO",
            "logger": _text(d, "logger") or "",
            "message": self._seal("client_logs", "message", r, message.encode()),
        }
        return self._insert(r, "client_logs", values, r.client_id)

    def _prepare_security(self, r: Record) -> _Op:
        d = r.data
        event = _text(d, "event", required=True)
        severity = _text(d, "severity")
        rest = {k: v for k, v in d.items() if k not in ("event", "severity")}
        if r.client_id not in BROKER_IDS:
            origin, client_id, subject = "agent", r.client_id, None
            # an agent cannot say it is the broker or speak of another client: what it claims stays its claim
            claimed = {k: rest.pop(k) for k in ("origin", "client_id", "subject") if k in rest}
            if claimed:
                rest["claimed"] = claimed
        else:
            origin, client_id, subject = _text(d, "origin") or "broker", None, _text(d, "client_id") or None
        values = {
            "origin": origin,
            "client_id": client_id,
            "subject": subject,
            "msg_id": r.msg_id,
            "ts": r.ts,
            "event": event,
            "severity": severity,
            "detail": _pack(rest) if rest else None,
        }
        return self._insert(r, "security_events", values, client_id)

    def _prepare_audit(self, r: Record) -> _Op:
        d = r.data
        detail = d.get("detail")
        in_detail = detail if isinstance(detail, dict) else {}
        def told(key: str) -> str | None:  # the record's own field, else the one in its detail
            return _text(d, key) or (in_detail.get(key) if type(in_detail.get(key)) is str else None)

        target = _text(d, "target") or (in_detail.get("client_id") if type(in_detail.get("client_id")) is str else None)
        values = {
            "source": r.client_id,
            "msg_id": r.msg_id,
            "ts": r.ts,
            "operator": _text(d, "operator", required=True),
            "role": _text(d, "role"),
            "action": _text(d, "action", required=True),
            "target": target or None,
            "reason": told("reason") or None,
            "detail": _pack(detail) if detail is not None else None,
            "operator_name": told("operator_name") or None,
            "via": told("via") or "",
        }
        return self._insert(r, "audit_trail", values)

    def _prepare_quarantine(self, r: Record) -> _Op:
        """What is kept of a record refused at ingest (no clients row: it proves nothing about a machine)."""
        d = r.data
        values = {
            "client_id": r.client_id,
            "msg_id": r.msg_id,
            "ts": r.ts,
            "kind": _text(d, "kind", required=True),
            "topic": r.topic,
            "size": _integer(d, "size"),
            "reason": _text(d, "reason", required=True),
            "sha256": _text(d, "sha256"),
        }
        return self._insert(r, "quarantine", values)

    def _prepare_presence(self, r: Record) -> _Op:
        d = r.data
        state = _text(d, "state", required=True)
        if state not in ("online", "offline"):
            raise _Reject(f"presence state must be online or offline, not {state!r}")
        reason = _text(d, "reason")
        info = d.get("info") or {}
        if type(info) is not dict:
            raise _Reject("presence info must be a dict")
        facts = {
            "logged_in_user": _text(info, "user"),
            "hostname": _text(info, "hostname"),
            "os": _text(info, "os"),
            "version": _text(info, "version"),
        }
        if state == "online":
            return _Op(r, r.client_id, functools.partial(_apply_online, r, facts, _text(info, "label")))
        return _Op(r, r.client_id, functools.partial(_apply_offline, r, reason))

    def _prepare_command_status(self, r: Record) -> _Op:
        d = r.data
        status = _text(d, "status", required=True)
        if status not in _COMMAND_RANK:
            raise _Reject(f"unknown command status {status!r}")
        created = _number(d, "created")
        values = {
            "id": _text(d, "id", required=True),
            "client_id": r.client_id,
            "operator": _text(d, "operator") or _text(d, "sender"),
            "name": _text(d, "name") or "",
            "args": _pack(d["args"]) if d.get("args") is not None else None,
            "status": status,
            "created": r.ts if created is None else created,
            "updated": r.ts,
            "result": _pack(d["result"]) if d.get("result") is not None else None,
        }
        return _Op(r, r.client_id, functools.partial(_apply_command_status, values))

    def _prepare_event(self, r: Record) -> _Op:
        prefix = f"event.{r.client_id}."
        if not r.topic.startswith(prefix) or len(r.topic) == len(prefix):
            raise _Reject(f"event topic {r.topic!r} is not event.{r.client_id}.<name>")
        name = r.topic[len(prefix) :]
        if name in _EVENT_ROUTES:
            return getattr(self, _EVENT_ROUTES[name])(r)
        values = {
            "client_id": r.client_id,
            "msg_id": r.msg_id,
            "ts": r.ts,
            "name": name,
            "data": self._seal("activity_logs", "data", r, _pack(r.data)),
        }
        return self._insert(r, "activity_logs", values, r.client_id)

    def _prepare_sysinfo(self, r: Record) -> _Op:
        d = r.data
        facts = {key: _text(d, key) for key in ("hostname", "os", "os_version", "logged_in_user", "version")}
        metrics = {key: _number(d, key) for key in ("cpu_percent", "memory_percent", "disk_percent")}
        return _Op(r, r.client_id, functools.partial(_apply_sysinfo, r, facts, metrics, _pack(d)))

    def _prepare_capture(self, r: Record) -> _Op:
        d = r.data
        image = d.get("image")
        if not isinstance(image, (bytes, bytearray)) or not image:
            raise _Reject("capture image must be non-empty bytes")
        thumbnail, why_not = _thumbnail(bytes(image))  # here: outside the write transaction
        sealed = self._seal("capture_thumbnails", "thumbnail", r, thumbnail) if thumbnail is not None else None
        values = {
            "client_id": r.client_id,
            "msg_id": r.msg_id,
            "ts": r.ts,
            "width": _integer(d, "width"),
            "height": _integer(d, "height"),
            "quality": _integer(d, "quality"),
            "format": _text(d, "format"),
            "image": self._seal("screen_captures", "image", r, bytes(image)),
        }
        preview = functools.partial(_insert_preview, (r.client_id, r.msg_id), (sealed, why_not))
        return _Op(r, r.client_id, functools.partial(_apply_stamped, r, "screen_captures", values, preview))

    def _prepare_chat(self, r: Record) -> _Op:
        d = r.data
        status = _text(d, "status")
        if status is not None and status not in _CHAT_RANK:
            raise _Reject(f"unknown chat status {status!r}")
        ref = _text(d, "ref")
        if ref is not None:
            deleted = d.get("deleted")
            if deleted is not None and type(deleted) is not bool:
                raise _Reject("chat 'deleted' must be a boolean")
            if status is None and not deleted:
                raise _Reject("a chat update needs a status or deleted=true")
            return _Op(r, r.client_id, functools.partial(_apply_chat_update, r, ref, status, bool(deleted)))
        body = _text(d, "body", required=True)
        direction = _text(d, "direction") or "in"
        if direction not in ("in", "out"):
            raise _Reject(f"chat direction must be in or out, not {direction!r}")
        values = {
            "client_id": r.client_id,
            "msg_id": r.msg_id,
            "ts": r.ts,
            "direction": direction,
            "body": self._seal("chat_messages", "body", r, body.encode()),
            "status": status or ("delivered" if direction == "in" else "queued"),
            "status_ts": r.ts,
        }
        if direction == "out":  # an operator's message: who sent it is the broker's word, not the agent's
            return _Op(r, r.client_id, functools.partial(_apply_stamped, r, "chat_messages", values, None))
        # the employee's reply: ``operator`` is whom it answers, from the stored message it replies to
        return _Op(r, r.client_id, functools.partial(_apply_reply, r, values, _text(d, "in_reply_to")))

    def _prepare_fileop(self, r: Record) -> _Op:
        d = r.data
        ok = d.get("ok", True)
        if type(ok) is not bool:
            raise _Reject("fileop 'ok' must be a boolean")
        error = _text(d, "error")
        values = {
            "client_id": r.client_id,
            "msg_id": r.msg_id,
            "ts": r.ts,
            "op": _text(d, "op", required=True),
            "path": self._seal("file_operations", "path", r, _text(d, "path", required=True).encode()),
            "size": _integer(d, "size"),
            "ok": int(ok),
            "error": self._seal("file_operations", "error", r, error.encode()) if error is not None else None,
        }
        return _Op(r, r.client_id, functools.partial(_apply_stamped, r, "file_operations", values, None))


def _text(data: dict, key: str, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise _Reject(f"data[{key!r}] is missing")
        return None
    if type(value) is not str:
        raise _Reject(f"data[{key!r}] must be a string, not {type(value).__name__}")
    return value


def _number(data: dict, key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if type(value) not in (int, float) or not math.isfinite(value):
        raise _Reject(f"data[{key!r}] must be a finite number, not {type(value).__name__}")
    return float(value)


def _integer(data: dict, key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if type(value) is not int or not -(2**63) <= value < 2**63:
        raise _Reject(f"data[{key!r}] must be a 64-bit integer, not {type(value).__name__}")
    return value
