"""CurveZMQ key pairs on disk.

A key pair ``NAME`` is two text files in a keys directory: ``NAME.public``
(Z85, shareable) and ``NAME.secret`` (Z85, mode 0600). Keys are created on
first use and never regenerated silently.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.utils.z85

from broker.core.errors import ConfigError

log = logging.getLogger(__name__)

Z85_KEY_CHARS = 40


@dataclass(frozen=True)
class KeyPair:
    public: str
    secret: str

    @property
    def public_bytes(self) -> bytes:
        return self.public.encode("ascii")

    @property
    def secret_bytes(self) -> bytes:
        return self.secret.encode("ascii")


def is_z85_key(text: str) -> bool:
    """True for a well-formed 40-character Z85 Curve key."""
    if not isinstance(text, str) or len(text) != Z85_KEY_CHARS:
        return False
    try:
        return len(zmq.utils.z85.decode(text.encode("ascii"))) == 32
    except Exception:
        return False


def generate() -> KeyPair:
    public, secret = zmq.curve_keypair()
    return KeyPair(public.decode("ascii"), secret.decode("ascii"))


def _not_a_pair(keys_dir: Path, name: str) -> ConfigError:
    return ConfigError(f"key pair {name!r} in {keys_dir} is not a valid Z85 Curve key pair")


def load(keys_dir: Path, name: str) -> KeyPair:
    """Load ``NAME`` from ``keys_dir``; a clear error if it is missing or bad."""
    public_path, secret_path = keys_dir / f"{name}.public", keys_dir / f"{name}.secret"
    try:
        pair = KeyPair(public_path.read_text().strip(), secret_path.read_text().strip())
    except FileNotFoundError as exc:
        raise ConfigError(f"key pair {name!r} not found in {keys_dir}: {exc.filename} is missing") from exc
    if not (is_z85_key(pair.public) and is_z85_key(pair.secret)):
        raise _not_a_pair(keys_dir, name)
    return pair


def load_or_create(keys_dir: Path, name: str) -> KeyPair:
    """Load the pair ``NAME``, creating it (secret 0600) if absent.

    Safe against a kill at any moment: the secret file appears whole or not
    at all (written aside, then linked into place), and the public file is
    derived from it, so a process killed between the two writes finds its
    key complete on the next start. An empty secret file (left by a kill
    in an older version, before any key was in it) counts as absent, an
    empty or missing public file is written again from the secret.
    """
    secret_path = keys_dir / f"{name}.secret"
    if secret_path.exists() and secret_path.stat().st_size == 0:
        log.warning("%s is empty (a start was interrupted before the key was written): creating the key pair", secret_path)
        secret_path.unlink(missing_ok=True)
    if not secret_path.exists():
        keys_dir.mkdir(parents=True, exist_ok=True)
        _place_secret(secret_path, generate().secret)
    public_path = keys_dir / f"{name}.public"
    if not public_path.exists() or public_path.stat().st_size == 0:
        _write_public(keys_dir, name)
    return load(keys_dir, name)


def _place_secret(secret_path: Path, secret: str) -> None:
    """Write ``secret`` aside (0600, synced), then link it into place unless
    another process was quicker (its key wins: nothing is overwritten)."""
    tmp = secret_path.with_name(f".{secret_path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secret + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, secret_path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def _write_public(keys_dir: Path, name: str) -> None:
    """(Re)write ``NAME.public`` from the secret key beside it."""
    secret = (keys_dir / f"{name}.secret").read_text().strip()
    if not is_z85_key(secret):
        raise _not_a_pair(keys_dir, name)
    public_path = keys_dir / f"{name}.public"
    tmp = public_path.with_name(f".{public_path.name}.{os.getpid()}.tmp")
    tmp.write_text(zmq.curve_public(secret.encode("ascii")).decode("ascii") + "\n")
    os.replace(tmp, public_path)


def load_public(path_or_key: str) -> str:
    """A server key given on the command line: a Z85 string or a file with one."""
    if is_z85_key(path_or_key):
        return path_or_key
    path = Path(path_or_key).expanduser()
    if path.is_file():
        text = path.read_text().strip()
        if is_z85_key(text):
            return text
        raise ConfigError(f"{path} does not hold a Z85 public key")
    raise ConfigError(f"{path_or_key!r} is neither a Z85 public key nor a readable key file")
