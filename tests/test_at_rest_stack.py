"""Data at rest, read as another local user: a real `ems up` stack, then its files.

`ems up` (supervisor, the web view's private MariaDB, broker, persister, alerts
service, admin listener, local agent) runs
on a data dir that an older EMS left open (0755 directories, a 0644 policy
file). An operator sends the agent a chat message and downloads a 0600 file
through it, each with a unique marker. While the stack runs, and again after
it stopped:

* a child process that dropped to uid/gid ``nobody`` tries to open every
  file and list every directory under the data dir: each one is refused
  (PermissionError), while a 0644 control file next to the data dir reads
  fine (so the child could read what is readable);
* every path's mode is checked against one table (file kind x the process
  that creates it); a path the table does not know fails the test;
* as root, the raw bytes of every file (databases with their -wal and -shm,
  logs, outbox, keys, profile) are searched for both markers: none holds
  either, except the employee's access log, which carries the chat text by
  design (no display here: the access log is where the message is shown)
  and is 0640 in a 0710 directory whose group is the agent's own.

The tests run as root (the CI machine's user); dropping to nobody needs it.
"""
from __future__ import annotations

import fnmatch
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from broker.core import keys
from broker.core.client import BusClient
from broker.core.config import ClientConfig, DataDir, Timing
from broker.core.envelope import ErrorCode
from broker.core.errors import RemoteError

from conftest import wait_for

HEARTBEAT = "0.5"
ADMIN_TOKEN = "at-rest-" + uuid.uuid4().hex + uuid.uuid4().hex
CHAT_MARKER = "chat-marker-" + uuid.uuid4().hex
FILE_MARKER = "file-marker-" + uuid.uuid4().hex

