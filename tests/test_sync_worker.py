"""The sync worker against a real MariaDB, a real broker and a real persister.

The store is filled with rows; the worker (a bus service in a thread here;
a separate process in test_sync_kill.py) must make MySQL equal to it:
same rows per table (count and a checksum of each key with the column
that changes when a row is updated), deletions included, sensitive fields
sealed for the web and nowhere in clear.
"""
from __future__ import annotations

import subprocess

import pytest

from broker.core.envelope import Kind
from broker.core.errors import RemoteError
from broker.persister.change_log import SYNCED
from broker.persister.crypto import SecurityManager
from broker.persister.store import Store
from sync.mysql_url import connect
from sync.web_crypto import aad_for, import_key, key_path
from conftest import wait_for
from bench.sync_rows import fill
from sync_support import RunningSync, mysql_digests, new_database, store_digests
from test_persister_bus import RunningPersister

SERVER = "server-a"


@pytest.fixture
def stack(bus, tmp_path, mysql_admin_url):
    persister = RunningPersister(bus, tmp_path)
    url = new_database(mysql_admin_url)
    running = []

    def start_sync(server_id=SERVER, client_id="sync", **kw):
        s = RunningSync(bus, url, server_id, tmp_path, client_id=client_id, **kw)
        running.append(s)
        return s

    yield persister, url, start_sync
    for s in running:
        s.stop()
    persister.stop()


def second_store(tmp_path) -> Store:
    """Another connection to the persister's store (a maintenance tool's)."""
    return Store(tmp_path / "store.db", SecurityManager(tmp_path / "store-keys.json"))


def equal(url, tmp_path, server_id=SERVER):
    """MySQL holds exactly the store's rows (False while the worker has not created its tables yet)."""
    import pymysql

    try:
        return mysql_digests(url, server_id) == store_digests(tmp_path / "store.db")
    except pymysql.err.MySQLError:  # e.g. 1412 while the worker migrates a table under the check
        return False


def test_full_snapshot_then_changes_within_seconds_then_deletions(stack, bus, tmp_path):
    persister, url, start_sync = stack
    with second_store(tmp_path) as store:
        fill(store, 3000)
    start_sync()
    wait_for(lambda: equal(url, tmp_path), 30, interval_s=0.2, what="MySQL to equal the store after the full snapshot")
    # a record through the real path (agent -> broker -> persister): the long poll brings it without a timer
    agent = bus.peer("desk-9")
    agent.publish(Kind.LOG, "", {"level": "WARNING", "logger": "agent", "message": "disk almost full"})
    wait_for(lambda: _count(url, "snapshot_client_logs", "client_id = 'desk-9'") == 1, 10, what="the new log in MySQL")
    # a client removed with its cascade, and a retention purge: tombstones propagate
    with second_store(tmp_path) as store:
        store.delete_client("desk-1")
        store.purge({"metrics": 0.0})
    wait_for(lambda: equal(url, tmp_path), 30, interval_s=0.2, what="the deletions in MySQL")
    assert _count(url, "snapshot_clients", "client_id = 'desk-1'") == 0
    assert _count(url, "snapshot_metrics", "1") == 0
    assert _count(url, "snapshot_client_logs", "client_id = 'desk-2'") > 0


