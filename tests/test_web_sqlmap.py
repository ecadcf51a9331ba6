"""sqlmap (PyPI) against every parameter of every route of the web UI, served as a real server serves it
(nginx + php-fpm, tests/nginx_support.py), logged in with a session cookie and the session's CSRF token.

The route list is PHP's own (Router::ROUTES); the parameters each page class reads are found in web/src by
following $_GET / $_POST into the methods they are handed to (PhpReads): a route or a parameter this file does
not cover fails the test, and so does a way of reading them PhpReads does not know. sqlmap's exit code is 0 whether it finds something or not, so its output is read:
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
DEEP = {"GET /clients": "q", "GET /logs": "q",  # HistoryQuery serves every history tab and its CSV alike
        "GET /updates": "q"}  # UpdatesQuery's filter serves the tab and POST /updates/check's "all matching" alike
PARALLEL = 2
WHY = "monthly check"
HISTORY = {"q": "a", "server": "srv-a", "client": "a-0", "sort": "server", "dir": "desc", "page": "1", "per": "50",
           "cols": "ts,server,client"}
#: rows the site fixture makes, so that a route reaches past "no such ...": ada's report and another user's, an update check
REPORT, OTHERS_REPORT, CHECK = "1", "2", "1"
#: every route -> its parameters and a base value for each (the session cookie and CSRF token come on top)
ROUTE_PARAMS = {
    "GET /": {}, "GET /login": {}, "POST /logout": {}, "GET /servers/state": {}, "GET /users": {}, "GET /servers/auto": {},
    "POST /login": {"username": "ada", "password": "not-the-password"},
    "POST /theme": {"theme": "light", "back": "/clients"},
    "GET /clients": {"q": "pc", "state": "online", "sort": "host", "dir": "asc", "page": "1", "per": "50"},
    "POST /clients/frame": {"server": "srv-a", "client": "a-0", "reason": WHY},
    "GET /fleet": {"days": "30"},
    "GET /servers": {"server": "srv-a", "page": "1", "client": "a-0"},
    "GET /servers/command": {"id": "cmd-1"},
    "POST /servers/sync": {"server": "srv-a", "reason": WHY},
    "POST /servers/action": {"server": "srv-a", "client": "a-0", "action": "update-check", "reason": WHY},
    "POST /servers/auto": {"enabled": "1", "every_min": "60", "reason": WHY},
    "GET /updates": {"server": "srv-a", "q": "pc", "page": "1"},
    "GET /updates/run": {"id": CHECK}, "GET /updates/state": {"id": CHECK}, "POST /updates/step": {"id": CHECK},
    "POST /updates/check": {"all": "1", "server": "srv-a", "q": "pc", "page": "1", "pick[]": "srv-a/a-0", "reason": WHY},
    "POST /updates/apply": {"batch": CHECK, "first": "1", "size": "1", "stop": "1", "skip_failed": "1", "reason": WHY},
    **{f"GET /{tab}{suffix}": HISTORY for tab in ("sessions", "security", "logs", "fileops", "messages", "captures")
       for suffix in ("", ".csv")},
    "POST /history/grant": {"tab": "captures", "reason": WHY, **HISTORY},
    "POST /captures/previews": {"server": "srv-a", "ids": "1", "reason": WHY},
    "POST /captures/image": {"server": "srv-a", "id": "1", "reason": WHY},
    "GET /reports": {"saved": REPORT}, "GET /reports/open": {"id": REPORT}, "GET /reports/csv": {"id": REPORT},
    # ada's report's name: a request that passes the checks stops at "taken" (at most a few odd names are saved)
    "POST /reports": {"name": "disk warnings", "tab": "logs", **HISTORY, "cols": "ts,client,message"},
    "POST /reports/rename": {"id": REPORT, "name": "disk warnings, weekly"},
    # another user's report: each request that passes the checks stops at "not yours" (nothing is deleted)
    "POST /reports/delete": {"id": OTHERS_REPORT},
    # the Operations tab reads and acts through the admin API (none here: each stops at "not configured")
    "GET /operations": {"view": "bulk", "run": "r-1", "template": "patch", "page": "1", "broadcast": "b-1"},
    "POST /operations/inbox-read": {"id": "12", "all": "0"},
    "POST /operations/ack": {"id": "12", "reason": WHY},
    "POST /operations/schedule": {"template": "patch", "name": "nightly", "selector": "all", "p[window_h]": "4",
                                  "max_parallel": "20", "canary": "0", "halt_failure_pct": "50", "cron": "0 2 * * *",
                                  "at": "", "tz": "UTC", "missed": "skip", "reason": WHY},
    "POST /operations/schedule-change": {"id": "no-such-schedule", "action": "pause", "reason": WHY},
    "POST /operations/broadcast": {"selector": "all", "text": "Fire drill at 3", "reason": WHY, "preview": "1",
                                   "previewed": "all"},
    "POST /operations/decide": {"id": "no-such-request", "approve": "1", "reason": WHY},
    "POST /operations/cancel": {"id": "no-such-run", "reason": WHY},
    "POST /operations/run": {"template": "patch", "selector": "all", "p[window_h]": "4", "max_parallel": "20", "canary": "0",
                             "halt_failure_pct": "50", "reason": WHY, "preview": "1", "previewed": "all"},
    # an existing name: every request that passes the checks stops at "taken" (no account is created)
    "POST /users": {"username": "ada", "display_name": "Someone", "role": "viewer", "password": "long enough password"},
}
#: parameters PHP reads only when another one has another value: one more run with that value, over these only
ALSO = {"POST /updates/check": ({"all": "0"}, ["pick[]"])}
#: routes whose base request answers 404 by design (sqlmap stops at a 404 it is not told to ignore)
ANSWERS_404 = {"POST /reports/delete"}
ALL_CLEAN = "all tested parameters do not appear to be injectable"
NOT_INJECTABLE = "{place} parameter '{name}' does not seem to be injectable"


#: how PHP reads request parameters. A page reads $_GET / $_POST by a literal key ($_GET['id']), or hands the
#: whole array to a method of a class in web/src (ListParams::text($_GET, 'id'), HistoryQuery::fromRequest(...,
#: $_POST), $reports->save(..., $_POST)), which reads its array parameter the same ways, by a literal key, by the
#: name a caller passes ($params[$name]: ListParams::text($params, 'page')), through a closure (UpdatesQuery's $get)
#: or by handing it on; $_POST[$name] in a method makes that method a reader of the names its callers pass
#: (AuthPages::posted('reason'), UpdatesPage's whole('first')). Anything else touching a request array fails.
FUNCTION = re.compile(r"function (\w+)\(([^)]*)\)[^{;]*\{")
RECEIVER = re.compile(r"(?:\b(\w+)::|\$(\w+)->)?(\w+)\s*$")


class PhpReads:
    """Request parameters read, per class of web/src and method (GET, POST), followed through the calls above."""

    def __init__(self, src: Path):
        self.texts = {path.stem: path.read_text() for path in sorted(src.glob("*.php"))}
        self.methods = {}  # (class, method) -> (start, end, [(param, literal default)])
        for cls, text in self.texts.items():
            found = list(FUNCTION.finditer(text))
            for i, match in enumerate(found):
                params = re.findall(r"\$(\w+)(?:\s*=\s*'(\w+)')?", match.group(2))
                self.methods[(cls, match.group(1))] = (match.end(), found[i + 1].start() if i + 1 < len(found) else len(text),
                                                       [(name, default or None) for name, default in params])
        self.reads = {cls: {"GET": set(), "POST": set()} for cls in self.texts}
        self.named_readers = set()  # (class, method, arg index, GET/POST): reads the key its callers pass there
        for cls, text in self.texts.items():
            for use in re.finditer(r"\$_(GET|POST|REQUEST)\b", text):
                method = "GET" if use.group(1) == "GET" else "POST" if use.group(1) == "POST" else self.fail(cls, use.start())
                self.reads[cls][method] |= self.array_use(cls, use.start(), use.end(), None, method)
        for reader in sorted(self.named_readers):
            self.callers_of(*reader)

    def fail(self, cls: str, at: int):
        text = self.texts[cls]
        raise AssertionError(f"{cls}.php reads a request parameter in a way this test does not know: "
                             f"{text[max(0, at - 60):at + 40]!r}")

    def method_at(self, cls: str, at: int) -> tuple[str, list]:
        for (owner, name), (start, end, params) in self.methods.items():
            if owner == cls and start <= at < end:
                return name, params
        self.fail(cls, at)

    @staticmethod
    def literal(arg: str | None) -> str | None:
        match = re.fullmatch(r"\s*'(\w+)'\s*", arg or "")
        return match.group(1) if match else None

    def array_use(self, cls: str, start: int, end: int, args: list | None, method: str) -> set[str]:
        """The keys one use of a request array (at text[start:end]) reads; args: the method's call-site arguments."""
        text = self.texts[cls]
        name, params = self.method_at(cls, start)
        key = re.match(r"\[\s*(?:'(\w+)'|\$(\w+))\s*\]", text[end:])
        if key and key.group(1):
            return {key.group(1)}
        if key:  # $array[$name]: the name a caller passes, or a closure's argument
            names = [param for param, _ in params]
            if key.group(2) in names:
                index = names.index(key.group(2))
                if args is None:
                    self.named_readers.add((cls, name, index, method))
                    return set()
                value = self.literal(args[index]) if index < len(args) else params[index][1]
                return {value} if value else self.fail(cls, start)
            closure = re.search(rf"\$(\w+)\s*=\s*(?:static\s+)?fn\s*\(\s*string\s+\${key.group(2)}\s*\)[^;]*$", text[:start])
            if not closure:
                self.fail(cls, start)
            body = text[self.methods[(cls, name)][0]:self.methods[(cls, name)][1]]
            return set(re.findall(rf"\${closure.group(1)}\(\s*'(\w+)'\s*\)", body))
        callee, index, call_args = self.enclosing_call(cls, start, end)
        _, _, callee_params = self.methods[callee]
        var = callee_params[index][0]
        c_start, c_end, _ = self.methods[callee]
        body = self.texts[callee[0]]
        names = set()
        for use in re.finditer(rf"\${var}\b", body[c_start:c_end]):
            names |= self.array_use(callee[0], c_start + use.start(), c_start + use.end(), call_args, method)
        return names

    def enclosing_call(self, cls: str, start: int, end: int) -> tuple[tuple[str, str], int, list[str]]:
        """(callee class, method), the argument index and the arguments of the call text[start:end] is a whole argument of."""
        text = self.texts[cls]
        depth, at = 0, start - 1
        while at >= 0 and not (text[at] == "(" and depth == 0) and text[at] not in ";{}":
            depth += {")": 1, "(": -1}.get(text[at], 0)
            at -= 1
        args = self.call_args(text, at) if at >= 0 and text[at] == "(" else []
        mine = [i for i, arg in enumerate(args) if arg.strip() == text[start:end]]
        receiver = RECEIVER.search(text[:at]) if args else None
        if not mine or not receiver:
            self.fail(cls, start)
        owner, var, method = receiver.groups()
        if owner in ("self", "static") or var == "this":
            owner = cls
        elif var:
            typed = re.search(rf"\b([A-Z]\w+)\s+\${var}\b|\${var}\s*=\s*new\s+([A-Z]\w+)\(", text)
            owner = typed and (typed.group(1) or typed.group(2))
        if (owner, method) not in self.methods:
            self.fail(cls, start)
        return (owner, method), mine[0], args

    @staticmethod
    def call_args(text: str, paren: int) -> list[str]:
        """The arguments (as text) of the call whose "(" is at text[paren]."""
        args, depth, begin = [], 0, paren + 1
        for at in range(paren + 1, len(text)):
            if text[at] in "([" or (text[at] in ")]" and depth):
                depth += 1 if text[at] in "([" else -1
            elif text[at] in ",)" and depth == 0:
                args.append(text[begin:at])
                begin = at + 1
                if text[at] == ")":
                    break
        return args

    def callers_of(self, cls: str, method: str, index: int, request: str) -> None:
        """Credit every caller of a method that reads the key passed at ``index`` with that key."""
        for caller, text in self.texts.items():
            for call in re.finditer(rf"(?:\b{cls}::|\bself::|\$this->){method}\(", text):
                if caller != cls and not text[call.start():].startswith(f"{cls}::"):
                    continue
                args = self.call_args(text, call.end() - 1)
                value = self.literal(args[index]) if index < len(args) else None
                if value:
                    self.reads[caller][request].add(value)
                    continue
                name, params = self.method_at(caller, call.start())
                names = [param for param, _ in params]
                passed = re.fullmatch(r"\s*\$(\w+)\s*", args[index] if index < len(args) else "")
                if not passed or passed.group(1) not in names:
                    self.fail(caller, call.start())
                self.callers_of(caller, name, names.index(passed.group(1)), request)


