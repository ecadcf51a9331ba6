"""The web UI's accounts (table ``web_users``): created from the command line, never by default.

Passwords are hashed by PHP itself (``password_hash``: argon2id where PHP
has it, else its default, bcrypt), so the web UI's ``password_verify``
always accepts what is written here. The password reaches PHP on its
standard input, never on a command line.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

from sync.mysql_url import MysqlError, connect
from sync.web_db import WEB_FILE, read_credentials

#: the web roles, weakest first (the PHP side has the same list: web/src/Auth.php)
ROLES = ("viewer", "operator", "admin")
MIN_PASSWORD = 10
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")
_HASH_PHP = (
    '$p = stream_get_contents(STDIN);'
    'echo password_hash($p, defined("PASSWORD_ARGON2ID") ? PASSWORD_ARGON2ID : PASSWORD_DEFAULT);'
)


class WebUserError(MysqlError):
    """A web account cannot be created as asked."""


def check_account(username: str, role: str, password: str) -> None:
    """Refuse a bad name, an unknown role or a short password (one line each)."""
    if not _USERNAME.match(username):
        raise WebUserError(f"bad user name {username!r}: letters, digits and _ . @ - only, at most 128")
    if role not in ROLES:
        raise WebUserError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise WebUserError(f"the password is too short: at least {MIN_PASSWORD} characters")


def php_password_hash(password: str) -> str:
    """``password_hash`` of ``password`` by the PHP that serves the web UI (read from stdin)."""
    php = shutil.which("php")
    if php is None:
        raise WebUserError("php is not installed: the web UI needs it (Debian: apt-get install php-cli php-mysql)")
    done = subprocess.run([php, "-n", "-r", _HASH_PHP], input=password, capture_output=True, text=True, timeout=30)
    hashed = done.stdout.strip()
    if done.returncode != 0 or not hashed.startswith("$"):
        raise WebUserError(f"php could not hash the password: {done.stderr.strip() or done.stdout.strip()}")
    return hashed


def add_user(data_root: Path, username: str, role: str, password: str, display_name: str = "") -> int:
    """Create web account ``username`` in the database ``ems sync init`` prepared; returns its id."""
    check_account(username, role, password)
    url = read_credentials(Path(data_root) / WEB_FILE)
    hashed = php_password_hash(password)
    conn = connect(url)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT id FROM web_users WHERE username = %s", (username,))
            if cursor.fetchone():
                raise WebUserError(f"web user {username!r} exists already")
            cursor.execute(
                "INSERT INTO web_users (username, display_name, password_hash, role, created) VALUES (%s, %s, %s, %s, %s)",
                (username, display_name or username, hashed, role, time.time()),
            )
            user_id = cursor.lastrowid
        conn.commit()
    finally:
        conn.close()
    return int(user_id)
