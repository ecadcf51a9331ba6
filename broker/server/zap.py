"""ZAP (ZeroMQ Authentication Protocol) decisions backed by the key registry.

The broker answers ZAP requests itself, in its own loop, from this pure
function. Only the CURVE mechanism is accepted (a NULL or PLAIN client
never gets this far: the broker socket is a Curve server). The user id of
an accepted connection is the peer's Z85 public key; the broker reads it
back from every frame it receives, so a peer can never speak under another
key.

- accepted and pending keys connect (pending peers can only wait);
- unknown keys connect unrecorded: ZAP cannot see the enrolment token or
  the claimed id (they come in HELLO), so the broker records a new key at
  its HELLO, where the per-source and total pending caps apply
  (``broker/server/enrolment.py``) and a token holder is admitted even when the
  caps are full;
- rejected and revoked keys are refused with 400.
"""
from __future__ import annotations

import zmq
import zmq.utils.z85

from broker.server.registry import ACCEPTED, PENDING, KeyRegistry

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_VERSION = b"1.0"


def decide(registry: KeyRegistry, frames: list[bytes]) -> tuple[list[bytes], str]:
    """Answer one ZAP request. Returns the reply frames and an outcome name
    (``accepted``, ``pending``, ``unknown``, ``denied``, ``malformed``)."""
    if len(frames) < 6:
        return [ZAP_VERSION, b"", b"400", b"malformed ZAP request", b"", b""], "malformed"
    version, request_id, _domain, _address, _identity, mechanism = frames[:6]
    credentials = frames[6:]

    def reply(code: bytes, text: str, user: str = "") -> list[bytes]:
        return [ZAP_VERSION, request_id, code, text.encode(), user.encode(), b""]

    if version != ZAP_VERSION:
        return reply(b"400", "unsupported ZAP version"), "malformed"
    if mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
        return reply(b"400", "CURVE required"), "denied"
    key = zmq.utils.z85.encode(credentials[0]).decode("ascii")
    record = registry.get(key)
    if record is None:  # recorded (or not) at its HELLO
        return reply(b"200", "unknown", key), "unknown"
    if record.state == ACCEPTED:
        return reply(b"200", "OK", key), "accepted"
    if record.state == PENDING:
        return reply(b"200", "pending", key), "pending"
    return reply(b"400", f"key {record.state}"), "denied"


def key_of(frames: list[bytes]) -> str:
    """The Z85 Curve key a ZAP request is about, or "" if it has none."""
    if len(frames) != 7 or len(frames[6]) != 32:
        return ""
    return zmq.utils.z85.encode(frames[6]).decode("ascii")
