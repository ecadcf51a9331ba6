"""The alert engine with an injected clock and a real alerts.db: each alert opens once,
updates rarely, resolves once; hysteresis; a flapping target stays bounded; an ordered
reboot's offline is suppressed, not told; restart keeps alerts. Rules are checked field by field."""
from __future__ import annotations

import json

import pytest

from broker.alerts.book import OPEN, RESOLVED, SUPPRESSED, AlertBook
from broker.alerts.engine import Engine
from broker.alerts.inbox import Inbox
from broker.alerts.notices import ALERT, APPROVAL, OPENED, RESOLVED as TOLD_RESOLVED, UPDATED, Notice
from broker.alerts.rules import RuleError, check

from conftest import ManualClock


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def book(tmp_path):
    b = AlertBook(tmp_path / "alerts.db")
    yield b
    b.close()


def engine_with(book, clock, *rules, server_version="1.4.0"):
    for name in [r.name for r in book.rules()]:
        book.remove_rule(name)
    for raw in rules:
        book.put_rule(check(raw), "test", clock())
    return Engine(book, clock, server_version)


CPU = {"name": "cpu", "kind": "cpu", "threshold": 90, "for_s": 300, "margin": 10, "clear_s": 0, "update_s": 600}
OFFLINE = {"name": "off", "kind": "offline", "threshold": 60, "clear_s": 30}


def states(notices):
    return [n.state for n in notices]


def test_a_new_book_has_the_default_rules(book):
    assert {r.kind for r in book.rules()} == {"offline", "cpu", "disk", "version", "security"}


def test_cpu_opens_once_after_holding_updates_rarely_and_resolves_once_below_the_margin(book, clock):
    engine = engine_with(book, clock, CPU)
    assert engine.sysinfo("pc", {"cpu_percent": 95.0}) == []  # above, but not yet for 5 minutes
    clock.now += 200
    assert engine.sysinfo("pc", {"cpu_percent": 97.0}) == []
    clock.now += 100
    opened = engine.sysinfo("pc", {"cpu_percent": 92.0})
    assert states(opened) == [OPENED] and opened[0].kind == ALERT and opened[0].key == "cpu:pc" and opened[0].target == "pc"
    for _ in range(20):  # more high reports within the update interval: nothing new
        clock.now += 20
        assert engine.sysinfo("pc", {"cpu_percent": 99.0}) == []
    clock.now += 300  # past update_s and the value moved by >= 5: one update
    assert states(engine.sysinfo("pc", {"cpu_percent": 99.0})) == [UPDATED]
    assert engine.sysinfo("pc", {"cpu_percent": 85.0}) == []  # below 90 but not below 80: hysteresis holds it open
    assert states(engine.sysinfo("pc", {"cpu_percent": 70.0})) == [TOLD_RESOLVED]
    assert engine.sysinfo("pc", {"cpu_percent": 60.0}) == []  # resolved once
    rows = book.listing(True, 10)
    assert [r["state"] for r in rows] == [RESOLVED]


def test_a_break_in_the_condition_starts_the_wait_over(book, clock):
    engine = engine_with(book, clock, CPU)
    engine.sysinfo("pc", {"cpu_percent": 95.0})
    clock.now += 250
    engine.sysinfo("pc", {"cpu_percent": 50.0})
    clock.now += 100
    assert engine.sysinfo("pc", {"cpu_percent": 95.0}) == []  # 350 s since the first, but only 0 since the break


def test_a_target_flapping_50_times_in_a_minute_keeps_one_alert(book, clock):
    """Tried: an agent going offline and back 50 times within a minute, after its offline alert opened.
    Expected: one opened notice, at most one update (its flaps counted), one resolve after it stays back."""
    engine = engine_with(book, clock, {**OFFLINE, "update_s": 300})
    notices = engine.presence("laptop", False)
    clock.now += 61
    notices += engine.tick()
    assert states(notices) == [OPENED]
    for _ in range(50):
        clock.now += 0.6
        notices += engine.presence("laptop", True) + engine.tick()
        clock.now += 0.6
        notices += engine.presence("laptop", False) + engine.tick()
    notices += engine.presence("laptop", True)
    for _ in range(40):
        clock.now += 1
        notices += engine.tick()
    assert states(notices).count(OPENED) == 1 and states(notices).count(TOLD_RESOLVED) == 1
    assert len(notices) <= 3
    resolved = [n for n in notices if n.state == TOLD_RESOLVED][0]
    assert resolved.details["flaps"] == 50


