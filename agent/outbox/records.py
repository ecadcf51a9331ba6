"""What the outbox holds: record classes (:class:`Priority`), :class:`OutboxRecord`, the errors, and the
check that turns a caller's item into a row (:func:`check_item`).
"""
from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from pathlib import Path

from broker.core.envelope import BAD_MSG_ID, DEFAULT_MAX_BODY_BYTES, Kind, is_msg_id, new_id
from broker.core.errors import EmsError


MiB = 1024 * 1024
#: Per-record allowance for id, columns and index entries in ``max_bytes``.
RECORD_OVERHEAD_BYTES = 80


class OutboxError(EmsError):
    """The outbox file cannot be opened, read or written."""

    def __init__(self, message: str, path: Path | None = None):
        super().__init__(message)
        self.path = path


class OutboxCorrupt(OutboxError):
    """The outbox file is not a readable SQLite database (or not an outbox)."""


class OutboxFull(OutboxError):
    """Routine or important records refused: the outbox holds only security records.

    ``stored`` lists the ids of the records of the same call that were kept
    (security records are never refused); ``refused`` counts the others.
    """

    def __init__(self, message: str, path: Path, stored: list[str], refused: int):
        super().__init__(message, path)
        self.stored = stored
        self.refused = refused


class Priority(enum.IntEnum):
    """Record classes, in the order the full-outbox policy drops them."""

    ROUTINE = 0
    IMPORTANT = 1
    SECURITY = 2

    @property
    def label(self) -> str:
        return self.name.lower()


def log_priority(levelno: int) -> Priority:
    """The class of a log record: WARNING and above are important."""
    return Priority.IMPORTANT if levelno >= logging.WARNING else Priority.ROUTINE


DEFAULT_CLASS = {Kind.EVENT: Priority.ROUTINE, Kind.LOG: Priority.ROUTINE, Kind.SECURITY: Priority.SECURITY}
EVICTABLE = (Priority.ROUTINE, Priority.IMPORTANT)


@dataclass(slots=True)
class OutboxRecord:
    """One stored record, as :meth:`Outbox.due` hands it to the sender."""

    msg_id: str
    kind: Kind
    topic: str
    body: bytes
    priority: Priority
    created: float
    sent_at: float | None
    attempts: int


# row tuple positions (see check_item and storage.INSERT)
ROW_ID, ROW_BODY, ROW_PRIO, ROW_SIZE = 0, 3, 4, 6


def check_item(item: tuple, now: float) -> tuple:
    """Check one ``(kind, topic, body[, priority[, msg_id]])`` item; its row for INSERT (body in clear)."""
    kind, topic, body, *rest = item
    priority = rest[0] if rest else None
    msg_id = rest[1] if len(rest) > 1 else None
    if msg_id is not None and not is_msg_id(msg_id):
        raise ValueError(BAD_MSG_ID)
    default = DEFAULT_CLASS.get(kind)
    if default is None:
        raise ValueError(f"the outbox holds EVENT, LOG and SECURITY records, not {kind!r}")
    if priority is None:
        priority = default
    else:
        try:
            priority = Priority[priority.upper()] if type(priority) is str else Priority(priority)
        except (KeyError, ValueError):
            raise ValueError(f"unknown priority class {priority!r}") from None
        if (priority == Priority.SECURITY) != (default == Priority.SECURITY):
            raise ValueError("the security class is for Kind.SECURITY records, and only for them")
    if type(topic) is not str or not topic:
        raise ValueError("topic must be a non-empty string")
    if type(body) is not bytes:
        body = bytes(body)
    if len(body) > DEFAULT_MAX_BODY_BYTES:
        raise ValueError(f"body of {len(body)} bytes exceeds the bus limit of {DEFAULT_MAX_BODY_BYTES}")
    return (msg_id or new_id(), int(kind), topic, body, int(priority), now, len(body) + len(topic) + RECORD_OVERHEAD_BYTES)
