"""The web UI under test: a real MariaDB database prepared by ``ems sync init``'s code, the config file
``ems up`` writes, a real ``php -S`` on a random port (stopped by its pid), web accounts, snapshot rows
written with the sync writer's account, and a small cookie-keeping HTTP client.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import time
import urllib.parse
import uuid
from pathlib import Path

from broker.cli.web_serve import CONFIG_ENV, php_argv, wait_listening, write_web_config
from sync.mariadb import free_port
from sync.mysql_url import MysqlUrl, connect
from sync.web_crypto import WebKey, aad_for, key_path
from sync.web_db import WRITER_FILE, WebDbPlan, init_web_db, read_credentials
from sync.web_users import add_user

PASSWORD = "correct horse battery"
#: web accounts every site has: user name -> (role, display name)
ACCOUNTS = {"vera": ("viewer", "Vera Viewer"), "otto": ("operator", "Otto Operator"), "ada": ("admin", "Ada Admin")}
WEB_TABLES_STATE = ("web_users", "web_sessions", "web_settings", "web_login_attempts", "web_reports", "web_update_batches",
                    "web_update_targets", "web_history_grants", "web_audit")


class WebSite:
    """One database, one config (with the admin API's URL and token if given, and a ``live`` section if given:
    ``{"server_id": ...}`` alone names the server this site acts on), one PHP server; ``close()`` stops it by its pid."""

    def __init__(self, admin_url: str, root: Path, admin_api: tuple[str, str] | None = None, live: dict | None = None):
        suffix = uuid.uuid4().hex[:10]
        self.root = root
        self.plan = WebDbPlan(database=f"ems_web_{suffix}", writer=f"ws_{suffix}", web_user=f"wu_{suffix}")
        self.admin = MysqlUrl.parse(admin_url).with_database(self.plan.database)
        init_web_db(self.admin, root, self.plan)
        self.config = write_web_config(root, *(admin_api or ()))
        if live is not None:
            self.config.write_text(json.dumps({**json.loads(self.config.read_text()), "live": live}))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = root / "php.out"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(php_argv(f"127.0.0.1:{self.port}"), stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env={**os.environ, CONFIG_ENV: str(self.config)},
                                            start_new_session=True)
        wait_listening("127.0.0.1", self.port, self.process.pid)
        for name, (role, display) in ACCOUNTS.items():
            add_user(root, name, role, PASSWORD, display)

    def close(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            self.process.wait(10)

    def admin_sql(self, sql: str, params=()) -> tuple:
        """Run ``sql`` as the database administrator; returns the rows."""
        with connect(self.admin, autocommit=True) as conn, conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    def state(self) -> dict[str, tuple]:
        """Every row of the web UI's own tables (to prove a request changed nothing)."""
        return {table: self.admin_sql(f"SELECT * FROM `{table}` ORDER BY 1") for table in WEB_TABLES_STATE}

    def writer(self):
        """A connection as the sync writer (the only account that writes snapshot tables)."""
        return connect(read_credentials(self.root / WRITER_FILE), autocommit=True)

    def add_server(self, server_id: str, name: str) -> None:
        with self.writer() as conn, conn.cursor() as cursor:
            cursor.execute("INSERT INTO servers (server_id, name, updated, last_sync) VALUES (%s, %s, %s, %s)",
                           (server_id, name, time.time(), time.time()))

    def add_client(self, server_id: str, client_id: str, hostname: str, online: bool = True, cpu: float | None = 10.0,
                   memory: float = 40.0, disk: float = 50.0, user: str = "alice", os_name: str = "Linux") -> None:
        sysinfo = json.dumps({"cpu_percent": cpu, "memory_percent": memory, "disk_percent": disk, "hostname": hostname})
        now = time.time()
        with self.writer() as conn, conn.cursor() as cursor:
            cursor.execute(
                "INSERT INTO snapshot_clients (server_id, client_id, label, hostname, os, os_version, logged_in_user, version, "
                "first_seen, last_seen, online, presence_ts, sysinfo, sysinfo_ts) "
                "VALUES (%s, %s, '', %s, %s, '12', %s, '1.0', %s, %s, %s, %s, %s, %s)",
                (server_id, client_id, hostname, os_name, user, now - 3600, now, int(online), now, sysinfo, now))


    def add_row(self, table: str, server_id: str, row: dict, sealed: dict | None = None) -> None:
        """One snapshot row as the sync writer writes it: ``sealed`` values sealed under the web key for their row."""
        key = WebKey.load_or_create(key_path(self.root))
        values = {"server_id": server_id, **row}
        for column, plain in (sealed or {}).items():
            values[column] = key.seal(plain, aad_for(table, column, server_id, row["id"]))
        names = ", ".join(values)
        with self.writer() as conn, conn.cursor() as cursor:
            cursor.execute(f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(values))})", tuple(values.values()))


class WebClient:
    """A browser without a browser: keeps cookies, never follows redirects, reads the CSRF token from forms."""

    def __init__(self, base: str, source: str = ""):
        """``source``: the local address to connect from (any 127.x.y.z: another client address on loopback)."""
        self.address = urllib.parse.urlsplit(base).netloc
        self.source = (source, 0) if source else None
        self.cookies: dict[str, str] = {}
        self.set_cookies: list[str] = []

    def request(self, method: str, path: str, form: dict | None = None, headers: dict | None = None):
        """(status, headers, body text) of one request."""
        conn = http.client.HTTPConnection(self.address, timeout=30, source_address=self.source)
        body = urllib.parse.urlencode(form) if form is not None else None
        sent = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()), **(headers or {})}
        if body is not None:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
        finally:
            conn.close()
        self.set_cookies = response.headers.get_all("Set-Cookie") or []
        for line in self.set_cookies:
            name, _, value = line.split(";", 1)[0].partition("=")
            if value in ("", "deleted") or "max-age=0" in line.lower():
                self.cookies.pop(name.strip(), None)
            else:
                self.cookies[name.strip()] = value
        return response.status, response.headers, text

    def csrf(self, path: str = "/login") -> str:
        status, _, text = self.request("GET", path)
        match = re.search(r'name="csrf" value="([0-9a-f]{64})"', text)
        assert match, f"no CSRF token on {path} ({status}): {text[:300]}"
        return match.group(1)

    def login(self, username: str, password: str = PASSWORD) -> int:
        token = self.csrf("/login")
        status, _, _ = self.request("POST", "/login", {"csrf": token, "username": username, "password": password})
        return status


def php_routes() -> dict[str, list]:
    """The web UI's route table (web/src/Router.php), read by PHP itself: every route a test must cover."""
    root = Path(__file__).resolve().parents[1] / "web" / "src"
    code = f"require '{root}/bootstrap.php'; echo json_encode(Ems\\Web\\Router::ROUTES);"
    return json.loads(subprocess.run(["php", "-r", code], capture_output=True, text=True, check=True).stdout)
