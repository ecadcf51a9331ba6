"""The web view's MySQL/MariaDB schema (database ``ems_web``) and its forward migration.

Two kinds of tables:

* the *snapshot* tables (:data:`SNAPSHOT_TABLES`), written only by the sync
  worker: a copy of each EMS server's store, every row keyed by
  ``(server_id, <the store's row id>)`` so several servers share one
  database. ``servers`` has one row per server, ``sync_state`` one row per
  server and table (the incremental watermark, committed in the same
  transaction as the rows it covers), ``schema_version`` the version this
  file built. The web UI's MySQL user may only read them.
* the *web* tables (:data:`WEB_TABLES`), the web UI's own state (its users,
  sessions, settings, saved reports, OS update checks and rollouts): the web UI's
  user reads and writes them.

Beside the seed's tables the web needs ``snapshot_metrics`` (the charts),
``snapshot_audit`` (the audit trail: who looked at what, and why) and
``snapshot_commands`` (the status of reboots, updates, chats sent from it).

Sensitive fields (chat bodies, log messages, file paths and errors,
captures, command arguments and results) are ``BLOB`` columns: they hold
what the sync worker encrypted for the web, never clear text.

:func:`create_tables` is idempotent: it creates what is missing, adds
columns and keys a newer EMS declares, records :data:`SCHEMA_VERSION`, and never
drops anything. It refuses a database written by a newer EMS.
"""
from __future__ import annotations

from broker.core.errors import EmsError

#: bumped when a table, column or key is added; recorded in ``schema_version``
SCHEMA_VERSION = 5

_TABLE_OPTIONS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
_SERVER = "server_id VARCHAR(64) NOT NULL"
_CLIENT = "client_id VARCHAR(128) NOT NULL"
_ROW_ID = "id BIGINT NOT NULL"  # the store's row id
_ROW_KEY = "PRIMARY KEY (server_id, id)"
#: the full snapshot that last wrote the row: a full snapshot ends by deleting its server's rows of older ones
_GEN = "sync_gen BIGINT NOT NULL DEFAULT 0"
_LOGGED_IN_USER = "logged_in_user VARCHAR(255)"
_STATUS = "status VARCHAR(16) NOT NULL"
_OPERATOR = "operator VARCHAR(255) NOT NULL"  # who did it, as a person's name
_SERIAL = "id BIGINT NOT NULL AUTO_INCREMENT"  # the web tables' own row ids
_TAB = "tab VARCHAR(32) NOT NULL"  # a web UI tab's name
_ACTION = "action VARCHAR(64) NOT NULL"
_USERNAME = "username VARCHAR(128) NOT NULL"
_DISPLAY_NAME = "display_name VARCHAR(255) NOT NULL"

