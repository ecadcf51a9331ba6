"""Target selectors: which agents a command, a template run or a broadcast is for.

A selector is text an operator types (``ems targets 'group:finance&online'``)::

    SELECTOR := ALTERNATIVE (',' ALTERNATIVE)*      any alternative matches
    ALTERNATIVE := TERM ('&' TERM)*                  every term matches
    TERM := ['!'] (KEY ':' PATTERN | WORD)           '!' negates

Keys: ``id``, ``label``, ``host``, ``tag``, ``group``, ``os``, ``version``.
A pattern matches case-insensitively and may use ``*`` for any run of
characters (``host:lyon-*``). Words: ``all``, ``online``, ``offline``; any
other word is a client id (``desk-1,desk-2``). ``version:<1.4`` and
``version:>=2`` compare dotted versions (``version`` behind the server's is
how drift is found). Examples::

    all&online                    every agent now connected
    group:finance&os:windows      finance's Windows machines
    tag:kiosk,host:lobby-*        kiosks and the lobby machines
    all&!group:executives         everyone but executives

The broker expands a selector against its registry (:mod:`broker.server.targets`)
into a list of accepted agents; this module only parses and matches.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

KEYS = ("id", "label", "host", "tag", "group", "os", "version")
WORDS = ("all", "online", "offline")
MAX_SELECTOR_CHARS = 1000
MAX_TERMS = 64
_ID_WORD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_VERSION_TEST = re.compile(r"^(<=|>=|<|>|=)?(\d+(?:\.\d+)*)$")
_SYNTAX_HELP = ("a selector is terms joined by ',' (or) and '&' (and), each KEY:PATTERN, a client id, all, online or "
                "offline, '!' in front to negate; keys: " + ", ".join(KEYS))


class SelectorError(ValueError):
    """A selector that does not parse; the message says where and what is allowed."""


@dataclass(frozen=True)
class TargetFacts:
    """What a selector can test about one agent."""

    client_id: str
    online: bool = False
    label: str = ""
    host: str = ""
    os: str = ""
    version: str = ""
    tags: frozenset[str] = field(default_factory=frozenset)
    groups: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Term:
    key: str  # one of KEYS, or "word"
    pattern: str
    negated: bool = False

    def matches(self, facts: TargetFacts) -> bool:
        return self._test(facts) != self.negated

    def _test(self, facts: TargetFacts) -> bool:
        if self.key == "word":
            if self.pattern in WORDS:
                return {"all": True, "online": facts.online, "offline": not facts.online}[self.pattern]
            return facts.client_id == self.pattern
        if self.key == "version":
            return _version_matches(facts.version, self.pattern)
        if self.key in ("tag", "group"):
            names = facts.tags if self.key == "tag" else facts.groups
            return any(_like(name, self.pattern) for name in names)
        value = {"id": facts.client_id, "label": facts.label, "host": facts.host, "os": facts.os}[self.key]
        return _like(value, self.pattern)


@dataclass(frozen=True)
class Selector:
    """A parsed selector: alternatives of terms (see the module docstring)."""

    text: str
    alternatives: tuple[tuple[Term, ...], ...]

    def matches(self, facts: TargetFacts) -> bool:
        return any(all(term.matches(facts) for term in terms) for terms in self.alternatives)

    def plain_ids(self) -> list[str] | None:
        """The client ids when the selector is nothing but ids (``a,b,c``), else None."""
        ids = []
        for terms in self.alternatives:
            if len(terms) != 1 or terms[0].key != "word" or terms[0].negated or terms[0].pattern in WORDS:
                return None
            ids.append(terms[0].pattern)
        return ids


def parse(text: object) -> Selector:
    """``text`` parsed; :class:`SelectorError` saying what is wrong and what a selector looks like."""
    if not isinstance(text, str) or not text.strip():
        raise SelectorError("empty selector: " + _SYNTAX_HELP)
    if len(text) > MAX_SELECTOR_CHARS:
        raise SelectorError(f"selector longer than {MAX_SELECTOR_CHARS} characters")
    alternatives, count = [], 0
    for alternative in text.split(","):
        terms = []
        for raw in alternative.split("&"):
            count += 1
            if count > MAX_TERMS:
                raise SelectorError(f"more than {MAX_TERMS} terms in one selector")
            terms.append(_term(raw.strip(), text))
        alternatives.append(tuple(terms))
    return Selector(text, tuple(alternatives))


def _term(raw: str, text: str) -> Term:
    negated = raw.startswith("!")
    body = raw[1:].strip() if negated else raw
    if not body:
        raise SelectorError(f"empty term in {text!r}: " + _SYNTAX_HELP)
    key, sep, pattern = body.partition(":")
    if not sep:
        word = body.lower() if body.lower() in WORDS else body
        if word not in WORDS and not _ID_WORD.match(word):
            raise SelectorError(f"{body!r} is not a client id nor a word ({', '.join(WORDS)}): " + _SYNTAX_HELP)
        return Term("word", word, negated)
    key = key.strip().lower()
    pattern = pattern.strip()
    if key not in KEYS:
        raise SelectorError(f"unknown key {key!r} in {raw!r}: " + _SYNTAX_HELP)
    if not pattern:
        raise SelectorError(f"{key}: needs a value (use * for any)")
    if key == "version" and "*" not in pattern and not _VERSION_TEST.match(pattern):
        raise SelectorError(f"version:{pattern} is not a version test: version:1.4, version:<1.4, version:>=2.0.1")
    return Term(key, pattern, negated)


def _like(value: str, pattern: str) -> bool:
    return fnmatchcase(value.lower(), pattern.lower().replace("[", "[[]").replace("?", "[?]"))


def version_tuple(text: str) -> tuple[int, ...] | None:
    """``"1.4.2"`` -> (1, 4, 2); leading digits of each part count (``"2.0rc1"`` -> (2, 0)); None without any."""
    parts = []
    for part in text.strip().lstrip("vV").split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        parts.append(int(digits.group()))
    return tuple(parts) or None


def _version_matches(version: str, pattern: str) -> bool:
    if "*" in pattern:
        return _like(version, pattern)
    operator, wanted = _VERSION_TEST.match(pattern).groups()
    have, want = version_tuple(version), version_tuple(wanted)
    if have is None:
        return False
    width = max(len(have), len(want))
    have, want = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
    return {"<": have < want, "<=": have <= want, ">": have > want, ">=": have >= want, "=": have == want, None: have == want}[operator]
