"""Store schema: migrations, cascades, and the legacy (no-cascade) database."""
from __future__ import annotations

import logging
import sqlite3

import pytest
from test_store_support import client_rows, make_store, sample_records, table_counts

from broker.core import sqlite_db
from broker.persister import schema
from broker.persister.tables import Record
from broker.persister.store import delete_client_rows

#: The schema as first shipped: the same tables, foreign keys without
#: ON DELETE CASCADE, and no schema_version table.
LEGACY_DDL = """
CREATE TABLE clients (
    client_id TEXT PRIMARY KEY, label TEXT NOT NULL DEFAULT '', hostname TEXT, os TEXT, os_version TEXT,
    logged_in_user TEXT, version TEXT, first_seen REAL NOT NULL, last_seen REAL NOT NULL,
    online INTEGER NOT NULL DEFAULT 0, presence_ts REAL, last_sysinfo BLOB, sysinfo_ts REAL
);
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY, client_id TEXT NOT NULL REFERENCES clients(client_id), msg_id TEXT NOT NULL,
    started REAL NOT NULL, ended REAL, logged_in_user TEXT, end_reason TEXT, end_msg_id TEXT,
    UNIQUE (client_id, msg_id)
);
CREATE TABLE screen_captures (
    id INTEGER PRIMARY KEY, client_id TEXT NOT NULL REFERENCES clients(client_id), msg_id TEXT NOT NULL,
    ts REAL NOT NULL, width INTEGER, height INTEGER, quality INTEGER, format TEXT, image BLOB NOT NULL,
    operator TEXT, UNIQUE (client_id, msg_id)
);
CREATE TABLE chat_messages (
    id INTEGER PRIMARY KEY, client_id TEXT NOT NULL REFERENCES clients(client_id), msg_id TEXT NOT NULL,
    ts REAL NOT NULL, direction TEXT NOT NULL, operator TEXT, body BLOB NOT NULL, status TEXT NOT NULL,
    status_ts REAL NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, UNIQUE (client_id, msg_id)
);
CREATE TABLE file_operations (
    id INTEGER PRIMARY KEY, client_id TEXT NOT NULL REFERENCES clients(client_id), msg_id TEXT NOT NULL,
    ts REAL NOT NULL, operator TEXT, op TEXT NOT NULL, path BLOB NOT NULL, size INTEGER, ok INTEGER NOT NULL,
    error BLOB, UNIQUE (client_id, msg_id)
);
CREATE TABLE activity_logs (
    id INTEGER PRIMARY KEY, client_id TEXT NOT NULL REFERENCES clients(client_id), msg_id TEXT NOT NULL,
    ts REAL NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL, UNIQUE (client_id, msg_id)
);
CREATE TABLE metrics (
    id INTEGER PRIMARY KEY, client_id TEXT NOT NULL REFERENCES clients(client_id), msg_id TEXT NOT NULL,
    ts REAL NOT NULL, cpu_percent REAL, memory_percent REAL, disk_percent REAL, UNIQUE (client_id, msg_id)
);
CREATE TABLE security_events (
    id INTEGER PRIMARY KEY, origin TEXT NOT NULL, client_id TEXT REFERENCES clients(client_id), subject TEXT,
    msg_id TEXT NOT NULL, ts REAL NOT NULL, event TEXT NOT NULL, severity TEXT, detail BLOB
);
CREATE TABLE client_logs (
    id INTEGER PRIMARY KEY, client_id TEXT NOT NULL REFERENCES clients(client_id), msg_id TEXT NOT NULL,
    ts REAL NOT NULL, level TEXT NOT NULL, logger TEXT NOT NULL, message BLOB NOT NULL, UNIQUE (client_id, msg_id)
);
CREATE TABLE audit_trail (
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, msg_id TEXT NOT NULL, ts REAL NOT NULL, operator TEXT NOT NULL,
    role TEXT, action TEXT NOT NULL, target TEXT, reason TEXT, detail BLOB, UNIQUE (source, msg_id)
);
CREATE TABLE commands (
    id TEXT PRIMARY KEY, client_id TEXT NOT NULL REFERENCES clients(client_id), operator TEXT,
    name TEXT NOT NULL DEFAULT '', args BLOB, status TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
    result BLOB
);
"""


def _cascades(conn: sqlite3.Connection) -> dict[str, str]:
    return {t: conn.execute(f"PRAGMA foreign_key_list({t})").fetchone()["on_delete"] for t in schema.CHILD_TABLES}