#: every path of a data dir after `ems up` ran: (pattern, the process that makes it, mode)
MODES = [
    (".", "ems up (DataDir.ensure)", 0o700),
    ("keys", "ems up (DataDir.ensure)", 0o700),
    ("keys/broker.public", "ems up (local stack)", 0o600),
    ("keys/broker.secret", "ems up (local stack)", 0o600),
    ("keys/operator.public", "ems up (local stack)", 0o600),
    ("keys/operator.secret", "ems up (local stack)", 0o600),
    ("keys/persister.public", "ems up (local stack)", 0o600),
    ("keys/persister.secret", "ems up (local stack)", 0o600),
    ("keys/admin-http.public", "ems up (local stack)", 0o600),
    ("keys/admin-http.secret", "ems up (local stack)", 0o600),
    ("keys/server-info.public", "ems up (local stack): the web's server-info bridge", 0o600),
    ("keys/server-info.secret", "ems up (local stack): the web's server-info bridge", 0o600),
    ("keys/latest-frame.public", "ems up (local stack): the web's latest-frame bridge", 0o600),
    ("keys/latest-frame.secret", "ems up (local stack): the web's latest-frame bridge", 0o600),
    ("keys/capture.public", "ems up (local stack): the web's capture bridge", 0o600),
    ("keys/capture.secret", "ems up (local stack): the web's capture bridge", 0o600),
    ("keys/alerts.public", "ems up (local stack): the alerts service", 0o600),
    ("keys/alerts.secret", "ems up (local stack): the alerts service", 0o600),
    ("keys/sync.public", "ems up (the sync worker's key)", 0o600),
    ("keys/sync.secret", "ems up (the sync worker's key)", 0o600),
    ("keys/queue-keys.json", "broker (command queue key)", 0o600),
    ("keys/store-keys.json", "persister (store key)", 0o600),
    ("profile.json", "ems up (operator profile)", 0o600),
    ("broker.db", "ems up, then broker", 0o600),
    ("broker.db-wal", "broker", 0o600),
    ("broker.db-shm", "broker", 0o600),
    ("broker.endpoint", "broker", 0o600),
    ("store.db", "persister", 0o600),
    ("store.db-wal", "persister", 0o600),
    ("store.db-shm", "persister", 0o600),
    ("admin-http.endpoint", "admin-http", 0o600),
    ("alerts.db", "the alerts service (rules, alerts, inboxes)", 0o600),
    ("alerts.db-wal", "the alerts service", 0o600),
    ("alerts.db-shm", "the alerts service", 0o600),
    ("logs", "ems up (DataDir.ensure)", 0o700),
    ("logs/*.out", "ems up supervisor (child output)", 0o600),
    ("logs/*.log", "each process (--log-file)", 0o600),
    ("agent", "agent (its data dir; holds the access log)", 0o710),
    ("agent/access.log", "agent (the employee's access log)", 0o640),
    ("agent/policy.json", "installer (tightened on start)", 0o600),
    ("agent/identity.json", "agent (client id and install salt)", 0o600),
    ("agent/server.public", "agent (remembered broker key)", 0o600),
    ("agent/agent.db", "agent (executed commands)", 0o600),
    ("agent/agent.db-wal", "agent", 0o600),
    ("agent/agent.db-shm", "agent", 0o600),
    ("agent/outbox.db", "agent (outbox)", 0o600),
    ("agent/outbox.db-wal", "agent", 0o600),  # no -shm: the outbox holds an exclusive lock (heap wal-index)
    ("agent/keys", "ems up (local stack), agent", 0o700),
    ("agent/keys/agent.public", "ems up (local stack)", 0o600),
    ("agent/keys/agent.secret", "ems up (local stack)", 0o600),
    ("agent/keys/local-keys.json", "agent (outbox and executed-commands key)", 0o600),
    ("mysql", "ems up (the web view's private MariaDB)", 0o700),
    ("mysql/client.cnf", "ems up (how to reach the private MariaDB)", 0o600),
    ("mysql/error.log", "ems up, then mariadbd", 0o600),
    ("mysql/mysqld.pid", "mariadbd", 0o600),
    ("mysql/mysqld.sock", "mariadbd (reachable only through the 0700 dir)", 0o777),
    ("mysql/tmp", "ems up (the private MariaDB's own temp dir)", 0o700),
    ("mysql/data", "mariadb-install-db", 0o700),
    ("mysql/data/mysql", "mariadb-install-db", 0o700),
    ("mysql/data/performance_schema", "mariadb-install-db", 0o700),
    ("mysql/data/sys", "mariadb-install-db", 0o700),
    ("mysql/data/ems_web", "ems sync init (the web view's database)", 0o700),
    ("mysql/data/*/*", "mariadbd (tables; UMASK=0600)", 0o600),
    ("mysql/data/ib*", "mariadbd (InnoDB system tablespace, redo log, buffer pool dump, temp)", 0o600),
    ("mysql/data/aria_log*", "mariadbd (Aria log)", 0o600),
    ("mysql/data/ddl_recovery*.log", "mariadbd (DDL log)", 0o600),
    ("mysql/data/mysql_upgrade_info", "mariadb-install-db", 0o600),
    ("mysql/data/multi-master.info", "mariadbd", 0o600),
    ("sync", "ems sync init", 0o700),
    ("sync/mysql.json", "ems sync init (the sync writer's password)", 0o600),
    ("web", "ems sync init", 0o700),
    ("web/mysql.json", "ems sync init (the web UI user's password)", 0o600),
    ("web/web.key", "the sync worker (the web key: sensitive fields in MySQL)", 0o600),
    ("web/config.json", "ems up (the web UI's MySQL password and admin API token, for PHP)", 0o600),
    ("web/sessions", "ems up (PHP's session files)", 0o700),
]
#: the one file that holds chat text on purpose (module docstring)
ACCESS_LOG = "agent/access.log"

_AS_NOBODY = r"""
import json, os, sys
out = {}
for path in json.load(sys.stdin):
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, "rb").close()
        out[path] = "read"
    except PermissionError:
        out[path] = "denied"
    except OSError as exc:
        out[path] = type(exc).__name__
json.dump(out, sys.stdout)
"""


def expected_mode(rel: str) -> int | None:
    for pattern, _creator, mode in MODES:
        if fnmatch.fnmatchcase(rel, pattern):
            return mode
    return None


