"""kill -9 of the sync worker process at random points of a 100k-row snapshot, then MySQL equals the store.

The worker runs as ``ems sync run`` (its own process, its own service key,
the sync writer's MySQL user made by ``ems sync init``'s code). It is
SIGKILLed several times while the snapshot is being written, at random
amounts of progress read from ``sync_state``; between kills the store
changes (rows added, a client deleted). Each restart resumes from the
watermarks committed in MySQL; at the end every synced table has the
store's rows exactly: same count and same checksum of keys and versions
(a gap or a stale row would change it; duplicates cannot exist under the
``(server_id, key)`` primary keys, and the count shows none is missing).
"""
from __future__ import annotations

import random
import signal

from broker.core.config import DataDir
from broker.core.profile import load
from sync.mysql_url import connect
from sync.web_db import WebDbPlan, init_web_db, writer_url
from conftest import wait_for
from bench.sync_rows import fill
from sync_support import mysql_digests, new_database, store_digests, sync_profile
from test_persister_bus import RunningPersister
from test_sync_worker import second_store

ROWS = 100_000
KILLS = 4


def _synced(url) -> int:
    try:
        conn = connect(url)
    except Exception:
        return 0
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COALESCE(SUM(rows_synced), 0) FROM sync_state")
            return int(cur.fetchone()[0])
    except Exception:  # the worker has not created its tables yet
        return 0
    finally:
        conn.close()


def test_kill_9_at_random_points_of_a_100k_snapshot_then_mysql_equals_the_store(bus, tmp_path, procs, mysql_admin_url):
    with second_store(tmp_path) as store:  # before the persister starts: no lock held against it
        fill(store, ROWS)
    persister = RunningPersister(bus, tmp_path)
    try:
        admin = new_database(mysql_admin_url)
        data_root = sync_profile(bus, tmp_path / "syncdata")
        init_web_db(admin.with_database(""), data_root, WebDbPlan(database=admin.database, writer=f"w{admin.database[-8:]}",
                                                                  web_user=f"u{admin.database[-8:]}"))
        url = writer_url(data_root)
        server_id = load(DataDir(data_root)).server_key
        rng = random.Random()
        argv = ("sync", "run", "--data-dir", str(data_root), "--writer-url", str(url))
        kills = []
        for round_ in range(KILLS):
            proc = procs.ems(f"sync-{round_}", *argv)
            target = _synced(url) + rng.randint(1, ROWS // KILLS)
            wait_for(lambda: _synced(url) >= target or proc.poll() is not None, 60, interval_s=0.005,
                     what=f"the snapshot to pass {target} rows")
            assert proc.poll() is None, proc.log_path.read_text()[-2000:]
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            kills.append(_synced(url))
            with second_store(tmp_path) as store:  # the store moves on while the worker is dead
                fill(store, 500, clients=(f"late-{round_}",), start=ROWS + round_ * 1000)
                if round_ == 1:
                    store.delete_client("desk-2")
        assert len(set(kills)) == KILLS, kills  # each kill came at another point of progress
        procs.ems("sync-final", *argv)
        wait_for(lambda: mysql_digests(url, server_id) == store_digests(tmp_path / "store.db"), 120, interval_s=0.5,
                 what="MySQL to equal the store after the kills")
        digests = store_digests(tmp_path / "store.db")
        assert sum(count for count, _ in digests.values()) > ROWS // 2
    finally:
        persister.stop()
