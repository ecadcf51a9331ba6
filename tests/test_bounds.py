"""broker/core/bounds.py: every helper x hostile values, and the iterative walks
over values nested far past any recursion limit."""
from __future__ import annotations

import pytest

from broker.core import bounds
from broker.core.bounds import INT64_MAX, INT64_MIN, BoundsError, TreeLimits, iter_strings, tree_problem

NAN, INF = float("nan"), float("inf")


def nested(depth: int, leaf="x", container: str = "map"):
    """A value of ``depth`` nested containers (maps ``{"a": ...}`` or lists) around ``leaf``."""
    value = leaf
    for _ in range(depth):
        value = {"a": value} if container == "map" else [value]
    return value


#: (value, int64 accepts it) - every hostile value the request matrices use, and more
VALUES = [
    (-1, True), (0, True), (1, True), (2**31, True), (INT64_MAX, True), (INT64_MIN, True),
    (2**63, False), (2**64, False), (-(2**63) - 1, False), (10**4000, False),
    (INF, False), (-INF, False), (NAN, False), (1.0, False), ("1", False), (None, False),
    ([], False), ({}, False), (True, False), (False, False), (b"1", False), (nested(5000, container="list"), False),
]


@pytest.mark.parametrize("value, ok", VALUES, ids=[bounds.shown(v) for v, _ in VALUES])
def test_int64_takes_exactly_the_ints_of_64_bits(value, ok):
    """Tried: each value as an int64 argument; only real ints in range pass, and the refusal names the range."""
    if ok:
        assert bounds.int64(value, "before_id") == value
    else:
        with pytest.raises(BoundsError, match="before_id must be an integer from"):
            bounds.int64(value, "before_id")


@pytest.mark.parametrize("value, ok", VALUES, ids=[bounds.shown(v) for v, _ in VALUES])
def test_limit_clamps_ints_and_refuses_the_rest(value, ok):
    """Tried: each value as a limit; an int64 is clamped into 1..1000 (-1 is 1 row, never "no limit"),
    None is the default, anything else is refused."""
    if value is None:
        assert bounds.limit(value, "limit", 50, 1, 1000) == 50
    elif ok:
        assert bounds.limit(value, "limit", 50, 1, 1000) == min(max(value, 1), 1000)
    else:
        with pytest.raises(BoundsError, match="limit must be an integer"):
            bounds.limit(value, "limit", 50, 1, 1000)


@pytest.mark.parametrize("value, ok", VALUES, ids=[bounds.shown(v) for v, _ in VALUES])
def test_epoch_takes_finite_numbers(value, ok):
    """Tried: each value as a time; ints in int64 and finite floats pass, nan/inf/strings/containers do not."""
    finite_float = type(value) is float and value == value and value not in (INF, -INF)
    if value is None:
        assert bounds.epoch(value, "since") is None
    elif ok or finite_float:
        assert bounds.epoch(value, "since") == float(value)
    else:
        with pytest.raises(BoundsError, match="since must be a number"):
            bounds.epoch(value, "since")


@pytest.mark.parametrize("value", ["", "ok", "x" * 200, "a\x00b", "\x00", "x" * 201, 1, None, [], b"x"])
def test_text_refuses_nul_length_and_non_strings(value):
    """Tried: NUL anywhere, 201 chars, non-strings; a plain string of up to 200 chars passes."""
    good = type(value) is str and "\x00" not in value and len(value) <= 200
    if good:
        assert bounds.text(value, "text") == value
    else:
        with pytest.raises(BoundsError, match="text must"):
            bounds.text(value, "text")


def test_text_list_and_one_of_and_boolean():
    """Tried: names lists that are too long, hold non-strings, empty strings or NUL; choices and booleans."""
    assert bounds.text_list(["a", "b"], "names", 16, 64) == ["a", "b"]
    for bad in (["a"] * 17, [1], [""], ["a\x00"], "a", {"a": 1}, ["x" * 65]):
        with pytest.raises(BoundsError, match=r"names"):
            bounds.text_list(bad, "names", 16, 64)
    assert bounds.one_of("asc", "order", ("asc", "desc")) == "asc"
    for bad in ("ASC;", None, ["asc"]):
        with pytest.raises(BoundsError, match="order must be one of"):
            bounds.one_of(bad, "order", ("asc", "desc"))
    assert bounds.boolean(False, "x") is False
    with pytest.raises(BoundsError):
        bounds.boolean(0, "x")


def test_error_messages_never_walk_a_deep_value():
    """Tried: a list nested 100,000 deep as a value: the message names its type (repr would raise RecursionError)."""
    deep = nested(100_000, container="list")
    with pytest.raises(BoundsError, match="not a list"):
        bounds.int64(deep, "id")
    assert bounds.shown(10**5000).endswith("-bit integer")


# -- stored data -----------------------------------------------------------------------
@pytest.mark.parametrize("container", ["map", "list"])
@pytest.mark.parametrize("depth", [1, 31, 32, 33, 100, 1000, 1001, 1023, 100_000])
def test_tree_problem_limits_nesting_without_recursion(depth, container):
    """Tried: maps and lists nested 1 .. 100,000 deep; up to 32 pass, deeper ones are refused by depth."""
    reason = tree_problem(nested(depth, container=container))
    assert (reason is None) == (depth <= TreeLimits.max_depth)
    if reason is not None:
        assert reason == "nested deeper than 32 levels"


@pytest.mark.parametrize(
    "value, why",
    [
        ({"n": 2**63}, "integer outside the 64-bit"),
        ({"n": -(2**63) - 1}, "integer outside the 64-bit"),
        ({"n": [2**64 - 1]}, "integer outside the 64-bit"),
        ({b"k": 1}, "map key is bytes"),
        ({"a": {1: 1}}, "map key is int"),
        ({"s": "x" * (TreeLimits.max_str_chars + 1)}, "a string of"),
        ({"b": b"x" * (TreeLimits.max_bytes_len + 1)}, "a bytes value of"),
        ({"s": ["x" * 1_000_000] * 9}, "bytes of strings and bytes"),
        ({"l": [0] * 100_001}, "more than 100000 items"),
        ({"t": (1, 2)}, "type tuple"),
        ({"o": object()}, "type object"),
    ],
)
def test_tree_problem_names_the_broken_limit(value, why):
    """Tried: every other limit once: int64 range, map key types, string/bytes/total size, item count, types."""
    assert why in tree_problem(value)


def test_tree_problem_accepts_what_agents_send():
    """A sysinfo-like record with every msgpack type passes."""
    value = {"hostname": "desk", "cpu": 12.5, "n": -(2**63), "m": 2**63 - 1, "ok": True, "none": None,
             "disks": [{"mount": "/", "free": 10}], "raw": b"\x00" * 100, "nan": NAN}
    assert tree_problem(value) is None


def test_iter_strings_is_bounded():
    """Tried: strings 100,000 levels down and behind 200,000 items: the walk stops, no RecursionError."""
    deep = nested(100_000, leaf="needle")
    assert list(iter_strings(deep)) == ["a"] * 32  # keys down to the depth bound, never the leaf
    assert "needle" in list(iter_strings(nested(10, leaf="needle")))
    wide = ["x"] * 200_000 + ["needle"]
    assert "needle" not in set(iter_strings(wide, max_items=100_000))
