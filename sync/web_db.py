"""``ems sync init``: the web view's database, its tables and its two MySQL users.

* the *sync writer* (default ``ems_sync``): every privilege on the snapshot
  tables (:data:`sync.schema.SNAPSHOT_TABLES`, ``sync_state`` included),
  nothing on the web UI's tables;
* the *web UI's user* (default ``ems_web_ui``): ``SELECT`` on the snapshot
  tables, ``SELECT, INSERT, UPDATE, DELETE`` on :data:`sync.schema.WEB_TABLES`.

Each is created ``@localhost`` (the socket: PDO, PyMySQL) and
``@127.0.0.1`` (TCP) unless other hosts are given. Their passwords are
generated once into the data dir, 0600 JSON files with the whole URL
(:data:`WRITER_FILE` for the sync worker, :data:`WEB_FILE` for the web UI),
and reused on every later run. Running it again migrates (adds what is
missing) and never drops anything. A user that exists on the server while
this data dir has no password for it is refused: it belongs to someone
else (another EMS server sharing the database).

A server that *joins* a database another server's web UI serves
(:mod:`sync.shared_db`) gets only a sync writer of its own, and must already
hold the serving server's web key.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from broker.core.private_files import FILE_MODE, private_dir
from sync.mysql_url import MysqlError, MysqlUrl, connect, explain
from sync.schema import SNAPSHOT_TABLES, WEB_TABLES, create_tables
from sync.shared_db import joined_writer, key_conflict
from sync.web_crypto import WebKey, key_path

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "ems_web"
DEFAULT_WRITER = "ems_sync"
DEFAULT_WEB_USER = "ems_web_ui"
DEFAULT_HOSTS = ("localhost", "127.0.0.1")
#: the sync writer's credentials, relative to the data dir
WRITER_FILE = Path("sync") / "mysql.json"
#: the web UI user's credentials, relative to the data dir
WEB_FILE = Path("web") / "mysql.json"

WRITER_PRIVILEGES = "ALL PRIVILEGES"
WEB_SNAPSHOT_PRIVILEGES = "SELECT"
WEB_OWN_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
#: the web's own tables it may only add to: its audit of what web users opened and why
WEB_APPEND_ONLY = {"web_audit": "SELECT, INSERT"}

_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_HOST = re.compile(r"^[A-Za-z0-9_.%:-]{1,255}$")


@dataclass
class WebDbPlan:
    """What ``ems sync init`` sets up (names checked: they end up in SQL as identifiers)."""

    database: str = DEFAULT_DATABASE
    writer: str = DEFAULT_WRITER
    #: None for a server that joins a database another server's web UI serves (no web UI user of its own)
    web_user: str | None = DEFAULT_WEB_USER
    hosts: tuple[str, ...] = DEFAULT_HOSTS

    @classmethod
    def for_database(cls, database: str = DEFAULT_DATABASE, hosts: tuple[str, ...] = DEFAULT_HOSTS) -> "WebDbPlan":
        """The default users of ``database``: ``ems_sync`` / ``ems_web_ui`` for ``ems_web``; for any other name
        users named after it (MySQL users belong to the whole server: two EMS databases on one server must not
        share them)."""
        if database == DEFAULT_DATABASE:
            return cls(database=database, hosts=hosts)
        return cls(database=database, writer=_user_name(database, "sync"), web_user=_user_name(database, "web"), hosts=hosts)

    @classmethod
    def joining(cls, server_id: str, database: str = DEFAULT_DATABASE, hosts: tuple[str, ...] = DEFAULT_HOSTS) -> "WebDbPlan":
        """The plan of server ``server_id`` joining ``database``: its own writer, no web UI user."""
        return cls(database=database, writer=joined_writer(server_id), web_user=None, hosts=hosts)

    def __post_init__(self) -> None:
        for name in (self.database, self.writer, *((self.web_user,) if self.web_user else ())):
            if not _NAME.match(name):
                raise MysqlError(f"bad MySQL name {name!r}: letters, digits and _ only, at most 64")
        if self.writer == self.web_user:
            raise MysqlError("the sync writer and the web UI's user must be two users")
        for host in self.hosts:
            if not _HOST.match(host):
                raise MysqlError(f"bad MySQL host {host!r}")


def _user_name(database: str, role: str) -> str:
    """``<database>_<role>``, or a shortened stable form within MySQL's 32 characters."""
    name = f"{database}_{role}"
    if len(name) <= 32:
        return name
    return f"{database[:18]}_{hashlib.sha256(database.encode()).hexdigest()[:8]}_{role}"


@dataclass
class InitReport:
    """What ``init`` did: tables and columns added, users created, where the credentials are."""

    database: str
    changes: int = 0
    users_created: list[str] = field(default_factory=list)
    credentials: dict[str, Path] = field(default_factory=dict)