#: table -> (column and key definitions); column names are each line's first word
_SNAPSHOT_DEFINITIONS: dict[str, tuple[str, ...]] = {
    "servers": (
        _SERVER,
        "name VARCHAR(255) NOT NULL DEFAULT ''",
        "version VARCHAR(64)",
        "endpoint VARCHAR(255)",  # where its broker listens
        "last_full_sync DOUBLE",
        "last_sync DOUBLE",
        "updated DOUBLE NOT NULL",
        "web_key_id VARCHAR(32) NOT NULL DEFAULT ''",  # which web key seals its rows (sync.shared_db)
        "PRIMARY KEY (server_id)",
    ),
    "snapshot_clients": (
        _SERVER, _CLIENT,
        "label VARCHAR(255) NOT NULL DEFAULT ''",
        "hostname VARCHAR(255)",
        "os VARCHAR(64)",
        "os_version VARCHAR(255)",
        _LOGGED_IN_USER,
        "version VARCHAR(64)",
        "first_seen DOUBLE NOT NULL",
        "last_seen DOUBLE NOT NULL",
        "online TINYINT NOT NULL DEFAULT 0",
        "presence_ts DOUBLE",
        "sysinfo LONGTEXT",  # JSON of the newest sysinfo event
        "sysinfo_ts DOUBLE",
        _GEN,
        "PRIMARY KEY (server_id, client_id)",
        "KEY snapshot_clients_last_seen (server_id, last_seen)",
    ),
    "snapshot_sessions": (
        _SERVER, _ROW_ID, _CLIENT,
        "started DOUBLE NOT NULL",
        "ended DOUBLE",
        _LOGGED_IN_USER,
        "end_reason VARCHAR(64)",
        _GEN,
        _ROW_KEY,
        "KEY snapshot_sessions_client_ts (server_id, client_id, started)",
    ),
    "snapshot_captures": (
        _SERVER, _ROW_ID, _CLIENT,
        "ts DOUBLE NOT NULL",
        "width INT", "height INT", "quality INT",
        "format VARCHAR(16)",
        "operator VARCHAR(255)",
        "image LONGBLOB",  # encrypted for the web
        "thumbnail MEDIUMBLOB",  # encrypted for the web
        _GEN,
        _ROW_KEY,
        "KEY snapshot_captures_client_ts (server_id, client_id, ts)",
    ),
    "snapshot_messages": (
        _SERVER, _ROW_ID, _CLIENT,
        "ts DOUBLE NOT NULL",
        "direction VARCHAR(8) NOT NULL",
        "operator VARCHAR(255)",
        "body BLOB",  # encrypted for the web
        _STATUS,
        "status_ts DOUBLE NOT NULL",
        "deleted TINYINT NOT NULL DEFAULT 0",
        _GEN,
        _ROW_KEY,
        "KEY snapshot_messages_client_ts (server_id, client_id, ts)",
    ),
    "snapshot_fileops": (
        _SERVER, _ROW_ID, _CLIENT,
        "ts DOUBLE NOT NULL",
        "operator VARCHAR(255)",
        "op VARCHAR(32) NOT NULL",
        "path BLOB",  # encrypted for the web
        "size BIGINT",
        "ok TINYINT NOT NULL",
        "error BLOB",  # encrypted for the web
        _GEN,
        _ROW_KEY,
        "KEY snapshot_fileops_client_ts (server_id, client_id, ts)",
    ),
    "snapshot_security": (
        _SERVER, _ROW_ID,
        "origin VARCHAR(64) NOT NULL",
        "client_id VARCHAR(128)",  # the reporting agent; NULL for the broker's events
        "subject VARCHAR(128)",  # the client a broker event concerns
        "ts DOUBLE NOT NULL",
        "event VARCHAR(128) NOT NULL",
        "severity VARCHAR(16)",
        "detail MEDIUMTEXT",  # JSON
        _GEN,
        _ROW_KEY,
        "KEY snapshot_security_ts (server_id, ts)",
        "KEY snapshot_security_client_ts (server_id, client_id, ts)",
    ),
    "snapshot_client_logs": (
        _SERVER, _ROW_ID, _CLIENT,
        "ts DOUBLE NOT NULL",
        "level VARCHAR(16) NOT NULL",
        "logger VARCHAR(255) NOT NULL",
        "message BLOB",  # encrypted for the web
        _GEN,
        _ROW_KEY,
        "KEY snapshot_client_logs_client_ts (server_id, client_id, ts)",
        # the web's Logs tab at a million rows (bench/web.py): newest first over every server, and one
        # client's lines whatever its server (InnoDB appends the primary key, the list's tie-breaker)
        "KEY snapshot_client_logs_ts (ts)",
        "KEY snapshot_client_logs_client (client_id, ts)",
    ),
    "snapshot_metrics": (
        _SERVER, _ROW_ID, _CLIENT,
        "ts DOUBLE NOT NULL",
        "cpu_percent DOUBLE", "memory_percent DOUBLE", "disk_percent DOUBLE",
        _GEN,
        _ROW_KEY,
        "KEY snapshot_metrics_client_ts (server_id, client_id, ts)",
    ),
    "snapshot_audit": (
        _SERVER, _ROW_ID,
        "source VARCHAR(128) NOT NULL",
        "ts DOUBLE NOT NULL",
        _OPERATOR,
        "role VARCHAR(32)",
        _ACTION,
        "target VARCHAR(128)",
        "reason TEXT",
        "detail MEDIUMTEXT",  # JSON
        "operator_name VARCHAR(255)",  # the person (a key's display name, or whom a service vouched for)
        "via VARCHAR(128)",  # the service that vouched ("" for an operator's own key)
        _GEN,
        _ROW_KEY,
        "KEY snapshot_audit_ts (server_id, ts)",
        "KEY snapshot_audit_target_ts (server_id, target, ts)",
    ),
    "snapshot_commands": (
        _SERVER,
        "id VARCHAR(64) NOT NULL",  # the command id (the store's key)
        _CLIENT,
        "operator VARCHAR(255)",
        "name VARCHAR(64) NOT NULL DEFAULT ''",
        "args MEDIUMBLOB",  # encrypted for the web
        _STATUS,
        "created DOUBLE NOT NULL",
        "updated DOUBLE NOT NULL",
        "result MEDIUMBLOB",  # encrypted for the web
        _GEN,
        _ROW_KEY,
        "KEY snapshot_commands_client_created (server_id, client_id, created)",
    ),
    "sync_state": (
        _SERVER,
        "table_name VARCHAR(64) NOT NULL",
        "watermark BIGINT NOT NULL DEFAULT 0",  # the store's change sequence synced so far
        "rows_synced BIGINT NOT NULL DEFAULT 0",
        "last_full_sync DOUBLE",
        "updated DOUBLE NOT NULL",
        "full_gen BIGINT NOT NULL DEFAULT 0",  # the full snapshot under way or last done
        "full_done TINYINT NOT NULL DEFAULT 1",  # 0 while that snapshot has this table still to finish
        "PRIMARY KEY (server_id, table_name)",
    ),
    "schema_version": (
        "version INT NOT NULL",
        "applied DOUBLE NOT NULL",
        "PRIMARY KEY (version)",
    ),
}

