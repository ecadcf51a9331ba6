"""Sealing sensitive fields for the web: AES-256-GCM under the web key.

The store keeps chat bodies, log messages, file paths, captures and
command arguments encrypted under its own key, which only the persister
holds. The sync worker receives them decrypted (inside the Curve-encrypted
bus) and seals each again under a different key, the *web key*, before it
goes to MySQL: neither MySQL's data files, its binary logs, a dump, nor
anyone with the web user's password sees them in clear. Only the web UI's
process, which can read the key file, opens them.

Key file: ``DATA/web/web.key``, one line of base64 (32 bytes), mode 0600 in
the 0700 directory that also holds the web UI's MySQL password
(``web/mysql.json``, from ``ems sync init``): what the web UI's process
needs, private to the account that runs EMS. Where the web UI runs as
another account, the installer hands that directory to it (owner, or group
with ``g+rx``/``g+r``) and to nobody else.

Blob: ``b"\\x01"`` (format version) ‖ 12-byte nonce ‖ ciphertext ‖ 16-byte
tag, with associated data ``table:column:server_id:row_key``
(:func:`aad_for`) so a value copied into another row or column does not
open. PHP opens it with::

    $key = base64_decode(trim(file_get_contents($keyFile)));
    $nonce = substr($blob, 1, 12); $tag = substr($blob, -16);
    $plain = openssl_decrypt(substr($blob, 13, -16), 'aes-256-gcm', $key, OPENSSL_RAW_DATA, $nonce, $tag, $aad);
"""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from broker.core.errors import EmsError
from broker.core.private_files import private_dir

VERSION = b"\x01"
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
KEY_DIR, KEY_FILE = "web", "web.key"
KEY_FILE_MODE = 0o600


class WebKeyError(EmsError):
    """The web key file cannot be read or written; the message says which and why."""


def key_path(data_root: Path) -> Path:
    """Where a data dir keeps its web key."""
    return Path(data_root) / KEY_DIR / KEY_FILE


def aad_for(table: str, column: str, server_id: str, row_key: str | int) -> bytes:
    """The associated data binding a sealed value to its MySQL table, column and row."""
    return f"{table}:{column}:{server_id}:{row_key}".encode()


class WebKey:
    """The web key: :meth:`seal` for the sync worker, :meth:`open` for tests and tools."""

    def __init__(self, key: bytes):
        if len(key) != KEY_BYTES:
            raise WebKeyError(f"a web key is {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)
        #: names the key without giving it away (servers sharing one ems_web compare it: sync.shared_db)
        self.key_id = hashlib.sha256(b"ems web key id\0" + key).hexdigest()[:16]

    @classmethod
    def load(cls, path: Path) -> "WebKey":
        """The key in ``path`` (which must exist)."""
        try:
            return cls(base64.b64decode(Path(path).read_text().strip(), validate=True))
        except (OSError, ValueError) as exc:
            raise WebKeyError(f"cannot read the web key {path}: {exc}") from exc

    @classmethod
    def load_or_create(cls, path: Path) -> "WebKey":
        """The key in ``path``, created (0600 in a 0700 directory) if absent."""
        path = Path(path)
        if not path.exists():
            if not path.parent.exists():
                private_dir(path.parent)
            aside = path.with_suffix(".tmp")
            fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, KEY_FILE_MODE)
            with os.fdopen(fd, "w") as out:
                out.write(base64.b64encode(os.urandom(KEY_BYTES)).decode() + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.chmod(aside, KEY_FILE_MODE)
            try:
                os.link(aside, path)  # whole or not at all; a concurrent creator's key wins
            except FileExistsError:
                pass
            finally:
                aside.unlink()
        return cls.load(path)

    def seal(self, plain: bytes | str, aad: bytes) -> bytes:
        """``plain`` (text as UTF-8) sealed for the web."""
        data = plain.encode() if isinstance(plain, str) else plain
        nonce = os.urandom(NONCE_BYTES)
        return VERSION + nonce + self._aead.encrypt(nonce, data, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        """What :meth:`seal` sealed (raises ``cryptography``'s ``InvalidTag`` if it was changed)."""
        if blob[:1] != VERSION:
            raise WebKeyError("not a sealed web value (unknown format version)")
        return self._aead.decrypt(blob[1:1 + NONCE_BYTES], blob[1 + NONCE_BYTES:], aad)


def import_key(source: Path, path: Path) -> WebKey:
    """Put the key file ``source`` (another server's) at ``path``, 0600; refuses to replace a different key."""
    key = WebKey.load(source)
    if Path(path).exists():
        if WebKey.load(path).key_id != key.key_id:
            raise WebKeyError(f"{path} holds another web key already: move it aside (its server's rows in ems_web "
                              f"were sealed with it) and run again")
        return key
    private_dir(Path(path).parent)
    aside = Path(path).with_suffix(".import")
    shutil.copyfile(source, aside)
    os.chmod(aside, KEY_FILE_MODE)
    os.replace(aside, path)
    return key
