"""The durable store's schema and its forward migrations.

The store is one SQLite file. ``clients`` holds one row per agent machine;
every other table that describes a machine is its *child*: its
``client_id`` references ``clients(client_id) ON DELETE CASCADE``, so
deleting a client deletes everything recorded about it. Rows that come from
an agent carry that agent's ``msg_id`` under ``UNIQUE(client_id, msg_id)``:
an agent re-sending from its outbox never stores a record twice, and one
agent cannot suppress another's record by reusing its message id.

Two tables deliberately survive a client's deletion:

* ``audit_trail`` names its ``target`` client without a foreign key: the
  record of what an operator did must outlive the machine it was done to.
  It is deduplicated on ``(source, msg_id)``, ``source`` being the peer
  that published it (the broker stamps operator actions).
* ``security_events`` has an ``origin``: ``agent`` events are reported by
  an agent and hang off its ``clients`` row (``client_id``, cascading);
  ``broker`` events (refused keys, spoofed topics, ...; or a service
  that reports one) have ``client_id`` NULL and name the client they
  concern in ``subject``, without a foreign key. A pending or revoked key
  therefore never creates a ``clients`` row, and the broker's evidence
  about a machine is kept when the machine is deleted. Deduplication is a
  unique index on ``(origin, ifnull(client_id, ''), msg_id)``.

Versions live in the ``schema_version`` table. :data:`MIGRATIONS` is the
ordered list of forward migrations; :func:`migrate` applies the missing
ones, each in its own transaction, and refuses a database written by a
newer EMS.

Migration 2 rebuilds every child table (SQLite cannot change a foreign key
in place: the documented 12-step procedure, with foreign keys off and a
``foreign_key_check`` before commit). That is what gives a *legacy*
database, created before the tables had ``ON DELETE CASCADE``, its
cascades. Rows such a database left behind for clients deleted without a
cascade ("orphans") are dropped by the rebuild, completing the deletion
that was asked for; their count is logged.

:data:`TABLES` is the shape migrations 1 and 2 build, and stays that shape
so a legacy database and a fresh one go through the same steps. Tables
added later are in :data:`ADDED_TABLES`, each created by its own migration:

* 3: ``capture_thumbnails``, one small encrypted preview per screen capture
  (see :mod:`broker.persister.thumbnails`), keyed by the capture's id and
  deleted with it (``ON DELETE CASCADE`` on ``screen_captures(id)``).
  Captures stored before it get their preview when first asked for.
* 4: ``quarantine``, what is kept of records refused at ingest for breaking
  the limits (nesting, sizes, integer range; see
  :mod:`broker.persister.quarantine`): sender, message id, kind, topic,
  size, reason, time and a digest, never the body. No foreign key: like
  the broker's security events it is evidence that outlives the client.

Later migrations, each its own version. Columns added to a table after the
baseline are in :data:`ADDED_COLUMNS` (``ALTER TABLE ... ADD COLUMN``: the
rows already there keep everything and read NULL in the new columns):

* 5: ``audit_trail.operator_name`` and ``audit_trail.via``: the person who
  acted (a key's display name, or the person a service vouched for) and the
  service that vouched (``""`` for an operator's own key). Rows stored
  before it keep the name only inside ``detail`` and read NULL here.
* 6: ``change_log`` and its triggers, the sync worker's change feed (see
  :mod:`broker.persister.change_log`); existing rows are numbered.
"""
from __future__ import annotations

import logging
import sqlite3
import time
from typing import NamedTuple

from broker.core.errors import EmsError
from broker.persister import change_log

log = logging.getLogger(__name__)

_FK = "FOREIGN KEY (client_id) REFERENCES clients(client_id) ON DELETE CASCADE"