def init_web_db(admin: MysqlUrl, data_root: Path, plan: WebDbPlan | None = None, joining: str | None = None) -> InitReport:
    """Create or migrate the database, tables, users and grants through ``admin`` (a user allowed to grant).

    ``joining``: this server's id when it joins a database another server's web UI serves
    (``plan`` from :meth:`WebDbPlan.joining`; its web key must be the serving server's).
    """
    plan = plan or WebDbPlan()
    report = InitReport(plan.database)
    conn = connect(admin.with_database(""))
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{plan.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        conn.select_db(plan.database)
        report.changes += create_tables(conn)
        if joining:
            _check_joining_key(conn, data_root, joining)
        else:  # the serving server's key: the web UI opens rows with it, joining servers get a copy
            WebKey.load_or_create(key_path(Path(data_root)))
        writer_grants = {t: WRITER_PRIVILEGES for t in SNAPSHOT_TABLES}
        web_grants = {**{t: WEB_SNAPSHOT_PRIVILEGES for t in SNAPSHOT_TABLES}, **{t: WEB_APPEND_ONLY.get(t, WEB_OWN_PRIVILEGES) for t in WEB_TABLES}}
        users = [(plan.writer, WRITER_FILE, writer_grants)] + ([(plan.web_user, WEB_FILE, web_grants)] if plan.web_user else [])
        for user, relative, grants in users:
            path = Path(data_root) / relative
            password, created = _ensure_user(conn, user, plan.hosts, path)
            _grant(conn, plan, user, grants)
            if created:
                report.users_created.append(user)
            _write_credentials(path, admin.with_database(plan.database).with_user(user, password))
            report.credentials[user] = path
        conn.commit()
    except MysqlError:
        raise
    except Exception as exc:  # pymysql errors in the middle of the work: one line, what failed
        if type(exc).__module__.startswith("pymysql"):
            raise explain(exc, admin) from exc
        raise
    finally:
        conn.close()
    return report


def _check_joining_key(conn, data_root: Path, server_id: str) -> None:
    """A joining server seals with the key the database's other servers use: it must hold it already."""
    path = key_path(Path(data_root))
    if not path.exists():
        raise MysqlError(f"joining needs the web key of the server whose web UI serves this database: "
                         f"`ems sync init --join --web-key FILE` copies it to {path}")
    with conn.cursor() as cursor:
        conflict = key_conflict(cursor, server_id, WebKey.load(path).key_id)
    if conflict:
        raise MysqlError(conflict)


def _ensure_user(conn, user: str, hosts: tuple[str, ...], path: Path) -> tuple[str, bool]:
    """The user's password (from ``path``, else new) and whether the user had to be created."""
    password = read_credentials(path).password if path.exists() else None
    with conn.cursor() as cursor:
        cursor.execute("SELECT Host FROM mysql.user WHERE User = %s", (user,))
        existing = {row[0] for row in cursor.fetchall()}
        if existing and password is None:
            raise MysqlError(f"MySQL user {user!r} exists already but {path} does not hold its password "
                             f"(another EMS server's user?): copy that server's {path.name} there, or choose another user name")
        password = password or secrets.token_urlsafe(24)
        for host in hosts:
            if host in existing:
                cursor.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, host, password))
            else:
                cursor.execute("CREATE USER %s@%s IDENTIFIED BY %s", (user, host, password))
    return password, not existing


def _grant(conn, plan: WebDbPlan, user: str, grants: dict[str, str]) -> None:
    with conn.cursor() as cursor:
        for host in plan.hosts:
            for table, privileges in grants.items():
                cursor.execute(f"GRANT {privileges} ON `{plan.database}`.`{table}` TO %s@%s", (user, host))


def _write_credentials(path: Path, url: MysqlUrl) -> None:
    """``path`` (0600, written whole then renamed): the URL and its parts, for Python and PHP."""
    private_dir(path.parent)
    text = json.dumps({
        "url": str(url), "user": url.user, "password": url.password, "host": url.host, "port": url.port,
        "unix_socket": url.unix_socket, "database": url.database,
    }, indent=2) + "\n"
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(temp, path)


def read_credentials(path: Path) -> MysqlUrl:
    """The MySQL URL kept in a credentials file that ``init`` wrote."""
    try:
        return MysqlUrl.parse(json.loads(Path(path).read_text())["url"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MysqlError(f"cannot read MySQL credentials from {path}: {exc}; run `ems sync init`") from exc


def writer_url(data_root: Path) -> MysqlUrl:
    """The sync writer's URL for the server whose data dir is ``data_root`` (written by ``init``)."""
    return read_credentials(Path(data_root) / WRITER_FILE)
