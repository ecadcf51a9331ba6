"""The broker's own tables in ``broker.db``: what every store of them does the same way.

Each part of the broker that keeps tables there (bulk runs, approvals,
templates, playbooks, schedules, broadcasts, targets) is a
:class:`BrokerTables`: it names its ``SCHEMA`` and adds its reads and
writes; the connection, the schema made on open and closing are here.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from broker.core import sqlite_db
from broker.core.sealing import KeyRing


class BrokerTables:
    """One store's tables in ``broker.db``, on a connection of its own that never checkpoints (the broker
    checkpoints the file, off the message path); ``keyring`` (the command queue's) seals what must not be
    readable at rest."""

    #: the store's CREATE TABLE IF NOT EXISTS statements, run on open
    SCHEMA = ""

    def __init__(self, path: Path, keyring: KeyRing | None = None):
        self._keyring = keyring
        self._db = sqlite_db.connect(path, auto_checkpoint=False)
        self._db.executescript(self.SCHEMA)

    def close(self) -> None:
        self._db.close()

    def transaction(self) -> sqlite3.Connection:
        """One commit for several changes: ``with store.transaction(): ...``."""
        return self._db