def php_reads() -> dict[str, dict[str, set[str]]]:
    """page class -> method -> the parameter names it (or a non-page class it names) reads."""
    found = PhpReads(WEB_ROOT / "src")
    pages = {spec[0].rsplit("\\", 1)[-1] for spec in php_routes().values()}
    reads = {}
    for page in pages:  # a page's own reads and those of the classes it names that are not pages (Session's csrf aside)
        used = [page, *(other for other in found.texts if other not in pages
                        and re.search(rf"\b{other}(::|\s+\$|\()", found.texts[page]))]
        reads[page] = {method: set().union(*(found.reads[cls][method] for cls in used)) - {"csrf"} for method in ("GET", "POST")}
    return reads


class Sqlmap:
    """One sqlmap run over some parameters of one request; ``verdicts``: parameter -> clean / vulnerable / untested."""

    def __init__(self, url: str, method: str, params: dict, test: list[str], cookie: str, out_dir: Path,
                 extra: dict | None = None, deep: bool = False, more: list[str] | None = None):
        self.test = test
        body = urllib.parse.urlencode({**params, **(extra or {})}, safe="[]")  # pick[] stays one name to sqlmap
        target = ["-u", url + ("?" + body if method == "GET" and body else "")]
        if method == "POST":
            target += ["--data", body]
        argv = [SQLMAP, *target, "-p", ",".join(test), "--cookie", cookie, "--output-dir", str(out_dir), *SQLMAP_ARGS,
                *(DEEP_ARGS if deep else []), *(more or [])]
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
    now = time.time()
    users = dict(site.admin_sql("SELECT username, id FROM web_users"))
    for user in ("ada", "otto"):
        site.admin_sql("INSERT INTO web_reports (user_id, name, tab, params, created, updated) VALUES (%s, 'disk warnings', "
                       "'logs', '{\"q\": \"disk\"}', %s, %s)", (users[user], now, now))
    site.admin_sql("INSERT INTO web_update_batches (action, user_id, operator, reason, first_wave, wave_size, stop_failures, "
                   "waves, state, created, updated) VALUES ('update-check', %s, 'Ada Admin', %s, 1, 1, 1, 1, 'done', %s, %s)",
                   (users["ada"], WHY, now, now))
    site.admin_sql("INSERT INTO web_update_targets (batch_id, position, server_id, client_id, hostname, wave, status, updated) "
                   "VALUES (%s, 0, 'srv-a', 'a-0', 'pc-a0', 1, 'done', %s)", (int(CHECK), now))
    for tab in ("fileops", "messages", "captures"):  # else these tabs ask for a reason and their CSVs answer 403
        site.admin_sql("INSERT INTO web_history_grants (user_id, tab, reason, granted, expires) VALUES (%s, %s, %s, %s, %s)",
                       (users["ada"], tab, WHY, now, now + 86400))
    assert site.admin_sql("SELECT id, user_id FROM web_reports ORDER BY id") == (
        (int(REPORT), users["ada"]), (int(OTHERS_REPORT), users["otto"]))
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
    assert reads["HistoryPage"]["POST"] >= {"tab", "q", "cols"} and reads["ReportsPage"]["POST"] >= {"name", "tab", "q", "cols"}
    assert reads["UpdatesPage"]["POST"] >= {"first", "pick", "q"} and reads["ReportsPage"]["GET"] == {"id", "saved"}
    for page, methods in reads.items():
        for method, names in methods.items():
            covered = {name for route, params in ROUTE_PARAMS.items() if route.startswith(method + " ")
                       and routes[route][0].endswith("\\" + page) for name in params}
            # pick[] and p[window_h]: PHP reads $_POST['pick'] and $_POST['p'] as arrays
            covered = {re.sub(r"\[\w*\]$", "", name) for name in covered}
            assert names <= covered, f"{page} reads {method} {sorted(names - covered)}: not in ROUTE_PARAMS"
            assert covered <= names, f"ROUTE_PARAMS gives {page} {method} {sorted(covered - names)}, which PHP never reads"


