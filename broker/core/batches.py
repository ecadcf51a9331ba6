"""BATCH bodies: many agent records (events, logs, security events) in one message.

The envelope (:mod:`broker.core.envelope`) frames the message; this module
owns what is inside a BATCH body: its layout, limits and checks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgpack

from broker.core.envelope import AGENT_TOPIC_ROOTS, BAD_MSG_ID, MAX_TOPIC_CHARS, ErrorCode, Kind, agent_topic, is_msg_id
from broker.core.errors import ProtocolError

#
# A BATCH body is ``[BATCH_VERSION, [record, ...]]``, each record
# ``[kind, name, msg_id, ts, body]``: kind EVENT, LOG or SECURITY; ``name``
# the topic after ``<event|log|security>.<sender>.`` ("" for none), so a
# batch can only carry the sender's own topics; ``ts`` when the record was
# made; ``body`` the record's own packed body, untouched. The broker's
# WELCOME says which batches it takes (:func:`batch_offer`); an agent whose
# broker offers none sends one record per message, as before batches.

#: Layout version of a BATCH body.
BATCH_VERSION = 1
#: Most records one BATCH may carry.
MAX_BATCH_RECORDS = 1000
#: Largest BATCH body, far below the sockets' 16 MiB ZMQ_MAXMSGSIZE.
MAX_BATCH_BYTES = 1024 * 1024
#: msgpack framing of a batch around its records (array, version, list header).
BATCH_FRAME_BYTES = 8
#: msgpack framing of one record besides its name, id and body bytes
#: (array, kind, string and bin headers, float).
BATCH_RECORD_FRAMING_BYTES = 24
#: Kinds a batch may carry, with the topic root of each (every one but FRAME).
BATCH_TOPIC_ROOTS: dict[Kind, str] = {kind: root for kind, root in AGENT_TOPIC_ROOTS.items() if kind is not Kind.FRAME}

_BATCH_FIELDS = 5


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """How many records and bytes one BATCH may hold."""

    max_records: int = MAX_BATCH_RECORDS
    max_bytes: int = MAX_BATCH_BYTES

    def fits(self, records: int, size: int) -> bool:
        """Whether ``records`` records packing to at most ``size`` bytes make a legal batch."""
        return records <= self.max_records and size <= self.max_bytes


@dataclass(slots=True)
class BatchRecord:
    """One record of a decoded batch, with its full topic."""

    kind: Kind
    topic: str
    msg_id: str
    ts: float
    body: bytes




def batch_offer(limits: BatchLimits = BatchLimits()) -> dict:
    """What a broker's WELCOME says about the batches it takes."""
    return {"version": BATCH_VERSION, "max_records": limits.max_records, "max_bytes": limits.max_bytes}


def batch_terms(welcome: dict) -> BatchLimits | None:
    """The batch limits a WELCOME offers, or None: send one record per message
    (a broker from before batches, or one offering another layout)."""
    offer = welcome.get("batch") if isinstance(welcome, dict) else None
    if not isinstance(offer, dict) or offer.get("version") != BATCH_VERSION:
        return None
    records, size = offer.get("max_records"), offer.get("max_bytes")
    if type(records) is not int or type(size) is not int or records < 2 or size < BATCH_FRAME_BYTES:
        return None
    return BatchLimits(min(records, MAX_BATCH_RECORDS), min(size, MAX_BATCH_BYTES))


def batch_record_bytes(name: str, msg_id: str, body: bytes) -> int:
    """At most how many bytes one record adds to a batch."""
    return len(name.encode()) + len(msg_id.encode()) + len(body) + BATCH_RECORD_FRAMING_BYTES


def pack_batch(records: list[tuple[Kind, str, str, float, bytes]]) -> bytes:
    """Pack ``(kind, name, msg_id, ts, body)`` records into one BATCH body."""
    return msgpack.packb([BATCH_VERSION, [[int(k), n, m, t, b] for k, n, m, t, b in records]], use_bin_type=True)


