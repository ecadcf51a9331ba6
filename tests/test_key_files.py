"""Key pairs on disk survive a kill while they are created (broker/core/keys.py).

A chaos run once killed the simulated agents' process while it created
their keys: one agent's secret file was left empty, and every restart died
at once on "not a valid Z85 Curve key pair". A real agent or broker killed
(or a machine losing power) during its first start would do the same.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import zmq

from broker.core import keys

CREATE_MANY = """
import sys
from pathlib import Path
from broker.core import keys
root = Path(sys.argv[1])
print("started", flush=True)
for i in range(1_000_000):
    keys.load_or_create(root / str(i), "agent")
"""


def assert_whole(pair: keys.KeyPair) -> None:
    assert keys.is_z85_key(pair.public) and keys.is_z85_key(pair.secret)
    assert zmq.curve_public(pair.secret_bytes) == pair.public_bytes


def test_a_key_pair_killed_while_being_created_loads_whole(tmp_path):
    """SIGKILL a process that creates key pairs in a tight loop, five times:
    every pair it began loads whole afterwards (before the fix, most kills
    left a pair with an empty secret or no public file)."""
    for round_no in range(5):
        root = tmp_path / str(round_no)
        child = subprocess.Popen([sys.executable, "-c", CREATE_MANY, str(root)], stdout=subprocess.PIPE)
        assert child.stdout.readline().strip() == b"started"
        time.sleep(0.2)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        begun = [d for d in root.iterdir() if d.is_dir()]
        assert begun, "the child created no key pair before the kill"
        for keys_dir in begun:
            assert_whole(keys.load_or_create(keys_dir, "agent"))


def test_an_empty_secret_from_an_older_version_is_replaced(tmp_path):
    (tmp_path / "agent.secret").write_text("")
    pair = keys.load_or_create(tmp_path, "agent")
    assert_whole(pair)
    assert keys.load(tmp_path, "agent") == pair


def test_a_missing_or_empty_public_file_is_derived_from_the_secret(tmp_path):
    original = keys.load_or_create(tmp_path, "agent")
    (tmp_path / "agent.public").unlink()
    assert keys.load_or_create(tmp_path, "agent") == original  # the key is kept, not regenerated
    (tmp_path / "agent.public").write_text("")
    assert keys.load_or_create(tmp_path, "agent") == original
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_secret_that_is_not_a_key_is_never_replaced(tmp_path):
    (tmp_path / "agent.secret").write_text("not a key\n")
    try:
        keys.load_or_create(tmp_path, "agent")
    except keys.ConfigError as exc:
        assert "not a valid Z85 Curve key pair" in str(exc)
    else:
        raise AssertionError("a damaged secret key was silently replaced")
    assert (tmp_path / "agent.secret").read_text() == "not a key\n"