FAKE_PAGE = """<?php
final class Page
{
    public function show(): void
    {
        $x = SNIPPET;
    }

    private static function one(string $name): string
    {
        return is_string($_POST[$name] ?? null) ? $_POST[$name] : '';
    }
}
"""


@pytest.mark.parametrize("snippet, reads", [
    ("ListParams::page($_GET) . self::one('x')", {"GET": {"page"}, "POST": {"x"}}),
    ("ListParams::text($_GET, 'id', 20) . ListParams::filter($_POST)", {"GET": {"id"}, "POST": {"q"}}),
    ("$_GET", None), ("json_encode($_POST)", None), ("$_REQUEST['id']", None), ("ListParams::text($_GET, $x)", None),
    ("$_GET[$x]", None), ("self::one($x)", None), ("Nowhere::read($_GET)", None),
])
def test_php_reads_follows_known_ways_and_refuses_unknown_ones(tmp_path, snippet, reads):
    (tmp_path / "ListParams.php").write_text((WEB_ROOT / "src" / "ListParams.php").read_text())
    (tmp_path / "Page.php").write_text(FAKE_PAGE.replace("SNIPPET", snippet))
    if reads is None:
        with pytest.raises(AssertionError, match="in a way this test does not know"):
            PhpReads(tmp_path)
    else:
        assert PhpReads(tmp_path).reads["Page"] == reads