_WEB_DEFINITIONS: dict[str, tuple[str, ...]] = {
    "web_users": (
        _SERIAL,
        _USERNAME,
        _DISPLAY_NAME,
        "password_hash VARCHAR(255) NOT NULL",
        "role VARCHAR(16) NOT NULL DEFAULT 'viewer'",
        "created DOUBLE NOT NULL",
        "disabled TINYINT NOT NULL DEFAULT 0",
        "PRIMARY KEY (id)",
        "UNIQUE KEY web_users_username (username)",
    ),
    "web_sessions": (
        "id CHAR(64) NOT NULL",  # a hash of the session cookie, never the cookie
        "user_id BIGINT NOT NULL",
        "csrf_token CHAR(64) NOT NULL",
        "created DOUBLE NOT NULL",
        "expires DOUBLE NOT NULL",
        "PRIMARY KEY (id)",
        "KEY web_sessions_user (user_id)",
    ),
    "web_login_attempts": (  # failed logins, for throttling per account and per address
        _SERIAL,
        "kind VARCHAR(8) NOT NULL",  # 'user' or 'ip'
        "subject VARCHAR(255) NOT NULL",  # the username tried, or the client address
        "ts DOUBLE NOT NULL",
        "PRIMARY KEY (id)",
        "KEY web_login_attempts_subject_ts (kind, subject, ts)",
    ),
    "web_settings": (
        "name VARCHAR(128) NOT NULL",
        "value TEXT NOT NULL",
        "PRIMARY KEY (name)",
    ),
    "web_reports": (  # saved reports: one user's named filters, sort and columns of one tab
        _SERIAL,
        "user_id BIGINT NOT NULL",
        "name VARCHAR(100) NOT NULL",
        _TAB,
        "params TEXT NOT NULL",  # JSON: the tab's query parameters (checked again whenever it is opened)
        "created DOUBLE NOT NULL",
        "updated DOUBLE NOT NULL",
        "PRIMARY KEY (id)",
        "UNIQUE KEY web_reports_user_name (user_id, name)",
    ),
    # the Updates tab: an update check over many clients, or a rollout (update apply) in waves
    "web_update_batches": (
        _SERIAL,
        "action VARCHAR(16) NOT NULL",  # 'update-check' or 'update-apply' (the admin API's action)
        "user_id BIGINT NOT NULL",  # the web user who started it
        _OPERATOR,  # the name every command carries
        "reason TEXT NOT NULL",
        "source_batch BIGINT",  # the check a rollout was started from
        "first_wave INT NOT NULL",  # clients in the first wave
        "wave_size INT NOT NULL",  # clients in each later wave
        "stop_failures INT NOT NULL",  # a wave with this many failures stops the rollout
        "waves INT NOT NULL",
        "current_wave INT NOT NULL DEFAULT 1",
        "state VARCHAR(16) NOT NULL",  # running, done, stopped
        "note TEXT",  # why it stopped
        "lease_token CHAR(32) NOT NULL DEFAULT ''",  # the step that advances it now (one at a time)
        "lease_until DOUBLE NOT NULL DEFAULT 0",
        "created DOUBLE NOT NULL",
        "updated DOUBLE NOT NULL",
        "PRIMARY KEY (id)",
        "KEY web_update_batches_created (created)",
    ),
    "web_update_targets": (  # one client of a batch, with its command and what came back
        "batch_id BIGINT NOT NULL",
        "position INT NOT NULL",
        _SERVER, _CLIENT,
        "hostname VARCHAR(255) NOT NULL DEFAULT ''",
        "wave INT NOT NULL",
        _STATUS,  # waiting, sending, a command status, error, lost, skipped
        "command_id VARCHAR(64)",
        "summary TEXT",
        "dry_run TINYINT NOT NULL DEFAULT 0",
        "update_count INT",
        "updates TEXT",  # JSON list of update names
        "updated DOUBLE NOT NULL",
        "PRIMARY KEY (batch_id, position)",
        "KEY web_update_targets_wave (batch_id, wave, status)",
    ),
    "web_history_grants": (  # a person may read an audited history tab (captures, chat, file ops) until expires
        _SERIAL,
        "user_id BIGINT NOT NULL",
        _TAB,
        "reason TEXT NOT NULL",
        "granted DOUBLE NOT NULL",
        "expires DOUBLE NOT NULL",
        "PRIMARY KEY (id)",
        "KEY web_history_grants_user_tab (user_id, tab, expires)",
    ),
    "web_audit": (  # what a web user opened and why; never deleted by the web UI
        _SERIAL,
        "ts DOUBLE NOT NULL",
        "user_id BIGINT NOT NULL",
        _USERNAME,
        _DISPLAY_NAME,
        _ACTION,  # e.g. history.messages
        "filters TEXT NOT NULL",  # JSON: the filters the page was opened with
        "reason TEXT NOT NULL",
        "until_ts DOUBLE",  # the grant's end
        "bus_audit VARCHAR(255) NOT NULL DEFAULT ''",  # what forwarding to the bus audit (admin API) gave
        "PRIMARY KEY (id)",
        "KEY web_audit_ts (ts)",
        "KEY web_audit_user_ts (user_id, ts)",
    ),
}

