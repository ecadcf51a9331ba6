"""Data at rest, piece by piece: tightening what an older EMS left, SQLite's
-wal/-shm modes, values sealed on open when an older version kept them in
clear, values that do not open, the access log's group, and the umask of
each entry point.

What is tried: every kind of data-dir file at every loose starting mode
(and modes already tighter, which must not be loosened); a symbolic link to
a readable file outside the data dir (must not be followed); a database
whose -wal was left 0644; clear command arguments, results, executed
results and outbox bodies from an older version; a sealed value copied into
another row; a key file rotated under stored values.
"""
from __future__ import annotations

import grp
import logging
import os
import pwd
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from agent.access_log import AccessLog
from agent.executed import ExecutedCommands
from agent.outbox import Outbox, OutboxCorrupt
from broker.core import private_files, sqlite_db
from broker.server.command_queue import DONE, QUEUE_KEYS_FILE, CommandQueue
from broker.core.envelope import Kind, pack_body
from broker.core.sealing import KeyRing

MARKER = b"clear-marker-7f3a9c"


def mode_of(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def raw_bytes(db_path) -> bytes:
    """The database file and every companion SQLite keeps beside it."""
    return b"".join(p.read_bytes() for p in db_path.parent.iterdir() if p.name.startswith(db_path.name))


# -- tightening ------------------------------------------------------------------------
FILE_KINDS = ["broker.db", "broker.db-wal", "broker.db-shm", "store.db", "profile.json", "broker.endpoint",
              "keys/broker.secret", "keys/broker.public", "keys/queue-keys.json", "logs/broker.log", "logs/agent.out",
              "agent/outbox.db", "agent/agent.db-wal", "agent/keys/local-keys.json", "agent/access.log"]
START_MODES = [0o644, 0o666, 0o640, 0o604, 0o755, 0o600, 0o400]


@pytest.mark.parametrize("start", START_MODES, ids=oct)
@pytest.mark.parametrize("kind", FILE_KINDS)
def test_secure_tree_takes_group_and_other_bits_from_every_file_kind(tmp_path, kind, start):
    """A file of each kind left at each mode: group/other bits go (the access log keeps
    group read), owner bits stay, nothing is loosened; its directories end 0700 (0710 for
    the one holding the access log)."""
    root = tmp_path / "data"
    path = root / kind
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    os.chmod(path, start)
    for parent in [root, *path.relative_to(root).parents]:
        os.chmod(root / parent, 0o755)
    private_files.secure_tree(root)
    allowed = 0o640 if path.name == "access.log" else 0o600
    assert mode_of(path) == start & (allowed | 0o700)
    assert mode_of(path.parent) == (0o710 if path.name == "access.log" else 0o700)
    assert mode_of(root) == 0o700 or path.parent == root


def test_secure_tree_says_it_once_and_follows_no_link(tmp_path, caplog):
    """One warning naming what changed; a second run changes nothing and says nothing; a link
    to a readable file outside is left alone (the file keeps 0644)."""
    root, outside = tmp_path / "data", tmp_path / "outside.txt"
    (root / "logs").mkdir(parents=True)
    outside.write_text("not ours")
    os.chmod(outside, 0o644)
    (root / "logs" / "link.log").symlink_to(outside)
    (root / "logs" / "broker.log").write_text("log")
    os.chmod(root / "logs" / "broker.log", 0o644)
    os.chmod(root / "logs", 0o755)
    with caplog.at_level(logging.WARNING, logger="broker.core.private_files"):
        changed = private_files.secure_tree(root)
        assert {p.name for p in changed} == {"data", "logs", "broker.log"}
        assert private_files.secure_tree(root) == []
    lines = [r.getMessage() for r in caplog.records if r.name == "broker.core.private_files"]
    assert len(lines) == 1 and "logs/broker.log" in lines[0] and "0700" in lines[0]
    assert mode_of(outside) == 0o644


@pytest.mark.parametrize("foreign", ["file", "directory", "symlink"])
def test_a_shared_directory_given_as_data_dir_is_not_closed(tmp_path, foreign):
    """A data dir that also holds what EMS did not make (`ems agent` run in / with ./var):
    EMS's own files there are tightened, the directory's mode and the foreign entry are not."""
    root = tmp_path / "var"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    (root / "agent.db").write_bytes(b"x")
    os.chmod(root / "agent.db", 0o644)
    other = root / "mail"
    if foreign == "file":
        other.write_text("someone's mail")
        os.chmod(other, 0o644)
    elif foreign == "directory":
        other.mkdir(mode=0o755)
        os.chmod(other, 0o755)
    else:
        other.symlink_to(tmp_path)
    changed = private_files.secure_tree(root)
    assert changed == [root / "agent.db"] and mode_of(root / "agent.db") == 0o600
    assert mode_of(root) == 0o755
    if foreign != "symlink":
        assert mode_of(other) in (0o644, 0o755)


@pytest.mark.parametrize("opener", ["command queue", "executed", "outbox", "registry via connect"])
def test_sqlite_companions_are_private_even_with_an_open_umask(tmp_path, opener):
    """Under umask 022, each database EMS opens, and the -wal and -shm SQLite makes
    beside it (with the database file's own mode), are 0600."""
    old = os.umask(0o022)
    try:
        path = tmp_path / "x.db"
        if opener == "command queue":
            handle = CommandQueue(path)
            handle.add("c1", "a", "op", "ping", {"n": 1}, time.time() + 60)
        elif opener == "executed":
            handle = ExecutedCommands(path)
            handle.claim("c1", "ping")
        elif opener == "outbox":
            handle = Outbox(path)
            handle.put(Kind.EVENT, "event.a.x", b"body")
        else:
            handle = sqlite_db.connect(path)
            handle.execute("CREATE TABLE t (x)")
        files = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("x.db"))
        assert "x.db-wal" in files
        assert {name: oct(mode_of(tmp_path / name)) for name in files} == {name: oct(0o600) for name in files}
        handle.close()
    finally:
        os.umask(old)


