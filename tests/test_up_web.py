"""``ems up`` with the web view: a private MariaDB under the supervisor, the database ``ems sync init``
prepares, and an ordered, prompt shutdown (real processes, random ports, stopped by pid).
"""
from __future__ import annotations

import json
import re
import signal
import stat
import subprocess
import urllib.request

import pymysql
import pytest

from broker.cli import web_serve
from sync import web_db
from sync.mariadb import BINARY_DIRS_ENV, free_port
from sync.mysql_url import MysqlUrl, connect
from sync.cli import ACTIONS as SYNC_ACTIONS

from conftest import wait_for

UP_ENV = {"EMS_ADMIN_TOKEN": ""}
#: the order services stop in: writers before what they write into
STOP_ORDER = ["web", *(["sync"] if "run" in SYNC_ACTIONS else []), "agent", "alerts", "persister", "broker", "mariadb"]


def start_up(procs, name, data_dir, *extra):
    web = [] if "--no-web" in extra else ["--web-listen", f"127.0.0.1:{free_port()}"]
    up = procs.ems(name, "up", "--data-dir", str(data_dir), "--bind", "tcp://127.0.0.1:0", "--heartbeat-s", "0.5",
                   *web, *extra, env=UP_ENV)
    wait_for(lambda: "EMS is running" in up.log_path.read_text() or up.poll() is not None, 60,
             interval_s=0.1, what="ems up to start")
    assert up.poll() is None, up.log_path.read_text()
    return up


def assert_web_ui_serves(up, data) -> None:
    """The web UI answers on the address the banner prints, reading its private config file."""
    address = re.search(r"web UI +http://(\S+)/", up.log_path.read_text()).group(1)
    with urllib.request.urlopen(f"http://{address}/login", timeout=10) as page:
        assert page.status == 200 and b'id="login-form"' in page.read()
    config = data / web_serve.CONFIG_FILE
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    values = json.loads(config.read_text())
    assert values["mysql"]["user"] == web_db.read_credentials(data / web_db.WEB_FILE).user
    assert values["web_key"] == str(data / "web" / "web.key")  # what opens sealed fields in PHP
    live = values["live"]  # the server this web UI acts on, and how PHP runs its bridges
    assert live["server_id"] == (data / "keys" / "broker.public").read_text().strip() and live["data_dir"] == str(data.resolve())
    assert set(live["bridges"].values()) == {"bridges.get_latest_frame", "bridges.get_capture"}


def children_of(pid: int) -> dict[int, str]:
    out = subprocess.run(["pgrep", "-P", str(pid), "-a"], capture_output=True, text=True).stdout
    return {int(line.split()[0]): line for line in out.splitlines()}


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except OSError:
        return True


def stop_up(up, sig) -> list[str]:
    """Signal ``ems up`` and return the services in the order it stopped them; every child gone, none killed."""
    children = children_of(up.pid)
    up.send_signal(sig)
    assert up.wait(60) == 0
    log = up.log_path.read_text()
    assert "did not stop within" not in log and "killing it" not in log, log
    for pid, line in children.items():
        assert gone(pid), f"still running: {line}"
    return re.findall(r"stopped (\S+) in [\d.]+ s", log.split("stopping EMS...")[-1])


def test_up_runs_a_private_mariadb_with_the_web_database_and_stops_in_order(procs, tmp_path):
    data = tmp_path / "var"
    up = start_up(procs, "up1", data)
    assert any("mariadbd" in line for line in children_of(up.pid).values())
    web = web_db.read_credentials(data / web_db.WEB_FILE)
    with connect(web) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM servers")
        with pytest.raises(pymysql.err.OperationalError) as refused:
            cursor.execute("INSERT INTO servers (server_id, updated) VALUES ('x', 1)")
        assert refused.value.args[0] == 1142
    with connect(web_db.read_credentials(data / web_db.WRITER_FILE), autocommit=True) as conn, conn.cursor() as cursor:
        cursor.execute("INSERT INTO servers (server_id, updated) VALUES ('kept', 1)")
    assert "web db      ems_web on a private MariaDB" in up.log_path.read_text()
    assert_web_ui_serves(up, data)
    mysql_dir = data / "mysql"
    for path in [mysql_dir, *mysql_dir.rglob("*")]:
        if path.is_socket():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
    assert stop_up(up, signal.SIGINT) == STOP_ORDER

    # again on the same data dir: the same users and passwords, the rows kept
    before = (data / web_db.WEB_FILE).read_text()
    up = start_up(procs, "up2", data)
    assert json.loads((data / web_db.WEB_FILE).read_text())["password"] == json.loads(before)["password"]
    with connect(web_db.read_credentials(data / web_db.WEB_FILE)) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT server_id FROM servers")
        assert ("kept",) in cursor.fetchall()  # beside this server's own row, once its sync worker has run
    assert stop_up(up, signal.SIGTERM) == STOP_ORDER