def test_offline_waits_its_threshold_and_resolves_on_return_after_clear_s(book, clock):
    engine = engine_with(book, clock, OFFLINE)
    engine.presence("pc", False)
    clock.now += 59
    assert engine.tick() == []
    clock.now += 2
    opened = engine.tick()
    assert states(opened) == [OPENED] and "offline" in opened[0].title
    assert engine.presence("pc", True) == []
    clock.now += 31
    assert states(engine.tick()) == [TOLD_RESOLVED]


def test_an_offline_after_an_ordered_reboot_is_suppressed_then_opens_if_it_stays_off(book, clock):
    engine = engine_with(book, clock, OFFLINE)
    engine.expect_offline("pc", 600, "reboot ordered by Jane Doe (patching)")
    clock.now += 5
    engine.presence("pc", False)
    clock.now += 100
    assert engine.tick() == []  # past the threshold, but expected
    [row] = book.listing(True, 10)
    assert row["state"] == SUPPRESSED and row["suppressed"] == "suppressed: reboot ordered by Jane Doe (patching)"
    assert book.listing(False, 10) == []  # not among the open ones
    clock.now += 500  # the window (600 s from the order) is over and it is still offline
    opened = engine.tick()
    assert states(opened) == [OPENED] and "reboot ordered by Jane Doe" in opened[0].text
    assert book.get(row["id"])["state"] == OPEN


def test_a_suppressed_offline_that_comes_back_resolves_silently(book, clock):
    engine = engine_with(book, clock, OFFLINE)
    engine.expect_offline("pc", 600, "reboot ordered by Jane Doe (patching)")
    engine.presence("pc", False)
    clock.now += 90
    assert engine.tick() == []
    engine.presence("pc", True)
    clock.now += 40
    assert engine.tick() == []
    [row] = book.listing(True, 10)
    assert row["state"] == RESOLVED and row["suppressed"]


def test_disk_version_and_security_rules(book, clock):
    engine = engine_with(book, clock, {"name": "disk", "kind": "disk", "threshold": 90, "margin": 3, "clear_s": 0},
                         {"name": "ver", "kind": "version", "clear_s": 0},
                         {"name": "sec", "kind": "security", "events": ["agent_id_clone"]})
    notices = engine.sysinfo("pc", {"disk_percent": 95.5, "disk_percent_mount": "/home", "version": "1.3.9"})
    assert sorted(n.rule for n in notices) == ["disk", "ver"]
    assert "/home" in [n for n in notices if n.rule == "disk"][0].title
    assert "1.4.0" in [n for n in notices if n.rule == "ver"][0].title  # the server's version is the minimum
    assert states(engine.sysinfo("pc", {"disk_percent": 80.0, "version": "1.4.0"})) == [TOLD_RESOLVED, TOLD_RESOLVED]
    assert engine.security("pc", "something_else", "x") == []
    opened = engine.security("pc", "agent_id_clone", "two connections from two hosts")
    assert states(opened) == [OPENED] and opened[0].severity == "warning"
    assert engine.security("pc", "agent_id_clone", "again") == []  # counted, not told again within update_s
    alert_id = opened[0].details["alert_id"]
    row, acked = engine.ack(alert_id, {"client_id": "jane@h", "role": "operator", "name": "Jane Doe"}, "cloned VM removed")
    assert states(acked) == [TOLD_RESOLVED] and row["acked_name"] == "Jane Doe" and row["state"] == RESOLVED
    with pytest.raises(ValueError, match="no open alert"):
        engine.ack(alert_id, {"client_id": "jane@h"}, "again")


def test_odd_sysinfo_values_are_skipped(book, clock):
    """Tried: cpu_percent as text, NaN-like out of range, a bool, None. Expected: no alert, no error."""
    engine = engine_with(book, clock, {**CPU, "for_s": 0})
    for value in ("99", 150.0, -5, True, None, [1]):
        assert engine.sysinfo("pc", {"cpu_percent": value, "version": 7}) == []


def test_alerts_survive_a_restart_without_a_second_notice(book, clock):
    engine = engine_with(book, clock, OFFLINE)
    engine.presence("pc", False)
    clock.now += 61
    assert states(engine.tick()) == [OPENED]
    again = Engine(book, clock, "1.4.0")
    assert again.presence("pc", False, since=clock.now - 61) == []
    clock.now += 5
    assert again.tick() == []
    assert again.presence("pc", True) == []
    clock.now += 31
    assert states(again.tick()) == [TOLD_RESOLVED]


def test_a_restart_inside_a_reboot_window_keeps_the_suppression(book, clock):
    engine = engine_with(book, clock, OFFLINE)
    engine.expect_offline("pc", 600, "reboot ordered by Jane Doe (patching)")
    engine.presence("pc", False)
    clock.now += 100
    assert engine.tick() == []
    again = Engine(book, clock, "1.4.0")
    again.presence("pc", False, since=clock.now - 100)
    clock.now += 100
    assert again.tick() == []  # still inside the window: still nobody told
    clock.now += 400
    assert states(again.tick()) == [OPENED]


