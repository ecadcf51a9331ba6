"""Which store table goes to which MySQL table, column by column.

:data:`TABLES` maps each table of the store's change feed (``store.changes``)
to its snapshot table in ``ems_web`` (:mod:`sync.schema`) and says, for each
MySQL column, where its value comes from and how it is carried:

* ``PLAIN``: as stored (numbers, ids, names, times, statuses);
* ``SEAL``: a sensitive field (chat body, log message, file path and error,
  capture image), sealed for the web (:mod:`sync.web_crypto`);
* ``JSON``: a msgpack field of the store (sysinfo, event details) as JSON;
* ``SEAL_JSON``: a msgpack field that may quote sensitive content (command
  arguments and results name paths and chat text), as sealed JSON.

Every MySQL row also has ``server_id`` (first) and ``sync_gen`` (last).
"""
from __future__ import annotations

import base64
import json
from typing import Callable, NamedTuple

from broker.core.envelope import unpack_body
from sync.web_crypto import WebKey, aad_for

PLAIN, SEAL, JSON, SEAL_JSON = "plain", "seal", "json", "seal_json"


class TableMap(NamedTuple):
    """One store table's way into MySQL."""

    mysql: str
    key: str  # the store column that keys the row (``id`` or ``client_id``)
    columns: tuple[tuple[str, str, str], ...]  # (mysql column, store column, how)

    @property
    def mysql_key(self) -> str:
        return self.key  # both schemas name the key alike

    def mysql_columns(self) -> list[str]:
        return ["server_id", *(c for c, _, _ in self.columns), "sync_gen"]


def _same(*names: str) -> tuple[tuple[str, str, str], ...]:
    return tuple((n, n, PLAIN) for n in names)


TABLES: dict[str, TableMap] = {
    "clients": TableMap("snapshot_clients", "client_id", (
        *_same("client_id", "label", "hostname", "os", "os_version", "logged_in_user", "version", "first_seen",
               "last_seen", "online", "presence_ts"),
        ("sysinfo", "last_sysinfo", JSON), ("sysinfo_ts", "sysinfo_ts", PLAIN))),
    "sessions": TableMap("snapshot_sessions", "id", _same(
        "id", "client_id", "started", "ended", "logged_in_user", "end_reason")),
    "screen_captures": TableMap("snapshot_captures", "id", (
        *_same("id", "client_id", "ts", "width", "height", "quality", "format", "operator"),
        ("image", "image", SEAL))),
    "chat_messages": TableMap("snapshot_messages", "id", (
        *_same("id", "client_id", "ts", "direction", "operator"), ("body", "body", SEAL),
        *_same("status", "status_ts", "deleted"))),
    "file_operations": TableMap("snapshot_fileops", "id", (
        *_same("id", "client_id", "ts", "operator", "op"), ("path", "path", SEAL), *_same("size", "ok"),
        ("error", "error", SEAL))),
    "security_events": TableMap("snapshot_security", "id", (
        *_same("id", "origin", "client_id", "subject", "ts", "event", "severity"), ("detail", "detail", JSON))),
    "client_logs": TableMap("snapshot_client_logs", "id", (
        *_same("id", "client_id", "ts", "level", "logger"), ("message", "message", SEAL))),
    "metrics": TableMap("snapshot_metrics", "id", _same(
        "id", "client_id", "ts", "cpu_percent", "memory_percent", "disk_percent")),
    "audit_trail": TableMap("snapshot_audit", "id", (
        *_same("id", "source", "ts", "operator", "role", "action", "target", "reason"), ("detail", "detail", JSON),
        *_same("operator_name", "via"))),
    "commands": TableMap("snapshot_commands", "id", (
        *_same("id", "client_id", "operator", "name"), ("args", "args", SEAL_JSON),
        *_same("status", "created", "updated"), ("result", "result", SEAL_JSON))),
}


def _json(raw) -> str | None:
    return None if raw is None else json.dumps(unpack_body(raw), default=_jsonable, separators=(",", ":"))


def _jsonable(value):
    if isinstance(value, (bytes, bytearray)):
        return {"base64": base64.b64encode(value).decode()}
    return str(value)


def converter(table: str, store_columns: list[str], web_key: WebKey, server_id: str, gen: int) -> Callable[[list], tuple]:
    """A function turning one store row (values in ``store_columns`` order) into its MySQL row."""
    spec = TABLES[table]
    position = {name: i for i, name in enumerate(store_columns)}
    key_at = position[spec.key]
    steps = [(position[store], how, mysql) for mysql, store, how in spec.columns]

    def convert(values: list) -> tuple:
        key = values[key_at]
        out = [server_id]
        for at, how, mysql in steps:
            value = values[at]
            if value is None or how == PLAIN:
                out.append(value)
            elif how == SEAL:
                out.append(web_key.seal(value, aad_for(spec.mysql, mysql, server_id, key)))
            elif how == JSON:
                out.append(_json(value))
            else:
                out.append(web_key.seal(_json(value), aad_for(spec.mysql, mysql, server_id, key)))
        out.append(gen)
        return tuple(out)

    return convert
