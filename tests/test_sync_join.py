"""Two EMS servers in one ``ems_web``, set up the way an admin does it, against a real MariaDB, real brokers,
persisters and sync workers, and the real web UI on php -S: server A serves the web UI (`ems sync init`),
server B joins (`ems sync init --join --web-key A's key`), each with a sync writer of its own; the web UI opens
both servers' sealed chat text with its one key. Tried and refused, each with the way out: joining without
a key, with a different key, joining the private database, a worker sealing under another key than the
other servers' rows; the Servers tab flags a server sealed under a key the web UI does not hold.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from urllib.parse import urlencode

import pytest

from bench.sync_rows import fill
from broker.cli.web_serve import CONFIG_ENV, php_argv, wait_listening, write_web_config
from broker.core import keys
from broker.core.config import DataDir, Timing
from broker.core.profile import Profile, save
from broker.persister.crypto import SecurityManager
from broker.persister.store import Store
from conftest import Bus, wait_for
from sync.mariadb import free_port
from sync.mysql_url import MysqlError, MysqlUrl, connect
from sync.shared_db import joined_writer
from sync.snapshot_db import SnapshotDB
from sync.web_crypto import WebKey, key_path
from sync.web_db import WEB_FILE, WRITER_FILE, read_credentials
from sync.web_users import add_user
from sync_support import RunningSync
from test_persister_bus import RunningPersister
from web_support import PASSWORD, WebClient

UNREADABLE = "[sealed value could not be opened]"


def ems_sync(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "broker.cli.main", "sync", *args], capture_output=True, text=True, timeout=60)


def server_dir(root, name: str) -> tuple:
    """A server's data dir with its profile (as `ems up` leaves it): (path, its server id)."""
    path = root / name
    path.mkdir()
    server_id = keys.generate().public
    save(DataDir(path), Profile(server="tcp://127.0.0.1:1", server_key=server_id))
    return path, server_id


@pytest.fixture
def shared(mysql_admin_url, tmp_path):
    """Server A initialised (serving the web UI, its own user names) in a fresh database; B and C not yet."""
    database = f"ems_j_{uuid.uuid4().hex[:8]}"
    url = str(MysqlUrl.parse(mysql_admin_url).with_database(database))
    suffix = uuid.uuid4().hex[:8]
    a, a_id = server_dir(tmp_path, "server-a")
    done = ems_sync("init", "--data-dir", str(a), "--mysql-url", url, "--writer-user", f"wa_{suffix}", "--web-user", f"wu_{suffix}")
    assert done.returncode == 0, done.stderr
    return url, (a, a_id)


def test_a_joining_server_needs_the_serving_servers_key_and_gets_a_writer_of_its_own(shared, tmp_path):
    url, (a, _) = shared
    b, b_id = server_dir(tmp_path, "server-b")
    refused = ems_sync("init", "--join", "--data-dir", str(b), "--mysql-url", url)
    assert refused.returncode != 0 and "needs the web key" in refused.stderr and "--web-key FILE" in refused.stderr
    assert not key_path(b).exists()  # no key made up on the way
    assert ems_sync("init", "--join", "--data-dir", str(b)).stderr.count("--mysql-url") == 1  # the private DB: nothing to join

    joined = ems_sync("init", "--join", "--web-key", str(key_path(a)), "--data-dir", str(b), "--mysql-url", url)
    assert joined.returncode == 0, joined.stderr
    assert f"user {joined_writer(b_id)} (created)" in joined.stdout
    assert oct(key_path(b).stat().st_mode & 0o777) == "0o600"
    assert WebKey.load(key_path(b)).key_id == WebKey.load(key_path(a)).key_id
    assert not (b / WEB_FILE).exists()  # no web UI user of its own
    assert read_credentials(b / WRITER_FILE).user == joined_writer(b_id) != read_credentials(a / WRITER_FILE).user
    again = ems_sync("init", "--join", "--data-dir", str(b), "--mysql-url", url)
    assert again.returncode == 0 and "(exists)" in again.stdout, again.stderr

    c, _ = server_dir(tmp_path, "server-c")
    WebKey.load_or_create(key_path(c))  # C made a key of its own before: replacing it silently would lose C's rows' key
    clash = ems_sync("init", "--join", "--web-key", str(key_path(a)), "--data-dir", str(c), "--mysql-url", url)
    assert clash.returncode != 0 and "holds another web key already" in clash.stderr