def _scan(served: NginxSite, job: tuple[str, str], out_dir: Path) -> tuple[str, Sqlmap, int]:
    route, kind = job  # every parameter, the DEEP one at level 3, or the ALSO ones with ALSO's values
    method, path = route.split(" ", 1)
    params = {**ROUTE_PARAMS[route], **(ALSO[route][0] if kind == "also" else {})}
    test = {"all": list(params), "deep": [DEEP.get(route)], "also": ALSO[route][1] if kind == "also" else []}[kind]
    client = WebClient(served.base)
    if route != "POST /login":
        assert client.login("ada") == 303
    token = client.csrf("/login" if route == "POST /login" else "/clients")
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    started = time.monotonic()
    run = Sqlmap(served.base + path, method, params, test, cookie, out_dir,
                 extra={"csrf": token} if method == "POST" else None, deep=kind == "deep",
                 more=["--ignore-code=401,404"] if route in ANSWERS_404 else None)
    run.took_s = time.monotonic() - started
    still = client.request("GET", "/clients")[0]  # the session survived the run (200), or was never one (303)
    return route, run, still


def test_sqlmap_finds_nothing_in_any_parameter_of_any_route(served, tmp_path):
    # the longest first: each login sqlmap tries checks a password hash (argon2id, about 0.2 s)
    jobs = [(route, "deep") for route in DEEP] + sorted(((route, "all") for route, params in ROUTE_PARAMS.items() if params),
                                                        key=lambda job: (job[0] != "POST /login", -len(ROUTE_PARAMS[job[0]])))
    jobs += [(route, "also") for route in ALSO]
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
    assert tested == (sum(len(params) for params in ROUTE_PARAMS.values()) + len(DEEP)
                      + sum(len(names) for _, names in ALSO.values()))
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
