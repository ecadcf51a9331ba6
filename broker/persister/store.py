"""The persister's durable store: batched writes, history queries, retention.

:class:`Store` is the storage library only; the bus side (subscribing,
acknowledging message ids to agents, answering history requests) wraps it.
It is meant to be driven by one thread; open one ``Store`` per thread.

It opens the database and exposes three parts, each with one job:

* :class:`~broker.persister.writer.Writer` (``store.writer``): batched,
  deduplicated writes (:mod:`~broker.persister.prepare` validates and routes
  each record, :mod:`~broker.persister.apply` updates the rows);
* :class:`~broker.persister.queries.Queries` (``store.queries``): history,
  text search, stats, capture previews and images;
* :class:`~broker.persister.maintenance.Maintenance` (``store.maintenance``):
  retention purge, client deletion, soft deletes, key rotation.

Their methods are also the ``Store``'s own (``store.write_batch``,
``store.query``, ``store.purge``...). What they share (records, errors,
query views, retention rules) is in :mod:`~broker.persister.tables`, and
re-exported here.

Durability
----------
The database runs in WAL mode with ``synchronous=NORMAL`` by default: a
batch that :meth:`Store.write_batch` returned from survives the persister
being killed (SIGKILL, crash, OOM); after a power loss or kernel panic the
last few committed batches may be missing. That is the default because an
agent keeps every record in its outbox until the persister acknowledges it,
and the persister acknowledges after ``write_batch`` returns: records lost
to a power cut are only safe if the acknowledgement was lost with them,
which NORMAL does not promise. ``synchronous="FULL"`` (one fsync per
commit) makes an acknowledged batch survive power loss too, at a throughput
cost; choose it where acknowledged-means-on-disk matters more than speed.

Which fields are encrypted and why is described in
:mod:`broker.persister.crypto`; where rows go is in
:meth:`~broker.persister.writer.Writer.write_batch`.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from broker.core import sqlite_db
from broker.persister import schema
from broker.persister.crypto import SecurityManager
from broker.persister.maintenance import Maintenance, delete_client_rows
from broker.persister.queries import MAX_NEEDLE_CHARS, Queries
from broker.persister.tables import (
    BROKER_IDS,
    CHAT_UPDATE_WAIT_S,
    ENCRYPTED,
    KINDS,
    MAX_ID_CHARS,
    MAX_LIMIT,
    OPERATOR_WAIT_S,
    PURGE_BATCH,
    RETENTION,
    STATS,
    THUMBNAIL_BACKFILL,
    VIEWS,
    Record,
    Rejected,
    StoredBatch,
    StoreError,
    StoreUnavailable,
    guard,
)
from broker.persister.writer import Writer

__all__ = [
    "BROKER_IDS", "CHAT_UPDATE_WAIT_S", "ENCRYPTED", "KINDS", "MAX_ID_CHARS", "MAX_LIMIT", "MAX_NEEDLE_CHARS",
    "OPERATOR_WAIT_S", "PURGE_BATCH", "RETENTION", "STATS", "THUMBNAIL_BACKFILL", "VIEWS", "Record", "Rejected",
    "Store", "StoredBatch", "StoreError", "StoreUnavailable", "delete_client_rows",
]



class Store:
    """The persister's SQLite database.

    ``path`` is the database file; ``crypto`` seals the encrypted fields;
    ``synchronous`` is ``NORMAL`` (default) or ``FULL`` (see the module
    docstring). Opening migrates the schema to the latest version.
    """

    def __init__(self, path: Path, crypto: SecurityManager, synchronous: str = "NORMAL"):
        self.path = Path(path)
        self.crypto = crypto
        with guard(self.path, "open the store"):
            self._db = sqlite_db.connect(self.path, synchronous)
        try:
            with guard(self.path, "migrate the store"):
                schema.migrate(self._db)
        except BaseException:
            self._db.close()
            raise
        self.writer = Writer(self._db, self.path, crypto)
        self.queries = Queries(self._db, self.path, crypto)
        self.maintenance = Maintenance(self._db, self.path, crypto)
        # the parts' methods, as the store's own
        self.write_batch = self.writer.write_batch
        self.query = self.queries.query
        self.with_thumbnails = self.queries.with_thumbnails
        self.get_capture = self.queries.get_capture
        self.stats = self.queries.stats
        self.purge = self.maintenance.purge
        self.delete_client = self.maintenance.delete_client
        self.soft_delete_message = self.maintenance.soft_delete_message
        self.rotate_encryption = self.maintenance.rotate_encryption

    @property
    def connection(self) -> sqlite3.Connection:
        """The underlying connection (maintenance, PRAGMAs and tests)."""
        return self._db

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