#: Every table as (column or constraint definitions). Column names are the
#: first word of each line that is not a table constraint.
TABLES: dict[str, tuple[str, ...]] = {
    "clients": (
        "client_id TEXT PRIMARY KEY",
        "label TEXT NOT NULL DEFAULT ''",
        "hostname TEXT",
        "os TEXT",
        "os_version TEXT",
        "logged_in_user TEXT",
        "version TEXT",
        "first_seen REAL NOT NULL",
        "last_seen REAL NOT NULL",
        "online INTEGER NOT NULL DEFAULT 0",
        "presence_ts REAL",  # ts of the presence record online reflects
        "last_sysinfo BLOB",  # msgpack of the newest sysinfo event
        "sysinfo_ts REAL",  # its ts: an older replayed sysinfo never wins
    ),
    "sessions": (
        "id INTEGER PRIMARY KEY",
        "client_id TEXT NOT NULL",
        "msg_id TEXT NOT NULL",  # the presence record that opened it
        "started REAL NOT NULL",
        "ended REAL",
        "logged_in_user TEXT",
        "end_reason TEXT",
        "end_msg_id TEXT",  # the presence record that closed it
        _FK,
        "UNIQUE (client_id, msg_id)",
    ),
    "screen_captures": (
        "id INTEGER PRIMARY KEY",
        "client_id TEXT NOT NULL",
        "msg_id TEXT NOT NULL",
        "ts REAL NOT NULL",
        "width INTEGER",
        "height INTEGER",
        "quality INTEGER",
        "format TEXT",
        "image BLOB NOT NULL",  # encrypted
        "operator TEXT",
        _FK,
        "UNIQUE (client_id, msg_id)",
    ),
    "chat_messages": (
        "id INTEGER PRIMARY KEY",
        "client_id TEXT NOT NULL",
        "msg_id TEXT NOT NULL",
        "ts REAL NOT NULL",
        "direction TEXT NOT NULL CHECK (direction IN ('in', 'out'))",
        "operator TEXT",
        "body BLOB NOT NULL",  # encrypted
        "status TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'delivered', 'read'))",
        "status_ts REAL NOT NULL",
        "deleted INTEGER NOT NULL DEFAULT 0",
        _FK,
        "UNIQUE (client_id, msg_id)",
    ),
    "file_operations": (
        "id INTEGER PRIMARY KEY",
        "client_id TEXT NOT NULL",
        "msg_id TEXT NOT NULL",
        "ts REAL NOT NULL",
        "operator TEXT",
        "op TEXT NOT NULL",
        "path BLOB NOT NULL",  # encrypted
        "size INTEGER",
        "ok INTEGER NOT NULL",
        "error BLOB",  # encrypted (OS errors quote the path)
        _FK,
        "UNIQUE (client_id, msg_id)",
    ),
    "activity_logs": (
        "id INTEGER PRIMARY KEY",
        "client_id TEXT NOT NULL",
        "msg_id TEXT NOT NULL",
        "ts REAL NOT NULL",
        "name TEXT NOT NULL",
        "data BLOB NOT NULL",  # encrypted msgpack
        _FK,
        "UNIQUE (client_id, msg_id)",
    ),
    "metrics": (
        "id INTEGER PRIMARY KEY",
        "client_id TEXT NOT NULL",
        "msg_id TEXT NOT NULL",
        "ts REAL NOT NULL",
        "cpu_percent REAL",
        "memory_percent REAL",
        "disk_percent REAL",
        _FK,
        "UNIQUE (client_id, msg_id)",
    ),
    "security_events": (
        "id INTEGER PRIMARY KEY",
        "origin TEXT NOT NULL",  # 'agent', 'broker' or a service name
        "client_id TEXT",  # the reporting agent; NULL for broker events
        "subject TEXT",  # the client a broker event concerns (no FK)
        "msg_id TEXT NOT NULL",
        "ts REAL NOT NULL",
        "event TEXT NOT NULL",
        "severity TEXT",
        "detail BLOB",  # msgpack
        _FK,
    ),
    "client_logs": (
        "id INTEGER PRIMARY KEY",
        "client_id TEXT NOT NULL",
        "msg_id TEXT NOT NULL",
        "ts REAL NOT NULL",
        "level TEXT NOT NULL",
        "logger TEXT NOT NULL",
        "message BLOB NOT NULL",  # encrypted
        _FK,
        "UNIQUE (client_id, msg_id)",
    ),
    "audit_trail": (
        "id INTEGER PRIMARY KEY",
        "source TEXT NOT NULL",  # the peer that published the record
        "msg_id TEXT NOT NULL",
        "ts REAL NOT NULL",
        "operator TEXT NOT NULL",
        "role TEXT",
        "action TEXT NOT NULL",
        "target TEXT",  # client id, no FK: the trail outlives the client
        "reason TEXT",
        "detail BLOB",  # msgpack
        "UNIQUE (source, msg_id)",
    ),
    "commands": (
        "id TEXT PRIMARY KEY",
        "client_id TEXT NOT NULL",
        "operator TEXT",
        "name TEXT NOT NULL DEFAULT ''",
        "args BLOB",  # msgpack
        "status TEXT NOT NULL",
        "created REAL NOT NULL",
        "updated REAL NOT NULL",
        "result BLOB",  # msgpack
        _FK,
    ),
}

