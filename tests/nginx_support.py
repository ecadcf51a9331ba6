"""The web UI served as the installer's server role serves it: Debian's nginx and php-fpm, from the
templates in ``web/deploy/`` rendered by ``web/deploy/render.sh``, each in the foreground on a random
port / socket in a temp dir, stopped by its pid.

Users as on a real server: nginx's workers run as www-data (the socket's owner), the pool as its own
user (nobody here), which alone reads the pool's copy of the web configuration (MariaDB over TCP: the
test database's socket lives in a directory only root can enter) and writes the sessions. The web tree
is a copy (everything but node_modules), so a test may plant files in it that must never be served.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from broker.cli.web_serve import WEB_ROOT, wait_listening
from conftest import wait_for
from sync.mariadb import free_port
from sync.web_db import WEB_FILE, read_credentials

DEPLOY = WEB_ROOT / "deploy"
NGINX_TEMPLATE = DEPLOY / "nginx-ems-web.conf.in"
FPM_TEMPLATE = DEPLOY / "php-fpm-ems-web.conf.in"
NGINX_USER = NGINX_GROUP = "www-data"
POOL_USER, POOL_GROUP = "nobody", "nogroup"
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
READY_TIMEOUT_S = 15.0


def binary(*names: str) -> str:
    """The first of ``names`` on PATH or in /usr/sbin (Debian puts nginx and php-fpm there)."""
    for name in names:
        found = shutil.which(name, path=SBIN_PATH)
        if found:
            return found
    raise AssertionError(f"none of {names} is installed: installer/install.sh --dev installs nginx and php-fpm")


def render(template: Path, out: Path, **values: str) -> Path:
    """``out`` = ``template`` filled by render.sh (as the installer fills it)."""
    argv = ["bash", str(DEPLOY / "render.sh"), str(template), *(f"{name}={value}" for name, value in values.items())]
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out.write_text(done.stdout)
    return out


class NginxSite:
    """nginx + php-fpm in front of a :class:`web_support.WebSite`'s database; ``close()`` stops both by pid."""

    def __init__(self, site, login_throttle: dict | None = None, tls: bool = False):
        """``tls``: the server block's commented HTTPS lines switched on (a throwaway self-signed
        certificate), on ``tls_port`` beside the plain port."""
        self.dir = Path(tempfile.mkdtemp(prefix="ems-nginx-"))
        self.dir.chmod(0o755)  # www-data reaches the socket, nobody the web tree and its state
        self.web = self.dir / "web"
        shutil.copytree(WEB_ROOT, self.web, ignore=shutil.ignore_patterns("node_modules"))
        self.state = self.dir / "state"
        self.config = self._write_config(site, login_throttle)
        self.socket = self.dir / "fpm.sock"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.tls_port = free_port() if tls else None
        self.error_log = self.dir / "error.log"
        self.nginx_conf, self.fpm_conf = self._write_server_configs()
        self.fpm = self.nginx = None
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _write_config(self, site, login_throttle: dict | None) -> Path:
        """The pool's own copy of the site's config.json: MariaDB over TCP, its state dir, owned by the pool."""
        url = read_credentials(Path(site.root) / WEB_FILE)
        original = json.loads(Path(site.config).read_text())
        sessions = self.state / "sessions"
        sessions.mkdir(parents=True)
        key = self.state / "web.key"
        if original.get("web_key") and Path(original["web_key"]).exists():
            shutil.copyfile(original["web_key"], key)
        config = {"mysql": {"host": "127.0.0.1", "port": url.port, "unix_socket": "", "user": url.user,
                            "password": url.password, "database": url.database},
                  "admin_api": original.get("admin_api"), "session_dir": str(sessions), "web_key": str(key),
                  **({"login_throttle": login_throttle} if login_throttle else {})}
        path = self.state / "config.json"
        path.write_text(json.dumps(config, indent=2))
        for item in (self.state, sessions, *self.state.iterdir()):
            shutil.chown(item, POOL_USER, POOL_GROUP)
            item.chmod(0o700 if item.is_dir() else 0o600)
        return path

    def _write_server_configs(self) -> tuple[Path, Path]:
        """The rendered server block and pool, and the main files around them (Debian's mime.types and
        fastcgi_params beside them, as in /etc/nginx)."""
        d = self.dir
        render(NGINX_TEMPLATE, d / "ems-web.conf", LISTEN=f"127.0.0.1:{self.port}", SERVER_NAME="localhost",
               WEB_ROOT=str(self.web), FPM_SOCKET=str(self.socket))
        render(FPM_TEMPLATE, d / "pool.conf", POOL_USER=POOL_USER, POOL_GROUP=POOL_GROUP, NGINX_USER=NGINX_USER,
               NGINX_GROUP=NGINX_GROUP, FPM_SOCKET=str(self.socket), WEB_CONFIG=str(self.config),
               SESSION_DIR=str(self.state / "sessions"), WEB_ROOT=str(self.web), STATE_DIR=str(self.state))
        if self.tls_port:
            self._enable_tls(d / "ems-web.conf")
        for name in ("fastcgi_params", "mime.types"):
            (d / name).symlink_to(Path("/etc/nginx") / name)
        (d / "temp").mkdir()
        temps = "\n".join(f"    {kind}_temp_path {d}/temp/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        nginx_conf = d / "nginx.conf"
        nginx_conf.write_text(f"""user {NGINX_USER};
worker_processes 2;
pid {d}/nginx.pid;
error_log {self.error_log} warn;
events {{ worker_connections 256; }}
http {{
    include mime.types;
    default_type application/octet-stream;
    sendfile on;
    access_log {d}/access.log;
{temps}
    include ems-web.conf;
}}
""")
        fpm_conf = d / "php-fpm.conf"
        fpm_conf.write_text(f"[global]\npid = {d}/fpm.pid\nerror_log = {d}/fpm.log\ndaemonize = no\ninclude = {d}/pool.conf\n")
        return nginx_conf, fpm_conf

    def _enable_tls(self, server_block: Path) -> None:
        """Uncomment the template's HTTPS example as an operator would, with a certificate made here."""
        cert, key = self.dir / "cert.pem", self.dir / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                        "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
                       check=True, capture_output=True)
        text, count = re.subn(r"(?m)^    # ((?:listen 443 ssl|ssl_[a-z_]+)\b.*)$", r"    \1", server_block.read_text())
        assert count == 5, f"the HTTPS example in the server block changed ({count} lines): update this test"
        for example, real in (("listen 443 ssl", f"listen 127.0.0.1:{self.tls_port} ssl"),
                              ("/etc/ssl/certs/ems-web.pem", str(cert)), ("/etc/ssl/private/ems-web.key", str(key))):
            assert example in text, example
            text = text.replace(example, real)
        server_block.write_text(text)

    def nginx_argv(self, *extra: str) -> list[str]:
        return [binary("nginx"), "-p", f"{self.dir}/", "-c", str(self.nginx_conf), "-e", str(self.error_log), *extra]

    def fpm_argv(self, *extra: str) -> list[str]:
        return [binary("php-fpm8.2", "php-fpm"), "-y", str(self.fpm_conf), *extra]

    def check_configs(self) -> dict[str, subprocess.CompletedProcess]:
        """``nginx -t`` and ``php-fpm -t`` on the rendered files."""
        return {"nginx": subprocess.run(self.nginx_argv("-t"), capture_output=True, text=True),
                "php-fpm": subprocess.run(self.fpm_argv("-t"), capture_output=True, text=True)}

    def _start(self) -> None:
        with (self.dir / "fpm.out").open("ab") as out:
            self.fpm = subprocess.Popen(self.fpm_argv("-F"), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(lambda: self.socket.exists() or self.fpm.poll() is not None, READY_TIMEOUT_S, interval_s=0.02,
                 what="php-fpm's socket")
        assert self.socket.exists(), f"php-fpm did not start: {self.logs()}"
        with (self.dir / "nginx.out").open("ab") as out:
            self.nginx = subprocess.Popen(self.nginx_argv("-g", "daemon off;"), stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL)
        wait_listening("127.0.0.1", self.port, self.nginx.pid)

    def logs(self) -> str:
        """What nginx and php-fpm said (for assertion messages)."""
        parts = [f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in
                 (self.dir / "fpm.out", self.dir / "fpm.log", self.dir / "nginx.out", self.error_log) if p.exists()]
        return "\n".join(parts)

    def close(self) -> None:
        for process in (self.nginx, self.fpm):
            if process is not None and process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
