"""Property tests of the wire decoder: hostile bytes only ever raise ProtocolError.

``decode_header`` and ``unpack_body`` are the broker's (and every peer's)
first contact with bytes off the wire. Whatever they are fed, they either
return a value or raise :class:`ProtocolError` with an :class:`ErrorCode`;
well-formed headers round-trip; msgpack "bombs" (lengths claiming
gigabytes, very deep nesting) are refused at once, without allocating or
recursing.
"""
from __future__ import annotations

import math
import time

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.core.envelope import (
    MAX_HEADER_BYTES,
    MAX_TOPIC_CHARS,
    PROTOCOL_VERSION,
    ErrorCode,
    Header,
    Kind,
    decode,
    decode_header,
    pack_body,
    pack_header,
    unpack_body,
)
from broker.core.errors import ProtocolError

FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

#: msgpack values of every type, nested a little
ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what msgpack can carry
scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=40),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=8),
        st.dictionaries(st.one_of(st.text(max_size=10), ints, st.binary(max_size=5)), inner, max_size=5),
    ),
    max_leaves=20,
)
#: 7-element arrays: the header's shape with arbitrary field types and values
header_like = st.lists(values, min_size=7, max_size=7)


def packed(value) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def only_protocol_errors(fn, raw: bytes, *args):
    """Call ``fn``; a ProtocolError must carry an ErrorCode, nothing else may escape."""
    try:
        return fn(raw, *args)
    except ProtocolError as exc:
        assert isinstance(exc.code, ErrorCode)
        return exc


# -- arbitrary input -----------------------------------------------------------
@FUZZ
@given(st.binary(max_size=2048))
def test_decode_header_arbitrary_bytes(raw):
    """Tried: random byte strings up to 2 KiB as a header frame. Expected: a
    Header or ProtocolError, nothing else."""
    result = only_protocol_errors(decode_header, raw)
    assert isinstance(result, (Header, ProtocolError))


@FUZZ
@given(st.one_of(values.map(packed), header_like.map(packed)))
def test_decode_header_arbitrary_msgpack(raw):
    """Tried: valid msgpack of every type, including 7-element arrays with
    fields of random types (NaN, bools, bytes, maps...). Expected: a Header
    whose fields have the documented types, or ProtocolError."""
    result = only_protocol_errors(decode_header, raw)
    if isinstance(result, Header):
        assert isinstance(result.kind, Kind)
        assert result.version == PROTOCOL_VERSION
        assert isinstance(result.topic, str) and len(result.topic) <= MAX_TOPIC_CHARS
        assert isinstance(result.msg_id, str) and 0 < len(result.msg_id) <= 64
        assert math.isfinite(result.ts)
        assert result.corr is None or isinstance(result.corr, str)
        assert result.expires is None or math.isfinite(result.expires)


@FUZZ
@given(st.binary(max_size=4096), st.integers(min_value=0, max_value=8192))
def test_unpack_body_arbitrary_bytes(raw, max_bytes):
    """Tried: random bytes with a random size limit. Expected: a value or
    ProtocolError (TOO_LARGE exactly when over the limit)."""
    result = only_protocol_errors(unpack_body, raw, max_bytes)
    if len(raw) > max_bytes:
        assert isinstance(result, ProtocolError) and result.code is ErrorCode.TOO_LARGE


@FUZZ
@given(values.map(packed))
def test_unpack_body_arbitrary_msgpack(raw):
    """Tried: valid msgpack of every type (maps with int/bytes keys too).
    Expected: the value back, or ProtocolError (BAD_BODY) for what the
    strict limits refuse (non-string map keys)."""
    result = only_protocol_errors(unpack_body, raw)
    if isinstance(result, ProtocolError):
        assert result.code is ErrorCode.BAD_BODY


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=5))
def test_decode_arbitrary_frame_lists(frames):
    """Tried: ``decode`` (broker -> peer) on any number of random frames.
    Expected: an Envelope only for exactly three frames, else ProtocolError."""
    result = only_protocol_errors(decode, frames)
    if len(frames) != 3:
        assert isinstance(result, ProtocolError) and result.code is ErrorCode.BAD_FRAMES


# -- round trips ---------------------------------------------------------------
ids = st.text(min_size=1, max_size=64)
finite = st.floats(allow_nan=False, allow_infinity=False)


@FUZZ
@given(
    kind=st.sampled_from(Kind),
    topic=st.text(max_size=MAX_TOPIC_CHARS),
    msg_id=ids,
    corr=st.none() | ids,
    expires=st.none() | finite,
    ts=finite,
)
def test_header_round_trip(kind, topic, msg_id, corr, expires, ts):
    """Tried: pack_header with any valid field values. Expected: decode_header
    gives them back unchanged, unless the packed header is over
    MAX_HEADER_BYTES (long multi-byte text), which is refused as TOO_LARGE."""
    raw = pack_header(kind, topic, msg_id, corr, expires, ts)
    if len(raw) > MAX_HEADER_BYTES:
        with pytest.raises(ProtocolError) as info:
            decode_header(raw)
        assert info.value.code is ErrorCode.TOO_LARGE
        return
    assert decode_header(raw) == Header(kind, topic, msg_id, ts, corr, expires, PROTOCOL_VERSION)


json_like = st.recursive(
    st.none() | st.booleans() | ints | finite | st.text(max_size=40) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)


@FUZZ
@given(json_like)
def test_body_round_trip(value):
    """Tried: pack_body of maps (string keys), lists and scalars including
    bytes. Expected: unpack_body gives the same value back."""
    assert unpack_body(pack_body(value)) == value


# -- bombs ---------------------------------------------------------------------
BOMBS = {
    "str32-4GB": b"\xdb\xff\xff\xff\xff",
    "bin32-4GB": b"\xc6\xff\xff\xff\xff",
    "ext32-4GB": b"\xc9\xff\xff\xff\xff\x01",
    "array32-4G": b"\xdd\xff\xff\xff\xff",
    "map32-4G": b"\xdf\xff\xff\xff\xff",
    "array32-1M-empty": b"\xdd\x00\x0f\x42\x40",
    "array16-in-array32": b"\xdd\xff\xff\xff\xff" + b"\xdc\xff\xff" * 10,
    "nested-array-100k": b"\x91" * 100_000,
    "nested-map-100k": b"\x81\xa1k" * 100_000,
    "nested-array32-10k": b"\xdd\x00\x00\x00\x01" * 10_000,
    "header-then-str-bomb": b"\x97\x01\x04\xdb\xff\xff\xff\xff",
}


@pytest.mark.parametrize("bomb", BOMBS.values(), ids=BOMBS.keys())
@pytest.mark.parametrize("decoder", [decode_header, unpack_body], ids=["decode_header", "unpack_body"])
def test_msgpack_bombs_are_refused_quickly(decoder, bomb):
    """Tried: frames whose msgpack length prefixes claim gigabytes, or that
    nest 10,000-100,000 levels deep. Expected: ProtocolError within 0.5 s
    (no allocation of the claimed size, no recursion)."""
    started = time.perf_counter()
    with pytest.raises(ProtocolError) as info:
        decoder(bomb)
    assert time.perf_counter() - started < 0.5
    assert info.value.code in (ErrorCode.BAD_HEADER, ErrorCode.BAD_BODY, ErrorCode.TOO_LARGE)