#: Tables added after the baseline: name -> (the migration that creates it,
#: its definitions). Their rows hang off another table, not off ``clients``.
ADDED_TABLES: dict[str, tuple[int, tuple[str, ...]]] = {
    "capture_thumbnails": (3, (
        "id INTEGER PRIMARY KEY",  # the capture's id
        "client_id TEXT NOT NULL",  # the capture's client and message id: they
        "msg_id TEXT NOT NULL",  # bind the encrypted preview to its capture
        "thumbnail BLOB",  # encrypted JPEG; NULL when the image could not be read
        "error TEXT",  # why there is no preview
        "FOREIGN KEY (id) REFERENCES screen_captures(id) ON DELETE CASCADE",
    )),
    "quarantine": (4, (
        "id INTEGER PRIMARY KEY",
        "client_id TEXT NOT NULL",  # the authenticated sender ('' for the broker); no FK: kept as evidence
        "msg_id TEXT NOT NULL",
        "ts REAL NOT NULL",  # when the persister received it
        "kind TEXT NOT NULL",  # EVENT, LOG, ...
        "topic TEXT NOT NULL",
        "size INTEGER",  # bytes of the refused body
        "reason TEXT NOT NULL",  # the first limit it broke
        "sha256 TEXT",  # of the body, which is not kept
        "UNIQUE (client_id, msg_id)",
    )),
}

#: Columns added after the baseline: table -> (the migration that adds them, their definitions).
ADDED_COLUMNS: dict[str, tuple[int, tuple[str, ...]]] = {
    "audit_trail": (5, (
        "operator_name TEXT",  # the person: a key's display name, or whom a service vouched for
        "via TEXT",  # the service that vouched for the person ('' for an operator's own key)
    )),
}

#: Tables whose rows belong to one client and cascade with it.
CHILD_TABLES: tuple[str, ...] = tuple(t for t, lines in TABLES.items() if _FK in lines)

INDEXES: tuple[str, ...] = (
    "CREATE INDEX IF NOT EXISTS sessions_client_ts ON sessions (client_id, started)",
    "CREATE INDEX IF NOT EXISTS sessions_started ON sessions (started)",
    "CREATE INDEX IF NOT EXISTS screen_captures_client_ts ON screen_captures (client_id, ts)",
    "CREATE INDEX IF NOT EXISTS screen_captures_ts ON screen_captures (ts)",
    "CREATE INDEX IF NOT EXISTS chat_messages_client_ts ON chat_messages (client_id, ts)",
    "CREATE INDEX IF NOT EXISTS chat_messages_ts ON chat_messages (ts)",
    "CREATE INDEX IF NOT EXISTS file_operations_client_ts ON file_operations (client_id, ts)",
    "CREATE INDEX IF NOT EXISTS file_operations_ts ON file_operations (ts)",
    "CREATE INDEX IF NOT EXISTS activity_logs_client_ts ON activity_logs (client_id, ts)",
    "CREATE INDEX IF NOT EXISTS activity_logs_ts ON activity_logs (ts)",
    "CREATE INDEX IF NOT EXISTS metrics_client_ts ON metrics (client_id, ts)",
    "CREATE INDEX IF NOT EXISTS metrics_ts ON metrics (ts)",
    "CREATE INDEX IF NOT EXISTS security_events_client_ts ON security_events (client_id, ts)",
    "CREATE INDEX IF NOT EXISTS security_events_subject_ts ON security_events (subject, ts)",
    "CREATE INDEX IF NOT EXISTS security_events_ts ON security_events (ts)",
    "CREATE UNIQUE INDEX IF NOT EXISTS security_events_dedupe"
    " ON security_events (origin, ifnull(client_id, ''), msg_id)",
    "CREATE INDEX IF NOT EXISTS client_logs_client_ts ON client_logs (client_id, ts)",
    "CREATE INDEX IF NOT EXISTS client_logs_ts ON client_logs (ts)",
    "CREATE INDEX IF NOT EXISTS audit_trail_target_ts ON audit_trail (target, ts)",
    "CREATE INDEX IF NOT EXISTS audit_trail_ts ON audit_trail (ts)",
    "CREATE INDEX IF NOT EXISTS commands_client_created ON commands (client_id, created)",
    "CREATE INDEX IF NOT EXISTS commands_updated ON commands (updated)",
    "CREATE INDEX IF NOT EXISTS clients_last_seen ON clients (last_seen)",
)

_CONSTRAINT_WORDS = ("UNIQUE", "FOREIGN", "CHECK", "PRIMARY", "CONSTRAINT")


class SchemaError(EmsError):
    """The database cannot be brought to this EMS's schema."""


class Migration(NamedTuple):
    """One forward step. ``rebuild`` steps run with foreign keys off."""

    version: int
    sql: str
    rebuild: bool = False


def _definitions(table: str) -> tuple[str, ...]:
    return TABLES[table] if table in TABLES else ADDED_TABLES[table][1]


def baseline_columns(table: str) -> tuple[str, ...]:
    """The column names ``table`` was created with, in declaration order."""
    return tuple(
        line.split()[0] for line in _definitions(table) if line.split()[0].upper() not in _CONSTRAINT_WORDS
    )


