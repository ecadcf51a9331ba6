"""A large web view for bench/web.py: N clients over S servers and M client log rows, loaded fast.

The rows are written the way the sync worker leaves them (the log message
sealed for the web under the data dir's web key, keyed to its row), through
``LOAD DATA LOCAL INFILE`` (:mod:`sync.bulk_load`) in chunks, with progress
on stderr. Everything is deterministic from the row number, so the bench
knows which client, level and logger a filter will find.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from sync import bulk_load
from sync.mysql_url import MysqlUrl, connect
from sync.web_crypto import WebKey, aad_for, key_path

LOGGERS = ("agent", "agent.delivery", "agent.screen", "agent.sysinfo", "agent.power")
OSES = (("Linux", "Debian 12"), ("Linux", "Ubuntu 24.04"), ("Windows", "11 23H2"), ("Darwin", "14.5"))
CHUNK = 100_000
_LOG_COLUMNS = ["server_id", "id", "client_id", "ts", "level", "logger", "message", "sync_gen"]
_CLIENT_COLUMNS = ["server_id", "client_id", "label", "hostname", "os", "os_version", "logged_in_user", "version",
                   "first_seen", "last_seen", "online", "presence_ts", "sysinfo", "sysinfo_ts", "sync_gen"]


def say(msg: str) -> None:
    print(f"[web bench] {msg}", file=sys.stderr, flush=True)


def server_ids(servers: int) -> list[str]:
    return [f"srv-{s + 1}" for s in range(servers)]


def client_id(i: int) -> str:
    return f"client-{i:05d}"


def client_server(i: int, servers: int) -> str:
    return f"srv-{i % servers + 1}"


def level(i: int) -> str:
    """The level of log row ``i``: 2 % ERROR, 8 % WARNING, the rest INFO."""
    return "ERROR" if i % 50 == 0 else "WARNING" if i % 10 == 0 else "INFO"


def _client_row(i: int, servers: int, now: float) -> tuple:
    os_name, os_version = OSES[i % len(OSES)]
    online = i % 5 != 0  # 80 % online
    last_seen = now - (0 if online else 3600 * (i % 400))
    sysinfo = json.dumps({"cpu_percent": (i * 37) % 101, "memory_percent": (i * 53) % 101,
                          "disk_percent": (i * 71) % 101, "hostname": f"host-{i:05d}"})
    return (client_server(i, servers), client_id(i), "", f"host-{i:05d}", os_name, os_version, f"user{i % 997}",
            "1.0", now - 86400 * 30, last_seen, int(online), last_seen, sysinfo, last_seen, 0)


def _log_rows(start: int, stop: int, clients: int, servers: int, rows: int, key: WebKey, now: float) -> list[tuple]:
    out = []
    for i in range(start, stop):
        c = i % clients
        server = client_server(c, servers)
        message = key.seal(f"line {i}: something happened on {client_id(c)}",
                           aad_for("snapshot_client_logs", "message", server, i))
        out.append((server, i, client_id(c), now - (rows - i) * 0.5, level(i), LOGGERS[i % len(LOGGERS)], message, 0))
    return out


def fill(admin: MysqlUrl, writer: MysqlUrl, data_root: Path, clients: int, servers: int, rows: int) -> dict:
    """Servers, clients and log rows into the web database; returns the seconds each part took."""
    now = time.time()
    key = WebKey.load_or_create(key_path(data_root))
    timings = {}
    with connect(writer, local_infile=True) as conn, conn.cursor() as cur:
        t0 = time.monotonic()
        for sid in server_ids(servers):
            cur.execute("INSERT INTO servers (server_id, name, updated, last_sync, last_full_sync) "
                        "VALUES (%s, %s, %s, %s, %s)", (sid, f"Server {sid[4:]}", now, now - 30, now - 600))
        bulk_load.load(cur, "snapshot_clients", _CLIENT_COLUMNS, [_client_row(i, servers, now) for i in range(clients)])
        conn.commit()
        timings["clients_s"] = time.monotonic() - t0
        say(f"{clients:,} clients over {servers} servers in {timings['clients_s']:.1f} s")
        t0 = time.monotonic()
        for start in range(0, rows, CHUNK):
            stop = min(rows, start + CHUNK)
            bulk_load.load(cur, "snapshot_client_logs", _LOG_COLUMNS,
                           _log_rows(start, stop, clients, servers, rows, key, now))
            conn.commit()
            elapsed = time.monotonic() - t0
            say(f"log rows {stop:,} / {rows:,} ({elapsed:.0f} s, {stop / max(elapsed, 1e-9):,.0f} rows/s)")
        timings["logs_s"] = time.monotonic() - t0
    with connect(admin, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("ANALYZE TABLE snapshot_clients, snapshot_client_logs, servers")
        cur.fetchall()
    return timings
