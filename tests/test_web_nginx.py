"""The shipped nginx server block and php-fpm pool (web/deploy/), rendered as the installer renders them and
run by Debian's nginx and php-fpm (tests/nginx_support.py): the configs pass their own checks, a user logs in
and reaches every GET route, files come with caching and the same security headers as pages, and nothing
but index.php runs and nothing outside web/public (or a dotfile, or PHP source) is ever sent.
"""
from __future__ import annotations

import http.client
import pwd
import ssl
from pathlib import Path

import pytest

from nginx_support import NGINX_USER, POOL_USER, NginxSite
from web_support import WebClient, WebSite, php_routes

#: planted in the copy of web/ that nginx serves: none of this may come back, run or not
DECOY = "EMS-DECOY-7f3a"
PLANTED = {
    "public/info.php": f"<?php echo '{DECOY}-ran';",
    "public/assets/tool.php": f"<?php echo '{DECOY}-ran';",
    "public/vendor/x.php": f"<?php echo '{DECOY}-ran';",
    "public/.env": f"SECRET={DECOY}",
    "public/.git/config": f"[core] {DECOY}",
    "public/assets/.hidden.css": f"/* {DECOY} */",
    "public/config.json": f'{{"password": "{DECOY}"}}',
}
NEVER_SERVED = [
    "/../src/Config.php", "/%2e%2e/src/Config.php", "/assets/../../src/Config.php", "/assets/..%2f..%2fsrc/Config.php",
    "/src/Config.php", "/src/", "/templates/layout.php", "/deploy/render.sh", "/../state/config.json", "/config.json",
    "/index.php", "/index.php/", "/index.php/../src/bootstrap.php", "/./index.php", "/info.php", "/info.php/x", "/assets/tool.php",
    "/vendor/x.php", "/vendor/jquery/", "/.env", "/.git/config", "/assets/.hidden.css", "/assets/", "/vendor/", "/assets", "/.", "/..",
]
#: what a logged-in admin gets from the GET routes that do not answer 200
#: GET routes that answer other than 200 without parameters: a redirect, a missing id (400/404), an audited history
#: export before a reason was given (403), a read of the admin API, which this site has not (503)
GET_STATUS = {"/": 303, "/login": 303, "/servers/command": 400, "/updates/run": 400, "/updates/state": 400,
              "/reports/open": 404, "/reports/csv": 404, "/fileops.csv": 403, "/messages.csv": 403, "/captures.csv": 403,
              "/servers/auto": 503}
SECURITY_HEADERS = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy")


@pytest.fixture(scope="module")
def site(mysql_admin_url, tmp_path_factory):
    site = WebSite(mysql_admin_url, tmp_path_factory.mktemp("web"))
    site.add_server("srv-a", "Head office")
    site.add_client("srv-a", "agent-1", "pc-nginx-1")
    yield site
    site.close()


@pytest.fixture(scope="module")
def nginx(site):
    served = NginxSite(site, tls=True)
    for relative, text in PLANTED.items():
        path = served.web / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    yield served
    served.close()


def raw_get(base: str, path: str) -> tuple[int, str]:
    """GET with the path sent byte for byte (no client-side normalisation of .. or %2e)."""
    conn = http.client.HTTPConnection(base.split("//", 1)[1], timeout=30)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def test_nginx_t_and_php_fpm_t_pass_on_the_rendered_files(nginx):
    checks = nginx.check_configs()
    assert checks["nginx"].returncode == 0 and "test is successful" in checks["nginx"].stderr, checks["nginx"].stderr
    assert checks["php-fpm"].returncode == 0 and "test is successful" in checks["php-fpm"].stderr, checks["php-fpm"].stderr


def test_a_user_logs_in_and_reaches_every_get_route_through_nginx(nginx):
    admin = WebClient(nginx.base)
    assert admin.login("ada") == 303, nginx.logs()
    gets = [route.split()[1] for route in php_routes() if route.startswith("GET ")]
    assert len(gets) >= 15
    for path in gets:
        status, headers, text = admin.request("GET", path)
        assert status == GET_STATUS.get(path, 200), (path, status, text[:300], nginx.logs())
    status, _, text = admin.request("GET", "/clients")
    assert "pc-nginx-1" in text and "Head office" in text
    status, _, _ = admin.request("POST", "/theme", {"csrf": admin.csrf("/clients"), "theme": "light"})
    assert status == 303 and admin.cookies["ems_theme"] == "light"
    assert admin.request("POST", "/logout", {"csrf": admin.csrf("/clients")})[0] == 303
    assert admin.request("GET", "/clients")[1]["Location"] == "/login"


