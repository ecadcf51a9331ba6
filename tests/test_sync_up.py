"""``ems up`` runs the sync worker: the local agent's rows reach the private MariaDB, ``ems sync --now``
draws the progress bar of a full snapshot, and the worker stops first and cleanly."""
from __future__ import annotations

import signal
import subprocess
import sys

from broker.core.config import DataDir
from broker.core.profile import load
from sync import web_db
from sync.mysql_url import connect

from conftest import wait_for
from test_up_web import STOP_ORDER, start_up, stop_up


def _rows(data, table: str) -> int:
    writer = web_db.read_credentials(data / web_db.WRITER_FILE)
    try:
        with connect(writer) as conn, conn.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM `{table}`")
            return cursor.fetchone()[0]
    except Exception:  # the worker has not created its tables yet
        return 0


def test_up_syncs_the_store_and_sync_now_shows_progress(procs, tmp_path):
    data = tmp_path / "var"
    up = start_up(procs, "up", data)
    try:
        wait_for(lambda: _rows(data, "snapshot_clients") >= 1, 60, interval_s=0.2, what="the local agent in MySQL")
        server_id = load(DataDir(data)).server_key
        writer = web_db.read_credentials(data / web_db.WRITER_FILE)
        with connect(writer) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT server_id FROM snapshot_clients")
            assert {r[0] for r in cursor.fetchall()} == {server_id}
        now = subprocess.run([sys.executable, "-m", "broker.cli.main", "sync", "--now", "--data-dir", str(data)],
                             capture_output=True, text=True, timeout=120)
        assert now.returncode == 0, now.stderr
        assert "full snapshot [" in now.stderr and "full snapshot done" in now.stdout
    finally:
        order = stop_up(up, signal.SIGTERM)
    assert order == STOP_ORDER and order.index("sync") < order.index("mariadb")  # the writer before what it writes to