def test_a_database_an_older_version_left_readable_is_tightened_with_its_wal(tmp_path, caplog):
    """broker.db 0644 with a 0644 -wal (what an older EMS left after a crash): both 0600 on open."""
    path = tmp_path / "broker.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (x)")
    os.chmod(path, 0o644)
    os.chmod(tmp_path / "broker.db-wal", 0o644)
    with caplog.at_level(logging.WARNING, logger="broker.core.private_files"):
        sqlite_db.connect(path).close()
    db.close()
    assert mode_of(path) == 0o600
    assert any("broker.db-wal" in r.getMessage() for r in caplog.records)


# -- values an older version kept in clear ----------------------------------------------
def _clear_queue(path):
    queue = CommandQueue(path)
    cmd = queue.add("c1", "agent", "op", "chat.send", {"text": "x"}, time.time() + 60)
    queue.advance(cmd, DONE, {"ok": True})
    queue.close()
    with sqlite3.connect(path) as db:  # what an older EMS wrote: msgpack in clear
        db.execute("UPDATE commands SET args=?, result=? WHERE id='c1'",
                   (pack_body({"text": MARKER.decode()}), pack_body({"ok": True, "output": MARKER.decode()})))
    db.close()


def _clear_executed(path):
    executed = ExecutedCommands(path)
    executed.claim("c1", "files.download")
    executed.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE executed SET result=? WHERE id='c1'", (pack_body({"ok": True, "output": MARKER.decode()}),))
    db.close()


def _clear_outbox(path):
    with Outbox(path) as box:
        box.put_many([(Kind.EVENT, "event.a.chat", MARKER, None, "m1")])
    with sqlite3.connect(path) as db:
        db.execute("UPDATE outbox SET body=? WHERE msg_id='m1'", (MARKER,))
        db.execute("PRAGMA user_version=1")
    db.close()


def _read_queue(path):
    queue = CommandQueue(path)
    cmd = queue.get("c1")
    queue.close()
    return cmd.args["text"].encode() + cmd.result["output"].encode()


def _read_executed(path):
    executed = ExecutedCommands(path)
    result = executed.result_of("c1")
    executed.close()
    return result["output"].encode()


def _read_outbox(path):
    with Outbox(path) as box:
        return box.due()[0].body


LEGACY = {"command queue": (_clear_queue, _read_queue, MARKER * 2), "executed": (_clear_executed, _read_executed, MARKER),
          "outbox": (_clear_outbox, _read_outbox, MARKER)}


