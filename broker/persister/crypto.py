"""Field encryption for the durable store: AES-256-GCM with rotating keys.

What is encrypted, and why
--------------------------
Only fields whose *content* is personal data and that no query filters or
sorts on in SQL:

* ``chat_messages.body``: what an employee and an operator wrote;
* ``client_logs.message``: free text that quotes paths, user names, errors;
* ``file_operations.path`` and ``file_operations.error`` (OS errors quote
  the path);
* ``screen_captures.image``: a picture of someone's screen, and
  ``capture_thumbnails.thumbnail``, its small preview;
* ``activity_logs.data``: free-form event payloads (window titles, URLs,
  application names); the event ``name`` stays plain for filtering.

Everything else stays plain because the store must filter, sort, group,
join or purge on it (client ids, timestamps, levels, event names, status,
metrics for charts, hostnames for the client list), or because it must be
readable by whoever reviews it without the store's key (the audit trail and
security events: evidence about operators and attacks). Text search over an
encrypted field decrypts in the store, never in SQL.

A value is bound to its place by the AES-GCM *associated data*
(:func:`aad_for`: table, column and the row's ``(client_id, msg_id)``), so a
value copied or swapped into another row or column fails to decrypt just
like a flipped byte.

Blob layout (self-describing, so keys can rotate under stored data)::

    version (1 byte, 0x01) | key id length (1 byte) | key id (ASCII)
    | nonce (12 random bytes) | ciphertext + 16-byte tag

Keys
----
A JSON file (mode 0600, in the data dir's ``keys/`` folder, created on
first use)::

    {"current": "k1", "keys": {"k1": "<base64 256-bit key>", ...}}

:meth:`SecurityManager.rotate_key` adds a new current key; old keys stay so
old values still decrypt until the store has re-encrypted them
(``Store.rotate_encryption``). Losing this file loses every encrypted
value: back it up with the database, but not next to its copies.
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

from broker.errors import ConfigError, EmsError

log = logging.getLogger(__name__)

BLOB_VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class TamperedValue(EmsError):
    """An encrypted value that does not decrypt: modified, moved or truncated,
    or sealed with a key this key file does not hold."""


def aad_for(table: str, column: str, client_id: str, msg_id: str) -> bytes:
    """The associated data that binds a value to its table, column and row.

    The row key leads with the length of ``client_id`` so that no choice of
    ids can make two different rows produce the same bytes.
    """
    return f"{table}:{column}:{len(client_id)}:{client_id}:{msg_id}".encode()


class SecurityManager:
    """AES-GCM encryption with the keys of one key file.

    ``key_file`` is created (with a first key) if it does not exist. One
    process rotates keys (the persister); others reading the same file pick
    a new key up the first time they meet a value sealed with it.
    """

    def __init__(self, key_file: Path):
        self.key_file = Path(key_file)
        self._keys: dict[str, bytes] = {}
        self._aead: dict[str, AESGCM] = {}
        self._current = ""
        if self.key_file.exists():
            self._load()
        else:
            self._keys = {"k1": AESGCM.generate_key(bit_length=256)}
            self._current = "k1"
            self._save()
            log.info("created store encryption key file %s", self.key_file)

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
        previous = self._keys, self._current
        self._keys, self._current = keys, new_id
        try:
            self._save()
        except BaseException:
            self._keys, self._current = previous
            raise
        log.info("store encryption key rotated: %s is current (%d keys held)", new_id, len(keys))
        return new_id

    # -- values --------------------------------------------------------------
    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        """Seal ``plaintext`` with the current key, bound to ``aad``."""
        kid = self._current.encode()
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead_for(self._current).encrypt(nonce, plaintext, aad)
        return bytes((BLOB_VERSION, len(kid))) + kid + nonce + sealed

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
        if len(blob) < 2:
            raise TamperedValue(f"truncated encrypted value ({len(blob)} bytes)")
        if blob[0] != BLOB_VERSION:
            raise TamperedValue(f"unknown encrypted value version {blob[0]}")
        kid_len = blob[1]
        head = 2 + kid_len
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

    def _load(self) -> None:
        path = self.key_file
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"key file {path} is readable by others (mode {mode:04o}): run `chmod 600 {path}`"
                " and consider rotating the store keys"
            )
        try:
            doc = json.loads(path.read_text())
            current = doc["current"]
            keys = {kid: base64.b64decode(value, validate=True) for kid, value in doc["keys"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"key file {path} is not a valid store key file: {exc}") from exc
        for kid, key in keys.items():
            if not _KEY_ID.match(kid) or len(key) != KEY_BYTES:
                raise ConfigError(f"key file {path}: key {kid!r} is not a {KEY_BYTES * 8}-bit key with a short id")
        if current not in keys:
            raise ConfigError(f"key file {path}: current key {current!r} is missing")
        self._keys, self._current = keys, current

    def _save(self) -> None:
        """Write the key file atomically with mode 0600."""
        path = self.key_file
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        doc = {"current": self._current, "keys": {k: base64.b64encode(v).decode() for k, v in self._keys.items()}}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                os.fchmod(out.fileno(), 0o600)  # O_CREAT's mode is masked by umask
                json.dump(doc, out, indent=1)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
