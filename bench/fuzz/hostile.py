"""Hostile values, and one generator of them for two fuzzing engines.

The generators are written once against a :class:`Chooser` (``int_in``,
``pick``, ``text``, ``blob``, ``real``); :class:`DrawChooser` backs it with a
hypothesis ``draw`` (the suite: shrinking, readable examples) and
:class:`ProviderChooser` with atheris' ``FuzzedDataProvider`` (``make
chaos``: coverage-guided). Values are what msgpack can carry, plus three
markers with short reprs that :func:`materialise` expands just before
packing: :class:`Deep` (nesting), :class:`Wide` (long arrays) and
:class:`Long` (long strings), so a failing example prints in one line.
Strings of the form ``{agent}`` are names the target fills in
(:func:`materialise` ``names``), so bodies can aim at real peers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

#: the integers msgpack carries
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
INTS = (0, -1, 1, 7, 2**31 - 1, 2**31, -(2**31) - 1, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), INT_MAX)
FLOATS = (math.nan, math.inf, -math.inf, 0.0, -0.0, 0.5, 1e19, 1e308, -1e308, 5e-324)
#: names a target substitutes (see ``materialise``)
NAMES = ("{me}", "{agent}", "{viewer}", "{operator}", "{admin}", "{service}", "{pending}")
STRINGS = (
    "", " ", "\x00", "a\x00b", "%", "_", "\\", "%_\\", "'", "\"); DROP TABLE clients; --", "é漢😀", "\u202e",
    "../../etc/passwd", "NaN", "-1", "9223372036854775808", "asc", "desc", "x" * 65, "x" * 201,
    "fuzz-enrol-token", "broker", "persister", "store", "online", "offline", "queued", "done", "read", "in", "out",
    "view", "export", "captures", "jpeg", *NAMES,
)
#: body fields the broker and the store's queries read
REQUEST_FIELDS = (
    "op", "args", "target", "name", "prefixes", "token", "client_id", "label", "hostname", "version", "os", "user",
    "provides", "batches", "status", "error", "ok", "output", "ids", "kind", "since", "until", "limit", "before_id",
    "order", "text", "include_deleted", "thumbnails", "id", "purpose", "group_by", "public_key", "role", "reason",
    "upto",
)
#: fields of stored records (and some nothing reads)
RECORD_FIELDS = (
    "names", "event", "severity", "origin", "detail", "operator", "action", "state", "info", "message",
    "level", "logger", "image", "width", "height", "quality", "format", "body", "direction", "ref", "deleted",
    "path", "size", "cpu_percent", "memory_percent", "disk_percent", "os_version", "logged_in_user", "created",
    "sender", "result", "value", "via", "caller", "ts", "unknown", "",
)
FIELDS = REQUEST_FIELDS + RECORD_FIELDS
#: history kinds, stats groupings and event routes the store knows, and junk
KINDS = ("clients", "sessions", "captures", "messages", "fileops", "logs", "security", "activity", "audit", "metrics",
         "commands", "kind", "", "nope")
GROUPS = ("kind", "log_level", "security_event", "audit_action", "command_status", "activity_name", "client_os", "x")
EVENT_NAMES = ("sysinfo", "capture", "chat", "fileop", "activity", "x", "", "sysinfo.x", "a" * 190)
#: values worth trying for the fields the store and the broker interpret
BIG_INTS = (0, -1, 1, 1000, 1001, 2**31, 2**63 - 1, 2**63, -(2**63), INT_MAX, math.inf, math.nan, -math.inf, 1.5, True)
FIELD_VALUES: dict[str, tuple] = {
    "kind": KINDS, "group_by": GROUPS, "order": ("asc", "desc", "ASC", "Desc", "", "random()"),
    "limit": BIG_INTS, "before_id": (*BIG_INTS, "", "zz", "{agent}"), "since": BIG_INTS, "until": BIG_INTS,
    "id": BIG_INTS, "upto": BIG_INTS, "size": BIG_INTS, "width": BIG_INTS, "height": BIG_INTS, "quality": BIG_INTS,
    "created": BIG_INTS, "cpu_percent": BIG_INTS,
    "text": ("a", "A", "\x00", "\x00\x00", "%", "_", "\\", "é", "zz", "x" * 300),
    "include_deleted": (True, False, 1, 0, "yes", None), "thumbnails": (True, False, 1, "yes"),
    "purpose": ("view", "export", "x", ""), "status": ("queued", "sent", "delivered", "done", "failed", "expired",
                                                      "read", "x", ""),
    "state": ("online", "offline", "x"), "direction": ("in", "out", "x"), "ok": (True, False, 1, None, "x"),
    "deleted": (True, False, 1, None), "ref": ("m1", "m2", "nope", ""), "client_id": ("{agent}", "agent-1", "", "broker"),
    "target": ("{agent}", "agent-1", "", "nope"), "role": ("viewer", "operator", "admin", "service", "agent", "x"),
    "event": ("login", "x", ""), "operator": ("op-1", "", "{admin}"), "action": ("command", "capture.view", ""),
}
DEPTHS = (2, 100, 500, 998, 999, 1000, 1001, 1023)
WIDTHS = (1000, 100_000, 1_000_001)
LENGTHS = (201, 4096, 1024 * 1024 + 1)


@dataclass(frozen=True)
class Deep:
    """``depth`` nested arrays (or maps keyed ``"a"``) around ``leaf``."""

    depth: int
    maps: bool = False
    leaf: Any = None


@dataclass(frozen=True)
class Wide:
    """An array of ``n`` zeros."""

    n: int


@dataclass(frozen=True)
class Long:
    """A string of ``n`` copies of ``char``."""

    n: int
    char: str = "x"


def materialise(value: Any, names: dict[str, str] | None = None) -> Any:
    """``value`` with markers expanded and ``{name}`` strings filled in (iterative for Deep)."""
    names = names or {}
    if isinstance(value, Deep):
        out = materialise(value.leaf, names)
        for _ in range(value.depth):
            out = {"a": out} if value.maps else [out]
        return out
    if isinstance(value, Wide):
        return [0] * value.n
    if isinstance(value, Long):
        return value.char * value.n
    if isinstance(value, str):
        if "{" in value:
            for name, real in names.items():
                value = value.replace(name, real)
        return value
    if isinstance(value, list):
        return [materialise(v, names) for v in value]
    if isinstance(value, dict):
        return {materialise(k, names): materialise(v, names) for k, v in value.items()}
    return value


class Chooser(Protocol):
    """Where a generator's choices come from."""

    def int_in(self, lo: int, hi: int) -> int: ...
    def text(self, max_len: int) -> str: ...
    def blob(self, max_len: int) -> bytes: ...
    def real(self) -> float: ...