def tree(root: Path) -> dict[str, os.stat_result]:
    """Every path under ``root`` (relative, ``.`` for root) with its lstat."""
    found = {".": os.lstat(root)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            try:
                found[str(path.relative_to(root))] = os.lstat(path)
            except FileNotFoundError:  # gone since the listing (a running process's temporary file)
                continue
    return found


def as_nobody(paths: list[str]) -> dict[str, str]:
    """Try every path as uid/gid nobody (no supplementary groups); what happened to each."""
    nobody = pwd.getpwnam("nobody")

    def drop():
        os.setgroups([])
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    res = subprocess.run(["/usr/bin/python3", "-I", "-S", "-c", _AS_NOBODY], input=json.dumps(paths), capture_output=True,
                         text=True, timeout=60, preexec_fn=drop, cwd="/")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


class UpStack:
    """`ems up` on a data dir under a world-traversable directory, stopped by pid."""

    def __init__(self, base: Path):
        self.base, self.data = base, base / "data"
        self._seed_older_version()
        self.log_path = base / "up.log"
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "broker.cli.main", "up", "--data-dir", str(self.data), "--bind", "tcp://127.0.0.1:0",
                 "--admin-listen", "127.0.0.1:0", "--web-listen", "127.0.0.1:0", "--heartbeat-s", HEARTBEAT],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(base),
                # the installer's choice of access dir: the agent's data dir, so its group rules are checked here
                env={**os.environ, "EMS_ADMIN_TOKEN": ADMIN_TOKEN, "DISPLAY": "", "WAYLAND_DISPLAY": "",
                     "EMS_ACCESS_DIR": str(self.data / "agent")},
            )

    def _seed_older_version(self) -> None:
        """What an older EMS (umask 022) left: open directories and a readable policy file."""
        shared = self.base / "shared"
        shared.mkdir(mode=0o755)
        secret = shared / "payroll.txt"
        secret.write_text(f"salary table {FILE_MARKER}\n")
        os.chmod(secret, 0o600)
        for sub in ("", "logs", "agent"):
            (self.data / sub).mkdir(mode=0o755, exist_ok=True)
            os.chmod(self.data / sub, 0o755)
        policy = self.data / "agent" / "policy.json"
        policy.write_text(json.dumps({"allowed_roots": [str(shared)]}))
        os.chmod(policy, 0o644)

    def operator(self) -> BusClient:
        wait_for(lambda: (self.data / "profile.json").exists() and (self.data / "broker.endpoint").exists(), 30,
                 what="ems up to write the profile and the broker to bind")
        profile = json.loads((self.data / "profile.json").read_text())
        config = ClientConfig(server=profile["server"], server_key=profile["server_key"], timing=Timing.fast())
        client = BusClient(config, keys.load(DataDir(self.data).keys, profile["key_name"]))
        client.connect()
        client.wait_ready(15)
        return client

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def exercise(stack: UpStack) -> dict:
    """Chat to the local agent and download the 0600 file through it; what came back."""
    op = stack.operator()
    try:
        agents = wait_for(lambda: [a for a in op.request("agents") if a["state"] == "online"], 30, interval_s=0.2,
                          what="the local agent online")
        agent_id = agents[0]["client_id"]
        chat = op.send_command(agent_id, "chat.send", {"message_id": uuid.uuid4().hex, "text": f"hello {CHAT_MARKER}",
                                                       "reason": "at-rest test"})
        download = op.send_command(agent_id, "files.download", {"path": str(stack.base / "shared" / "payroll.txt"),
                                                                "reason": "at-rest test"})
        outcome = {"chat": op.wait_result(chat["id"], 60), "download": op.wait_result(download["id"], 60)}

        def stored_chat() -> bool:
            try:
                rows = op.request("store.query", kind="messages", client_id=agent_id, limit=20)
            except RemoteError as exc:  # the persister is not connected yet (a loaded machine)
                assert exc.code == ErrorCode.UNAVAILABLE, exc
                return False
            return any(CHAT_MARKER in str(row.get("body", "")) for row in rows)

        wait_for(stored_chat, 60, interval_s=0.3, what="the persister to store the chat message")
        outcome["agent_id"] = agent_id
        return outcome
    finally:
        op.close()


