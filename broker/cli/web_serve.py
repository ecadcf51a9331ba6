"""The web UI in ``ems up``: its configuration file and PHP's built-in server on loopback.

The PHP code (``web/``) finds everything through one JSON file outside its
document root, ``DATA/web/config.json`` (0600), named by ``$EMS_WEB_CONFIG``:
the web UI's MySQL account (the parts of ``DATA/web/mysql.json`` that
``ems sync init`` wrote), the admin HTTP API's address and token when it
runs (the web's one way to act on the live system), and where PHP keeps
its session files, and the web key that opens sealed fields
(``DATA/web/web.key``, :mod:`sync.web_crypto`), and its ``live`` side: which
server this web UI acts on (``server_id``: the broker's public key, as the
sync worker names the server in MySQL) and how PHP runs that server's bridges
(``python -m bridges.get_latest_frame`` ...: the interpreter, the path to the
code, the data dir with the bridges' keys and the profile naming the broker).
It is rewritten after every database init, so a new
password or port reaches PHP without a restart.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from bridges import get_capture, get_latest_frame
from bridges.bridge_call import DEFAULT_TIMEOUT_S
from broker.cli.supervisor import Service
from broker.core.config import DataDir
from broker.core.errors import ConfigError, EmsError
from broker.core.private_files import FILE_MODE, private_dir
from broker.core.profile import load as load_profile
from broker.core.vocabulary import MAX_REASON_CHARS
from sync.web_crypto import key_path
from sync.web_db import WEB_FILE, read_credentials

DEFAULT_WEB_LISTEN = "127.0.0.1:8080"
CONFIG_ENV = "EMS_WEB_CONFIG"
#: the web UI's configuration, relative to the data dir
CONFIG_FILE = Path("web") / "config.json"
SESSIONS_DIR = Path("web") / "sessions"
#: the PHP application: web/public is the document root, index.php its front controller
WEB_ROOT = Path(__file__).resolve().parents[2] / "web"
READY_TIMEOUT_S = 15.0


def live_config(data_dir: Path) -> dict:
    """The ``live`` section: this data dir's server (its id) and how PHP runs its bridges."""
    profile = load_profile(DataDir(data_dir))
    return {"server_id": profile.server_key, "python": sys.executable, "pythonpath": str(WEB_ROOT.parent),
            "data_dir": str(Path(data_dir).resolve()), "timeout_s": DEFAULT_TIMEOUT_S, "max_reason_chars": MAX_REASON_CHARS,
            "bridges": {"latest_frame": get_latest_frame.__name__, "capture": get_capture.__name__}}


def write_web_config(data_root: Path, admin_url: str | None = None, admin_token: str | None = None,
                     live_dir: Path | None = None) -> Path:
    """Write ``DATA/web/config.json`` (0600, whole then renamed) from ``DATA/web/mysql.json``; returns its path.
    ``live_dir``: the data dir of the server this web UI acts on (no ``live`` section without one)."""
    url = read_credentials(Path(data_root) / WEB_FILE)
    config = {
        "mysql": {"host": url.host, "port": url.port, "unix_socket": url.unix_socket, "user": url.user,
                  "password": url.password, "database": url.database},
        "admin_api": {"url": admin_url, "token": admin_token} if admin_url and admin_token else None,
        "session_dir": str(private_dir(Path(data_root) / SESSIONS_DIR)),
        "web_key": str(key_path(Path(data_root))),
        "live": live_config(live_dir) if live_dir is not None else None,
    }
    path = Path(data_root) / CONFIG_FILE
    private_dir(path.parent)
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(config, indent=2) + "\n")
    os.replace(temp, path)
    return path


def parse_web_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` for the web UI (a loopback address unless the operator says otherwise)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--web-listen {text!r} is not HOST:PORT (e.g. {DEFAULT_WEB_LISTEN})")
    return host.strip("[]"), int(port)


def php_argv(listen: str) -> list[str]:
    """PHP's built-in server on ``listen`` with web/public as document root and index.php as router."""
    php = shutil.which("php")
    if php is None:
        raise ConfigError("php is not installed: the web view needs php-cli and php-mysql (installer/install.sh), or use --no-web")
    public = WEB_ROOT / "public"
    return [php, "-S", listen, "-t", str(public), str(public / "index.php")]


def vendor_hint() -> str | None:
    """What to do when jQuery and Bootstrap are missing from web/public/vendor (the pages work, unstyled), else None."""
    if (WEB_ROOT / "public" / "vendor" / "bootstrap").is_dir():
        return None
    return f"jQuery and Bootstrap missing: run installer/install.sh (or npm ci in {WEB_ROOT})"


def wait_listening(host: str, port: int, pid: int | None = None, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Return once ``host:port`` accepts a connection; raise EmsError after ``timeout_s`` or if ``pid`` died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if pid is not None and _exited(pid):
                raise EmsError(f"the web server (pid {pid}) exited before listening on {host}:{port}") from None
            time.sleep(0.05)
    raise EmsError(f"the web server did not listen on {host}:{port} within {timeout_s:.0f} s")


def _exited(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except OSError:
        return True


def web_service(data: DataDir, listen: str) -> Service:
    """The ``web`` service of ``ems up``: ``php -S`` with ``$EMS_WEB_CONFIG`` pointing at the config file."""
    host, port = parse_web_listen(listen)
    return Service("web", php_argv(listen), data.logs / "web.out", env={CONFIG_ENV: str(data.root / CONFIG_FILE)},
                   ready=lambda pid: wait_listening(host, port, pid))