def pick(ch: Chooser, seq: Sequence) -> Any:
    return seq[ch.int_in(0, len(seq) - 1)]


class DrawChooser:
    """Choices from a hypothesis ``draw`` (inside ``st.composite``)."""

    def __init__(self, draw):
        from hypothesis import strategies as st

        self.draw, self.st = draw, st

    def int_in(self, lo: int, hi: int) -> int:
        return self.draw(self.st.integers(lo, hi))

    def text(self, max_len: int) -> str:
        return self.draw(self.st.text(max_size=max_len))

    def blob(self, max_len: int) -> bytes:
        return self.draw(self.st.binary(max_size=max_len))

    def real(self) -> float:
        return self.draw(self.st.floats())


class ProviderChooser:
    """Choices from atheris' ``FuzzedDataProvider`` (defaults once the input is used up)."""

    def __init__(self, fdp):
        self.fdp = fdp

    def int_in(self, lo: int, hi: int) -> int:
        return self.fdp.ConsumeIntInRange(lo, hi)

    def text(self, max_len: int) -> str:
        return self.fdp.ConsumeUnicodeNoSurrogates(self.fdp.ConsumeIntInRange(0, max_len))

    def blob(self, max_len: int) -> bytes:
        return self.fdp.ConsumeBytes(self.fdp.ConsumeIntInRange(0, max_len))

    def real(self) -> float:
        return self.fdp.ConsumeFloat()


# -- generators -------------------------------------------------------------------
def scalar(ch: Chooser) -> Any:
    """A scalar from the vocabulary, or a random one of any msgpack type."""
    way = ch.int_in(0, 12)
    if way <= 2:
        return pick(ch, INTS)
    if way == 3:
        return ch.int_in(INT_MIN, INT_MAX)
    if way == 4:
        return pick(ch, FLOATS)
    if way == 5:
        return ch.real()
    if way <= 8:
        return pick(ch, STRINGS)
    if way == 9:
        return ch.text(24)
    if way == 10:
        return ch.blob(24)
    if way == 11:
        return pick(ch, (None, True, False))
    return big(ch)


def big(ch: Chooser) -> Any:
    """A deep, wide or long value (rarely: they are slow to pack)."""
    way = ch.int_in(0, 2)
    if way == 0:
        return Deep(pick(ch, DEPTHS), bool(ch.int_in(0, 1)), pick(ch, ("x", None, 1)))
    if way == 1:
        return Wide(pick(ch, WIDTHS))
    return Long(pick(ch, LENGTHS), pick(ch, ("x", "\x00", "é")))


def value(ch: Chooser, depth: int = 0) -> Any:
    """Any value: a scalar, or a short list or map of values (3 levels at most)."""
    way = ch.int_in(0, 5) if depth < 3 else 0
    if way <= 3:
        return scalar(ch)
    if way == 4:
        return [value(ch, depth + 1) for _ in range(ch.int_in(0, 4))]
    return mapping(ch, depth + 1)


def field_value(ch: Chooser, field: str, depth: int = 0) -> Any:
    """A value for ``field``: mostly one worth trying there, else anything."""
    known = FIELD_VALUES.get(field)
    return pick(ch, known) if known and ch.int_in(0, 2) else value(ch, depth)


def key(ch: Chooser) -> str:
    return pick(ch, FIELDS) if ch.int_in(0, 5) else ch.text(8)


def mapping(ch: Chooser, depth: int = 0, fields: Sequence[str] = (), size: int = 5) -> dict:
    """A map whose keys are body fields (``fields`` first), with hostile values."""
    out: dict = {}
    for _ in range(ch.int_in(0, size)):
        k = pick(ch, fields) if fields and ch.int_in(0, 2) else key(ch)
        out[k] = field_value(ch, k, depth)
    return out