def test_up_with_mysql_url_uses_that_server(procs, tmp_path, mysql_admin_url):
    database = f"ems_web_up_{tmp_path.name[-12:].replace('-', '_')}"
    admin = str(MysqlUrl.parse(mysql_admin_url).with_database(database))
    data = tmp_path / "var"
    up = start_up(procs, "up", data, "--no-agent", "--mysql-url", admin)
    assert not any("mariadbd" in line for line in children_of(up.pid).values())
    assert not (data / "mysql").exists()
    writer = web_db.read_credentials(data / web_db.WRITER_FILE)
    assert writer.database == database and writer.unix_socket == MysqlUrl.parse(mysql_admin_url).unix_socket
    with connect(writer) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM sync_state")
    assert_web_ui_serves(up, data)
    assert stop_up(up, signal.SIGTERM) == [s for s in STOP_ORDER if s not in ("agent", "mariadb")]


def test_up_no_web_starts_no_database(procs, tmp_path):
    up = start_up(procs, "up", tmp_path / "var", "--no-agent", "--no-web")
    assert not any("mariadbd" in line for line in children_of(up.pid).values())
    assert "web view    off (--no-web)" in up.log_path.read_text()
    assert stop_up(up, signal.SIGTERM) == ["alerts", "persister", "broker"]


def _one_line_failure(up) -> str:
    assert up.wait(60) == 2
    lines = [line for line in up.log_path.read_text().splitlines() if line.startswith("ems up:")]
    assert len(lines) == 1, up.log_path.read_text()
    return lines[0]


def test_up_without_mariadb_binaries_says_what_to_do(procs, tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    up = procs.ems("up", "up", "--data-dir", str(tmp_path / "var"), "--bind", "tcp://127.0.0.1:0",
                   env={**UP_ENV, BINARY_DIRS_ENV: str(empty)})
    line = _one_line_failure(up)
    assert "MariaDB server binaries not found" in line and "installer/install.sh" in line and "--no-web" in line


def test_up_with_an_unreachable_mysql_url_says_what_to_do(procs, tmp_path):
    up = procs.ems("up", "up", "--data-dir", str(tmp_path / "var"), "--bind", "tcp://127.0.0.1:0",
                   "--mysql-url", "mysql://root:x@127.0.0.1:1/ems_web", env=UP_ENV)
    line = _one_line_failure(up)
    assert "cannot reach MySQL at 127.0.0.1:1" in line


def test_up_with_a_bad_web_listen_address_says_so(procs, tmp_path):
    up = procs.ems("up", "up", "--data-dir", str(tmp_path / "var"), "--bind", "tcp://127.0.0.1:0", "--no-agent",
                   "--web-listen", "8080", env=UP_ENV)
    assert "--web-listen '8080' is not HOST:PORT" in _one_line_failure(up)


def test_a_second_server_joins_the_first_ones_database_with_its_key(procs, tmp_path, mysql_admin_url):
    """Two `ems up` stacks into one database: the first serves the web UI; the second joins with a copy of the
    first's web key, runs a sync worker of its own as its own MySQL user, and serves no web UI."""
    database = f"ems_web_join_{tmp_path.name[-10:].replace('-', '_')}"
    admin = str(MysqlUrl.parse(mysql_admin_url).with_database(database))
    first_data, second_data = tmp_path / "first", tmp_path / "second"
    first = start_up(procs, "first", first_data, "--no-agent", "--mysql-url", admin)
    line = _one_line_failure(procs.ems("no-url", "up", "--data-dir", str(tmp_path / "third"), "--bind", "tcp://127.0.0.1:0",
                                       "--no-agent", "--join-web", env=UP_ENV))
    assert "--join-web" in line and "--mysql-url" in line
    second = start_up(procs, "second", second_data, "--no-agent", "--mysql-url", admin, "--join-web",
                      "--web-key", str(first_data / "web" / "web.key"))
    assert "served by the server whose database this one joined" in second.log_path.read_text()
    assert not (second_data / web_db.WEB_FILE).exists() and not (second_data / web_serve.CONFIG_FILE).exists()
    writers = {web_db.read_credentials(d / web_db.WRITER_FILE).user for d in (first_data, second_data)}
    assert len(writers) == 2
    with connect(web_db.read_credentials(first_data / web_db.WEB_FILE)) as conn:
        def both_synced() -> bool:
            with conn.cursor() as cursor:
                cursor.execute("SELECT COUNT(*), COUNT(DISTINCT web_key_id) FROM servers WHERE last_sync IS NOT NULL")
                conn.commit()  # a new snapshot at the next read
                return cursor.fetchone() == (2, 1)
        wait_for(both_synced, 60, interval_s=0.2, what="both servers synced, under one web key")
    assert stop_up(second, signal.SIGTERM) == [s for s in STOP_ORDER if s not in ("web", "agent", "mariadb")]
    assert stop_up(first, signal.SIGTERM) == [s for s in STOP_ORDER if s not in ("agent", "mariadb")]