def test_a_key_the_other_servers_rows_do_not_carry_is_refused_with_the_way_out(shared, tmp_path):
    url, (a, a_id) = shared
    writer = read_credentials(a / WRITER_FILE)
    first = SnapshotDB(writer, a_id, WebKey.load_or_create(key_path(a)), server_name="head-office")
    first.open()
    first.close()
    stranger = SnapshotDB(writer, "server-x", WebKey(os.urandom(32)), server_name="stranger")
    with pytest.raises(MysqlError, match="is not the key server head-office's rows are sealed with.*--join --web-key"):
        stranger.open()
    d, _ = server_dir(tmp_path, "server-d")
    shutil.copy(key_path(a), tmp_path / "a.key")
    (tmp_path / "other.key").write_text(__import__("base64").b64encode(os.urandom(32)).decode() + "\n")
    refused = ems_sync("init", "--join", "--web-key", str(tmp_path / "other.key"), "--data-dir", str(d), "--mysql-url", url)
    assert refused.returncode != 0 and "is not the key server" in refused.stderr


class Server:
    """One EMS server: its bus, persister and store filled with ``rows`` records, and its sync worker."""

    def __init__(self, root, server_id: str, rows: int):
        self.bus = Bus(root, Timing.fast())
        self.persister = RunningPersister(self.bus, root)
        with Store(root / "store.db", SecurityManager(root / "store-keys.json")) as store:
            fill(store, rows, clients=(f"{root.name}-desk",))
        self.sync = RunningSync(self.bus, read_credentials(root / WRITER_FILE), server_id, root)

    def close(self) -> None:
        self.sync.stop()
        self.persister.stop()
        self.bus.close()


def test_the_web_ui_opens_both_servers_sealed_rows_with_its_one_key(shared, tmp_path):
    url, (a, a_id) = shared
    b, b_id = server_dir(tmp_path, "server-b")
    assert ems_sync("init", "--join", "--web-key", str(key_path(a)), "--data-dir", str(b), "--mysql-url", url).returncode == 0
    admin = MysqlUrl.parse(url)
    servers = [Server(a, a_id, 60), Server(b, b_id, 90)]
    php = None
    try:
        def messages_of_both() -> bool:
            with connect(admin) as conn, conn.cursor() as cursor:
                cursor.execute("SELECT COUNT(DISTINCT server_id) FROM snapshot_messages")
                return cursor.fetchone()[0] == 2
        wait_for(messages_of_both, 60, interval_s=0.2, what="both servers' chat in MySQL")
        port = free_port()
        config = write_web_config(a)
        php = subprocess.Popen(php_argv(f"127.0.0.1:{port}"), env={**os.environ, CONFIG_ENV: str(config)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_listening("127.0.0.1", port, php.pid)
        add_user(a, "otto", "operator", PASSWORD, "Otto Operator")
        otto = WebClient(f"http://127.0.0.1:{port}")
        assert otto.login("otto") == 303
        granted = otto.request("POST", "/history/grant", {"csrf": otto.csrf("/clients"), "tab": "messages",
                                                          "reason": "checking the join"})  # audited history asks why
        assert granted[0] == 303, granted
        for server_id in (a_id, b_id):
            status, _, page = otto.request("GET", "/messages?" + urlencode({"server": server_id, "per": 100}))
            assert status == 200
            bodies = re.findall(r"hi \d+ ", page)
            assert bodies, f"no chat text of {server_id} opened: {page[:500]}"
            assert UNREADABLE not in page
        status, _, page = otto.request("GET", "/servers")
        assert status == 200 and "ems-other-key" not in page
        with connect(admin, autocommit=True) as conn, conn.cursor() as cursor:  # a server sealed under a key not held here
            cursor.execute("INSERT INTO servers (server_id, name, updated, web_key_id) VALUES ('srv-z', 'Lost key', 1, 'deadbeefdeadbeef')")
        status, _, page = otto.request("GET", "/servers")
        assert page.count("ems-other-key") == 1 and "Lost key" in page
    finally:
        if php is not None:
            os.killpg(php.pid, signal.SIGTERM)
            php.wait(10)
        for server in servers:
            server.close()
