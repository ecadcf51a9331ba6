"""The agent's durable outbox: records stay on disk until the store has them.

Events, logs and security events are the "at least once, deduplicated"
traffic of the design brief. The agent puts every such record here first,
sends what :meth:`Outbox.due` hands it, and deletes a record only when the
persister's ACK says it is committed. Records sent but not acknowledged
within ``resend_after_s`` are sent again (the store deduplicates by agent
and message id, so a resend is harmless); :meth:`Outbox.requeue_all` makes
everything due at once after a reconnect.

Durability
----------
One SQLite file per agent (it must not be shared with other tables; the
outbox holds an exclusive lock on it while open), opened through
:func:`broker.core.sqlite_db.connect`: WAL journal, ``synchronous=NORMAL``.
A record is committed when :meth:`Outbox.put` returns, so it survives the
agent being killed or crashing (the kernel still has the write). A power
loss may lose the last few transactions; those records were never
acknowledged by the server either, so they are lost, not stored twice,
and ``synchronous=FULL`` would cost an fsync on every put for that case.

At rest
-------
A record's body (chat text, file-operation records with paths, log lines)
is sealed with the agent's local key (:mod:`agent.local_keys`), bound to
its message id, from :meth:`Outbox.put` until the ack deletes it; kind,
topic, class and times stay plain for the queue's own work. A file written
by an older agent (schema 1, bodies in clear) is sealed on open, and the
clear copies wiped. Sizes and limits count the body as given.

Priority classes and the full-outbox policy
-------------------------------------------
Every record has a class (:class:`Priority`):

* ``security``: every ``Kind.SECURITY`` record, and only those;
* ``important``: log records at WARNING and above (:func:`log_priority`),
  command-related events; the caller says so;
* ``routine``: everything else (periodic telemetry such as sysinfo,
  DEBUG/INFO logs). The default for ``Kind.EVENT`` and ``Kind.LOG``.

The outbox holds at most ``max_records`` records and ``max_bytes`` bytes
(body + topic + :data:`RECORD_OVERHEAD_BYTES` per record, close to the space
a record takes in the file). When adding records would exceed either limit,
the outbox, counting the records being added, drops:

1. the oldest ``routine`` records first,
2. then the oldest ``important`` records,
3. never a ``security`` record.

If the outbox holds only security records and is still full, a new security
record is stored anyway, over the limit (logged as an error), rather than
lost; a new routine or important record is refused: :class:`OutboxFull`.
Every dropped or refused record is counted per class;
:meth:`Outbox.take_drop_report` returns and resets the counts gathered since
the last call (they are kept in the file, so a restart does not lose them),
for the agent to send as one ``outbox_overflow`` security event.

The modules: :mod:`~agent.outbox.records` (classes, records, errors),
:mod:`~agent.outbox.storage` (the file), :mod:`~agent.outbox.queue` (the
:class:`Outbox`). Their public names are importable from here.
"""
from agent.outbox.queue import Outbox
from agent.outbox.records import (
    RECORD_OVERHEAD_BYTES,
    MiB,
    OutboxCorrupt,
    OutboxError,
    OutboxFull,
    OutboxRecord,
    Priority,
    log_priority,
)
from agent.outbox.storage import SCHEMA_VERSION

__all__ = [
    "MiB",
    "RECORD_OVERHEAD_BYTES",
    "SCHEMA_VERSION",
    "Outbox",
    "OutboxCorrupt",
    "OutboxError",
    "OutboxFull",
    "OutboxRecord",
    "Priority",
    "log_priority",
]
