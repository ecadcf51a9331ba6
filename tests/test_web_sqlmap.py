"""sqlmap (PyPI) against every parameter of every route of the web UI, served as a real server serves it
(nginx + php-fpm, tests/nginx_support.py), logged in with a session cookie and the session's CSRF token.

The route list is PHP's own (Router::ROUTES); the parameters each page class reads are grepped from web/src
($_GET / $_POST / AuthPages::posted / the query classes' $get): a route or a parameter this file does not
cover fails the test. sqlmap's exit code is 0 whether it finds something or not, so its output is read:
every parameter must be reported "does not seem to be injectable". A deliberately injectable page proves
the harness finds an injection when there is one.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from broker.cli.web_serve import WEB_ROOT, wait_listening
from nginx_support import NginxSite
from sync.mariadb import free_port
from web_support import WebClient, WebSite, php_routes

SQLMAP = str(Path(sys.executable).with_name("sqlmap"))
SQLMAP_ARGS = ["--batch", "--flush-session", "--technique=BEU", "--dbms=MySQL", "--disable-coloring", "--drop-set-cookie",
               "--ignore-code=401"]  # a wrong password answers 401: sqlmap would stop there
#: sqlmap's level 1 misses a value quoted inside LIKE '%...%' within parentheses (measured: a planted one in
#: ClientsQuery went unseen); level 3 finds it but costs 5x, so it runs on the text filters that are LIKEs
DEEP_ARGS = ["--level=3"]
DEEP = {"GET /clients": "q", "GET /logs": "q"}  # HistoryQuery serves every history tab and its CSV alike
PARALLEL = 2
HISTORY = {"q": "a", "server": "srv-a", "client": "a-0", "sort": "server", "dir": "desc", "page": "1", "per": "50"}
#: every route -> its parameters and a base value for each (the session cookie and CSRF token come on top)
ROUTE_PARAMS = {
    "GET /": {}, "GET /login": {}, "POST /logout": {}, "GET /servers/state": {}, "GET /users": {},
    "POST /login": {"username": "ada", "password": "not-the-password"},
    "POST /theme": {"theme": "light", "back": "/clients"},
    "GET /clients": {"q": "pc", "state": "online", "sort": "host", "dir": "asc", "page": "1", "per": "50"},
    "GET /servers": {"server": "srv-a", "page": "1"},
    "GET /servers/command": {"id": "cmd-1"},
    "POST /servers/sync": {"reason": "monthly check"},
    "POST /servers/action": {"client": "a-0", "action": "update_check", "reason": "monthly check"},
    # an existing name: every request that passes the checks stops at "taken" (no account is created)
    "POST /users": {"username": "ada", "display_name": "Someone", "role": "viewer", "password": "long enough password"},
    **{f"GET /{tab}{suffix}": HISTORY for tab in ("sessions", "security", "logs", "fileops", "messages", "captures")
       for suffix in ("", ".csv")},
}
#: how PHP reads a request parameter, by method; anything else that touches $_GET / $_POST fails the test
READS = {"GET": [r"\$_GET\[\s*'(\w+)'\s*\]", r"\$get\(\s*'(\w+)'\s*\)"],
         "POST": [r"\$_POST\[\s*'(\w+)'\s*\]", r"posted\(\s*'(\w+)'\s*\)"]}
#: whole-array reads the patterns above account for: $_GET handed to a query class (read there with $get), posted()
KNOWN_WHOLE_ARRAY_USES = {r"fromRequest\(.*?\$_GET\)": None, r"\$_POST\[\$name\]": "AuthPages"}
ALL_CLEAN = "all tested parameters do not appear to be injectable"
NOT_INJECTABLE = "{place} parameter '{name}' does not seem to be injectable"


def php_reads() -> dict[str, dict[str, set[str]]]:
    """page class -> method -> the parameter names it (or a non-page class it calls, one level) reads."""
    src = WEB_ROOT / "src"
    texts = {path.stem: path.read_text() for path in src.glob("*.php")}
    for name, text in texts.items():
        for use in re.finditer(r"\$_(GET|POST|REQUEST)\b(?!\[\s*'\w+'\s*\])", text):
            around = text[max(0, use.start() - 60):use.end() + 12]
            assert any(re.search(known, around) and where in (None, name) for known, where in KNOWN_WHOLE_ARRAY_USES.items()), (
                f"{name}.php reads a request parameter in a way this test does not know: {around!r}")
    reads = {}
    pages = {spec[0].rsplit("\\", 1)[-1] for spec in php_routes().values()}
    for page in pages:  # a page's own reads and those of the helper classes it calls (a page's posted() stays its own)
        used = [page, *(other for other in texts if other not in pages and re.search(rf"\b{other}::", texts[page]))]
        reads[page] = {method: {name for cls in used for pattern in patterns
                                for name in re.findall(pattern, texts[cls])} - {"csrf"}
                       for method, patterns in READS.items()}
    return reads


class Sqlmap:
    """One sqlmap run over some parameters of one request; ``verdicts``: parameter -> clean / vulnerable / untested."""

    def __init__(self, url: str, method: str, params: dict, test: list[str], cookie: str, out_dir: Path,
                 extra: dict | None = None, deep: bool = False):
        self.test = test
        body = urllib.parse.urlencode({**params, **(extra or {})})
        target = ["-u", url + ("?" + body if method == "GET" and body else "")]
        if method == "POST":
            target += ["--data", body]
        argv = [SQLMAP, *target, "-p", ",".join(test), "--cookie", cookie, "--output-dir", str(out_dir), *SQLMAP_ARGS,
                *(DEEP_ARGS if deep else [])]
        self.place = method
        # its own HOME: sqlmap keeps history and state under ~/.local/share/sqlmap, shared with any other run
        self.done = subprocess.run(argv, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
                                   env={**os.environ, "HOME": str(out_dir)})
        self.output = self.done.stdout + self.done.stderr

    @property
    def verdicts(self) -> dict[str, str]:
        found = {}
        for name in self.test:
            if re.search(rf"parameter '{re.escape(name)}' is vulnerable", self.output) or \
                    re.search(rf"Parameter: {re.escape(name)} \(", self.output):
                found[name] = "vulnerable"
            elif NOT_INJECTABLE.format(place=self.place, name=name) in self.output:
                found[name] = "clean"
            else:
                found[name] = "untested"
        return found

    def tail(self) -> str:
        return self.output[-2500:]


@pytest.fixture(scope="module")
def site(mysql_admin_url, tmp_path_factory):
    site = WebSite(mysql_admin_url, tmp_path_factory.mktemp("web"))
    site.add_server("srv-a", "Head office")
    site.add_client("srv-a", "a-0", "pc-a0")
    site.add_client("srv-a", "a-1", "pc-a1", online=False)
    t0 = 1_780_000_000.0
    site.add_row("snapshot_sessions", "srv-a", {"id": 1, "client_id": "a-0", "started": t0, "logged_in_user": "alice"})
    site.add_row("snapshot_client_logs", "srv-a", {"id": 1, "client_id": "a-0", "ts": t0, "level": "WARNING",
                                                   "logger": "agent.disk"}, {"message": "disk almost full"})
    site.add_row("snapshot_messages", "srv-a", {"id": 1, "client_id": "a-0", "ts": t0, "direction": "out", "operator": "Otto",
                                                "status": "delivered", "status_ts": t0}, {"body": "hello alice"})
    site.add_row("snapshot_fileops", "srv-a", {"id": 1, "client_id": "a-0", "ts": t0, "operator": "Otto", "op": "download",
                                               "size": 12, "ok": 1}, {"path": "/home/alice/a.txt", "error": ""})
    site.add_row("snapshot_security", "srv-a", {"id": 1, "origin": "broker", "subject": "a-0", "ts": t0, "event": "auth.refused",
                                                "severity": "warning", "detail": "bad key"})
    site.add_row("snapshot_captures", "srv-a", {"id": 1, "client_id": "a-0", "ts": t0, "width": 1280, "height": 800,
                                                "format": "jpeg", "quality": 70, "operator": "Otto"})
    yield site
    site.close()


@pytest.fixture(scope="module")
def served(site):
    # sqlmap fails thousands of logins from one address: the throttle would answer them all alike
    served = NginxSite(site, login_throttle={"per_pair": 10**9, "per_address": 10**9, "per_account": 10**9})
    yield served
    served.close()


def test_every_route_and_every_parameter_php_reads_is_covered():
    routes = php_routes()
    assert set(ROUTE_PARAMS) == set(routes), "a route without sqlmap coverage (or gone): edit ROUTE_PARAMS"
    reads = php_reads()
    assert reads["HistoryPage"]["GET"] >= {"q", "sort", "page"} and reads["ServersPage"]["POST"] >= {"reason", "client"}
    for page, methods in reads.items():
        for method, names in methods.items():
            covered = {name for route, params in ROUTE_PARAMS.items() if route.startswith(method + " ")
                       and routes[route][0].endswith("\\" + page) for name in params}
            assert names <= covered, f"{page} reads {method} {sorted(names - covered)}: not in ROUTE_PARAMS"
            assert covered <= names, f"ROUTE_PARAMS gives {page} {method} {sorted(covered - names)}, which PHP never reads"


def _scan(served: NginxSite, job: tuple[str, bool], out_dir: Path) -> tuple[str, Sqlmap, int]:
    route, deep = job
    method, path = route.split(" ", 1)
    params = ROUTE_PARAMS[route]
    client = WebClient(served.base)
    if route != "POST /login":
        assert client.login("ada") == 303
    token = client.csrf("/login" if route == "POST /login" else "/clients")
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    started = time.monotonic()
    run = Sqlmap(served.base + path, method, params, [DEEP[route]] if deep else list(params), cookie, out_dir,
                 extra={"csrf": token} if method == "POST" else None, deep=deep)
    run.took_s = time.monotonic() - started
    still = client.request("GET", "/clients")[0]  # the session survived the run (200), or was never one (303)
    return route, run, still


def test_sqlmap_finds_nothing_in_any_parameter_of_any_route(served, tmp_path):
    # the longest first: each login sqlmap tries checks a password hash (argon2id, about 0.2 s)
    jobs = [(route, True) for route in DEEP] + sorted(((route, False) for route, params in ROUTE_PARAMS.items() if params),
                                                      key=lambda job: (job[0] != "POST /login", -len(ROUTE_PARAMS[job[0]])))
    started = time.monotonic()
    with ThreadPoolExecutor(PARALLEL) as pool:
        results = list(pool.map(lambda job: _scan(served, job, tmp_path / re.sub(r"\W", "_", f"{job}")), jobs))
    took = time.monotonic() - started
    tested = 0
    for route, run, still in results:
        assert "is vulnerable" not in run.output and "identified the following injection point" not in run.output, (
            route, run.tail())
        assert set(run.verdicts.values()) == {"clean"}, (route, run.verdicts, run.tail())
        critical = [line for line in run.output.splitlines() if "[CRITICAL]" in line and ALL_CLEAN not in line]
        assert not critical, (route, critical)
        assert still == (303 if route == "POST /login" else 200), (route, still)
        tested += len(run.test)
    assert tested == sum(len(params) for params in ROUTE_PARAMS.values()) + len(DEEP)
    slowest = ", ".join(f"{route} {run.took_s:.0f} s" for route, run, _ in sorted(results, key=lambda r: -r[1].took_s)[:4])
    print(f"sqlmap: {tested} parameters ({len(DEEP)} at level 3) in {len(jobs)} runs in {took:.1f} s, {PARALLEL} at a time; slowest: {slowest}")


INJECTABLE_PAGE = """<?php
// Deliberately injectable: proves the sqlmap harness finds what it is there to find.
require '{src}/bootstrap.php';
$db = Ems\\Web\\Db::connect(Ems\\Web\\Config::fromEnv());
$in = $_SERVER['REQUEST_METHOD'] === 'POST' ? $_POST : $_GET;
$host = (string) ($in['host'] ?? '');
$q = (string) ($in['q'] ?? '');
$rows = $db->query("SELECT hostname FROM snapshot_clients WHERE hostname = '" . $host . "' OR "
    . "(hostname LIKE '%" . $q . "%' OR client_id LIKE '%" . $q . "%') LIMIT 5")->fetchAll();
echo $rows ? 'found ' . count($rows) : 'nothing';
"""


@pytest.mark.parametrize("method, param, deep", [("GET", "host", False), ("POST", "host", False), ("GET", "q", True)])
def test_the_harness_finds_a_deliberately_injectable_page(site, tmp_path, method, param, deep):
    docroot = tmp_path / "docroot"
    docroot.mkdir()
    (docroot / "index.php").write_text(INJECTABLE_PAGE.replace("{src}", str(WEB_ROOT / "src")))
    port = free_port()
    php = subprocess.Popen(["php", "-S", f"127.0.0.1:{port}", "-t", str(docroot)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True,
                           env={**os.environ, "EMS_WEB_CONFIG": str(site.config)})
    try:
        wait_listening("127.0.0.1", port, php.pid)
        run = Sqlmap(f"http://127.0.0.1:{port}/index.php", method, {"host": "pc-a0", "q": "zz"}, [param], "x=1",
                     tmp_path / "out", extra={"csrf": "0" * 64} if method == "POST" else None, deep=deep)
    finally:
        os.kill(php.pid, signal.SIGTERM)
        php.wait(10)
    assert run.verdicts == {param: "vulnerable"}, run.tail()
