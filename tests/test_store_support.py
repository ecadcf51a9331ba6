"""Helpers shared by the store tests (no tests here).

Real SQLite files in ``tmp_path``, real keys, no mocks.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from broker.persister import schema
from broker.persister.crypto import SecurityManager
from broker.persister.store import Record, Store

#: Secret plaintexts the encrypted fields carry in sample_records().
SECRETS = {
    "chat": "SECRET-CHAT-4f1c9a",
    "log": "SECRET-LOG-8d2e71",
    "path": "/home/bob/SECRET-PATH-1b7c33.txt",
    "error": "denied SECRET-ERROR-66a0d2",
    "image": b"SECRET-IMAGE-0e93f5" * 8,
    "activity": "SECRET-TITLE-a4b9e2",
}
#: A plain field of the same sample batch (proves the raw-bytes scan can see).
PLAIN_MARKER = "PLAIN-HOSTNAME-3c5d"


def make_store(tmp_path: Path, name: str = "store.db", **kw) -> Store:
    crypto = SecurityManager(tmp_path / "keys" / "store-keys.json")
    return Store(tmp_path / name, crypto, **kw)


def sample_records(client: str = "a1", ts: float = 1000.0, tag: str = "") -> list[Record]:
    """One record for every route of write_batch, for ``client``."""
    def rid(name: str) -> str:
        return f"{tag}{name}"

    return [
        Record("presence", client, rid("p-on"), ts, f"presence.{client}",
               {"state": "online", "reason": "hello", "info": {"user": "bob", "hostname": PLAIN_MARKER}}),
        Record("event", client, rid("sys"), ts + 1, f"event.{client}.sysinfo",
               {"hostname": PLAIN_MARKER, "os": "Linux", "os_version": "6.1", "logged_in_user": "bob",
                "cpu_percent": 12.5, "memory_percent": 40.0, "disk_percent": 71.0}),
        # the broker's record of the command (it names the operator: the capture and
        # the file operation below report on it, and their operator comes from here)
        Record("command_status", client, rid("cmd"), ts + 8, f"command.{client}",
               {"id": f"{tag}cmd-{client}", "target": client, "name": "reboot", "status": "sent", "operator": "alice"}),
        Record("event", client, rid("cap"), ts + 2, f"event.{client}.capture",
               {"width": 64, "height": 32, "quality": 80, "format": "png", "image": SECRETS["image"], "operator": "alice",
                "command": f"{tag}cmd-{client}"}),
        Record("event", client, rid("chat"), ts + 3, f"event.{client}.chat", {"body": SECRETS["chat"], "direction": "in"}),
        Record("event", client, rid("fop"), ts + 4, f"event.{client}.fileop",
               {"op": "read", "path": SECRETS["path"], "size": 10, "ok": False, "error": SECRETS["error"], "operator": "alice",
                "command": f"{tag}cmd-{client}"}),
        Record("event", client, rid("act"), ts + 5, f"event.{client}.window", {"title": SECRETS["activity"], "app": "browser"}),
        Record("log", client, rid("log"), ts + 6, f"log.{client}", {"level": "ERROR", "logger": "agent.x", "message": SECRETS["log"]}),
        Record("security", client, rid("sec"), ts + 7, f"security.{client}", {"event": "usb_inserted", "severity": "warning"}),
        Record("audit", "admin", rid("aud"), ts + 9, "audit.admin",
               {"operator": "admin", "role": "admin", "action": "capture.view", "detail": {"client_id": client}}),
        Record("security", "broker", rid("bsec"), ts + 10, "security.broker",
               {"event": "forbidden", "detail": "role agent may not send COMMAND", "client_id": client}),
    ]


def table_counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in schema.TABLES}


def client_rows(conn: sqlite3.Connection, client: str) -> dict[str, int]:
    """Rows per child table that belong to ``client``."""
    return {
        t: conn.execute(f"SELECT count(*) FROM {t} WHERE client_id = ?", (client,)).fetchone()[0]
        for t in schema.CHILD_TABLES
    }
