"""Helpers for the sync tests and bench: a store filled with rows, a database per test,
and the per-table digests that say whether MySQL equals the store."""
from __future__ import annotations

import hashlib
import threading
import uuid
from pathlib import Path

from broker.core import keys
from broker.core.profile import Profile, save
from broker.persister.change_log import SYNCED
from sync.mysql_url import MysqlUrl, connect
from sync.snapshot_db import SnapshotDB
from sync.tables import TABLES
from sync.web_crypto import WebKey, key_path
from sync.worker import SyncConfig, SyncWorker

#: the column beside the key that changes when a row is updated (what a stale copy would differ in)
_VERSION_COLUMN = {"clients": "last_seen", "sessions": "ended", "chat_messages": "status", "commands": "status"}


def new_database(admin_url: str, name: str | None = None) -> MysqlUrl:
    """A fresh empty database on the test server; its administrator URL."""
    name = name or f"ems_t_{uuid.uuid4().hex[:10]}"
    url = MysqlUrl.parse(admin_url).with_database("")
    conn = connect(url)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    conn.commit()
    conn.close()
    return url.with_database(name)


def _digest(pairs) -> str:
    h = hashlib.sha256()
    for key, version in sorted(pairs, key=lambda p: str(p[0])):
        h.update(f"{key}|{version}\n".encode())
    return h.hexdigest()


def store_digests(store_path: Path) -> dict[str, tuple[int, str]]:
    """Per synced table: (rows, checksum of key + version column)."""
    import sqlite3

    conn = sqlite3.connect(str(store_path))
    try:
        out = {}
        for table, key in SYNCED.items():
            version = _VERSION_COLUMN.get(table, key)
            rows = conn.execute(f"SELECT {key}, {version} FROM {table}").fetchall()
            out[table] = (len(rows), _digest(rows))
        return out
    finally:
        conn.close()


def mysql_digests(url: MysqlUrl, server_id: str) -> dict[str, tuple[int, str]]:
    """The same digests of ``server_id``'s rows in MySQL."""
    conn = connect(url)
    try:
        out = {}
        with conn.cursor() as cur:
            for table, spec in TABLES.items():
                version = _VERSION_COLUMN.get(table, spec.key)
                mysql_version = next(m for m, s, _ in spec.columns if s == version)
                cur.execute(f"SELECT `{spec.key}`, `{mysql_version}` FROM `{spec.mysql}` WHERE server_id = %s", (server_id,))
                rows = cur.fetchall()
                out[table] = (len(rows), _digest(rows))
        return out
    finally:
        conn.close()


def sync_profile(bus, data_root: Path) -> Path:
    """A data dir from which ``ems sync run`` reaches ``bus``: profile and a service key ``sync``."""
    data_root.mkdir(parents=True, exist_ok=True)
    (data_root / "keys").mkdir(exist_ok=True)
    pair = keys.load_or_create(data_root / "keys", "sync")
    bus.admin.request("keys.add", public_key=pair.public, client_id="sync", role="service")
    save_profile(bus, data_root)
    return data_root


def save_profile(bus, data_root: Path) -> None:
    from broker.core.config import DataDir

    save(DataDir(data_root), Profile(server=bus.endpoint, server_key=bus.server_key, key_name="sync", client_id="sync"))


class RunningSync:
    """A sync worker in a thread on ``bus`` into ``url``, as server ``server_id``."""

    def __init__(self, bus, url: MysqlUrl, server_id: str, root: Path, client_id: str = "sync", config: SyncConfig | None = None,
                 db_class=SnapshotDB, **db_attrs):
        pair = bus.enrol(client_id, role="service")
        client = bus.client(pair, hello={"client_id": client_id}, ready=False)
        self.key = WebKey.load_or_create(key_path(root))
        self.db = db_class(url, server_id, self.key, server_name=client_id)
        for name, value in db_attrs.items():
            setattr(self.db, name, value)
        self.worker = SyncWorker(client, self.db, config or SyncConfig(wait_s=1.0))
        self.thread = threading.Thread(target=self.worker.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(15)
