"""MySQL URLs (``mysql://user:pass@host:port/db`` or ``mysql://user@localhost/db?unix_socket=/path``) and connecting.

One place turns a URL into a PyMySQL connection and PyMySQL's failures
into one-line :class:`MysqlError` messages that say what to do.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import parse_qs, quote, unquote, urlsplit

from broker.core.errors import EmsError

DEFAULT_PORT = 3306
CONNECT_TIMEOUT_S = 5

#: PyMySQL / MySQL error codes this module explains
_ACCESS_DENIED = (1044, 1045, 1698)
_UNREACHABLE = (2002, 2003, 2006, 2013)


class MysqlError(EmsError):
    """A MySQL server could not be used; the message says why and what to do."""


@dataclass(frozen=True)
class MysqlUrl:
    """The parts of a MySQL URL; ``str()`` gives it back (with the password)."""

    user: str
    password: str = ""
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    database: str = ""
    unix_socket: str = ""

    @classmethod
    def parse(cls, url: str) -> "MysqlUrl":
        parts = urlsplit(url)
        if parts.scheme not in ("mysql", "mariadb") or not parts.username:
            raise MysqlError(f"not a MySQL URL: {redacted(url)!r} (expected mysql://user:password@host:port/database)")
        query = parse_qs(parts.query)
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError as exc:
            raise MysqlError(f"bad port in MySQL URL {redacted(url)!r}") from exc
        return cls(
            user=unquote(parts.username),
            password=unquote(parts.password or ""),
            host=parts.hostname or "127.0.0.1",
            port=port,
            database=unquote(parts.path.lstrip("/")),
            unix_socket=query.get("unix_socket", [""])[0],
        )

    def with_database(self, database: str) -> "MysqlUrl":
        return replace(self, database=database)

    def with_user(self, user: str, password: str) -> "MysqlUrl":
        return replace(self, user=user, password=password)

    def where(self) -> str:
        """Where the server is, for messages: the socket or host:port."""
        return f"socket {self.unix_socket}" if self.unix_socket else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        auth = quote(self.user, safe="") + (":" + quote(self.password, safe="") if self.password else "")
        tail = f"?unix_socket={quote(self.unix_socket)}" if self.unix_socket else ""
        return f"mysql://{auth}@{self.host}:{self.port}/{quote(self.database, safe='')}{tail}"


def redacted(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def connect(url: MysqlUrl, **options):
    """A PyMySQL connection to ``url`` (autocommit off); :class:`MysqlError` with a one-line reason on failure."""
    import pymysql  # the web view's dependency: imported only where MySQL is used

    kwargs = dict(user=url.user, password=url.password, database=url.database or None, charset="utf8mb4",
                  connect_timeout=CONNECT_TIMEOUT_S, autocommit=False)
    kwargs.update(options)
    if url.unix_socket:
        kwargs["unix_socket"] = url.unix_socket
    else:
        kwargs.update(host=url.host, port=url.port)
    try:
        return pymysql.connect(**kwargs)
    except pymysql.err.MySQLError as exc:
        raise explain(exc, url) from exc


def explain(exc: Exception, url: MysqlUrl) -> MysqlError:
    """A one-line :class:`MysqlError` for a PyMySQL failure talking to ``url``."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    if code in _ACCESS_DENIED:
        return MysqlError(f"MySQL at {url.where()} refused user {url.user!r} (wrong password or no grant): "
                          "check the user and password in the MySQL URL")
    if code in _UNREACHABLE:
        return MysqlError(f"cannot reach MySQL at {url.where()} (is it running?): start it, "
                          "or fix --mysql-url")
    if code == 1049:
        return MysqlError(f"MySQL at {url.where()} has no database {url.database!r}: run `ems sync init`")
    detail = exc.args[1] if len(exc.args) > 1 else str(exc)
    return MysqlError(f"MySQL at {url.where()} failed: {detail} (error {code})")
