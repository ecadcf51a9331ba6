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

Keys
----
The blob format and the key file are :mod:`broker.core.sealing`'s (the same
sealing serves the broker's command queue and the agent's databases, each
with its own key file); the store's key file is ``keys/store-keys.json``.
:meth:`SecurityManager.rotate_key` adds a new current key; old keys stay so
old values still decrypt until the store has re-encrypted them
(``Store.rotate_encryption``). Losing this file loses every encrypted
value: back it up with the database, but not next to its copies.
"""
from __future__ import annotations

from pathlib import Path

from broker.core.sealing import BLOB_VERSION, KEY_BYTES, NONCE_BYTES, TAG_BYTES, KeyRing, TamperedValue

__all__ = ["BLOB_VERSION", "KEY_BYTES", "NONCE_BYTES", "TAG_BYTES", "SecurityManager", "TamperedValue", "aad_for"]


def aad_for(table: str, column: str, client_id: str, msg_id: str) -> bytes:
    """The associated data that binds a value to its table, column and row.

    The row key leads with the length of ``client_id`` so that no choice of
    ids can make two different rows produce the same bytes.
    """
    return f"{table}:{column}:{len(client_id)}:{client_id}:{msg_id}".encode()


class SecurityManager(KeyRing):
    """The store's key ring (:class:`broker.core.sealing.KeyRing` with the store's name in its messages)."""

    def __init__(self, key_file: Path):
        super().__init__(key_file, purpose="store")
