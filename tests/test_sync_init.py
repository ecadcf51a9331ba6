"""``ems sync init`` against a real MariaDB (the session's private instance, see ``mysql_admin_url``).

The web UI's user may read every snapshot table and write none of them (a
matrix of every snapshot table and every write statement), and may write
its own tables; the sync writer the other way round. Init twice changes
nothing; an older schema is migrated without losing rows; failures are one
line that says what to do.
"""
from __future__ import annotations

import itertools
import os
import stat
import subprocess
import sys

import pymysql
import pytest

from sync import schema, web_db
from sync.mariadb import BINARY_DIRS_ENV, MariaDBError, PrivateMariaDB
from sync.mysql_url import MysqlError, MysqlUrl, connect

_names = itertools.count()

#: statements the web UI's user must be refused on every snapshot table
WRITE_STATEMENTS = {
    "insert": "INSERT INTO `{t}` () VALUES ()",
    "update": "UPDATE `{t}` SET `{c}` = `{c}`",
    "delete": "DELETE FROM `{t}`",
    "drop": "DROP TABLE `{t}`",
    "truncate": "TRUNCATE TABLE `{t}`",
    "alter": "ALTER TABLE `{t}` ADD COLUMN web_extra INT",
}
TABLE_ACCESS_DENIED = (1142, 1143)  # table / column command denied


def unique_plan() -> web_db.WebDbPlan:
    """Names of one's own: users are server-wide and the instance is shared by the whole run."""
    n = next(_names)
    return web_db.WebDbPlan(database=f"ems_web_t{os.getpid()}_{n}", writer=f"w{os.getpid()}_{n}", web_user=f"u{os.getpid()}_{n}")


def init(admin_url: str, root, plan: web_db.WebDbPlan) -> web_db.InitReport:
    return web_db.init_web_db(MysqlUrl.parse(admin_url), root, plan)


def as_user(root, relative) -> pymysql.Connection:
    return connect(web_db.read_credentials(root / relative), autocommit=True)


