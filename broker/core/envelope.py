"""The EMS wire format: the one module that packs and unpacks bus frames.

Every peer talks to the broker over a DEALER socket; the broker has one
ROUTER. A message is two frames, a small msgpack *header* and an opaque
*body*::

    peer -> broker:   [header, body]
    broker -> peer:   [sender, header, body]

``sender`` is stamped by the broker from the peer's authenticated CurveZMQ
key (empty for messages the broker itself originates); nothing inside a
header or body is trusted to say who sent it. The broker routes on the
header alone and leaves bodies it does not handle itself unread.

The header is a fixed msgpack array (cheaper than a map)::

    [version, kind, topic, msg_id, ts, corr, expires]

Decoding checks frame count, size and version before unpacking anything,
with explicit msgpack limits, so that a malformed or hostile frame becomes a
:class:`~broker.core.errors.ProtocolError` carrying an :class:`ErrorCode`, never
an unhandled exception.

One body layout is defined here too: a ``BATCH`` carries many of an agent's
durable records in one message (:func:`pack_batch`, :func:`check_batch`,
:func:`decode_batch`), so that the outbox -> store path pays the per-message
cost once per batch instead of once per record.
"""
from __future__ import annotations

import enum
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import msgpack

from broker.core.errors import ProtocolError
from broker.core.vocabulary import pending_key_advice

PROTOCOL_VERSION = 1

#: Header frames are small; anything larger is refused before unpacking.
MAX_HEADER_BYTES = 1024
#: Longest topic string (prefix routing keys stay short).
MAX_TOPIC_CHARS = 200
#: a message id is a non-empty string of at most this many characters
MAX_MSG_ID_CHARS = 64
BAD_MSG_ID = f"message id must be a string of 1-{MAX_MSG_ID_CHARS} chars"
#: Default ceiling for a body the broker or a peer will unpack.
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024

_HEADER_FIELDS = 7


class Kind(enum.IntEnum):
    """Message kinds. The broker's dispatch table is keyed on these."""

    HELLO = 1  # peer -> broker: "I am here" (+ agent facts, enrolment token)
    WELCOME = 2  # broker -> peer: your identity, role, heartbeat settings
    HEARTBEAT = 3  # both ways
    EVENT = 4  # agent -> subscribers/store; topic event.<agent>.<name>
    LOG = 5  # agent log record; topic log.<agent>
    SECURITY = 6  # security event; topic security.<origin>
    COMMAND = 7  # operator -> agent (via the broker's durable queue)
    COMMAND_STATUS = 8  # status change of a command (queued, sent, ...)
    RESULT = 9  # agent -> operator: outcome of a command
    SUBSCRIBE = 10  # peer -> broker: topic prefixes
    UNSUBSCRIBE = 11
    REQUEST = 12  # peer -> broker service call (status, keys, ...)
    REPLY = 13  # broker -> peer: answer to a REQUEST
    ERROR = 14  # broker -> peer: error code for a refused message
    PRESENCE = 15  # broker -> subscribers: agent online/offline
    ACK = 16  # store -> agent: these message ids are committed
    FRAME = 17  # screen frames (live view), best effort
    BATCH = 18  # agent -> store: many EVENT/LOG/SECURITY records in one message (see pack_batch)


#: The topic root each kind a peer publishes under its own name travels
#: under: ``<root>.<sender client id>[.<name>]`` (see :func:`agent_topic`).
#: The broker refuses these kinds under any other sender's namespace.
AGENT_TOPIC_ROOTS: dict[Kind, str] = {
    Kind.EVENT: "event",
    Kind.LOG: "log",
    Kind.SECURITY: "security",
    Kind.FRAME: "frame",
}


class ErrorCode(enum.IntEnum):
    """Error codes that cross the wire in ERROR bodies."""

    BAD_FRAMES = 1
    BAD_VERSION = 2
    BAD_HEADER = 3
    UNKNOWN_KIND = 4
    TOO_LARGE = 5
    FORBIDDEN = 6
    NOT_ENROLLED = 7
    REVOKED = 8
    HELLO_REQUIRED = 9
    UNKNOWN_TARGET = 10
    EXPIRED = 11
    BAD_TOPIC = 12
    BAD_REQUEST = 13
    BAD_BODY = 14
    THROTTLED = 15
    UNAVAILABLE = 16
    INTERNAL = 17
    RATE_LIMITED = 18  # over the per-agent rate limit; the body says retry_after_s
    REASON_REQUIRED = 19  # an access command without a usable reason (broker.core.vocabulary.ACCESS_COMMANDS)