@pytest.mark.parametrize("store", list(LEGACY))
def test_clear_values_of_an_older_version_are_sealed_on_open(tmp_path, store, caplog):
    """Clear args/results (queue), results (executed), bodies (outbox v1): on open they read
    the same, and no byte of the database, its -wal or -shm holds them in clear any more."""
    write_clear, read, expected = LEGACY[store]
    path = tmp_path / "x.db"
    write_clear(path)
    assert MARKER in raw_bytes(path)
    with caplog.at_level(logging.WARNING):
        assert read(path) == expected
    assert MARKER not in raw_bytes(path)
    assert any("clear" in r.getMessage() for r in caplog.records)
    assert read(path) == expected  # and again, from the sealed values


# -- values that do not open ------------------------------------------------------------
def test_a_sealed_value_moved_to_another_command_does_not_open(tmp_path, caplog):
    """c2's sealed args copied into c1: c1 reads as unreadable (logged) and, being open, fails
    rather than reach the agent; nothing raises; c2 is untouched."""
    path = tmp_path / "broker.db"
    queue = CommandQueue(path)
    for cmd_id in ("c1", "c2"):
        queue.add(cmd_id, "agent", "op", "chat.send", {"text": cmd_id}, time.time() + 60)
    queue.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE commands SET args=(SELECT args FROM commands WHERE id='c2') WHERE id='c1'")
    db.close()
    with caplog.at_level(logging.ERROR):
        queue = CommandQueue(path)
    assert "unreadable" in queue.get("c1").args and queue.get("c1").status == "failed"
    assert queue.get("c2").args == {"text": "c2"} and queue.get("c2").status == "queued"
    assert any("c1" in r.getMessage() for r in caplog.records)
    queue.close()


def test_open_commands_whose_arguments_do_not_open_fail_instead_of_running(tmp_path, caplog):
    """The queue's key file lost (replaced by a fresh one): a queued command is never delivered
    with garbled arguments; it fails, its result (for its sender) says why, a final one just reads unreadable."""
    path = tmp_path / "broker.db"
    queue = CommandQueue(path)
    queue.add("open1", "agent", "op", "files.delete", {"path": "/srv/x"}, time.time() + 60)
    done = queue.add("done1", "agent", "op", "ping", {}, time.time() + 60)
    queue.advance(done, DONE, {"ok": True})
    queue.close()
    (tmp_path / "keys" / QUEUE_KEYS_FILE).unlink()
    with caplog.at_level(logging.ERROR):
        queue = CommandQueue(path)
    assert queue.open_for("agent") == []
    failed = queue.get("open1")
    assert failed.status == "failed" and "not run" in failed.result["error"] and "decrypt" in failed.result["error"]
    assert "open1" in [c.id for c in queue.unsent_results("op")]
    assert "unreadable" in queue.get("done1").result
    queue.close()


def test_executed_and_outbox_values_moved_between_rows_do_not_open(tmp_path):
    """The same swap in the agent's databases: the executed record answers "not run again"
    with the reason; the outbox says which record and which key file."""
    executed = ExecutedCommands(tmp_path / "agent.db")
    for cmd_id in ("c1", "c2"):
        executed.claim(cmd_id, "ping")
        executed.finish(cmd_id, {"ok": True, "output": cmd_id})
    executed._db.execute("UPDATE executed SET result=(SELECT result FROM executed WHERE id='c2') WHERE id='c1'")
    assert executed.result_of("c1")["ok"] is False and "not run again" in executed.result_of("c1")["error"]
    executed.close()
    box = Outbox(tmp_path / "outbox.db")
    box.put_many([(Kind.EVENT, "event.a.x", b"one", None, "m1"), (Kind.EVENT, "event.a.x", b"two", None, "m2")])
    box._db.execute("UPDATE outbox SET body=(SELECT body FROM outbox WHERE msg_id='m2') WHERE msg_id='m1'")
    with pytest.raises(OutboxCorrupt, match="m1.*local-keys.json"):
        box.due()
    box.close()


