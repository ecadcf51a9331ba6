"""Web UI page time at 10,000 clients / 1,000,000 log rows, beside the bare SQL of the same pages, in one run.

A private MariaDB started for the run (``ems sync init``'s database, users and
grants), 10,000 clients over 2 servers and 1,000,000 ``snapshot_client_logs``
rows (messages sealed for the web, :mod:`bench.web_fleet`), the real web UI
(``web/``) on ``php -S`` with ``PHP_CLI_SERVER_WORKERS``, logged in as an
admin. For each page: the median and p95 of N requests (whole response read,
cookie sent, a fresh connection each, as a browser would), and the median and
p95 of the very SQL the page runs (its ``COUNT(*)`` and its page ``SELECT``,
rows fetched) as the web UI's MySQL user, over a kept connection. The ratio
says what PHP, PDO's connection, the session check and the template add. A
page or query is repeated N times, or fewer (at least 5) once they took 20 s.

    python -m bench.web                          # 10,000 clients, 1,000,000 log rows, 20 requests a page
    python -m bench.web --clients 2000 --rows 100000 --requests 10   # quicker

Figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

from bench.web_fleet import client_id, fill, say
from broker.cli.web_serve import CONFIG_ENV, php_argv, wait_listening, write_web_config
from sync import mariadb
from sync.mysql_url import connect
from sync.web_db import WEB_FILE, WRITER_FILE, WebDbPlan, init_web_db, read_credentials
from sync.web_users import add_user

PASSWORD = "bench horse battery staple"
PHP_WORKERS = 4
_CLIENTS_FROM = " FROM snapshot_clients c LEFT JOIN servers s ON s.server_id = c.server_id"
_CLIENTS_SELECT = (
    "SELECT c.server_id, COALESCE(NULLIF(s.name, ''), c.server_id) AS server_name, c.client_id, c.label, c.hostname, "
    "c.os, c.os_version, c.logged_in_user, c.version, c.online, c.last_seen, "
    "CAST(JSON_VALUE(c.sysinfo, '$.cpu_percent') AS DOUBLE) AS cpu, "
    "CAST(JSON_VALUE(c.sysinfo, '$.memory_percent') AS DOUBLE) AS memory, "
    "CAST(JSON_VALUE(c.sysinfo, '$.disk_percent') AS DOUBLE) AS disk" + _CLIENTS_FROM)
_CLIENTS_TEXT = ("(c.hostname LIKE %s OR c.label LIKE %s OR c.client_id LIKE %s OR c.logged_in_user LIKE %s "
                 "OR c.os LIKE %s OR s.name LIKE %s)")
_LOGS_FROM = " FROM snapshot_client_logs t LEFT JOIN servers s ON s.server_id = t.server_id"
_LOGS_SELECT = ("SELECT t.server_id AS row_server, t.id AS row_id, t.ts AS ts, "
                "COALESCE(NULLIF(s.name, ''), t.server_id) AS server, t.client_id AS client, t.level AS level, "
                "t.logger AS logger, t.message AS message" + _LOGS_FROM)
_LOGS_TEXT = ("(COALESCE(NULLIF(s.name, ''), t.server_id) LIKE %s OR t.client_id LIKE %s OR t.level LIKE %s "
              "OR t.logger LIKE %s)")
#: web/src/HistoryQuery.php COUNT_CAP: matching rows counted up to this many
COUNT_CAP = 10_000
_CAPPED_COUNT = "AS counted"
_SERVERS = "SELECT server_id, COALESCE(NULLIF(name, ''), server_id) AS name FROM servers ORDER BY name"


def _logs_order(direction: str) -> str:
    d = direction.upper()
    return f" ORDER BY t.ts {d}, t.server_id {d}, t.id {d} LIMIT 50 OFFSET 0"


def _logs(name: str, path: str, where: str, params: tuple) -> tuple[str, str, list[tuple[str, tuple]]]:
    """A Logs page: the server list, the count of matching rows (up to COUNT_CAP + 1) and the page."""
    count = f"SELECT COUNT(*) FROM (SELECT 1{_LOGS_FROM}{where} LIMIT {COUNT_CAP + 1}) {_CAPPED_COUNT}"
    return name, path, [(_SERVERS, ()), (count, params), (_LOGS_SELECT + where + _logs_order("desc"), params)]


def _fleet(now: float) -> list[tuple[str, tuple]]:
    """The Fleet view's aggregates (web/src/FleetQuery.php), 7 days for "not seen"."""
    day, bucket = 86400.0, "LEAST(9, GREATEST(0, FLOOR({} / 10)))"
    metrics = ", ".join(f"CAST(JSON_VALUE(sysinfo, '$.{m}_percent') AS DOUBLE) AS {m}" for m in ("cpu", "memory", "disk"))
    stale_from = " FROM snapshot_clients c LEFT JOIN servers s ON s.server_id = c.server_id WHERE c.last_seen < %s"
    return [
        ("SELECT COALESCE(NULLIF(s.name, ''), c.server_id) AS name, SUM(c.online <> 0) AS online, SUM(c.online = 0) AS offline"
         + _CLIENTS_FROM + " GROUP BY c.server_id, name ORDER BY name, c.server_id", ()),
        ("SELECT " + ", ".join(f"{bucket.format(m)} AS {m}" for m in ("cpu", "memory", "disk"))
         + f", COUNT(*) AS n FROM (SELECT {metrics} FROM snapshot_clients) m GROUP BY cpu, memory, disk", ()),
        ("SELECT COALESCE(NULLIF(os, ''), 'unknown') AS os, COUNT(*) AS n FROM snapshot_clients GROUP BY 1 ORDER BY n DESC, os", ()),
        ("SELECT COALESCE(SUM(last_seen > %s), 0), COALESCE(SUM(last_seen <= %s AND last_seen > %s), 0), "
         "COALESCE(SUM(last_seen <= %s AND last_seen > %s), 0), COALESCE(SUM(last_seen <= %s), 0) FROM snapshot_clients",
         (now - day, now - day, now - 7 * day, now - 7 * day, now - 30 * day, now - 30 * day)),
        ("SELECT COUNT(*) FROM snapshot_clients WHERE last_seen < %s", (now - 7 * day,)),
        ("SELECT COALESCE(NULLIF(c.hostname, ''), NULLIF(c.label, ''), c.client_id) AS host, "
         "COALESCE(NULLIF(s.name, ''), c.server_id) AS server, c.last_seen" + stale_from
         + " ORDER BY c.last_seen ASC, c.server_id, c.client_id LIMIT 10", (now - 7 * day,)),
        ("SELECT COALESCE(NULLIF(name, ''), server_id) AS name, last_sync FROM servers ORDER BY name, server_id", ()),
    ]