ERROR_TEXT: dict[ErrorCode, str] = {
    ErrorCode.BAD_FRAMES: "wrong number of frames",
    ErrorCode.BAD_VERSION: "unsupported protocol version",
    ErrorCode.BAD_HEADER: "header is not a valid EMS header",
    ErrorCode.UNKNOWN_KIND: "unknown message kind",
    ErrorCode.TOO_LARGE: "message too large",
    ErrorCode.FORBIDDEN: "your role may not send this",
    ErrorCode.NOT_ENROLLED: f"key is pending: {pending_key_advice()}",
    ErrorCode.REVOKED: "key has been revoked or rejected",
    ErrorCode.HELLO_REQUIRED: "say HELLO first (the broker may have restarted)",
    ErrorCode.UNKNOWN_TARGET: "no such agent",
    ErrorCode.EXPIRED: "command expired",
    ErrorCode.BAD_TOPIC: "topic does not belong to the sender",
    ErrorCode.BAD_REQUEST: "malformed request",
    ErrorCode.BAD_BODY: "body is not valid msgpack of the expected shape",
    ErrorCode.THROTTLED: "sending too fast; slow down",
    ErrorCode.UNAVAILABLE: "service unavailable",
    ErrorCode.INTERNAL: "internal error",
    ErrorCode.RATE_LIMITED: "over this agent's rate limit: messages were dropped; publish again after retry_after_s",
    ErrorCode.REASON_REQUIRED: "this command looks at or changes the user's computer: give a reason",
}


@dataclass(slots=True)
class Header:
    """The routing header of one message."""

    kind: Kind
    topic: str = ""
    msg_id: str = ""
    ts: float = 0.0
    corr: str | None = None
    expires: float | None = None
    version: int = PROTOCOL_VERSION