def test_removing_a_rule_resolves_its_alerts(book, clock):
    engine = engine_with(book, clock, {**CPU, "for_s": 0})
    assert states(engine.sysinfo("pc", {"cpu_percent": 99.0})) == [OPENED]
    book.remove_rule("cpu")
    assert states(engine.reload_rules()) == [TOLD_RESOLVED]


@pytest.mark.parametrize("field, value", [
    ("threshold", -1), ("threshold", 2**63), ("threshold", "90"), ("threshold", True), ("threshold", float("nan")),
    ("for_s", -1), ("for_s", 2**63), ("clear_s", 10**12), ("margin", 101), ("update_s", None),
])
def test_rule_numbers_out_of_range_or_of_the_wrong_type_are_refused(field, value):
    """Tried: -1, 2^63, text, a bool, NaN, None in numeric rule fields. Expected: RuleError naming the field."""
    with pytest.raises(RuleError, match=field):
        check({**CPU, field: value})


@pytest.mark.parametrize("raw, words", [
    ({**CPU, "threshold": 0}, "percent above 0"), ({**CPU, "threshold": 150}, "at most 100"),
    ({"name": "Bad Name", "kind": "cpu"}, "rule name"), ({"name": "x", "kind": "mood"}, "rule kind"),
    ({**CPU, "colour": "red"}, "unknown rule field"), ({"name": "s", "kind": "security"}, "names the events"),
    ({"name": "v", "kind": "version", "minimum": "latest"}, "not a version"), ([1, 2], "a map"),
    ({**CPU, "severity": "loud"}, "severity"), ({**CPU, "events": "a,b"}, "events"), ({**CPU, "enabled": 1}, "enabled"),
])
def test_bad_rules_are_refused_with_a_clear_reason(raw, words):
    with pytest.raises(RuleError, match=words):
        check(raw)


def test_zero_is_a_valid_wait():
    assert check({**OFFLINE, "threshold": 0}).threshold == 0.0


def test_the_inbox_shows_each_role_its_own_notices(book, clock):
    inbox = Inbox(book.conn)
    inbox.notify(Notice(ALERT, "off:pc", OPENED, "off", "warning", "pc is offline", "t", "pc", clock()))
    inbox.notify(Notice(APPROVAL, "approval:1", OPENED, "approval", "warning", "approve?", "t", "", clock(),
                        {"requester": "bob@h"}))
    viewer, bob, ann = ({"client_id": c, "role": r} for c, r in (("vic@h", "viewer"), ("bob@h", "operator"), ("ann@h", "admin")))
    assert [i["kind"] for i in inbox.listing(viewer)] == [ALERT]
    assert [i["kind"] for i in inbox.listing(bob)] == [ALERT]  # not asked to approve his own request
    assert [i["kind"] for i in inbox.listing(ann)] == [APPROVAL, ALERT]
    assert inbox.count(ann) == {"total": 2, "unread": 2}
    assert inbox.mark(ann, [inbox.listing(ann)[0]["id"]], clock()) == 1
    assert inbox.count(ann) == {"total": 2, "unread": 1} and inbox.count(bob) == {"total": 1, "unread": 1}
    assert inbox.mark(ann, None, clock(), archive=True) == 2
    assert inbox.listing(ann) == [] and len(inbox.listing(ann, archived=True)) == 2
    with pytest.raises(PermissionError):
        inbox.listing({"client_id": "svc", "role": "service"})


def test_settings_default_read_and_refuse_with_the_file_named(tmp_path):
    """Tried: no alerts.json, a good one (delivery passed as it is), and bad ones: not JSON, a list,
    an unknown key, -1 and 2^63 seconds, a version that is not one. Expected: an error naming the file."""
    from broker.alerts.settings import AlertSettings, load
    from broker.core.errors import EmsError

    assert load(tmp_path) == AlertSettings()
    delivery = {"email": {"to": ["ops@example.org"]}, "quiet_hours": "22-07"}
    (tmp_path / "alerts.json").write_text(json.dumps({"offline_expected_s": 900, "minimum_version": "1.2", "delivery": delivery}))
    loaded = load(tmp_path)
    assert (loaded.offline_expected_s, loaded.minimum_version, loaded.delivery) == (900.0, "1.2", delivery)
    for bad in ("{not json", "[1]", '{"offline_expected": 5}', '{"offline_expected_s": -1}',
                '{"offline_expected_s": 9223372036854775808}', '{"minimum_version": "latest"}', '{"delivery": []}'):
        (tmp_path / "alerts.json").write_text(bad)
        with pytest.raises(EmsError, match="alerts.json"):
            load(tmp_path)