def scenarios(clients: int) -> list[tuple[str, str, list[tuple[str, tuple]]]]:
    """(name, page path, the SQL statements that page runs with their parameters), as web/src builds them."""
    order = " ORDER BY {}, c.server_id ASC, c.client_id ASC LIMIT 50 OFFSET {}"
    later = max(0, (clients // 50) * 3 // 4)  # a page three quarters of the way through
    like = f"%host-{clients // 3:05d}"[:-2] + "%"  # a hundred hosts
    some = client_id(clients // 3)
    text = ("SELECT COUNT(*)" + _CLIENTS_FROM + " WHERE " + _CLIENTS_TEXT, (like,) * 6)
    return [
        ("Clients, first page", "/clients", [("SELECT COUNT(*)" + _CLIENTS_FROM, ()),
                                             (_CLIENTS_SELECT + order.format("server_name ASC", 0), ())]),
        (f"Clients, page {later + 1}", f"/clients?page={later + 1}",
         [("SELECT COUNT(*)" + _CLIENTS_FROM, ()), (_CLIENTS_SELECT + order.format("server_name ASC", later * 50), ())]),
        ("Clients, sorted by CPU ▼", "/clients?sort=cpu&dir=desc",
         [("SELECT COUNT(*)" + _CLIENTS_FROM, ()), (_CLIENTS_SELECT + order.format("cpu DESC", 0), ())]),
        (f"Clients, filter '{like.strip('%')}'", f"/clients?q={like.strip('%')}",
         [text, (_CLIENTS_SELECT + " WHERE " + _CLIENTS_TEXT + order.format("server_name ASC", 0), (like,) * 6)]),
        ("Fleet charts", "/fleet", _fleet(time.time())),
        _logs("Logs, no filter", "/logs", "", ()),
        _logs(f"Logs, client {some}", f"/logs?client={some}", " WHERE t.client_id = %s", (some,)),
        _logs("Logs, level 'ERROR' (text filter)", "/logs?q=ERROR", " WHERE " + _LOGS_TEXT, ("%ERROR%",) * 4),
        _logs("Logs, text 'delivery'", "/logs?q=delivery", " WHERE " + _LOGS_TEXT, ("%delivery%",) * 4),
        _logs("Logs, text found nowhere", "/logs?q=no-such-text", " WHERE " + _LOGS_TEXT, ("%no-such-text%",) * 4),
    ]


class Browser:
    """Cookies kept, a fresh connection per request (``php -S`` closes it anyway)."""

    def __init__(self, port: int, log: Path):
        self.port, self.log = port, log
        self.cookies: dict[str, str] = {}

    def log_tail(self) -> str:
        return " | ".join(self.log.read_text(errors="replace").splitlines()[-5:])

    def request(self, method: str, path: str, form: dict | None = None) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = urllib.parse.urlencode(form) if form is not None else None
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
        finally:
            conn.close()
        for line in response.headers.get_all("Set-Cookie") or []:
            name, _, value = line.split(";", 1)[0].partition("=")
            self.cookies[name.strip()] = value
        return response.status, text

    def log_in(self, username: str) -> None:
        _, page = self.request("GET", "/login")
        token = re.search(r'name="csrf" value="([0-9a-f]{64})"', page).group(1)
        status, _ = self.request("POST", "/login", {"csrf": token, "username": username, "password": PASSWORD})
        if status != 303:
            raise RuntimeError(f"login answered {status}")


def _stats(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"median_ms": statistics.median(ordered) * 1000,
            "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000, "n": len(ordered)}


#: a page or query stops being repeated after this many seconds (with at least MIN_SAMPLES)
BUDGET_S = 20.0
MIN_SAMPLES = 5


def _enough(samples: list[float], n: int) -> bool:
    return len(samples) >= n or (len(samples) >= MIN_SAMPLES and sum(samples) > BUDGET_S)


def time_page(browser: Browser, path: str, n: int) -> dict:
    browser.request("GET", path)  # warm: MySQL's buffer pool, PHP's session files
    samples: list[float] = []
    while not _enough(samples, n):
        t0 = time.perf_counter()
        status, body = browser.request("GET", path)
        samples.append(time.perf_counter() - t0)
        if status != 200:
            raise RuntimeError(f"{path} answered {status} (php -S says: {browser.log_tail()})")
    return {**_stats(samples), "bytes": len(body)}


def time_sql(conn, statements: list[tuple[str, tuple]], n: int) -> dict:
    samples: list[float] = []
    found, i = None, 0
    with conn.cursor() as cur:
        while not _enough(samples, n):
            i += 1
            found, sql_before = None, ""
            t0 = time.perf_counter()
            for sql, params in statements:
                if found == 0 and _CAPPED_COUNT in sql_before:  # a history list skips its page when nothing matches
                    break
                cur.execute(sql, params)
                rows = cur.fetchall()
                sql_before = sql
                if sql.startswith("SELECT COUNT(*)"):
                    found = rows[0][0]
            if i > 1:  # the first run warms, as for the page
                samples.append(time.perf_counter() - t0)
    return {**_stats(samples), "matching": found}


def start_php(root: Path, config: Path, workers: int) -> tuple[subprocess.Popen, int]:
    port = mariadb.free_port()
    env = {**os.environ, CONFIG_ENV: str(config), "PHP_CLI_SERVER_WORKERS": str(workers)}
    with (root / "php.out").open("ab") as out:
        process = subprocess.Popen(php_argv(f"127.0.0.1:{port}"), stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    wait_listening("127.0.0.1", port, process.pid)
    return process, port


def stop_php(process: subprocess.Popen) -> None:
    """The server and its workers: the whole process group it leads."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    process.wait(10)


def run(clients: int, servers: int, rows: int, requests: int) -> dict:
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ems-web-bench-") as tmp:
        root = Path(tmp)
        instance = mariadb.start(root / "mariadb")
        php = None
        try:
            admin = instance.admin("ems_web")
            init_web_db(admin, root, WebDbPlan())
            say(f"loading {clients:,} clients and {rows:,} log rows")
            load = fill(admin, read_credentials(root / WRITER_FILE), root, clients, servers, rows)
            add_user(root, "bench", "admin", PASSWORD, "Bench Admin")
            php, port = start_php(root, write_web_config(root), PHP_WORKERS)
            browser = Browser(port, root / "php.out")
            browser.log_in("bench")
            results = []
            with connect(read_credentials(root / WEB_FILE), autocommit=True) as conn:
                for name, path, statements in scenarios(clients):
                    say(f"{name}: {requests} requests, then its SQL {requests} times")
                    page = time_page(browser, path, requests)
                    sql = time_sql(conn, statements, requests)
                    if path == "/fleet":  # its charts cover every client
                        sql["matching"] = clients
                    results.append({"name": name, "path": path, "page": page, "sql": sql,
                                    "ratio": page["median_ms"] / max(sql["median_ms"], 1e-6)})
        finally:
            if php is not None:
                stop_php(php)
            instance.stop()
    return {"clients": clients, "servers": servers, "log_rows": rows, "requests": requests,
            "php_workers": PHP_WORKERS, "load": load, "pages": results,
            "load_average": [load_start, os.getloadavg()[0]], "cores": os.cpu_count()}


def _matching(p: dict) -> str:
    found = p["sql"]["matching"] or 0
    return f"> {COUNT_CAP:,}" if found > COUNT_CAP else f"{found:,}"


def print_table(r: dict) -> None:
    print(f"{r['clients']:,} clients over {r['servers']} servers, {r['log_rows']:,} log rows; "
          f"{r['requests']} requests a page; php -S with {r['php_workers']} workers")
    print(f"machine load (1-min average) {r['load_average'][0]:.1f} at the start, {r['load_average'][1]:.1f} at the end, "
          f"{os.cpu_count()} cores")
    print(f"{'page':<38} {'rows':>9} {'page med':>9} {'page p95':>9} {'SQL med':>9} {'SQL p95':>9} {'page÷SQL':>9}")
    for p in r["pages"]:
        print(f"{p['name']:<38} {_matching(p):>9} {p['page']['median_ms']:>7.1f}ms "
              f"{p['page']['p95_ms']:>7.1f}ms {p['sql']['median_ms']:>7.1f}ms {p['sql']['p95_ms']:>7.1f}ms "
              f"{p['ratio']:>8.1f}×")


def markdown(r: dict) -> str:
    """The section of docs/benchmarks.md (bench/report.py)."""
    rows = [f"| {p['name']} | `{p['path']}` | {_matching(p)} | {p['page']['median_ms']:.1f} ms | "
            f"{p['page']['p95_ms']:.1f} ms | {p['sql']['median_ms']:.1f} ms | {p['sql']['p95_ms']:.1f} ms | "
            f"{p['ratio']:.1f}× |" for p in r["pages"]]
    return "\n".join([
        "## Web UI at scale (`bench/web.py`)", "",
        f"The real web UI (`php -S`, {r['php_workers']} workers, logged in) over a private MariaDB holding "
        f"{r['clients']:,} clients on {r['servers']} servers and {r['log_rows']:,} client log rows (messages sealed "
        f"for the web; loaded in {r['load']['logs_s']:.0f} s by `LOAD DATA LOCAL INFILE`). *Page*: median and p95 "
        f"of {r['requests']} requests (fewer, at least {MIN_SAMPLES}, where they took over {BUDGET_S:.0f} s), the whole "
        "response read. *SQL*: the same statements the page runs "
        "(its `COUNT(*)`, up to 10,001 rows, and page `SELECT`, rows fetched) as the web's MySQL user, in the same run. "
        f"Machine load (1-min average) {r.get('load_average', [0, 0])[0]:.1f} at the start and "
        f"{r.get('load_average', [0, 0])[1]:.1f} at the end on {r.get('cores') or '?'} cores.", "",
        "| page | URL | matching rows | page median | page p95 | SQL median | SQL p95 | page ÷ SQL |",
        "| --- | --- | --: | --: | --: | --: | --: | --: |", *rows, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=10_000, help="clients (default %(default)s)")
    parser.add_argument("--servers", type=int, default=2, help="servers they sync from (default %(default)s)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="client log rows (default %(default)s)")
    parser.add_argument("--requests", type=int, default=20, help="requests a page (default %(default)s)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    result = run(args.clients, args.servers, args.rows, args.requests)
    result["when"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    print_table(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
