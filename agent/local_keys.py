"""The agent's own key file for what it keeps on disk.

The record of executed commands (``agent.db``) and the outbox
(``outbox.db``) seal their payloads with the keys of
``keys/local-keys.json`` in the agent's data dir (mode 0600, created on
first use; the format is :mod:`broker.core.sealing`'s). The key never leaves
the machine: it protects these files from other local users and from a
copy of the disk without the key file, not from the agent's own account.
"""
from __future__ import annotations

from pathlib import Path

from broker.core.sealing import KeyRing

KEYS_FILE = "local-keys.json"


def local_keyring(db_path: Path) -> KeyRing:
    """The key ring of the agent data dir that holds ``db_path``."""
    return KeyRing(Path(db_path).parent / "keys" / KEYS_FILE, purpose="agent data")