@dataclass(slots=True)
class Envelope:
    """A received message: header, raw body and the broker-stamped sender."""

    header: Header
    body: bytes
    sender: str = ""

    @property
    def kind(self) -> Kind:
        return self.header.kind

    @property
    def topic(self) -> str:
        return self.header.topic

    @property
    def msg_id(self) -> str:
        return self.header.msg_id

    @property
    def corr(self) -> str | None:
        return self.header.corr

    def data(self, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Any:
        """Unpack the body with the same defensive limits as headers."""
        return unpack_body(self.body, max_bytes)


def is_msg_id(value: Any) -> bool:
    """Whether ``value`` is a well-formed message id (see :data:`MAX_MSG_ID_CHARS`)."""
    return type(value) is str and 0 < len(value) <= MAX_MSG_ID_CHARS


def new_id() -> str:
    """A fresh message or command id: 24 hex chars, time-ordered prefix."""
    return f"{time.time_ns() // 1000:014x}{os.urandom(5).hex()}"


_KINDS = {k.value: k for k in Kind}

_HEADER_UNPACK_LIMITS = dict(
    max_str_len=MAX_HEADER_BYTES,
    max_bin_len=0,
    max_array_len=_HEADER_FIELDS,
    max_map_len=0,
    max_ext_len=0,
)


def pack_header(
    kind: Kind,
    topic: str = "",
    msg_id: str | None = None,
    corr: str | None = None,
    expires: float | None = None,
    ts: float | None = None,
) -> bytes:
    """Pack a header frame. ``msg_id`` and ``ts`` default to fresh values."""
    return msgpack.packb(
        [
            PROTOCOL_VERSION,
            int(kind),
            topic,
            msg_id or new_id(),
            time.time() if ts is None else ts,
            corr,
            expires,
        ]
    )


def pack_body(data: Any) -> bytes:
    """Pack a body. Bodies are msgpack maps, lists or scalars (bin allowed)."""
    return msgpack.packb(data, use_bin_type=True)


def unpack_body(raw: bytes, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Any:
    """Unpack a body; oversize or malformed input raises ProtocolError."""
    if len(raw) > max_bytes:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"body of {len(raw)} bytes exceeds {max_bytes}")
    try:
        return msgpack.unpackb(
            raw,
            raw=False,
            strict_map_key=True,
            max_str_len=max_bytes,
            max_bin_len=max_bytes,
            max_array_len=min(max_bytes, 1_000_000),
            max_map_len=min(max_bytes, 1_000_000),
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(ErrorCode.BAD_BODY, f"body does not decode: {exc}") from exc


def decode_header(raw: bytes) -> Header:
    """Check and unpack a header frame.

    Raises :class:`ProtocolError` with the matching :class:`ErrorCode` for
    anything that is not a well-formed header of this protocol version.
    """
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"header of {len(raw)} bytes")
    try:
        fields = msgpack.unpackb(raw, raw=False, strict_map_key=True, **_HEADER_UNPACK_LIMITS)
    except Exception as exc:
        raise ProtocolError(ErrorCode.BAD_HEADER, f"header does not decode: {exc}") from exc
    if type(fields) is not list or len(fields) != _HEADER_FIELDS:
        raise ProtocolError(ErrorCode.BAD_HEADER, "header is not a 7-field array")
    version, kind, topic, msg_id, ts, corr, expires = fields
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ProtocolError(ErrorCode.BAD_VERSION, f"protocol version {version!r}, expected {PROTOCOL_VERSION}")
    known = _KINDS.get(kind) if type(kind) is int else None
    if known is None:
        if type(kind) is not int:
            raise ProtocolError(ErrorCode.BAD_HEADER, "kind is not an integer")
        raise ProtocolError(ErrorCode.UNKNOWN_KIND, f"unknown kind {kind}")
    kind = known
    if type(topic) is not str or len(topic) > MAX_TOPIC_CHARS:
        raise ProtocolError(ErrorCode.BAD_HEADER, "topic must be a short string")
    if not is_msg_id(msg_id):
        raise ProtocolError(ErrorCode.BAD_HEADER, BAD_MSG_ID)
    if type(ts) not in (int, float) or not math.isfinite(ts):
        raise ProtocolError(ErrorCode.BAD_HEADER, "timestamp must be a finite number")
    if corr is not None and (type(corr) is not str or len(corr) > MAX_MSG_ID_CHARS):
        raise ProtocolError(ErrorCode.BAD_HEADER, "correlation id must be a short string")
    if expires is not None and (type(expires) not in (int, float) or not math.isfinite(expires)):
        raise ProtocolError(ErrorCode.BAD_HEADER, "expiry must be a finite number")
    return Header(kind, topic, msg_id, float(ts), corr, expires, version)


def decode(frames: list[bytes]) -> Envelope:
    """Decode a broker -> peer message ``[sender, header, body]``."""
    if len(frames) != 3:
        raise ProtocolError(ErrorCode.BAD_FRAMES, f"{len(frames)} frames, expected 3")
    sender, header, body = frames
    return Envelope(decode_header(header), body, sender.decode("utf-8", "replace"))


def error_body(code: ErrorCode, detail: str = "", retry_after_s: float | None = None) -> bytes:
    """The body of an ERROR message: code, standard text and a detail
    (and ``retry_after_s``, seconds to wait, for ``RATE_LIMITED``)."""
    body = {"code": int(code), "error": ERROR_TEXT[code], "detail": detail}
    if retry_after_s is not None:
        body["retry_after_s"] = round(retry_after_s, 3)
    return pack_body(body)


# -- credit: how much of what the broker sent a peer has taken ------------------
#
# The broker keeps a byte budget per receiving peer (broker/server/flow.py). A peer
# tells it how far it has read in its HEARTBEAT body: ``{"rx": n}``, ``n``
# the bytes of every ``[sender, header, body]`` it has received since the
# broker's last WELCOME (the WELCOME itself included). The WELCOME says how
# often to tell (:func:`flow_offer`): a peer that reads sends such a
# heartbeat every ``credit_every_bytes`` received, besides its regular ones.
# A HEARTBEAT with an empty body (a peer from before credits) says nothing
# about reading; the broker then takes it as a sign of life that has read
# everything sent so far.

#: HEARTBEAT body field: bytes received since the last WELCOME
CREDIT_FIELD = "rx"
#: a credit body is tiny; a larger HEARTBEAT body is not read
MAX_CREDIT_BODY_BYTES = 64


def credit_body(received: int) -> bytes:
    """A HEARTBEAT body reporting ``received`` bytes taken since the last WELCOME."""
    return pack_body({CREDIT_FIELD: received})


def credit_of(raw: bytes) -> int | None:
    """The byte count a HEARTBEAT body reports, or None if it reports none
    (empty, malformed, oversized, not a non-negative 64-bit integer)."""
    if not raw or len(raw) > MAX_CREDIT_BODY_BYTES:
        return None
    try:
        data = unpack_body(raw, MAX_CREDIT_BODY_BYTES)
    except ProtocolError:
        return None
    value = data.get(CREDIT_FIELD) if type(data) is dict else None
    return value if type(value) is int and 0 <= value < 2**63 else None


def message_bytes(sender, header, body) -> int:
    """The size a credit counts for one broker -> peer message (frames are bytes or zmq.Frame)."""
    return len(sender) + len(header) + len(body)


def flow_offer(budget_bytes: int, credit_every_bytes: int) -> dict:
    """What a broker's WELCOME says about its per-peer byte budget (``flow``)."""
    return {"budget_bytes": budget_bytes, "credit_every_bytes": credit_every_bytes}


def flow_terms(welcome: dict) -> int | None:
    """How many received bytes between credit reports a WELCOME asks for;
    None if it asks for none (a broker from before credits)."""
    offer = welcome.get("flow") if isinstance(welcome, dict) else None
    every = offer.get("credit_every_bytes") if isinstance(offer, dict) else None
    return every if type(every) is int and every > 0 else None

def agent_topic(kind: Kind, client_id: str, name: str) -> str:
    """The topic ``client_id``'s ``kind`` (one of :data:`AGENT_TOPIC_ROOTS`) named ``name``
    travels under, published or batched: ``<root>.<client>[.<name>]``."""
    root = AGENT_TOPIC_ROOTS[kind]
    return f"{root}.{client_id}.{name}" if name else f"{root}.{client_id}"
