"""The sync worker when MySQL fails, and what MySQL's files hold.

* a connection dropped in the middle of a page (``KILL`` from the server's
  side between two tables of one transaction): the page rolls back, the
  worker reconnects with back-off and MySQL still ends equal to the store;
* MySQL down at the start, then started: a clear reason in ``sync.status``
  (over the bus, which keeps answering), then the snapshot lands;
* a wrong password: the reason says so;
* the raw bytes of MariaDB's data files hold no sensitive field in clear,
  while a plain column written in the same rows is found there (the
  search sees what was committed).
"""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from broker.core.errors import RemoteError
from sync import mariadb
from sync.mysql_url import MysqlUrl, connect
from sync.snapshot_db import SnapshotDB
from conftest import wait_for
from bench.sync_rows import fill
from sync_support import RunningSync, new_database
from test_persister_bus import RunningPersister
from test_sync_worker import SERVER, equal, second_store


@pytest.fixture
def persister(bus, tmp_path):
    p = RunningPersister(bus, tmp_path)
    yield p
    p.stop()


def status_of(peer) -> dict:
    """``sync.status``, or {} while the sync service has not joined yet."""
    try:
        return peer.request("sync.status")
    except RemoteError:
        return {}


class DroppingDB(SnapshotDB):
    """A SnapshotDB whose MySQL connection is killed by the server after the first table of a page, ``drops`` times."""

    admin: MysqlUrl
    drops = 2

    def _write_part(self, cur, table, part):
        super()._write_part(cur, table, part)
        if self.drops > 0 and part["rows"]:
            self.drops -= 1
            admin = connect(self.admin)
            with admin.cursor() as killer:
                killer.execute(f"KILL CONNECTION {self.conn.thread_id()}")
            admin.close()


def test_a_connection_dropped_mid_page_rolls_back_and_recovers(bus, tmp_path, persister, mysql_admin_url, caplog):
    url = new_database(mysql_admin_url)
    with second_store(tmp_path) as store:
        fill(store, 4000)
    sync = RunningSync(bus, url, SERVER, tmp_path, db_class=DroppingDB, admin=url)
    try:
        wait_for(lambda: equal(url, tmp_path), 60, interval_s=0.2, what="MySQL to equal the store after the drops")
        assert sync.db.drops == 0
        assert sync.worker.status["failures"] >= 2
        assert "lost the connection to MySQL" in caplog.text and "rolled back" in caplog.text
        assert sync.worker.status["last_error"] is None  # recovered
    finally:
        sync.stop()


def test_mysql_down_then_up_the_bus_side_answers_and_the_snapshot_lands(bus, tmp_path, persister, mysql_admin_url):
    with second_store(tmp_path) as store:
        fill(store, 500)
    port = mariadb.free_port()
    down = MysqlUrl(user="nobody", host="127.0.0.1", port=port, database="ems_web")
    sync = RunningSync(bus, down, SERVER, tmp_path)
    instance = None
    try:
        viewer = bus.peer("v1", role="viewer")
        status = wait_for(lambda: (s := status_of(viewer)).get("error") and s, 20, what="the reason in sync.status")
        assert f"cannot reach MySQL at 127.0.0.1:{port}" in status["error"] and status["connected"] is False
        instance = mariadb.start(tmp_path / "late-mariadb", port=port)
        admin = new_database(instance.admin_url())
        conn = connect(admin)
        with conn.cursor() as cur:
            cur.execute("CREATE USER IF NOT EXISTS 'nobody'@'127.0.0.1'")
            cur.execute(f"GRANT ALL ON `{admin.database}`.* TO 'nobody'@'127.0.0.1'")
        conn.commit()
        conn.close()
        sync.db.url = down.with_database(admin.database)  # the operator fixes the database name: no restart needed for it here
        wait_for(lambda: equal(admin, tmp_path), 60, interval_s=0.2, what="the snapshot once MySQL is up")
        assert viewer.request("sync.status")["error"] is None
    finally:
        sync.stop()
        if instance is not None:
            instance.stop()


def test_a_wrong_password_is_said_plainly(bus, tmp_path, persister, mysql_admin_url):
    url = new_database(mysql_admin_url)
    conn = connect(url)
    with conn.cursor() as cur:
        cur.execute("CREATE USER IF NOT EXISTS 'pwtest'@'localhost' IDENTIFIED BY 'right'")
        cur.execute("CREATE USER IF NOT EXISTS 'pwtest'@'127.0.0.1' IDENTIFIED BY 'right'")
    conn.commit()
    conn.close()
    wrong = url.with_user("pwtest", "wrong")
    sync = RunningSync(bus, wrong, SERVER, tmp_path)
    try:
        status = wait_for(lambda: (s := status_of(bus.admin)).get("error") and s, 20, what="the reason")
        assert "refused user 'pwtest' (wrong password or no grant)" in status["error"]
    finally:
        sync.stop()


def test_mariadb_files_hold_no_sensitive_field_in_clear(bus, tmp_path, persister, mysql_admin_url):
    secret, plain = f"SECRET{uuid.uuid4().hex[:12]}", f"PLAIN{uuid.uuid4().hex[:12]}"
    url = new_database(mysql_admin_url)
    with second_store(tmp_path) as store:
        fill(store, 200, marker=secret, clients=(f"{plain}-desk",))
    sync = RunningSync(bus, url, SERVER, tmp_path)
    try:
        wait_for(lambda: equal(url, tmp_path), 30, interval_s=0.2, what="the snapshot")
    finally:
        sync.stop()
    conn = connect(url)
    with conn.cursor() as cur:
        cur.execute("SELECT @@datadir")
        datadir = Path(cur.fetchone()[0])
        cur.execute("FLUSH TABLES")
    conn.close()
    found_plain = found_secret = 0
    for path in datadir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            raw = path.read_bytes()
            found_plain += plain.encode() in raw
            found_secret += secret.encode() in raw
    assert found_plain, "the search must see committed rows (the client id is plain)"
    assert found_secret == 0
