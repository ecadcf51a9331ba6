"""Sealed values at rest: AES-256-GCM with the keys of one key file.

The one place EMS encrypts what it keeps on disk: the persister's store
(:mod:`broker.persister.crypto` says which fields), the broker's command
queue and the agent's own databases. Each keeps its own key file; this
module owns the format and the key handling.

Blob layout (self-describing, so keys can rotate under stored data)::

    version (1 byte, 0x01) | key id length (1 byte) | key id (ASCII)
    | nonce (12 random bytes) | ciphertext + 16-byte tag

A value is bound to its place by the AES-GCM *associated data* (for
example :func:`aad` of table, column and row id): a value copied or swapped
into another row or column fails to open just like a flipped byte.

Key file (mode 0600, in a ``keys/`` folder of mode 0700, created on first
use)::

    {"current": "k1", "keys": {"k1": "<base64 256-bit key>", ...}}

:meth:`KeyRing.rotate_key` adds a new current key; old keys stay so old
values still open. Losing the file loses every value sealed with it: back
it up with the database, but not next to its copies.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import re
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from broker.core.errors import ConfigError, EmsError

log = logging.getLogger(__name__)

BLOB_VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class TamperedValue(EmsError):
    """A sealed value that does not open: modified, moved or truncated, or
    sealed with a key this key file does not hold."""


def aad(*parts: str) -> bytes:
    """Associated data naming a value's place; each part is length-prefixed,
    so no choice of parts can make two different places produce the same bytes."""
    return ":".join(f"{len(p)}:{p}" for p in parts).encode()


def is_sealed(blob: object) -> bool:
    """True if ``blob`` has the shape of a sealed value (its first bytes only;
    msgpack maps, arrays and strings never start with the version byte 0x01 and a length)."""
    return isinstance(blob, (bytes, bytearray, memoryview)) and len(blob) >= 2 and blob[0] == BLOB_VERSION and blob[1] > 0


class KeyRing:
    """AES-GCM sealing with the keys of one key file.

    ``key_file`` is created (with a first key) if it does not exist; a key
    file that others may read is refused. One process rotates keys; others
    reading the same file pick a new key up the first time they meet a value
    sealed with it. ``purpose`` names the keys in messages ("store", ...).
    """

    def __init__(self, key_file: Path, purpose: str = "data"):
        self.key_file = Path(key_file)
        self.purpose = purpose
        self._keys: dict[str, bytes] = {}
        self._aead: dict[str, AESGCM] = {}
        self._current = ""
        if not self.key_file.exists():
            self._create()
        self._load()

    # -- keys ----------------------------------------------------------------
    @property
    def current_key_id(self) -> str:
        return self._current

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def rotate_key(self) -> str:
        """Add a fresh key, make it current, save the file; return its id.

        The file is written before the key is used, so nothing is ever sealed
        with a key that is not on disk.
        """
        numbers = [int(k[1:]) for k in self._keys if re.fullmatch(r"k\d+", k)]
        new_id = f"k{max(numbers, default=0) + 1}"
        keys = dict(self._keys)
        keys[new_id] = AESGCM.generate_key(bit_length=256)
        self._write(keys, new_id, replace=True)
        self._keys, self._current = keys, new_id
        log.info("%s encryption key rotated: %s is current (%d keys held)", self.purpose, new_id, len(keys))
        return new_id

    # -- values --------------------------------------------------------------
    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        """Seal ``plaintext`` with the current key, bound to ``aad``."""
        kid = self._current.encode()
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead_for(self._current).encrypt(nonce, plaintext, aad)
        return bytes((BLOB_VERSION, len(kid))) + kid + nonce + sealed

    def encrypt_many(self, items: list[tuple[bytes, bytes]]) -> list[bytes]:
        """Seal each ``(plaintext, aad)`` with the current key (one call for the
        random nonces of the whole batch: for hot paths such as the agent's outbox)."""
        kid = self._current.encode()
        head = bytes((BLOB_VERSION, len(kid))) + kid
        seal = self._aead_for(self._current).encrypt
        nonces = os.urandom(NONCE_BYTES * len(items))
        out = []
        for i, (plaintext, aad) in enumerate(items):
            nonce = nonces[i * NONCE_BYTES : (i + 1) * NONCE_BYTES]
            out.append(head + nonce + seal(nonce, plaintext, aad))
        return out

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        """Open ``blob``; :class:`TamperedValue` says what failed.

        Callers add where the value came from (table, row) to the message.
        """
        kid, nonce, sealed = self._split(blob)
        if kid not in self._keys:
            self._reload()
        if kid not in self._keys:
            raise TamperedValue(f"unknown key id {kid!r} (not in {self.key_file})")
        try:
            return self._aead_for(kid).decrypt(nonce, sealed, aad)
        except InvalidTag:
            raise TamperedValue(
                f"authentication tag mismatch (key {kid}): the value was modified or moved from another row"
            ) from None


    def key_id_of(self, blob: bytes) -> str:
        """The id of the key ``blob`` was sealed with."""
        return self._split(blob)[0]

    # -- internals -------------------------------------------------------------
    @staticmethod
    def _split(blob: bytes) -> tuple[str, bytes, bytes]:
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise TamperedValue(f"encrypted value is {type(blob).__name__}, not bytes")
        blob = bytes(blob)
        kid_len = blob[1] if len(blob) >= 2 else 0
        head = 2 + kid_len
        if len(blob) >= 2 and blob[0] != BLOB_VERSION:
            raise TamperedValue(f"unknown encrypted value version {blob[0]}")
        if kid_len == 0 or len(blob) < head + NONCE_BYTES + TAG_BYTES:
            raise TamperedValue(f"truncated encrypted value ({len(blob)} bytes)")
        try:
            kid = blob[2:head].decode("ascii")
        except UnicodeDecodeError:
            raise TamperedValue("malformed key id in encrypted value") from None
        return kid, blob[head : head + NONCE_BYTES], blob[head + NONCE_BYTES :]

    def _aead_for(self, kid: str) -> AESGCM:
        aead = self._aead.get(kid)
        if aead is None:
            aead = self._aead[kid] = AESGCM(self._keys[kid])
        return aead

    def _reload(self) -> None:
        """Re-read the key file (another process may have rotated)."""
        try:
            self._load()
        except (OSError, ConfigError) as exc:
            log.warning("cannot re-read key file %s: %s", self.key_file, exc)

    def _create(self) -> None:
        """A first key, written only if no other process wrote the file meanwhile."""
        if self._write({"k1": AESGCM.generate_key(bit_length=256)}, "k1", replace=False):
            log.info("created %s encryption key file %s", self.purpose, self.key_file)

    def _load(self) -> None:
        path = self.key_file
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"key file {path} is readable by others (mode {mode:04o}): run `chmod 600 {path}`"
                f" and consider rotating the {self.purpose} keys"
            )
        try:
            doc = json.loads(path.read_text())
            current = doc["current"]
            keys = {kid: base64.b64decode(value, validate=True) for kid, value in doc["keys"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"key file {path} is not a valid {self.purpose} key file: {exc}") from exc
        for kid, key in keys.items():
            if not _KEY_ID.match(kid) or len(key) != KEY_BYTES:
                raise ConfigError(f"key file {path}: key {kid!r} is not a {KEY_BYTES * 8}-bit key with a short id")
        if current not in keys:
            raise ConfigError(f"key file {path}: current key {current!r} is missing")
        self._keys, self._current = keys, current

    def _write(self, keys: dict[str, bytes], current: str, replace: bool) -> bool:
        """Write the key file with mode 0600 through a temporary file; False if
        ``replace`` is off and the file appeared meanwhile (the other one wins)."""
        path = self.key_file
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        doc = {"current": current, "keys": {k: base64.b64encode(v).decode() for k, v in keys.items()}}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                os.fchmod(out.fileno(), 0o600)  # O_CREAT's mode is masked by umask
                json.dump(doc, out, indent=1)
                out.flush()
                os.fsync(out.fileno())
            if replace:
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path)  # never overwrites a key file another process just made
                except FileExistsError:
                    return False
        finally:
            tmp.unlink(missing_ok=True)
        _sync_dir(path.parent)
        return True


def _sync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