_KEY_WORDS = ("PRIMARY", "KEY", "UNIQUE", "INDEX", "CONSTRAINT", "FOREIGN")


class SchemaError(EmsError):
    """The MySQL database cannot be brought to this EMS's schema."""


def _ddl(table: str, definitions: tuple[str, ...]) -> str:
    body = ",\n    ".join(definitions)
    return f"CREATE TABLE IF NOT EXISTS `{table}` (\n    {body}\n) {_TABLE_OPTIONS}"


#: snapshot table -> its ``CREATE TABLE IF NOT EXISTS`` (written by the sync worker only)
SNAPSHOT_TABLES: dict[str, str] = {t: _ddl(t, d) for t, d in _SNAPSHOT_DEFINITIONS.items()}
#: the web UI's own tables -> DDL (the web UI's user reads and writes them)
WEB_TABLES: dict[str, str] = {t: _ddl(t, d) for t, d in _WEB_DEFINITIONS.items()}


def column_definitions(table: str) -> dict[str, str]:
    """``table``'s columns: name -> its definition, in declaration order."""
    definitions = _SNAPSHOT_DEFINITIONS.get(table) or _WEB_DEFINITIONS[table]
    return {line.split()[0]: line for line in definitions if line.split()[0] not in _KEY_WORDS}


