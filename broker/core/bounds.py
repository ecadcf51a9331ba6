"""Checks for values that arrive from peers: request arguments and stored data.

The ground floor every component validates its boundary with. Each helper
takes the value and its argument name, returns the value in the form the
caller may use (an ``int`` in int64 range, a limit clamped into its range, a
finite ``float``, a plain string) or raises :class:`BoundsError` (a
``ValueError``) whose message says what is accepted. Nothing here converts
loosely: ``"1"``, ``True``, ``1.0`` are not integers, ``nan`` and ``inf`` are
not times, and a string with a NUL is not a plain string (SQLite's ``LIKE``
stops reading a pattern at the first NUL, so ``"\\0"`` would match every row).

:func:`tree_problem` walks a decoded msgpack value without recursion and
says what about it breaks the limits data must keep to before it is stored
(nesting depth, sizes, integer range, map key types).

Imports nothing of the components.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

from broker.core.errors import EmsError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class BoundsError(EmsError, ValueError):
    """A value outside what an argument or a stored record may be."""


def shown(value: Any) -> str:
    """``value`` for an error message: short, and never a walk of a container
    (``repr`` of a value nested 1,000 deep raises RecursionError)."""
    if type(value) not in (str, bytes, int, float, bool, type(None)):
        return f"a {type(value).__name__}"
    if type(value) is int and value.bit_length() > 128:
        return f"a {value.bit_length()}-bit integer"
    text = repr(value[:40] if type(value) in (str, bytes) else value)
    return text if len(text) <= 40 else text[:37] + "..."


def int64(value: Any, name: str, lo: int = INT64_MIN, hi: int = INT64_MAX) -> int:
    """``value`` if it is an ``int`` (not a bool) from ``lo`` to ``hi`` (int64 by default)."""
    if type(value) is not int or not lo <= value <= hi:
        raise BoundsError(f"{name} must be an integer from {lo} to {hi}, not {shown(value)}")
    return value


def limit(value: Any, name: str, default: int, lo: int, hi: int) -> int:
    """A row count: ``default`` for None, else an int64 clamped into ``lo..hi``.

    Clamped, not refused: ``limit=-1`` (no limit to SQLite) reads ``lo``
    rows and ``limit=10**9`` reads ``hi``; a non-integer is refused.
    """
    if value is None:
        return default
    return min(max(int64(value, name), lo), hi)


def finite(value: Any, name: str, what: str = "a number") -> float:
    """``value`` as a float if it is a finite int or float (ints within int64)."""
    if type(value) is int and INT64_MIN <= value <= INT64_MAX:
        return float(value)
    if type(value) is float and math.isfinite(value):
        return value
    raise BoundsError(f"{name} must be {what}, not {shown(value)}")


def epoch(value: Any, name: str) -> float | None:
    """A time in epoch seconds (finite), or None."""
    return None if value is None else finite(value, name, "a number (epoch seconds)")


def text(value: Any, name: str, max_chars: int = 200, empty: bool = True) -> str:
    """A plain string: ``str``, no NUL, at most ``max_chars`` (non-empty unless ``empty``)."""
    if type(value) is not str:
        raise BoundsError(f"{name} must be a string, not {shown(value)}")
    if "\x00" in value:
        raise BoundsError(f"{name} must not contain a NUL character")
    if len(value) > max_chars or (not empty and not value):
        raise BoundsError(f"{name} must be {'a' if empty else 'a non-empty'} string of at most {max_chars} characters")
    return value


def optional_text(value: Any, name: str, max_chars: int = 200) -> str | None:
    """:func:`text`, or None for None."""
    return None if value is None else text(value, name, max_chars)


def one_of(value: Any, name: str, choices: Iterable[str]) -> str:
    """``value`` if it is one of the strings ``choices``."""
    choices = tuple(choices)
    if type(value) is not str or value not in choices:
        raise BoundsError(f"{name} must be one of {', '.join(choices)}, not {shown(value)}")
    return value


def boolean(value: Any, name: str) -> bool:
    """``value`` if it is a bool (not 0 or 1)."""
    if type(value) is not bool:
        raise BoundsError(f"{name} must be true or false, not {shown(value)}")
    return value


def text_list(value: Any, name: str, max_items: int, max_chars: int) -> list[str]:
    """A list of at most ``max_items`` non-empty plain strings of ``max_chars``."""
    if type(value) is not list or len(value) > max_items:
        raise BoundsError(f"{name} must be a list of at most {max_items} strings")
    return [text(v, f"{name}[{i}]", max_chars, empty=False) for i, v in enumerate(value)]


# -- stored data ---------------------------------------------------------------------
@dataclass(frozen=True)
class TreeLimits:
    """What a decoded value may hold before it is stored.

    ``max_depth`` 32: the deepest record an EMS agent sends is 4 levels
    (sysinfo's disks); 32 leaves room for any honest structure while every
    reader that walks stored values recursively (``json.dumps`` in the CLI
    and the admin API, Qt models, MySQL's JSON, capped at 100) stays far
    inside its limits, where msgpack alone allows 1,024.
    """

    max_depth: int = 32
    #: containers and scalars in one value
    max_items: int = 100_000
    #: sum of every string's and bytes' length (a capture's image included)
    max_total_bytes: int = 8 * 1024 * 1024
    max_str_chars: int = 1024 * 1024
    max_bytes_len: int = 8 * 1024 * 1024


_PLAIN = frozenset({float, bool, type(None)})


def tree_problem(value: Any, limits: TreeLimits = TreeLimits()) -> str | None:
    """Why ``value`` (a decoded msgpack value) may not be stored, or None.

    Iterative (an explicit stack of containers, never recursion), and it
    stops at the first problem, so a hostile value costs at most about
    ``max_items`` steps. Integers must fit int64; map keys must be strings;
    only msgpack's types are accepted (dict, list, str, bytes, int, float,
    bool, None). The top-level value is at depth 1.
    """
    stack: list[tuple[Any, int]] = [([value], 0)]  # a wrapper, so the top value is checked like any child
    items, total = 0, 0
    while stack:
        node, depth = stack.pop()
        if depth > limits.max_depth:
            return f"nested deeper than {limits.max_depth} levels"
        if type(node) is dict:
            for key in node:
                if type(key) is not str:
                    return f"a map key is {type(key).__name__}, not a string"
                total += len(key)
            children = node.values()
        else:
            children = node
        items += len(node)
        if items > limits.max_items:
            return f"more than {limits.max_items} items"
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))
            elif kind is str:
                if len(child) > limits.max_str_chars:
                    return f"a string of {len(child)} characters (at most {limits.max_str_chars})"
                total += len(child)
            elif kind is int:
                if not INT64_MIN <= child <= INT64_MAX:
                    return "an integer outside the 64-bit signed range"
            elif kind is bytes:
                if len(child) > limits.max_bytes_len:
                    return f"a bytes value of {len(child)} bytes (at most {limits.max_bytes_len})"
                total += len(child)
            elif kind not in _PLAIN:
                return f"a value of type {kind.__name__}"
        if total > limits.max_total_bytes:
            return f"more than {limits.max_total_bytes} bytes of strings and bytes"
    return None


def iter_strings(value: Any, max_depth: int = TreeLimits.max_depth, max_items: int = TreeLimits.max_items):
    """Every string in ``value`` (map keys included), walked without recursion.

    Stops quietly past ``max_items`` nodes and does not descend below
    ``max_depth``: a search over stored data costs a bounded amount per row
    whatever was stored before limits existed.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    seen = 0
    while stack and seen < max_items:
        node, depth = stack.pop()
        seen += 1
        if type(node) is str:
            yield node
        elif isinstance(node, dict) and depth <= max_depth:  # pushed reversed: walked in order
            for key, child in reversed(node.items()):
                stack.append((child, depth + 1))
                stack.append((key, depth + 1))
        elif isinstance(node, (list, tuple)) and depth <= max_depth:
            stack.extend((child, depth + 1) for child in reversed(node))