def test_the_pool_runs_as_its_own_user_with_only_its_config_and_keeps_sessions_where_told(nginx):
    def workers(parent: int) -> set[str]:
        users = set()
        for entry in Path("/proc").iterdir():
            try:
                status = dict(line.split(":\t", 1) for line in (entry / "status").read_text().splitlines() if ":\t" in line)
            except (OSError, ValueError):
                continue
            if status.get("PPid", "").strip() == str(parent):
                users.add(_user_name(int(status["Uid"].split()[0])))
        return users

    assert workers(nginx.fpm.pid) == {POOL_USER}
    assert workers(nginx.nginx.pid) == {NGINX_USER}
    assert WebClient(nginx.base).login("vera") == 303
    sessions = list((nginx.state / "sessions").iterdir())
    assert sessions and all(_user_name(path.stat().st_uid) == POOL_USER for path in sessions)
    assert oct(nginx.config.stat().st_mode & 0o777) == "0o600"


def _user_name(uid: int) -> str:
    return pwd.getpwuid(uid).pw_name


def test_files_are_cached_and_carry_the_security_headers_pages_carry(nginx):
    client = WebClient(nginx.base)
    _, page, _ = client.request("GET", "/login")
    assert page["Cache-Control"].startswith("no-store") and "X-Powered-By" not in page
    assert page["Server"] == "nginx"  # no version
    for name in SECURITY_HEADERS:
        assert len(page.get_all(name)) == 1, name  # App sends them; nginx adds none to PHP's answers
    for path in ("/assets/app.css", "/assets/app.js", "/vendor/jquery/jquery.min.js", "/vendor/bootstrap/css/bootstrap.min.css"):
        status, headers, _ = client.request("GET", path)
        assert status == 200, path
        assert headers["Cache-Control"].startswith("max-age=") and int(headers["Cache-Control"][8:]) >= 3600
        assert {name: headers.get_all(name) for name in SECURITY_HEADERS} == {name: page.get_all(name) for name in SECURITY_HEADERS}
    assert client.request("GET", "/assets/nothing.css")[0] == 404


@pytest.mark.parametrize("path", NEVER_SERVED)
def test_nothing_outside_public_no_other_php_and_no_dotfile_is_ever_sent(nginx, path):
    status, body = raw_get(nginx.base, path)
    # 400: nginx refuses a path that climbs above the root before any location sees it
    assert status in ((400, 403, 404) if ".." in path.replace("%2e", ".") or path == "/." else (403, 404)), (status, body[:200])
    for leak in (DECOY, "<?php", "declare(strict_types", "namespace Ems", '"password"', "set -euo pipefail"):
        assert leak not in body, (path, leak)


def test_the_https_example_works_and_only_then_are_the_cookies_secure(nginx):
    def session_cookie(conn) -> str:
        try:
            conn.request("GET", "/login")
            response = conn.getresponse()
            response.read()
            return next(line for line in response.headers.get_all("Set-Cookie") if line.startswith("ems_web="))
        finally:
            conn.close()

    unverified = ssl._create_unverified_context()  # the throwaway self-signed certificate
    secure = session_cookie(http.client.HTTPSConnection("127.0.0.1", nginx.tls_port, timeout=30, context=unverified))
    plain = session_cookie(http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=30))
    assert "; secure" in secure.lower() and "; httponly" in secure.lower()
    assert "; secure" not in plain.lower()


def test_a_large_body_is_refused_before_php(site, nginx):
    client = WebClient(nginx.base)
    status, _, _ = client.request("POST", "/login", {"csrf": client.csrf(), "username": "big" * 30_000, "password": "p"})
    assert status == 413
    assert site.admin_sql("SELECT COUNT(*) FROM web_login_attempts WHERE subject LIKE 'bigbig%%'") == ((0,),)
    status, _, _ = client.request("POST", "/login", {"csrf": client.csrf(), "username": "big" * 300, "password": "p"})
    assert status == 401  # a small one reaches PHP: the count above could have seen it