def test_queue_values_carry_their_key_id_and_survive_a_rotation(tmp_path):
    """A command sealed under k1 still opens after the queue's key file rotated to k2;
    new values use k2."""
    path = tmp_path / "broker.db"
    queue = CommandQueue(path)
    queue.add("c1", "agent", "op", "chat.send", {"text": "before"}, time.time() + 60)
    queue.close()
    ring = KeyRing(tmp_path / "keys" / QUEUE_KEYS_FILE)
    assert ring.rotate_key() == "k2"
    queue = CommandQueue(path)
    queue.add("c2", "agent", "op", "chat.send", {"text": "after"}, time.time() + 60)
    assert queue.get("c1").args == {"text": "before"}
    queue.close()
    with sqlite3.connect(path) as db:
        kids = dict(db.execute("SELECT id, args FROM commands").fetchall())
    db.close()
    assert (ring.key_id_of(kids["c1"]), ring.key_id_of(kids["c2"])) == ("k1", "k2")
    assert stat.S_IMODE(ring.key_file.stat().st_mode) == 0o600


def test_final_commands_drop_what_nobody_reads_back(tmp_path):
    """Once final: an upload's data is kept as its size, typed input not at all; a chat's
    text stays (the console's chat history shows it), sealed."""
    queue = CommandQueue(tmp_path / "broker.db")
    upload = queue.add("u1", "agent", "op", "files.upload", {"path": "/x", "data": MARKER * 10_000}, time.time() + 60)
    typed = queue.add("i1", "agent", "op", "input", {"events": [{"text": MARKER.decode()}]}, time.time() + 60)
    chat = queue.add("t1", "agent", "op", "chat.send", {"text": MARKER.decode()}, time.time() + 60)
    for cmd in (upload, typed, chat):
        queue.advance(cmd, DONE, {"ok": True})
    assert queue.get("u1").args["data"]["omitted_bytes"] == len(MARKER) * 10_000
    assert queue.get("i1").args == {"redacted": True}
    assert queue.get("t1").args == {"text": MARKER.decode()}
    queue.close()
    assert MARKER not in raw_bytes(tmp_path / "broker.db")


# -- the access log ---------------------------------------------------------------------
@pytest.fixture
def open_tmp():
    """A directory under /tmp that every user may traverse (pytest's own is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="ems-at-rest-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_access_log_is_for_its_directorys_group_only(open_tmp):
    """The agent dir given the group nogroup (what an installer does for the employee's group):
    the access log becomes 0640 of that group in a 0710 dir; a process in that group reads
    the access log and cannot list the dir nor open the agent's database; one outside the
    group opens nothing."""
    agent_dir = open_tmp / "agent"
    agent_dir.mkdir()
    gid = grp.getgrnam("nogroup").gr_gid
    os.chown(agent_dir, -1, gid)
    ExecutedCommands(agent_dir / "agent.db").close()
    AccessLog(agent_dir / "access.log").record("agent started")
    log_stat = (agent_dir / "access.log").stat()
    assert (mode_of(agent_dir), stat.S_IMODE(log_stat.st_mode), log_stat.st_gid) == (0o710, 0o640, gid)
    probe = ("import os, sys\nfor p in sys.argv[1:]:\n    try:\n        os.listdir(p) if os.path.isdir(p) else open(p).close()\n"
             "        print('read')\n    except PermissionError:\n        print('denied')\n")
    targets = [str(agent_dir / "access.log"), str(agent_dir), str(agent_dir / "agent.db")]
    nobody = pwd.getpwnam("nobody").pw_uid

    def run_as(group: int) -> list[str]:
        def drop():
            os.setgroups([])
            os.setgid(group)
            os.setuid(nobody)
        out = subprocess.run(["/usr/bin/python3", "-I", "-S", "-c", probe, *targets], capture_output=True, text=True,
                             preexec_fn=drop, cwd="/", timeout=30)
        return out.stdout.split()

    assert run_as(gid) == ["read", "denied", "denied"]
    other = grp.getgrnam("daemon").gr_gid
    assert run_as(other) == ["denied", "denied", "denied"]


# -- entry points -----------------------------------------------------------------------
def test_ems_starts_with_a_private_umask(tmp_path):
    """`ems`, started with umask 022, creates its log file 0600 (the command then fails at
    once: no profile; the log file is made before that)."""
    log_file = tmp_path / "out.log"
    subprocess.run([sys.executable, "-m", "broker.cli.main", "--log-file", str(log_file), "status", "--data-dir",
                    str(tmp_path / "nothing-here")], capture_output=True, timeout=60, preexec_fn=lambda: os.umask(0o022))
    assert log_file.exists() and mode_of(log_file) == 0o600
