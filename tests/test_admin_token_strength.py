"""Admin bearer tokens with too little entropy are refused by the real
``ems admin-http`` process; random ones start it and authorise calls.

The matrix covers each way a human token is guessable (one repeated
character, a tiny alphabet, sequences along the alphabet, the digits or the
keyboard, a repeating period, common words, l33t spelling) against random
tokens of the shapes people really generate (``secrets.token_urlsafe``,
``token_hex``, a random lowercase string).
"""
from __future__ import annotations

import http.client
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bridges.admin_http.config import ENDPOINT_FILE, MIN_TOKEN_BITS, TOKEN_ENV, token_from_env
from bridges.admin_http.token_strength import estimate_bits
from broker.core import keys
from broker.core.profile import Profile, save
from broker.core.errors import ConfigError

from conftest import wait_for

REPO = Path(__file__).resolve().parent.parent

WEAK = {
    "one repeated character": "a" * 16,
    "one repeated character, long": "Z" * 64,
    "two characters alternating": "ab" * 16,
    "binary digits": "0110100110010110" * 2,
    "alphabet run": "abcdefghijklmnopqrstuvwxyz",
    "digit run": "01234567890123456789",
    "descending digits": "98765432109876543210",
    "keyboard row": "qwertyuiopasdfghjkl",
    "repeated period": "k3J9k3J9k3J9k3J9k3J9",
    "dictionary words": "administrator-password-2024",
    "passphrase of common words": "correct-horse-battery-staple",
    "l33t words doubled": "P@ssw0rd!P@ssw0rd!",
    "season and year": "Summer2024!Summer2024!",
    "old test token with runs": "test-token-0123456789-abcdefghij",
    "word plus short suffix": "secretsecretsecret12",
}

STRONG = {
    "token_urlsafe(32), fixed": "HIlFk2VpLwppEBEgs7u41RlkfDXYw3-S-aC-FBGRkfs",
    "token_urlsafe(16)": "aGn0gZ8ywE-2EUrepVxrjA",
    "token_hex(16)": "47e6a2d35a142e516bee90fa823fff63",
    "token_hex(24)": "abb411404438f065aa84c0b2c943934ffdc619709fcaf519",
    "random lowercase 28": "ujlgumgtvmpoefmfihjqucterhwk",
    "token_urlsafe(32), fresh": secrets.token_urlsafe(32),
}


def _env(token: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    return {**env, "PYTHONPATH": str(REPO), TOKEN_ENV: token}


@pytest.mark.parametrize("name", sorted(WEAK))
def test_weak_token_refused_by_the_process(name, tmp_path):
    """Tried: starting `ems admin-http` with a guessable token of each shape;
    it must exit 2 before serving, say why and how to make a good one."""
    token = WEAK[name]
    assert len(token) >= 16, "the length rule alone would have refused it"
    res = subprocess.run([sys.executable, "-m", "broker.cli.main", "admin-http", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0"],
                         check=False, capture_output=True, text=True, timeout=60, env=_env(token), cwd=str(tmp_path))
    assert res.returncode == 2, res.stderr
    assert "too little entropy" in res.stderr
    assert "secrets.token_urlsafe(32)" in res.stderr
    assert not (tmp_path / ENDPOINT_FILE).exists()


@pytest.mark.parametrize("name", sorted(STRONG))
def test_random_token_accepted_by_the_process(name, bus, tmp_path):
    """A random token starts the real listener, which answers a call made with it."""
    token = STRONG[name]
    data = bus.data
    save(data, Profile(server=bus.endpoint, server_key=bus.server_key, key_name="admin", client_id="admin"))
    pair = keys.load_or_create(data.keys, "admin-http")
    if not any(r["client_id"] == "admin-http" for r in bus.admin.request("keys.list")):
        bus.admin.request("keys.add", public_key=pair.public, client_id="admin-http", role="service")
    endpoint = data.root / ENDPOINT_FILE
    with (tmp_path / "admin-http.out").open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "broker.cli.main", "admin-http", "--data-dir", str(data.root), "--listen", "127.0.0.1:0",
                                 "--heartbeat-s", "0.2"], stdout=out, stderr=subprocess.STDOUT, env=_env(token), cwd=str(tmp_path))
    try:
        wait_for(lambda: endpoint.exists() or proc.poll() is not None, 20, what="the listener to bind")
        assert proc.poll() is None, (tmp_path / "admin-http.out").read_text()
        host, port = endpoint.read_text().strip().removeprefix("http://").rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=15)
        conn.request("GET", "/api/clients", headers={"Authorization": f"Bearer {token}", "Host": f"127.0.0.1:{port}"})
        assert conn.getresponse().status == 200
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


@pytest.mark.parametrize("token,weak", [(t, True) for t in WEAK.values()] + [(t, False) for t in STRONG.values()],
                         ids=[f"weak-{n}" for n in WEAK] + [f"strong-{n}" for n in STRONG])  # the same ids in every process
def test_estimate_agrees_with_the_config_check(token, weak):
    """The same matrix through the library call `ems up` uses before starting anything."""
    assert (estimate_bits(token) < MIN_TOKEN_BITS) == weak
    if weak:
        with pytest.raises(ConfigError, match="too little entropy"):
            token_from_env({TOKEN_ENV: token})
    else:
        assert token_from_env({TOKEN_ENV: token}) == token
