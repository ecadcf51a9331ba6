"""Alert rules: what each kind watches, how a rule is checked, and the defaults.

A rule has a ``name`` (its id), a ``kind`` and the fields that kind reads:

* ``offline``: an agent offline longer than ``threshold`` seconds (presence records);
* ``cpu``: ``cpu_percent`` of the agents' sysinfo above ``threshold`` % for ``for_s`` seconds;
* ``disk``: ``disk_percent`` (the fullest local disk) above ``threshold`` %;
* ``version``: the agent's EMS version older than ``minimum`` (``""``: the server's own);
* ``security``: a security record whose ``event`` is in ``events``.

Every rule has hysteresis: a value alert resolves only below ``threshold - margin``,
and any alert only once the good state has held ``clear_s`` seconds (a flapping
target keeps one alert). Updates go out at most once per ``update_s`` and only
when the value moved by ``update_delta`` or more.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields

from broker.core.selectors import version_tuple

KINDS = ("offline", "cpu", "disk", "version", "security")
PERCENT_KINDS = ("cpu", "disk")
SEVERITIES = ("info", "warning", "critical")
#: what a judged value says about a rule's condition
BAD, GOOD, HOLD = "bad", "good", "hold"
#: the longest duration a rule may name: 30 days
MAX_SECONDS = 30 * 86400
MAX_EVENTS = 50
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")


class RuleError(ValueError):
    """A rule that cannot be kept; the message says which field and what it takes."""


@dataclass
class Rule:
    """One alert rule (see the module's docstring for what each field means to each kind)."""

    name: str
    kind: str
    threshold: float = 0.0
    for_s: float = 0.0
    margin: float = 0.0
    clear_s: float = 30.0
    update_s: float = 300.0
    update_delta: float = 5.0
    severity: str = "warning"
    enabled: bool = True
    minimum: str = ""
    events: list[str] = field(default_factory=list)
    description: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    def judge(self, value) -> str:
        """BAD, GOOD or HOLD for an observed value (a percent, or a version text for ``version``)."""
        if self.kind in PERCENT_KINDS:
            if value > self.threshold:
                return BAD
            return GOOD if value < self.threshold - self.margin else HOLD
        if self.kind == "version":
            have, want = version_tuple(str(value)), version_tuple(self.minimum)
            if have is None or want is None:
                return HOLD  # "unknown" or a test build: nothing to compare
            return BAD if have < want else GOOD
        raise RuleError(f"a {self.kind} rule is not judged by a value")


_NUMBER_LIMITS = {
    "threshold": (0.0, float(MAX_SECONDS)), "for_s": (0.0, float(MAX_SECONDS)), "margin": (0.0, 100.0),
    "clear_s": (0.0, float(MAX_SECONDS)), "update_s": (0.0, float(MAX_SECONDS)), "update_delta": (0.0, 1e6),
}


def _number(name: str, value) -> float:
    low, high = _NUMBER_LIMITS[name]
    if type(value) not in (int, float) or (type(value) is float and not math.isfinite(value)):
        raise RuleError(f"rule field {name} must be a number from {low:g} to {high:g}, not {value!r:.40}")
    if not low <= value <= high:
        raise RuleError(f"rule field {name} must be from {low:g} to {high:g}; {value!r:.40} is outside")
    return float(value)


def _text(name: str, value, limit: int) -> str:
    if type(value) is not str or len(value) > limit:
        raise RuleError(f"rule field {name} must be text of at most {limit} characters")
    return value


def check(raw) -> Rule:
    """A :class:`Rule` from an admin's map, every field checked; :class:`RuleError` says what is wrong."""
    if type(raw) is not dict:
        raise RuleError("a rule is a map of fields (name, kind, threshold, ...)")
    known = {f.name for f in fields(Rule)}
    unknown = sorted(str(k)[:40] for k in raw if k not in known)
    if unknown:
        raise RuleError(f"unknown rule field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    name, kind = raw.get("name"), raw.get("kind")
    if type(name) is not str or not _NAME.fullmatch(name):
        raise RuleError("rule name: 1-40 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit")
    if kind not in KINDS:
        raise RuleError(f"rule kind must be one of {', '.join(KINDS)}")
    rule = Rule(name=name, kind=kind)
    for key in _NUMBER_LIMITS:
        if key in raw:
            setattr(rule, key, _number(key, raw[key]))
    if "severity" in raw and raw["severity"] not in SEVERITIES:
        raise RuleError(f"rule severity must be one of {', '.join(SEVERITIES)}")
    rule.severity = raw.get("severity", rule.severity)
    if type(raw.get("enabled", True)) is not bool:
        raise RuleError("rule field enabled must be true or false")
    rule.enabled = raw.get("enabled", True)
    rule.minimum = _text("minimum", raw.get("minimum", ""), 40)
    rule.description = _text("description", raw.get("description", ""), 200)
    events = raw.get("events", [])
    if type(events) is not list or len(events) > MAX_EVENTS:
        raise RuleError(f"rule field events must be a list of at most {MAX_EVENTS} event names")
    rule.events = [_text("events", e, 64) for e in events]
    return _kind_checked(rule)


def _kind_checked(rule: Rule) -> Rule:
    if rule.kind in PERCENT_KINDS and not 0 < rule.threshold <= 100:
        raise RuleError(f"a {rule.kind} rule's threshold is a percent above 0 and at most 100")
    if rule.kind == "security" and not rule.events:
        raise RuleError("a security rule names the events it watches (events: [\"agent_id_clone\", ...])")
    if rule.kind == "version" and rule.minimum and version_tuple(rule.minimum) is None:
        raise RuleError(f"rule field minimum {rule.minimum!r} is not a version such as 1.4.2")
    return rule


#: the rules a new alerts.db starts with (admins change them: ems alerts rule set ...)
DEFAULT_RULES = (
    {"name": "offline", "kind": "offline", "threshold": 300, "description": "an agent offline for 5 minutes"},
    {"name": "cpu-high", "kind": "cpu", "threshold": 90, "for_s": 600, "margin": 10,
     "description": "CPU above 90 % for 10 minutes (resolves below 80 %)"},
    {"name": "disk-full", "kind": "disk", "threshold": 90, "margin": 3, "severity": "critical",
     "description": "the fullest local disk above 90 % (resolves below 87 %)"},
    {"name": "agent-outdated", "kind": "version", "severity": "info", "clear_s": 0,
     "description": "an agent older than this server"},
    {"name": "security", "kind": "security", "severity": "critical", "clear_s": 0,
     "events": ["agent_id_clone", "agent_id_twin", "impersonation", "bad_enrol_token", "store_unavailable"],
     "description": "security events that need a person (acknowledge to resolve)"},
)


def defaults() -> list[Rule]:
    return [check(dict(raw)) for raw in DEFAULT_RULES]
