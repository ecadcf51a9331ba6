"""Cron expressions: five fields, and the next time one matches.

``minute hour day-of-month month day-of-week``, as in crontab(5):

* each field is ``*``, a value, a range ``a-b``, a step ``*/n``, ``a-b/n`` or
  ``a/n`` (from ``a`` to the field's end), or a comma list of those;
* months are 1-12 or ``jan``..``dec``; days of the week 0-7 (0 and 7 are
  Sunday) or ``sun``..``sat``; names are case-insensitive;
* ``@hourly``, ``@daily`` (``@midnight``), ``@weekly`` (Sunday 00:00),
  ``@monthly``, ``@yearly`` (``@annually``);
* when both day fields are restricted, a day matches if EITHER does
  (crontab's rule: ``0 9 1 * mon`` is the 1st of each month and every Monday).

Times are wall-clock times in a named IANA zone (``UTC``, ``Europe/Berlin``);
:func:`next_after` answers epoch seconds. Across a daylight-saving change:

* a wall time that does not exist that day (02:30 when clocks jump from 02:00
  to 03:00) runs at the same offset after the jump (03:30), once;
* a wall time that happens twice (clocks go back) runs once, the first time.

A bad expression is a ``ValueError`` naming the field and what it accepts.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
#: (name, lowest, highest, names for lowest.. or ())
FIELDS = (("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day-of-month", 1, 31, ()), ("month", 1, 12, MONTHS),
          ("day-of-week", 0, 7, WEEKDAYS))
MACROS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
          "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}
_LONGEST_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
#: how far :func:`next_after` looks (a Feb 29 comes within 8 years, 2100 aside)
SEARCH_DAYS = 8 * 366
MAX_CHARS = 200


@dataclass(frozen=True)
class Cron:
    """A parsed expression: the values each field allows (day-of-week 0-6, Sunday 0)."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool  # day-of-month is *
    any_weekday: bool  # day-of-week is *

    def day_matches(self, day: date) -> bool:
        """Whether ``day`` is one the expression runs on (crontab's either-day rule)."""
        if day.month not in self.months:
            return False
        by_date, by_weekday = day.day in self.days, (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return by_date and by_weekday
        return by_date or by_weekday

    def matches(self, wall: datetime) -> bool:
        """Whether the wall-clock minute ``wall`` matches."""
        return wall.minute in self.minutes and wall.hour in self.hours and self.day_matches(wall.date())


def parse(text: object) -> Cron:
    """``text`` as a :class:`Cron`; ValueError naming the bad field otherwise."""
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_CHARS:
        raise ValueError(f"a cron expression is text of at most {MAX_CHARS} characters, e.g. '*/5 * * * *'")
    expanded = MACROS.get(text.strip().lower(), text)
    if expanded.startswith("@"):
        raise ValueError(f"unknown cron macro {text.strip()!r}; known: {', '.join(MACROS)}")
    words = expanded.split()
    if len(words) != 5:
        raise ValueError(f"a cron expression has 5 fields (minute hour day-of-month month day-of-week), not {len(words)}: {text!r}")
    values = [_field(word, *spec) for word, spec in zip(words, FIELDS)]
    weekdays = frozenset(v % 7 for v in values[4])
    cron = Cron(text.strip(), *(frozenset(v) for v in values[:4]), weekdays, words[2] == "*", words[4] == "*")
    if cron.any_weekday or cron.any_day:
        if not any(d <= _LONGEST_MONTH[m - 1] for m in cron.months for d in cron.days):
            raise ValueError(f"day-of-month {words[2]!r} never falls in month {words[3]!r}: the expression never runs")
    return cron


def _field(word: str, name: str, lo: int, hi: int, names: tuple[str, ...]) -> set[int]:
    out: set[int] = set()
    for part in word.split(","):
        base, slash, step_text = part.partition("/")
        step = _number(step_text, name, 1, hi - lo + 1, names=()) if slash else 1
        if base == "*":
            first, last = lo, hi
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = _number(a, name, lo, hi, names), _number(b, name, lo, hi, names)
            if first > last:
                raise ValueError(f"cron {name}: range {base!r} runs backwards")
        else:
            first = _number(base, name, lo, hi, names)
            last = hi if slash else first
        out.update(range(first, last + 1, step))
    return out


def _number(word: str, name: str, lo: int, hi: int, names: tuple[str, ...]) -> int:
    lowered = word.lower()
    if lowered in names:
        return names.index(lowered) + (1 if name == "month" else 0)
    if not word.isdigit() or len(word) > 4:
        accepted = f"{lo}-{hi}" + (f" or {names[0]}..{names[-1]}" if names else "")
        raise ValueError(f"cron {name}: {word!r} is not a number ({accepted}; '*', 'a-b', '*/n' and lists 'a,b' too)")
    value = int(word)
    if not lo <= value <= hi:
        raise ValueError(f"cron {name}: {value} is outside {lo}-{hi}")
    return value


def zone(name: object) -> ZoneInfo:
    """The IANA time zone ``name`` (``UTC``, ``Europe/Berlin``); ValueError if unknown."""
    if not isinstance(name, str) or not name or len(name) > 64 or "\x00" in name:
        raise ValueError("tz must be an IANA time zone name such as UTC or Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as UTC or Europe/Berlin)") from None


def next_after(cron: Cron, ts: float, tz: ZoneInfo) -> float | None:
    """The first matching minute strictly after epoch ``ts``, in ``tz``'s wall-clock time, as epoch seconds
    (None if none within :data:`SEARCH_DAYS`). DST: see the module docstring."""
    start = datetime.fromtimestamp(ts, tz).replace(tzinfo=None, fold=0, second=0, microsecond=0)
    day = start.date()
    hours, minutes = sorted(cron.hours), sorted(cron.minutes)
    for _ in range(SEARCH_DAYS):
        if cron.day_matches(day):
            for hour in hours:
                for minute in minutes:
                    wall = datetime(day.year, day.month, day.day, hour, minute)
                    if wall < start:
                        continue
                    when = _epoch(wall, tz)
                    if when > ts:
                        return when
        day += timedelta(days=1)
    return None


def _epoch(wall: datetime, tz: ZoneInfo) -> float:
    """Wall time ``wall`` in ``tz``: its first occurrence; a time in a gap moves forward by the gap."""
    return wall.replace(tzinfo=tz, fold=0).timestamp()


def wall_time(text: object, tz: ZoneInfo) -> float:
    """``YYYY-MM-DD HH:MM[:SS]`` (or ISO ``T``) as wall time in ``tz`` -> epoch seconds; ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError("a time is text: YYYY-MM-DD HH:MM")
    try:
        wall = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a time: YYYY-MM-DD HH:MM") from None
    if wall.tzinfo is not None:
        return wall.timestamp()
    return _epoch(wall, tz)


def shown(ts: float | None, tz: ZoneInfo) -> str:
    """Epoch ``ts`` as ``YYYY-MM-DD HH:MM ZONE`` in ``tz`` (``-`` for None)."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M %Z")
