"""Cron expressions (broker/core/cron.py): random expressions checked against a brute-force minute-by-minute
matcher over two years; names, macros, steps and the either-day rule; Feb 29; daylight-saving changes in
Europe/Berlin and America/New_York; every bad field refused naming the field.
"""
from __future__ import annotations

import bisect
import random
from datetime import datetime, timezone

import pytest

from broker.core import cron

UTC = cron.zone("UTC")
BERLIN = cron.zone("Europe/Berlin")
START = datetime(2027, 1, 1, tzinfo=timezone.utc).timestamp()  # 2028 is a leap year inside the window
DAYS = 2 * 366


def brute_force(expr: str, start: float = START, days: int = DAYS) -> list[float]:
    """Every minute of ``days`` days from ``start`` (UTC) that matches, checked field by field without the parser's
    day search: the day's fields once per day, then each of its 1,440 minutes."""
    c = cron.parse(expr)
    out = []
    for day in range(days):
        midnight = start + day * 86400
        wall = datetime.fromtimestamp(midnight, timezone.utc)
        dom_ok, dow_ok = wall.day in c.days, (wall.isoweekday() % 7) in c.weekdays
        day_ok = wall.month in c.months and ((dom_ok and dow_ok) if (c.any_day or c.any_weekday) else (dom_ok or dow_ok))
        if not day_ok:
            continue
        out.extend(midnight + m * 60 for m in range(1440) if m // 60 in c.hours and m % 60 in c.minutes)
    return out


def random_field(rng: random.Random, lo: int, hi: int) -> str:
    choice = rng.randrange(6)
    if choice == 0:
        return "*"
    if choice == 1:
        return f"*/{rng.randint(1, hi - lo + 1)}"
    a = rng.randint(lo, hi)
    if choice == 2:
        return str(a)
    b = rng.randint(a, hi)
    if choice == 3:
        return f"{a}-{b}"
    if choice == 4:
        return f"{a}-{b}/{rng.randint(1, 5)}"
    return ",".join(str(rng.randint(lo, hi)) for _ in range(rng.randint(2, 4)))


def random_expression(rng: random.Random) -> str:
    while True:
        text = " ".join(random_field(rng, lo, hi) for _, lo, hi, _ in cron.FIELDS)
        try:
            cron.parse(text)
            return text
        except ValueError:  # a day that never falls in the months drawn: draw again
            continue


@pytest.mark.parametrize("seed", range(12))
def test_next_after_agrees_with_a_brute_force_matcher(seed):
    """Tried: a random expression (stars, steps, ranges with steps, lists in each field); from 150 random
    instants and from each of its first 100 slots, next_after gives the brute force's next matching minute."""
    rng = random.Random(seed)
    expr = random_expression(rng)
    slots = brute_force(expr)
    c = cron.parse(expr)
    starts = [START + rng.uniform(0, (DAYS - 40) * 86400) for _ in range(150)] + slots[:100]
    for ts in starts:
        i = bisect.bisect_right(slots, ts)
        if i == len(slots):
            continue  # past the brute force's window
        assert cron.next_after(c, ts, UTC) == slots[i], (expr, ts)


@pytest.mark.parametrize("seed", range(4))
def test_a_zone_without_dst_is_the_brute_force_shifted_by_its_offset(seed):
    """Asia/Kolkata is UTC+05:30 all year: each slot there is the UTC brute force's wall time minus 5.5 h."""
    rng = random.Random(100 + seed)
    expr, offset = random_expression(rng), 5.5 * 3600
    slots = brute_force(expr)
    c, kolkata = cron.parse(expr), cron.zone("Asia/Kolkata")
    for ts in [START + rng.uniform(0, (DAYS - 40) * 86400) for _ in range(100)]:
        i = bisect.bisect_right(slots, ts + offset)
        if i < len(slots):
            assert cron.next_after(c, ts, kolkata) == slots[i] - offset, (expr, ts)


@pytest.mark.parametrize("expr,same", [
    ("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"), ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *"), ("@ANNUALLY", "0 0 1 1 *"),
    ("0 9 * jan-MAR mon-fri", "0 9 * 1-3 1-5"), ("0 0 * * 7", "0 0 * * 0"), ("0 0 * * sun,sat", "0 0 * * 0,6"),
    ("5/20 * * * *", "5,25,45 * * * *"), ("0 0 1 */4 *", "0 0 1 1,5,9 *"),
])
def test_names_macros_and_steps_mean_what_crontab_says(expr, same):
    assert brute_force(expr, days=400) == brute_force(same, days=400)


def test_both_day_fields_match_either():
    """``0 9 13 * fri``: the 13th of each month AND every Friday (crontab's rule), not only Friday the 13th."""
    days = {datetime.fromtimestamp(t, timezone.utc).date() for t in brute_force("0 9 13 * fri", days=365)}
    assert all(d.day == 13 or d.isoweekday() == 5 for d in days)
    assert sum(d.day == 13 for d in days) == 12 and sum(d.isoweekday() == 5 for d in days) == 53  # 2027 begins on a Friday


def test_feb_29_comes_every_four_years():
    c = cron.parse("0 12 29 2 *")
    first = cron.next_after(c, START, UTC)
    second = cron.next_after(c, first, UTC)
    assert cron.shown(first, UTC) == "2028-02-29 12:00 UTC" and cron.shown(second, UTC) == "2032-02-29 12:00 UTC"


def test_daylight_saving_gap_and_repeat_in_berlin():
    """Spring: 02:30 does not exist on 2027-03-28 and runs once at 03:30 CEST; autumn: 02:30 happens twice on
    2027-10-31 and runs once, the first time; a */30 job runs each distinct instant once across both changes."""
    daily = cron.parse("30 2 * * *")
    spring = cron.next_after(daily, cron.wall_time("2027-03-27 12:00", BERLIN), BERLIN)
    assert cron.shown(spring, BERLIN) == "2027-03-28 03:30 CEST"
    assert cron.shown(cron.next_after(daily, spring, BERLIN), BERLIN) == "2027-03-29 02:30 CEST"
    autumn = cron.next_after(daily, cron.wall_time("2027-10-30 12:00", BERLIN), BERLIN)
    assert cron.shown(autumn, BERLIN) == "2027-10-31 02:30 CEST"
    after = cron.next_after(daily, autumn, BERLIN)
    assert cron.shown(after, BERLIN) == "2027-11-01 02:30 CET" and after - autumn == 25 * 3600
    half = cron.parse("*/30 * * * *")
    for start in ("2027-03-28 00:00", "2027-10-31 00:00"):
        ts, seen = cron.wall_time(start, BERLIN), []
        for _ in range(10):
            ts = cron.next_after(half, ts, BERLIN)
            seen.append(ts)
        assert seen == sorted(set(seen))  # strictly increasing: no instant twice


def test_new_york_spring_forward():
    ny = cron.zone("America/New_York")
    c = cron.parse("15 2 * * *")
    ts = cron.next_after(c, cron.wall_time("2027-03-13 12:00", ny), ny)
    assert cron.shown(ts, ny) == "2027-03-14 03:15 EDT"


@pytest.mark.parametrize("text,needle", [
    ("", "at most 200 characters"), (None, "at most 200 characters"), ("* * * *", "5 fields"), ("* * * * * *", "5 fields"),
    ("60 * * * *", "cron minute: 60 is outside 0-59"), ("-1 * * * *", "cron minute: '' is not a number"),
    ("* 24 * * *", "cron hour: 24 is outside 0-23"), ("* * 0 * *", "cron day-of-month: 0 is outside 1-31"),
    ("* * 32 * *", "day-of-month: 32"), ("* * * 13 *", "cron month: 13"), ("* * * * 8", "cron day-of-week: 8"),
    ("* * * foo *", "cron month: 'foo'"), ("* * * * funday", "cron day-of-week: 'funday'"),
    ("*/0 * * * *", "cron minute: 0 is outside 1-60"), ("*/99999999 * * * *", "cron minute"),
    (f"{2**63} * * * *", "cron minute"), ("5-1 * * * *", "runs backwards"), ("0 0 30 feb *", "never falls in month"),
    ("0 0 31 4,6 *", "never falls"), ("@often", "unknown cron macro"), ("1,,2 * * * *", "cron minute: ''"),
    ("x" * 201, "at most 200"),
])
def test_bad_expressions_name_the_field(text, needle):
    with pytest.raises(ValueError) as error:
        cron.parse(text)
    assert needle in str(error.value)


@pytest.mark.parametrize("name", ["", "Mars/Base", "../etc/passwd", "UTC\x00", 5, "x" * 65])
def test_unknown_zones_are_refused(name):
    with pytest.raises(ValueError, match="time zone"):
        cron.zone(name)