def check_batch(raw: bytes | memoryview, limits: BatchLimits = BatchLimits()) -> int:
    """Check a BATCH body's size, layout version and record count without
    unpacking its records; the count. Raises :class:`ProtocolError`
    (``TOO_LARGE``, ``BAD_VERSION`` or ``BAD_BODY``) saying what is wrong."""
    if len(raw) > limits.max_bytes:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"batch of {len(raw)} bytes exceeds {limits.max_bytes}; send smaller batches")
    reader = msgpack.Unpacker(raw=False, max_buffer_size=max(len(raw), 1), max_str_len=0, max_bin_len=0,
                              max_array_len=0, max_map_len=0, max_ext_len=0)
    try:
        reader.feed(raw)
        if reader.read_array_header() != 2:
            raise ValueError("not a 2-item array")
        version = reader.unpack()
        count = reader.read_array_header()
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(ErrorCode.BAD_BODY, f"batch is not [version, [records]]: {exc}") from exc
    if type(version) is not int or version != BATCH_VERSION:
        raise ProtocolError(ErrorCode.BAD_VERSION, f"batch layout {version!r}, expected {BATCH_VERSION}")
    if count > limits.max_records:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"batch of {count} records exceeds {limits.max_records}; send smaller batches")
    if count == 0:
        raise ProtocolError(ErrorCode.BAD_BODY, "empty batch")
    return count


def decode_batch(raw: bytes, sender: str, limits: BatchLimits = BatchLimits()) -> tuple[list[BatchRecord], list[str]]:
    """Unpack a BATCH body from ``sender``: its good records, and why each bad one was refused.

    A batch that breaks the limits or is not ``[version, [records]]`` raises
    :class:`ProtocolError` (nothing of it is taken); a malformed record is
    refused on its own, and the rest of the batch is still good.
    """
    check_batch(raw, limits)
    if not sender:
        raise ProtocolError(ErrorCode.BAD_BODY, "a batch needs the agent that sent it")
    try:
        _version, items = msgpack.unpackb(raw, raw=False, strict_map_key=True, max_str_len=limits.max_bytes,
                                          max_bin_len=limits.max_bytes, max_array_len=limits.max_records,
                                          max_map_len=0, max_ext_len=0)
    except Exception as exc:
        raise ProtocolError(ErrorCode.BAD_BODY, f"batch does not decode: {exc}") from exc
    if type(items) is not list:
        raise ProtocolError(ErrorCode.BAD_BODY, "batch records are not a list")
    owns = {int(kind): (kind, agent_topic(kind, sender, "")) for kind in BATCH_TOPIC_ROOTS}
    records: list[BatchRecord] = []
    refused: list[str] = []
    for i, item in enumerate(items):
        try:
            records.append(_batch_record(item, owns))
        except ValueError as exc:
            refused.append(f"record {i}: {exc}")
    return records, refused


def _batch_record(item: Any, owns: dict[int, tuple[Kind, str]]) -> BatchRecord:
    """One record of a batch; ``owns`` maps each batchable kind to the sender's own topic for it."""
    if type(item) is not list or len(item) != _BATCH_FIELDS:
        raise ValueError("not a [kind, name, msg_id, ts, body] array")
    kind, name, msg_id, ts, body = item
    known = owns.get(kind) if type(kind) is int else None
    if known is None:
        raise ValueError(f"kind {kind!r} cannot be batched (EVENT, LOG or SECURITY)")
    if not is_msg_id(msg_id):
        raise ValueError(BAD_MSG_ID)
    if type(name) is not str:
        raise ValueError(f"name must be a string (message {msg_id})")
    topic = f"{known[1]}.{name}" if name else known[1]
    if len(topic) > MAX_TOPIC_CHARS:
        raise ValueError(f"topic of {len(topic)} chars exceeds {MAX_TOPIC_CHARS} (message {msg_id})")
    if type(ts) not in (int, float) or not math.isfinite(ts):
        raise ValueError(f"timestamp must be a finite number (message {msg_id})")
    if type(body) is not bytes:
        raise ValueError(f"body must be bytes (message {msg_id})")
    return BatchRecord(known[0], topic, msg_id, float(ts), body)