def test_sensitive_fields_are_sealed_for_the_web_and_open_with_its_key(stack, tmp_path):
    persister, url, start_sync = stack
    with second_store(tmp_path) as store:
        fill(store, 50, marker="TOPSECRET")
    sync = start_sync()
    wait_for(lambda: equal(url, tmp_path), 30, interval_s=0.2, what="the snapshot")
    conn = connect(url)
    with conn.cursor() as cur:
        cur.execute("SELECT id, body FROM snapshot_messages WHERE server_id = %s LIMIT 1", (SERVER,))
        row_id, body = cur.fetchone()
        cur.execute("SELECT message FROM snapshot_client_logs WHERE server_id = %s", (SERVER,))
        messages = [r[0] for r in cur.fetchall()]
    conn.close()
    assert b"TOPSECRET" not in body and all(b"TOPSECRET" not in m for m in messages)
    assert b"TOPSECRET" in sync.key.open(body, aad_for("snapshot_messages", "body", SERVER, row_id))
    with pytest.raises(Exception):  # bound to its row: another row's id does not open it
        sync.key.open(body, aad_for("snapshot_messages", "body", SERVER, row_id + 1))
    # the web UI's way (docs/architecture.md): PHP's openssl with the key file
    blob_file = tmp_path / "blob"
    blob_file.write_bytes(body)
    php = PHP_OPEN.replace("KEYFILE", str(key_path(tmp_path))).replace("BLOBFILE", str(blob_file))
    opened = subprocess.run(["php", "-r", php.replace("AAD", f"snapshot_messages:body:{SERVER}:{row_id}")],
                            capture_output=True, text=True, timeout=30)
    assert "TOPSECRET" in opened.stdout, opened.stderr
    moved = subprocess.run(["php", "-r", php.replace("AAD", f"snapshot_messages:body:{SERVER}:{row_id + 1}")],
                           capture_output=True, text=True, timeout=30)
    assert moved.stdout == "false"


PHP_OPEN = """
$key = base64_decode(trim(file_get_contents('KEYFILE')), true);
$blob = file_get_contents('BLOBFILE');
$plain = openssl_decrypt(substr($blob, 13, -16), 'aes-256-gcm', $key, OPENSSL_RAW_DATA, substr($blob, 1, 12), substr($blob, -16), 'AAD');
echo $plain === false ? 'false' : $plain;
"""


def test_every_value_arrives_intact_through_the_bulk_path(stack, tmp_path):
    """Values with LOAD DATA's special bytes (tab, newline, backslash, NUL) and non-ASCII text, in pages big
    enough for LOAD DATA LOCAL INFILE: what the web opens is what the store holds."""
    from sync import bulk_load

    persister, url, start_sync = stack
    tricky = "tab\there\nnew line \\ back\\slash \x00 nul é ü 雪"
    with second_store(tmp_path) as store:
        fill(store, bulk_load.MIN_ROWS * 3, marker=tricky)
        wanted = {r["id"]: r["message"] for r in store.query("logs", limit=1000)}
    sync = start_sync()
    wait_for(lambda: equal(url, tmp_path), 30, interval_s=0.2, what="the snapshot")
    conn = connect(url)
    with conn.cursor() as cur:
        cur.execute("SELECT id, message, logger FROM snapshot_client_logs WHERE server_id = %s", (SERVER,))
        got = {i: (sync.key.open(m, aad_for("snapshot_client_logs", "message", SERVER, i)).decode(), logger)
               for i, m, logger in cur.fetchall()}
    conn.close()
    assert len(wanted) > bulk_load.MIN_ROWS and all(tricky in text for text in wanted.values())
    assert {i: got[i][0] for i in wanted} == wanted
    assert {logger for _, logger in got.values()} == {"agent"}
    assert sync.db.bulk  # LOAD DATA LOCAL INFILE was used, not refused


def test_a_store_started_over_is_noticed_and_snapshotted_whole(bus, tmp_path, mysql_admin_url):
    """The server's store is replaced by a new, smaller one (restored, or started from scratch): the worker's
    watermarks are past everything the new store has, so it takes a full snapshot, and the old rows go."""
    url = new_database(mysql_admin_url)
    old, new = tmp_path / "old", tmp_path / "new"
    for root, rows in ((old, 600), (new, 100)):
        root.mkdir()
        with Store(root / "store.db", SecurityManager(root / "store-keys.json")) as store:
            fill(store, rows, clients=(f"{root.name}-desk",))
    persister = RunningPersister(bus, old)
    sync = RunningSync(bus, url, SERVER, tmp_path)
    try:
        wait_for(lambda: equal(url, old), 30, interval_s=0.2, what="the old store in MySQL")
        persister.stop()
        persister = RunningPersister(bus, new)
        wait_for(lambda: equal(url, new), 30, interval_s=0.2, what="the new store, alone, in MySQL")
    finally:
        sync.stop()
        persister.stop()