def snapshot(data: Path) -> dict:
    """Modes, raw-byte marker hits and what nobody could open, for every path of ``data``."""
    paths = tree(data)
    hits = {}
    for rel, st in paths.items():
        if stat.S_ISREG(st.st_mode):
            try:
                raw = (data / rel).read_bytes()
            except FileNotFoundError:
                continue
            hits[rel] = [m for m in (CHAT_MARKER, FILE_MARKER) if m.encode() in raw]
    tried = as_nobody([str(data / rel) for rel in paths])
    return {"modes": {rel: stat.S_IMODE(st.st_mode) for rel, st in paths.items()}, "hits": hits,
            "nobody": {str(Path(p).relative_to(data)) if p != str(data) else ".": r for p, r in tried.items()}}


@pytest.fixture(scope="module")
def ran():
    """One `ems up` run for the module: snapshots while running and after a clean stop."""
    if os.geteuid() != 0:
        pytest.fail("these tests drop to the user nobody: run them as root (as CI does)")
    base = Path(tempfile.mkdtemp(prefix="ems-at-rest-", dir="/tmp"))
    os.chmod(base, 0o755)  # nobody may traverse to the data dir: only its own modes stop them
    control = base / "control.txt"
    control.write_text("readable on purpose\n")
    os.chmod(control, 0o644)
    try:
        stack = UpStack(base)
        try:
            outcome = exercise(stack)
            running = snapshot(stack.data)
        finally:
            stack.stop()
        stopped = snapshot(stack.data)
        yield {"stack": stack, "outcome": outcome, "running": running, "stopped": stopped,
               "control": as_nobody([str(control), str(base)]), "up_log": stack.log_path.read_text()}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_the_markers_went_through_the_stack(ran):
    """The chat reached the agent and the store, the file's contents reached the operator;
    the child really runs as nobody and can read what is readable."""
    assert ran["outcome"]["chat"]["status"] == "done", ran["outcome"]["chat"]
    download = ran["outcome"]["download"]
    assert download["status"] == "done", download
    assert FILE_MARKER.encode() in download["result"]["output"]["data"]
    assert set(ran["control"].values()) == {"read"}


def test_older_permissions_are_tightened_with_one_log_line(ran):
    """The 0755 directories and the 0644 policy file an older EMS left are tightened on
    start, and the log says so once per process that found something."""
    lines = [line for line in ran["up_log"].splitlines() if "tightened permissions" in line]
    assert len(lines) == 1 and "agent/policy.json" in lines[0], ran["up_log"][-3000:]


@pytest.mark.parametrize("phase", ["running", "stopped"])
def test_nobody_can_open_anything(ran, phase):
    """As nobody: every file and directory of the data dir, the access log included, is refused."""
    tried = ran[phase]["nobody"]
    assert tried and {rel: r for rel, r in tried.items() if r != "denied"} == {}


@pytest.mark.parametrize("phase", ["running", "stopped"])
def test_no_file_holds_chat_text_or_file_contents(ran, phase):
    """Raw bytes of every file (db, -wal, -shm, logs, outbox, keys): no marker, except the
    chat text in the employee's access log, where this display-less agent shows it."""
    hits = {rel: found for rel, found in ran[phase]["hits"].items() if found}
    assert hits.pop(ACCESS_LOG, None) == [CHAT_MARKER]
    assert hits == {}


@pytest.mark.parametrize("phase", ["running", "stopped"])
def test_every_path_is_a_known_kind(ran, phase):
    """Nothing in the data dir escapes the table of modes (a new file kind must be added to it)."""
    unknown = [rel for rel in ran[phase]["modes"] if expected_mode(rel) is None]
    assert unknown == []


@pytest.mark.parametrize("pattern,creator,mode", MODES, ids=[p for p, _c, _m in MODES])
def test_mode_of_each_file_kind(ran, pattern, creator, mode):
    """Each kind of path, from the process that makes it, has its mode while the stack runs
    (-wal and -shm exist then); files of a kind that is gone after the stop keep their mode until then."""
    modes = ran["running"]["modes"]
    matching = {rel: m for rel, m in modes.items() if fnmatch.fnmatchcase(rel, pattern)}
    assert matching, f"no {pattern} ({creator}) in the running data dir"
    assert {rel: oct(m) for rel, m in matching.items() if m != mode} == {}
    stopped = {rel: m for rel, m in ran["stopped"]["modes"].items() if fnmatch.fnmatchcase(rel, pattern)}
    assert {rel: oct(m) for rel, m in stopped.items() if m != mode} == {}