@pytest.fixture
def legacy_db(tmp_path):
    """A legacy database holding two clients' rows and one orphan."""
    path = tmp_path / "legacy.db"
    # fill it through the current code, then replay the rows into the legacy tables
    donor = make_store(tmp_path, "donor.db")
    donor.write_batch(sample_records("a1") + sample_records("a2", tag="b-"))
    donor.close()
    conn = sqlite_db.connect(path)
    conn.executescript(LEGACY_DDL)
    conn.execute("ATTACH DATABASE ? AS donor", (str(tmp_path / "donor.db"),))
    for table in schema.TABLES:
        cols = ", ".join(schema.baseline_columns(table))
        conn.execute(f"INSERT INTO main.{table} ({cols}) SELECT {cols} FROM donor.{table}")
    conn.execute("DETACH DATABASE donor")
    # what a no-cascade delete with foreign keys off used to leave behind
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("INSERT INTO metrics (client_id, msg_id, ts) VALUES ('gone', 'm1', 1.0)")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.close()
    # the key file must be the donor's, or nothing decrypts
    return path


def test_fresh_database_is_latest_with_cascades_wal_and_foreign_keys(tmp_path):
    store = make_store(tmp_path)
    conn = store.connection
    assert schema.current_version(conn) == schema.LATEST
    assert [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")] == list(range(1, schema.LATEST + 1))
    assert set(_cascades(conn).values()) == {"CASCADE"}
    assert "audit_trail" not in schema.CHILD_TABLES
    assert conn.execute("PRAGMA foreign_key_list(audit_trail)").fetchall() == []
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    for table in schema.CHILD_TABLES:
        if table not in ("sessions", "commands"):
            assert f"{table}_client_ts" in indexes
    assert schema.migrate(conn) == schema.LATEST  # idempotent
    store.close()


def test_newer_schema_is_refused(tmp_path):
    conn = sqlite_db.connect(tmp_path / "future.db")
    schema.migrate(conn)
    conn.execute("INSERT INTO schema_version VALUES (?, 0)", (schema.LATEST + 1,))
    with pytest.raises(schema.SchemaError, match="newer than this EMS"):
        schema.migrate(conn)


def test_deleting_a_client_cascades_to_every_child_table(tmp_path):
    store = make_store(tmp_path)
    store.write_batch(sample_records("a1") + sample_records("a2", tag="b-"))
    conn = store.connection
    assert all(client_rows(conn, "a1").values()), client_rows(conn, "a1")
    before = table_counts(conn)

    conn.execute("DELETE FROM clients WHERE client_id = 'a1'")  # plain SQL: the schema cascades

    assert set(client_rows(conn, "a1").values()) == {0}
    assert all(client_rows(conn, "a2").values())
    after = table_counts(conn)
    # the audit trail and the broker's security events about a1 survive it
    assert after["audit_trail"] == before["audit_trail"] == 2
    assert conn.execute("SELECT count(*) FROM security_events WHERE subject = 'a1'").fetchone()[0] == 1
    store.close()


def test_delete_client_reports_what_it_removed(tmp_path):
    store = make_store(tmp_path)
    store.write_batch(sample_records("a1") + sample_records("a2", tag="b-"))
    counts = store.delete_client("a1")
    assert counts["clients"] == 1
    assert all(counts[t] >= 1 for t in schema.CHILD_TABLES), counts
    assert set(client_rows(store.connection, "a1").values()) == {0}
    assert store.query("clients", client_id="a1") == []
    assert len(store.query("audit", client_id="a1")) == 1
    assert store.delete_client("nobody")["clients"] == 0
    store.close()


def test_legacy_database_really_lacks_cascades(legacy_db):
    conn = sqlite_db.connect(legacy_db)
    assert set(_cascades(conn).values()) == {"NO ACTION"}
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        conn.execute("DELETE FROM clients WHERE client_id = 'a1'")
    conn.close()


def test_delete_client_rows_works_without_cascades(legacy_db):
    conn = sqlite_db.connect(legacy_db)  # not migrated
    conn.execute("BEGIN IMMEDIATE")
    counts = delete_client_rows(conn.cursor(), "a1")
    conn.execute("COMMIT")
    assert counts["clients"] == 1 and counts["metrics"] == 1
    assert set(client_rows(conn, "a1").values()) == {0}
    assert all(client_rows(conn, "a2").values())
    orphan = conn.execute("SELECT id FROM metrics WHERE client_id = 'gone'").fetchone()[0]
    problems = [tuple(r)[:3] for r in conn.execute("PRAGMA foreign_key_check")]
    assert problems == [("metrics", orphan, "clients")]  # only the old orphan
    conn.close()


def test_legacy_database_is_migrated_and_cascades_afterwards(legacy_db, tmp_path, caplog):
    raw = sqlite_db.connect(legacy_db)
    before = table_counts(raw)
    ids_before = {t: [r[0] for r in raw.execute(f"SELECT rowid FROM {t} ORDER BY rowid")] for t in schema.TABLES}
    raw.close()
    caplog.set_level(logging.WARNING, "broker.persister.schema")

    store = make_store(tmp_path, "legacy.db")  # opening migrates
    conn = store.connection

    assert schema.current_version(conn) == schema.LATEST
    assert set(_cascades(conn).values()) == {"CASCADE"}
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    after = table_counts(conn)
    assert after == {**before, "metrics": before["metrics"] - 1}  # the orphan is gone, nothing else
    assert "dropping 1 metrics rows" in caplog.text
    ids_after = {t: [r[0] for r in conn.execute(f"SELECT rowid FROM {t} ORDER BY rowid")] for t in schema.TABLES}
    ids_before["metrics"] = ids_before["metrics"][:-1]
    assert ids_after == ids_before  # row ids (and so query cursors) survive the rebuild
    assert not conn.execute("SELECT name FROM sqlite_master WHERE name LIKE '\\_new\\_%' ESCAPE '\\'").fetchall()
    # old data still decrypts (same key file), and the cascade works
    assert store.query("logs", client_id="a1")[0]["message"].startswith("SECRET-LOG")
    conn.execute("DELETE FROM clients WHERE client_id = 'a1'")
    assert set(client_rows(conn, "a1").values()) == {0}
    assert store.delete_client("a2")["clients"] == 1
    assert set(client_rows(conn, "a2").values()) == {0}
    store.close()


def test_a_failed_migration_leaves_the_legacy_database_as_it_was(tmp_path):
    path = tmp_path / "broken.db"
    conn = sqlite_db.connect(path)
    # a legacy table that lacks a column the rebuild copies
    conn.executescript(LEGACY_DDL.replace("memory_percent REAL, disk_percent REAL", "memory_percent REAL"))
    conn.execute("INSERT INTO clients (client_id, first_seen, last_seen) VALUES ('a1', 1, 1)")
    conn.execute("INSERT INTO metrics (client_id, msg_id, ts, cpu_percent) VALUES ('a1', 'm', 1, 5)")
    with pytest.raises(schema.SchemaError, match="version 2"):
        schema.migrate(conn)
    assert schema.current_version(conn) == 1
    assert set(_cascades(conn).values()) == {"NO ACTION"}  # not half rebuilt
    assert conn.execute("SELECT cpu_percent FROM metrics").fetchone()[0] == 5.0
    assert not conn.execute("SELECT name FROM sqlite_master WHERE name LIKE '\\_new\\_%' ESCAPE '\\'").fetchall()
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    conn.close()


def test_statements_split_on_sqlites_own_tokenizer():
    script = "CREATE TABLE t (a TEXT DEFAULT ';');\nINSERT INTO t VALUES ('x;\ny');\n"
    assert len(list(schema.statements(script))) == 2
    with pytest.raises(schema.SchemaError, match="incomplete"):
        list(schema.statements("CREATE TABLE t (a"))


def test_the_audit_trail_gains_person_and_via_columns_and_keeps_its_rows(tmp_path):
    """Migration 5 on a version-4 store: the audit rows already there are kept
    (person and via read NULL: their name stays in the detail); new rows fill
    the columns from the broker's record, a service's person with its ``via``."""
    path = tmp_path / "v4.db"
    conn = sqlite_db.connect(path)
    schema.current_version(conn)
    for step in schema.MIGRATIONS[:4]:
        schema._apply(conn, step)  # the store as version 4 left it
    assert "operator_name" not in {r[1] for r in conn.execute("PRAGMA table_info(audit_trail)")}
    conn.execute("INSERT INTO audit_trail (source, msg_id, ts, operator, role, action, target, reason, detail)"
                 " VALUES ('admin-http', 'old-1', 1.0, 'admin-http', 'service', 'command', 'pc-1', 'frozen', NULL)")
    conn.close()
    store = make_store(tmp_path, "v4.db")  # opening migrates
    assert schema.current_version(store.connection) == schema.LATEST
    [old] = store.query("audit")
    assert (old["msg_id"], old["reason"], old["operator_name"], old["via"]) == ("old-1", "frozen", None, None)
    detail = {"id": "c1", "target": "pc-1", "name": "power.reboot", "reason": "kernel update",
              "operator_name": "Jane Doe", "operator_id": "jd@example.org", "via": "admin-http"}
    store.write_batch([
        Record("audit", "admin-http", "new-1", 2.0, "audit.admin-http",
               {"operator": "admin-http", "role": "service", "action": "command", "detail": detail}),
        Record("audit", "jane", "new-2", 3.0, "audit.jane",
               {"operator": "jane", "role": "operator", "action": "screen.watch", "detail": {},
                "operator_name": "Jane Q. Doe", "via": ""}),
    ])
    rows = {r["msg_id"]: r for r in store.query("audit")}
    assert (rows["new-1"]["operator_name"], rows["new-1"]["via"], rows["new-1"]["reason"]) == ("Jane Doe", "admin-http", "kernel update")
    assert (rows["new-2"]["operator_name"], rows["new-2"]["via"]) == ("Jane Q. Doe", "")
    assert [r["msg_id"] for r in store.query("audit", text="Jane Doe")] == ["new-1"]
    assert {r["key"]: r["count"] for r in store.stats("audit_person")} == {"Jane Doe": 1, "Jane Q. Doe": 1, None: 1}
    store.close()