def columns(table: str) -> tuple[str, ...]:
    """Every column name of ``table`` now: the baseline's, then those added later."""
    added = ADDED_COLUMNS.get(table, (0, ()))[1]
    return baseline_columns(table) + tuple(line.split()[0] for line in added)


def create_table_sql(table: str, name: str | None = None, if_not_exists: bool = True) -> str:
    """``CREATE TABLE`` for ``table`` (optionally under another ``name``)."""
    body = ",\n    ".join(_definitions(table))
    guard = "IF NOT EXISTS " if if_not_exists else ""
    return f"CREATE TABLE {guard}{name or table} (\n    {body}\n)"


def _baseline_sql() -> str:
    statements = [create_table_sql(t) for t in TABLES]
    statements += INDEXES
    return ";\n".join(statements) + ";\n"


def _cascade_rebuild_sql() -> str:
    """Rebuild every child table with ``ON DELETE CASCADE`` (12-step)."""
    statements = []
    for table in CHILD_TABLES:
        cols = ", ".join(baseline_columns(table))
        fresh = f"_new_{table}"
        statements += [
            f"DROP TABLE IF EXISTS {fresh}",
            create_table_sql(table, fresh, if_not_exists=False),
            # orphans of clients deleted without a cascade are left behind
            f"INSERT INTO {fresh} ({cols}) SELECT {cols} FROM {table}"
            f" WHERE client_id IS NULL OR client_id IN (SELECT client_id FROM clients)",
            f"DROP TABLE {table}",
            f"ALTER TABLE {fresh} RENAME TO {table}",
        ]
    statements += INDEXES
    return ";\n".join(statements) + ";\n"


#: Ordered forward migrations: (version, sql[, rebuild]).
MIGRATIONS: list[Migration] = [
    Migration(1, _baseline_sql()),
    Migration(2, _cascade_rebuild_sql(), rebuild=True),
    *sorted(
        [Migration(version, create_table_sql(table) + ";\n") for table, (version, _) in ADDED_TABLES.items()]
        + [Migration(version, "".join(f"ALTER TABLE {table} ADD COLUMN {line};\n" for line in lines))
           for table, (version, lines) in ADDED_COLUMNS.items()]
    ),
    Migration(6, change_log.migration_sql()),
]

LATEST = MIGRATIONS[-1].version

_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied REAL NOT NULL)"


def current_version(conn: sqlite3.Connection) -> int:
    """The highest applied migration (0 for a new or legacy database)."""
    conn.execute(_VERSION_TABLE)
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return row[0] or 0


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every missing migration, one transaction each; return the version.

    ``conn`` must be in autocommit mode (``broker.core.sqlite_db.connect``). Safe
    to call from several processes at once: each step re-reads the version
    under the write lock before it runs.
    """
    version = current_version(conn)
    if version > LATEST:
        raise SchemaError(
            f"database schema version {version} is newer than this EMS understands ({LATEST}); upgrade EMS"
        )
    for step in MIGRATIONS:
        if step.version > version:
            _apply(conn, step)
            version = step.version
    return version


def _apply(conn: sqlite3.Connection, step: Migration) -> None:
    fk_was_on = bool(conn.execute("PRAGMA foreign_keys").fetchone()[0])
    if step.rebuild:
        conn.execute("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if current_version(conn) >= step.version:  # another process won
                conn.execute("ROLLBACK")
                return
            if step.rebuild:
                _log_orphans(conn)
            for statement in statements(step.sql):
                conn.execute(statement)
            if step.rebuild:
                problems = conn.execute("PRAGMA foreign_key_check").fetchall()
                if problems:
                    raise SchemaError(f"foreign key check failed after rebuild: {[tuple(p) for p in problems[:5]]}")
            conn.execute("INSERT INTO schema_version (version, applied) VALUES (?, ?)", (step.version, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise SchemaError(f"migration to schema version {step.version} failed: {exc}") from exc
    finally:
        if step.rebuild and fk_was_on:
            conn.execute("PRAGMA foreign_keys=ON")
    log.info("store schema migrated to version %d", step.version)


def statements(script: str):
    """Split ``script`` into single statements with SQLite's own tokenizer.

    (``executescript`` would commit the transaction a migration runs in.)
    """
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip().strip(";").strip():
                yield pending
            pending = ""
    if pending.strip():
        raise SchemaError(f"incomplete SQL statement in migration: {pending[:80]!r}")


def _log_orphans(conn: sqlite3.Connection) -> None:
    existing = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    for table in CHILD_TABLES:
        if table not in existing:
            continue
        (count,) = conn.execute(
            f"SELECT count(*) FROM {table} WHERE client_id IS NOT NULL"
            f" AND client_id NOT IN (SELECT client_id FROM clients)"
        ).fetchone()
        if count:
            log.warning("dropping %d %s rows of clients deleted before cascades existed", count, table)