def test_two_servers_share_one_database(bus, tmp_path, mysql_admin_url):
    """Two EMS servers (each its own broker, persister and store) sync into one ems_web, sealing with one web key
    (the second joined with a copy of the first's: sync.shared_db; test_sync_join.py refuses another key)."""
    from conftest import Bus
    from broker.core.config import Timing

    url = new_database(mysql_admin_url)
    stacks = []
    try:
        for name, n in (("server-a", 400), ("server-b", 700)):
            root = tmp_path / name
            other = Bus(root, Timing.fast())
            persister = RunningPersister(other, root)
            with Store(root / "store.db", SecurityManager(root / "store-keys.json")) as store:
                fill(store, n, clients=(f"{name}-desk",))
            if stacks:
                import_key(key_path(stacks[0][3]), key_path(root))
            stacks.append((other, persister, RunningSync(other, url, name, root), root))
        for other, _, _, root in stacks:
            wait_for(lambda: equal(url, root, root.name), 30, interval_s=0.2, what=f"{root.name} in MySQL")
        assert _count(url, "servers", "1") == 2
        assert _count(url, "snapshot_client_logs", "server_id = 'server-b'") > _count(url, "snapshot_client_logs", "server_id = 'server-a'")
    finally:
        for other, persister, sync, _ in stacks:
            sync.stop()
            persister.stop()
            other.close()


def test_sync_now_and_status_over_the_bus_and_only_for_whom_may(stack, bus, tmp_path):
    persister, url, start_sync = stack
    with second_store(tmp_path) as store:
        fill(store, 200)
    start_sync()
    wait_for(lambda: equal(url, tmp_path), 30, interval_s=0.2, what="the snapshot")
    viewer, operator = bus.peer("v1", role="viewer"), bus.peer("o1", role="operator")
    with pytest.raises(RemoteError) as refused:
        viewer.request("sync.now")
    assert refused.value.code.name == "FORBIDDEN"
    before = viewer.request("sync.status")["last_full_sync"]
    assert before and viewer.request("sync.status")["error"] is None
    assert operator.request("sync.now")["started"] is True
    wait_for(lambda: (viewer.request("sync.status")["last_full_sync"] or 0) > before, 30, what="a new full snapshot")
    assert equal(url, tmp_path)
    with pytest.raises(RemoteError) as refused:  # the change feed (decrypted rows) is the sync service's only
        bus.admin.request("store.changes")
    assert refused.value.code.name == "FORBIDDEN"


def _count(url, table: str, where: str) -> int:
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM `{table}` WHERE {where}")
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_synced_tables_are_mapped():
    """Every table of the store's change feed has its MySQL table."""
    from sync.tables import TABLES

    assert set(TABLES) == set(SYNCED)


def test_a_full_snapshot_comes_round_by_itself(stack, tmp_path):
    """``full_every_s``: the worker takes full snapshots on its own (generation after generation), and each
    leaves MySQL equal to the store."""
    from sync.worker import SyncConfig

    persister, url, start_sync = stack
    with second_store(tmp_path) as store:
        fill(store, 300)
    sync = start_sync(config=SyncConfig(wait_s=0.5, full_every_s=1.0))
    wait_for(lambda: sync.db.state and min(s.full_gen for s in sync.db.state.values()) >= 3, 30,
             interval_s=0.1, what="three full snapshots")
    wait_for(lambda: equal(url, tmp_path), 30, interval_s=0.2, what="MySQL equal to the store")
    assert _count(url, "sync_state", f"server_id = '{SERVER}' AND full_gen >= 3") == len(SYNCED)
    assert _count(url, "sync_state", f"server_id = '{SERVER}' AND last_full_sync IS NOT NULL") == len(SYNCED)