def key_definitions(table: str) -> dict[str, str]:
    """``table``'s secondary keys: name -> its definition (``KEY name (...)``, ``UNIQUE KEY name (...)``)."""
    definitions = _SNAPSHOT_DEFINITIONS.get(table) or _WEB_DEFINITIONS[table]
    keys = {}
    for line in definitions:
        words = line.split()
        if words[0] == "KEY" or words[:2] == ["UNIQUE", "KEY"]:
            keys[words[words.index("KEY") + 1]] = line
    return keys


def _existing_keys(cursor, table: str) -> set[str]:
    cursor.execute(
        "SELECT DISTINCT index_name FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = %s",
        (table,),
    )
    return {row[0] for row in cursor.fetchall()}


def _existing_columns(cursor, table: str) -> set[str]:
    cursor.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = %s",
        (table,),
    )
    return {row[0] for row in cursor.fetchall()}


def _recorded_version(cursor) -> int:
    cursor.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
    return int(cursor.fetchone()[0])


def _add_missing_keys(cursor, table: str) -> int:
    """Add the keys ``table`` declares and lacks (an online ``ALTER TABLE ... ADD KEY``: readers carry on)."""
    existing = _existing_keys(cursor, table)
    missing = [definition for name, definition in key_definitions(table).items() if name not in existing]
    if missing:
        cursor.execute(f"ALTER TABLE `{table}` " + ", ".join(f"ADD {definition}" for definition in missing))
    return len(missing)


def create_tables(conn, tables: dict[str, str] | None = None) -> int:
    """Create or migrate every table on ``conn`` (a PyMySQL connection to the database),
    or only ``tables`` (the sync writer migrates the snapshot tables, which it owns).

    Idempotent; returns the number of tables, columns and keys it added (0 when
    the schema was current). Raises :class:`SchemaError` for a database
    written by a newer EMS.
    """
    with conn.cursor() as cursor:
        added = 0 if _existing_columns(cursor, "schema_version") else 1
        cursor.execute(SNAPSHOT_TABLES["schema_version"])
        found = _recorded_version(cursor)
        if found > SCHEMA_VERSION:
            raise SchemaError(
                f"database schema version {found} is newer than this EMS's ({SCHEMA_VERSION}): upgrade EMS"
            )
        for table, ddl in (tables or {**SNAPSHOT_TABLES, **WEB_TABLES}).items():
            existing = _existing_columns(cursor, table)
            if not existing:
                cursor.execute(ddl)
                added += 1
                continue
            for name, definition in column_definitions(table).items():
                if name not in existing:
                    cursor.execute(f"ALTER TABLE `{table}` ADD COLUMN {definition}")
                    added += 1
            added += _add_missing_keys(cursor, table)
        if found < SCHEMA_VERSION:
            cursor.execute("INSERT INTO schema_version (version, applied) VALUES (%s, UNIX_TIMESTAMP(NOW(6)))", (SCHEMA_VERSION,))
    conn.commit()
    return added
