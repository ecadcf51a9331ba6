"""How guessable a bearer token is: a conservative entropy estimate.

:func:`estimate_bits` scores a token as an attacker who tries the likely
shapes first would see it: characters drawn from the classes it uses
(lower, upper, digits, symbols) and no more distinct values than it shows,
with repeats, runs (``aaaa``), sequences (``abcd``, ``9876``, ``qwerty``)
and a repeating period (``abcabc...``) worth nothing after their first
character, and each common word (``password``, ``admin``...; also in
l33t spelling) worth one pick from a small dictionary. It underestimates
real random tokens a little and overestimates clever human ones; the point
is to refuse the obviously weak, with a clear way to make a good one.
"""
from __future__ import annotations

import math
import string

#: bits an attacker's guess list needs per common word it contains (a ~2,000-word list)
WORD_BITS = 11.0
#: keyboard rows: walking along one is a sequence
_ROWS = ("`1234567890-=", "qwertyuiop[]\\", "asdfghjkl;'", "zxcvbnm,./")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})
#: words people put in tokens and passwords (lowercase, 3+ letters)
COMMON_WORDS = tuple(sorted({
    "password", "passwd", "pass", "secret", "token", "admin", "administrator", "root", "login", "letmein",
    "welcome", "changeme", "default", "master", "qwerty", "dragon", "monkey", "shadow", "access", "super",
    "manager", "user", "guest", "private", "public", "key", "api", "bearer", "auth", "test", "testing",
    "demo", "ems", "server", "company", "hello", "iloveyou", "trustno", "summer", "winter", "spring",
    "autumn", "football", "baseball", "sunshine", "princess", "starwars", "whatever", "freedom", "secure",
    "security", "monitor", "employee", "staff", "office", "local", "localhost", "web", "http", "https",
    "example", "sample", "temp", "tmp", "dev", "prod", "production", "staging", "correct", "horse",
    "battery", "staple", "abc", "xyz", "one", "two", "three", "four", "five", "six", "seven", "eight",
    "nine", "ten", "zero", "the", "and", "you", "love", "god", "money", "computer", "internet", "system",
}, key=lambda w: (-len(w), w)))


def estimate_bits(token: str) -> float:
    """A conservative estimate of the token's entropy in bits."""
    if not token:
        return 0.0
    core = token[: _period(token)]
    free, words = _free_chars(core)
    return free * _bits_per_char(token) + words * WORD_BITS


def _period(token: str) -> int:
    """The shortest p such that the token repeats its first p characters."""
    n = len(token)
    for p in range(1, n):
        if all(token[i] == token[i - p] for i in range(p, n)):
            return p
    return n


def _bits_per_char(token: str) -> float:
    """log2 of the alphabet: the classes used, capped by twice the distinct characters seen."""
    pool = 0
    for chars, size in ((string.ascii_lowercase, 26), (string.ascii_uppercase, 26), (string.digits, 10)):
        if any(c in chars for c in token):
            pool += size
    if any(not c.isascii() or not c.isalnum() for c in token):
        pool += 33
    return math.log2(max(2, min(pool, 2 * len(set(token)))))


def _free_chars(token: str) -> tuple[int, int]:
    """(characters that carry entropy, common words found) after taking out
    words, runs and sequences."""
    low = token.lower().translate(_LEET)
    covered = [False] * len(token)
    words = 0
    for word in COMMON_WORDS:
        start = low.find(word)
        while start >= 0:
            if not any(covered[start:start + len(word)]):
                covered[start:start + len(word)] = [True] * len(word)
                words += 1
            start = low.find(word, start + 1)
    free = 0
    for i, c in enumerate(token):
        if covered[i] or (i > 0 and _follows(token[i - 1], c, low, i)):
            continue
        free += 1
    return free, words


def _follows(prev: str, c: str, low: str, i: int) -> bool:
    """Whether ``c`` is guessable from the character before it: the same,
    or one step along the alphabet, the digits or a keyboard row."""
    if prev == c or abs(ord(prev) - ord(c)) == 1:
        return True
    a, b = low[i - 1], low[i]
    return any(a in row and b in row and abs(row.index(a) - row.index(b)) == 1 for row in _ROWS)
