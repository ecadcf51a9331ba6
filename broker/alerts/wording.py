"""What an alert says: its title and text per rule kind, and the suppression note.

One place for these words: the inbox, the CLI and every delivery show them as they are.
"""
from __future__ import annotations

from broker.alerts.rules import Rule


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 120 else f"{seconds:g} s"


def title(rule: Rule, target: str, value, details: dict) -> str:
    """A one-line title: what is wrong where."""
    if rule.kind == "offline":
        return f"{target} is offline"
    if rule.kind == "cpu":
        return f"{target}: CPU at {value:.0f} %"
    if rule.kind == "disk":
        mount = details.get("mount") or "a disk"
        return f"{target}: {mount} is {value:.0f} % full"
    if rule.kind == "version":
        return f"{target} runs EMS {value}, older than {details.get('minimum', '?')}"
    return f"{target}: security event {value}"


def text(rule: Rule, target: str, value, details: dict) -> str:
    """The longer text: the rule, its threshold and what would resolve it."""
    if rule.kind == "offline":
        core = f"offline for {_minutes(value)} (rule {rule.name}: longer than {_minutes(rule.threshold)})"
        if details.get("expected"):
            core += f"; it was expected back sooner: {details['expected']}"
        return core
    if rule.kind in ("cpu", "disk"):
        held = f" for {_minutes(rule.for_s)}" if rule.for_s else ""
        return (f"{value:.0f} % (rule {rule.name}: above {rule.threshold:g} %{held}; "
                f"resolves below {rule.threshold - rule.margin:g} %)")
    if rule.kind == "version":
        return f"rule {rule.name}: agents should run EMS {details.get('minimum', '?')} or newer"
    count = details.get("count", 1)
    return f"{details.get('detail', '')} (rule {rule.name}; {count} event(s); acknowledge to resolve)".strip()


def resolved_text(rule: Rule, target: str, how: str) -> str:
    return f"resolved: {how} (rule {rule.name})"


def suppressed(why: str) -> str:
    """The record of an expected offline: ``suppressed: reboot ordered by Jane (patching)``."""
    return f"suppressed: {why}"


def ordered(action: str, person: str, reason: str) -> str:
    """Why a target is expected to go offline: ``reboot ordered by Jane (patching)``."""
    return f"{action} ordered by {person or 'an operator'} ({reason or 'no reason given'})"
