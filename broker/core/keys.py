"""CurveZMQ key pairs on disk.

A key pair ``NAME`` is two text files in a keys directory: ``NAME.public``
(Z85, shareable) and ``NAME.secret`` (Z85, mode 0600). Keys are created on
first use and never regenerated silently.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.utils.z85

from broker.core.errors import ConfigError

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


def load(keys_dir: Path, name: str) -> KeyPair:
    """Load ``NAME`` from ``keys_dir``; a clear error if it is missing or bad."""
    public_path, secret_path = keys_dir / f"{name}.public", keys_dir / f"{name}.secret"
    try:
        pair = KeyPair(public_path.read_text().strip(), secret_path.read_text().strip())
    except FileNotFoundError as exc:
        raise ConfigError(f"key pair {name!r} not found in {keys_dir}: {exc.filename} is missing") from exc
    if not (is_z85_key(pair.public) and is_z85_key(pair.secret)):
        raise ConfigError(f"key pair {name!r} in {keys_dir} is not a valid Z85 Curve key pair")
    return pair


def load_or_create(keys_dir: Path, name: str) -> KeyPair:
    """Load the pair ``NAME``, creating it (secret 0600) if absent."""
    secret_path = keys_dir / f"{name}.secret"
    if secret_path.exists():
        return load(keys_dir, name)
    keys_dir.mkdir(parents=True, exist_ok=True)
    pair = generate()
    fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(pair.secret + "\n")
    (keys_dir / f"{name}.public").write_text(pair.public + "\n")
    return pair


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
