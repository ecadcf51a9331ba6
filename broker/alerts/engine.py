"""The alert engine: per (rule, target) an alert opens once, updates rarely, resolves once.

Inputs are judged observations (:meth:`Engine.presence`, :meth:`Engine.sysinfo`,
:meth:`Engine.security`) and the passing of time (:meth:`Engine.tick`); outputs are
:class:`~broker.alerts.notices.Notice` lists, one per state change that people are told.

* A condition must hold for the rule's wait (``threshold`` seconds offline, ``for_s``
  above a percent) before its alert opens; a break in between starts the wait over.
* An open alert resolves only after the good state held ``clear_s`` (and, for a
  percent, below ``threshold - margin``): a target flapping 50 times a minute keeps
  one alert, its flaps counted in rate-limited updates.
* An offline that an operator's order explains (:meth:`Engine.expect_offline`: a reboot,
  shutdown or update) opens *suppressed*: recorded, nobody told. Still offline when
  the window ends, it opens for real.

Alerts live in :class:`~broker.alerts.book.AlertBook`; what waits (a condition not yet
held long enough) lives in memory and starts over after a restart.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

from broker.alerts import wording
from broker.alerts.book import OPEN, RESOLVED, SUPPRESSED, AlertBook
from broker.alerts.notices import ALERT, OPENED, RESOLVED as TOLD_RESOLVED, UPDATED, Notice
from broker.alerts.rules import BAD, GOOD, HOLD, PERCENT_KINDS, Rule

#: sysinfo key each value rule reads
SYSINFO_KEYS = {"cpu": "cpu_percent", "disk": "disk_percent", "version": "version"}


@dataclass
class Track:
    """What the engine knows about one (rule, target)."""

    rule: str
    target: str
    verdict: str = HOLD
    value: object = None
    bad_since: float | None = None
    good_since: float | None = None
    alert: dict | None = None
    flaps: int = 0
    details: dict = field(default_factory=dict)


@dataclass
class Expectation:
    """A target expected offline until ``until`` (an operator ordered it), and why."""

    since: float
    until: float
    why: str


class Engine:
    """Rules applied to observations; alerts kept in ``book``; ``clock`` is wall time (injectable)."""

    def __init__(self, book: AlertBook, clock: Callable[[], float] = time.time, server_version: str = ""):
        self.book, self.clock, self.server_version = book, clock, server_version
        self.rules: dict[str, Rule] = {}
        self.tracks: dict[tuple[str, str], Track] = {}
        self.expected: dict[str, Expectation] = {}
        self.reload_rules()
        for row in book.live():
            track = self._track(row["rule"], row["target"])
            track.alert, track.value, track.details = row, row["value"], dict(row["details"])
            track.flaps = int(track.details.get("flaps", 0))
            window = track.details.get("expected_window")
            if row["state"] == SUPPRESSED and type(window) is list and len(window) == 2:  # a restart inside a reboot's window
                why = row["suppressed"].removeprefix(wording.suppressed(""))
                self.expected[row["target"]] = Expectation(float(window[0]), float(window[1]), why)

    def reload_rules(self) -> list[Notice]:
        """Take the book's rules; alerts of a removed or disabled rule resolve."""
        self.rules = {r.name: r for r in self.book.rules()}
        notices = []
        for track in list(self.tracks.values()):
            rule = self.rules.get(track.rule)
            if rule is None or not rule.enabled:
                if track.alert is not None:
                    gone = rule or Rule(name=track.rule, kind="offline")
                    notices += self._resolve(gone, track, self.clock(), "the rule was removed or disabled")
                del self.tracks[(track.rule, track.target)]
        return notices

    def _track(self, rule: str, target: str) -> Track:
        return self.tracks.setdefault((rule, target), Track(rule, target))

    def _active(self, kind: str) -> list[Rule]:
        return [r for r in self.rules.values() if r.kind == kind and r.enabled]

    # -- observations -----------------------------------------------------------------------
    def presence(self, target: str, online: bool, since: float | None = None) -> list[Notice]:
        """An agent went online or offline (``since``: when, if earlier than now)."""
        now = self.clock()
        notices = []
        for rule in self._active("offline"):
            track = self._track(rule.name, target)
            if not online and track.verdict != BAD:
                track.bad_since = since if since is not None else now
            notices += self._step(rule, track, GOOD if online else BAD, None, now)
        return notices

    def sysinfo(self, target: str, data: dict) -> list[Notice]:
        """An agent's sysinfo report: each cpu, disk and version rule judges its value (missing or odd ones are skipped)."""
        now = self.clock()
        notices = []
        for rule in [r for r in self.rules.values() if r.kind in SYSINFO_KEYS and r.enabled]:
            value = data.get(SYSINFO_KEYS[rule.kind])
            if rule.kind in PERCENT_KINDS:
                if type(value) not in (int, float) or not 0 <= value <= 100:
                    continue
            elif type(value) is not str or not value:
                continue
            else:
                rule = replace(rule, minimum=rule.minimum or self.server_version)
            track = self._track(rule.name, target)
            if rule.kind == "disk":
                track.details["mount"] = str(data.get("disk_percent_mount") or "")[:200]
            if rule.kind == "version":
                track.details["minimum"] = rule.minimum
            notices += self._step(rule, track, rule.judge(value), value, now)
        return notices

    def security(self, target: str, event: str, detail: str) -> list[Notice]:
        """A security record: each security rule naming ``event`` opens (or counts into) its alert."""
        now = self.clock()
        notices = []
        for rule in [r for r in self._active("security") if event in r.events]:
            track = self._track(rule.name, target)
            track.details["count"] = int(track.details.get("count", 0)) + 1 if track.alert else 1
            track.details["detail"] = detail[:500]
            notices += self._step(rule, track, BAD, event, now)
        return notices

    def expect_offline(self, target: str, window_s: float, why: str) -> None:
        """``target`` going offline in the next ``window_s`` is expected (an operator ordered it): no notice."""
        now = self.clock()
        self.expected[target] = Expectation(now, now + window_s, why)

    # -- the state machine ------------------------------------------------------------------
    def _wait(self, rule: Rule) -> float:
        return rule.threshold if rule.kind == "offline" else rule.for_s

    def _step(self, rule: Rule, track: Track, verdict: str, value, now: float) -> list[Notice]:
        if verdict == BAD:
            if track.alert is not None and track.good_since is not None:
                track.flaps += 1
            if track.bad_since is None:
                track.bad_since = now
            track.verdict, track.good_since = BAD, None
            track.value = value if rule.kind != "offline" else now - track.bad_since
            if track.alert is None:
                return self._open(rule, track, now) if now - track.bad_since >= self._wait(rule) else []
            return self._update(rule, track, now)
        track.bad_since = None
        track.verdict = verdict
        if verdict == HOLD or track.alert is None:
            track.good_since = None
            return []
        if track.good_since is None:
            track.good_since = now
        if now - track.good_since >= rule.clear_s:
            return self._resolve(rule, track, now, "back to normal")
        return []

    def _details(self, rule: Rule, track: Track) -> dict:
        kept = {k: v for k, v in track.details.items() if v is not None}
        return {**kept, "threshold": rule.threshold, "flaps": track.flaps}

    def _open(self, rule: Rule, track: Track, now: float) -> list[Notice]:
        details = self._details(rule, track)
        expectation = self.expected.get(track.target) if rule.kind == "offline" else None
        title = wording.title(rule, track.target, track.value, details)
        text = wording.text(rule, track.target, track.value, details)
        if expectation is not None and expectation.since <= track.bad_since <= expectation.until and now < expectation.until:
            details["expected_window"] = [expectation.since, expectation.until]
            track.alert = self.book.open(rule.name, track.target, SUPPRESSED, rule.severity, title, text, track.value, now,
                                         suppressed=wording.suppressed(expectation.why), details=details)
            return []
        track.alert = self.book.open(rule.name, track.target, OPEN, rule.severity, title, text, track.value, now, details=details)
        return [self._notice(rule, track.alert, OPENED, now)]

    def _update(self, rule: Rule, track: Track, now: float) -> list[Notice]:
        alert = track.alert
        if alert["state"] != OPEN:
            return []
        moved = (type(track.value) in (int, float) and type(alert["value"]) in (int, float) and rule.kind != "offline"
                 and abs(track.value - alert["value"]) >= rule.update_delta)
        changed = moved or track.flaps != alert["details"].get("flaps", 0) or track.details.get("count") != alert["details"].get("count")
        if not changed or now - (alert["notified_at"] or 0) < rule.update_s:
            return []
        details = self._details(rule, track)
        alert.update(value=track.value, details=details, updated_at=now, notified_at=now,
                     title=wording.title(rule, track.target, track.value, details),
                     text=wording.text(rule, track.target, track.value, details))
        track.alert = self.book.save(alert)
        return [self._notice(rule, track.alert, UPDATED, now)]

    def _resolve(self, rule: Rule, track: Track, now: float, how: str) -> list[Notice]:
        alert, told = track.alert, track.alert["state"] == OPEN
        alert.update(state=RESOLVED, resolved_at=now, updated_at=now, details=self._details(rule, track),
                     text=wording.resolved_text(rule, track.target, how) if told else alert["text"])
        if told:
            alert["notified_at"] = now
        track.alert, track.flaps, track.good_since = self.book.save(alert), 0, None
        notices = [self._notice(rule, track.alert, TOLD_RESOLVED, now)] if told else []
        track.alert, track.details = None, {}
        return notices

    def _notice(self, rule: Rule, alert: dict, state: str, now: float) -> Notice:
        details = {**alert["details"], "alert_id": alert["id"], "value": alert["value"]}
        return Notice(ALERT, f"{rule.name}:{alert['target']}", state, rule.name, rule.severity, alert["title"],
                      alert["text"], alert["target"], now, details)

    # -- time and people --------------------------------------------------------------------
    def tick(self) -> list[Notice]:
        """What time alone changes: an offline held long enough opens, a suppression's window
        ends, a good state held ``clear_s`` resolves."""
        now = self.clock()
        for target in [t for t, e in self.expected.items() if e.until <= now and not self._suppressing(t)]:
            del self.expected[target]
        notices = []
        for track in list(self.tracks.values()):
            rule = self.rules.get(track.rule)
            if rule is None or not rule.enabled:
                continue
            if track.verdict == BAD and rule.kind == "offline":
                if track.alert is not None and track.alert["state"] == SUPPRESSED:
                    notices += self._unsuppress(rule, track, now)
                else:
                    notices += self._step(rule, track, BAD, None, now)
            elif track.verdict == GOOD and track.alert is not None:
                notices += self._step(rule, track, GOOD, track.value, now)
        return notices

    def _suppressing(self, target: str) -> bool:
        return any(t.target == target and t.alert is not None and t.alert["state"] == SUPPRESSED for t in self.tracks.values())

    def _unsuppress(self, rule: Rule, track: Track, now: float) -> list[Notice]:
        """A suppressed offline whose window has ended: still offline, so it opens and people are told."""
        expectation = self.expected.get(track.target)
        if expectation is not None and now < expectation.until:
            return []
        self.expected.pop(track.target, None)
        alert = track.alert
        track.value = now - track.bad_since if track.bad_since is not None else alert["value"]
        details = {**self._details(rule, track), "expected": alert["suppressed"].removeprefix(wording.suppressed(""))}
        track.details.pop("expected_window", None)
        alert.update(state=OPEN, value=track.value, details=details, updated_at=now, notified_at=now,
                     text=wording.text(rule, track.target, track.value, details))
        track.alert = self.book.save(alert)
        return [self._notice(rule, track.alert, OPENED, now)]

    def ack(self, alert_id: int, requester: dict, reason: str) -> tuple[dict, list[Notice]]:
        """An operator acknowledges a live alert, named, with a reason; a security alert resolves by it.
        ValueError if there is no such live alert."""
        now = self.clock()
        alert = self.book.get(alert_id)
        if alert is None or alert["state"] == RESOLVED:
            raise ValueError(f"no open alert {alert_id} (ems alerts lists them)")
        track = self.tracks.get((alert["rule"], alert["target"]))
        person = str(requester.get("name") or requester.get("client_id", "?"))
        alert.update(acked_by=str(requester.get("client_id", "?")), acked_name=person, ack_reason=reason, acked_at=now)
        rule = self.rules.get(alert["rule"])
        if track is None or track.alert is None:
            return self.book.save(alert), []
        track.alert = self.book.save(alert)
        if rule is not None and rule.kind == "security":
            notices = self._resolve(rule, track, now, f"acknowledged by {person}: {reason}")
            return self.book.get(alert_id), notices
        return track.alert, []