@pytest.fixture(scope="module")
def web_db_ready(mysql_admin_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("sync-init")
    plan = unique_plan()
    init(mysql_admin_url, root, plan)
    web = as_user(root, web_db.WEB_FILE)
    yield root, plan, web
    web.close()


def _error_code(cursor, sql) -> int | None:
    try:
        cursor.execute(sql)
    except pymysql.err.MySQLError as exc:
        return exc.args[0]
    return None


@pytest.mark.parametrize("table,statement", [(t, s) for t in schema.SNAPSHOT_TABLES for s in WRITE_STATEMENTS])
def test_web_user_cannot_write_any_snapshot_table(web_db_ready, table, statement):
    _, _, web = web_db_ready
    column = next(iter(schema.column_definitions(table)))
    with web.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM `{table}`")  # reading is allowed
        assert _error_code(cursor, WRITE_STATEMENTS[statement].format(t=table, c=column)) in TABLE_ACCESS_DENIED


def test_web_user_writes_its_own_tables_over_socket_and_tcp(web_db_ready):
    root, plan, web = web_db_ready
    with web.cursor() as cursor:
        cursor.execute("INSERT INTO web_users (username, display_name, password_hash, created) VALUES (%s, %s, %s, 1)",
                       ("alice", "Alice", "x"))
        cursor.execute("UPDATE web_users SET display_name = %s WHERE username = %s", ("Alice A.", "alice"))
        cursor.execute("INSERT INTO web_settings (name, value) VALUES ('theme', 'dark')")
        cursor.execute("DELETE FROM web_settings WHERE name = 'theme'")
        cursor.execute("SELECT display_name FROM web_users")
        assert cursor.fetchall() == (("Alice A.",),)
    tcp = web_db.read_credentials(root / web_db.WEB_FILE)
    tcp = MysqlUrl(user=tcp.user, password=tcp.password, host="127.0.0.1", port=tcp.port, database=tcp.database)
    with connect(tcp) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM web_users")
        assert cursor.fetchone()[0] == 1


def test_web_user_only_adds_to_its_audit(web_db_ready):
    """The web's audit of who opened what and why: the web UI's account can add rows, never change or remove one."""
    _, _, web = web_db_ready
    with web.cursor() as cursor:
        cursor.execute("INSERT INTO web_audit (ts, user_id, username, display_name, action, filters, reason) "
                       "VALUES (1, 1, 'otto', 'Otto', 'history.messages', '{}', 'ticket 1')")
        assert _error_code(cursor, "UPDATE web_audit SET reason = 'nothing'") in TABLE_ACCESS_DENIED
        assert _error_code(cursor, "DELETE FROM web_audit") in TABLE_ACCESS_DENIED
        cursor.execute("SELECT reason FROM web_audit")
        assert cursor.fetchall() == (("ticket 1",),)


def test_writer_writes_snapshots_and_cannot_touch_web_tables(web_db_ready):
    root, plan, _ = web_db_ready
    with as_user(root, web_db.WRITER_FILE) as writer, writer.cursor() as cursor:
        cursor.execute("INSERT INTO sync_state (server_id, table_name, watermark, updated) VALUES ('s1', 'snapshot_clients', 7, 1)")
        cursor.execute("UPDATE sync_state SET watermark = 8 WHERE server_id = 's1'")
        cursor.execute("DELETE FROM sync_state WHERE server_id = 's1'")
        for table in schema.WEB_TABLES:
            assert _error_code(cursor, f"SELECT COUNT(*) FROM `{table}`") in TABLE_ACCESS_DENIED


def test_credentials_are_private_files(web_db_ready):
    root, _, _ = web_db_ready
    for relative in (web_db.WRITER_FILE, web_db.WEB_FILE):
        assert stat.S_IMODE((root / relative).stat().st_mode) == 0o600
        assert stat.S_IMODE((root / relative).parent.stat().st_mode) == 0o700


def _grants(admin_url: str, plan: web_db.WebDbPlan) -> list:
    with connect(MysqlUrl.parse(admin_url)) as conn, conn.cursor() as cursor:
        found = []
        for user, host in itertools.product((plan.writer, plan.web_user), plan.hosts):
            cursor.execute("SHOW GRANTS FOR %s@%s", (user, host))
            found.append(sorted(cursor.fetchall()))
        return found


def test_init_twice_is_a_noop(mysql_admin_url, tmp_path):
    plan = unique_plan()
    first = init(mysql_admin_url, tmp_path, plan)
    assert first.changes == len(schema.SNAPSHOT_TABLES) + len(schema.WEB_TABLES)
    assert first.users_created == [plan.writer, plan.web_user]
    files = {p: p.read_text() for p in first.credentials.values()}
    grants = _grants(mysql_admin_url, plan)
    with as_user(tmp_path, web_db.WRITER_FILE) as writer, writer.cursor() as cursor:
        cursor.execute("INSERT INTO servers (server_id, updated) VALUES ('kept', 1)")
    second = init(mysql_admin_url, tmp_path, plan)
    assert second.changes == 0 and second.users_created == []
    assert {p: p.read_text() for p in second.credentials.values()} == files
    assert _grants(mysql_admin_url, plan) == grants
    with as_user(tmp_path, web_db.WEB_FILE) as web, web.cursor() as cursor:
        cursor.execute("SELECT server_id FROM servers")
        assert cursor.fetchall() == (("kept",),)


def test_init_migrates_an_older_schema_keeping_rows(mysql_admin_url, tmp_path):
    plan = unique_plan()
    init(mysql_admin_url, tmp_path, plan)
    admin = MysqlUrl.parse(mysql_admin_url).with_database(plan.database)
    with connect(admin, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.execute("INSERT INTO servers (server_id, name, updated) VALUES ('old', 'Old one', 1)")
        cursor.execute("ALTER TABLE servers DROP COLUMN endpoint")  # as an older EMS built it
        cursor.execute("DROP TABLE web_settings")
    assert init(mysql_admin_url, tmp_path, plan).changes == 2
    with connect(admin) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT server_id, name, endpoint FROM servers")
        assert cursor.fetchall() == (("old", "Old one", None),)
        cursor.execute("SELECT COUNT(*) FROM web_settings")


def _keys(admin, table: str) -> dict[str, list[str]]:
    """``table``'s keys as the server has them: name -> its columns in order."""
    with connect(admin) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT index_name, column_name FROM information_schema.statistics "
                       "WHERE table_schema = DATABASE() AND table_name = %s ORDER BY index_name, seq_in_index", (table,))
        found: dict[str, list[str]] = {}
        for name, column in cursor.fetchall():
            found.setdefault(name, []).append(column)
        return found


def test_init_adds_the_keys_an_older_schema_lacks_keeping_rows(mysql_admin_url, tmp_path):
    """Version 4 had no (ts) and (client_id, ts) keys on client logs: init adds them, rows stay, twice is a no-op."""
    plan = unique_plan()
    init(mysql_admin_url, tmp_path, plan)
    admin = MysqlUrl.parse(mysql_admin_url).with_database(plan.database)
    with connect(admin, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.execute("INSERT INTO snapshot_client_logs (server_id, id, client_id, ts, level, logger) "
                       "VALUES ('s', 7, 'desk-1', 1.5, 'INFO', 'agent')")
        cursor.execute("ALTER TABLE snapshot_client_logs DROP KEY snapshot_client_logs_ts, "
                       "DROP KEY snapshot_client_logs_client")  # as version 4 built it
        cursor.execute("DELETE FROM schema_version WHERE version = 5")
    assert "snapshot_client_logs_ts" not in _keys(admin, "snapshot_client_logs")
    assert init(mysql_admin_url, tmp_path, plan).changes == 2
    keys = _keys(admin, "snapshot_client_logs")
    assert keys["snapshot_client_logs_ts"] == ["ts"]
    assert keys["snapshot_client_logs_client"] == ["client_id", "ts"]
    assert set(keys) == {"PRIMARY", *schema.key_definitions("snapshot_client_logs")}
    assert init(mysql_admin_url, tmp_path, plan).changes == 0
    with connect(admin) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT server_id, id, client_id FROM snapshot_client_logs")
        assert cursor.fetchall() == (("s", 7, "desk-1"),)
        cursor.execute("SELECT MAX(version) FROM schema_version")
        assert cursor.fetchone()[0] == schema.SCHEMA_VERSION


def test_every_declared_key_is_built(mysql_admin_url, tmp_path):
    """A fresh database has exactly the keys the schema declares, on every table."""
    plan = unique_plan()
    init(mysql_admin_url, tmp_path, plan)
    admin = MysqlUrl.parse(mysql_admin_url).with_database(plan.database)
    for table in {**schema.SNAPSHOT_TABLES, **schema.WEB_TABLES}:
        assert set(_keys(admin, table)) - {"PRIMARY"} == set(schema.key_definitions(table)), table


def test_newer_schema_is_refused(mysql_admin_url, tmp_path):
    plan = unique_plan()
    init(mysql_admin_url, tmp_path, plan)
    admin = MysqlUrl.parse(mysql_admin_url).with_database(plan.database)
    with connect(admin, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.execute("INSERT INTO schema_version VALUES (%s, 1)", (schema.SCHEMA_VERSION + 1,))
    with pytest.raises(schema.SchemaError, match="newer than this EMS"):
        init(mysql_admin_url, tmp_path, plan)


def test_a_user_without_its_password_here_is_refused(mysql_admin_url, tmp_path):
    plan = unique_plan()
    init(mysql_admin_url, tmp_path / "server-a", plan)
    with pytest.raises(MysqlError, match="exists already.*another EMS server"):
        init(mysql_admin_url, tmp_path / "server-b", plan)


def ems_sync(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "broker.cli.main", "sync", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def test_cli_init_prints_where_the_credentials_are(mysql_admin_url, tmp_path):
    plan = unique_plan()
    args = ["init", "--data-dir", str(tmp_path), "--mysql-url", mysql_admin_url, "--database", plan.database,
            "--writer-user", plan.writer, "--web-user", plan.web_user]
    first, second = ems_sync(*args), ems_sync(*args)
    assert first.returncode == 0, first.stderr
    assert str(tmp_path / web_db.WEB_FILE) in first.stdout and str(tmp_path / web_db.WRITER_FILE) in first.stdout
    assert second.returncode == 0 and "schema current" in second.stdout and "(exists)" in second.stdout


def _one_line_failure(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_wrong_password_is_one_clear_line(mysql_admin_url, tmp_path):
    port = MysqlUrl.parse(mysql_admin_url).port
    line = _one_line_failure(ems_sync("init", "--data-dir", str(tmp_path), "--mysql-url", f"mysql://root:wrong@127.0.0.1:{port}/"))
    assert "refused user 'root'" in line and "password" in line and "wrong" not in line.split("refused")[0]


def test_unreachable_server_is_one_clear_line(tmp_path):
    with __import__("socket").socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens on it
    line = _one_line_failure(ems_sync("init", "--data-dir", str(tmp_path), "--mysql-url", f"mysql://root:x@127.0.0.1:{port}/"))
    assert f"cannot reach MySQL at 127.0.0.1:{port}" in line and "is it running" in line


def test_no_private_instance_is_one_clear_line(tmp_path):
    line = _one_line_failure(ems_sync("init", "--data-dir", str(tmp_path)))
    assert "no private MariaDB" in line and "ems up" in line and "--mysql-url" in line


def test_missing_mariadb_binaries_say_how_to_install_them(tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv(BINARY_DIRS_ENV, str(empty))
    with pytest.raises(MariaDBError, match=r"mariadb-install-db, mariadbd.*installer/install\.sh.*mariadb-server"):
        PrivateMariaDB(tmp_path / "mysql").start()
    assert not (tmp_path / "mysql" / "data").exists()
