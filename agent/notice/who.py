"""How the employee reads who is accessing the computer and why: one place for both.

The broker stamps every command with the operator: the key's id
(``ctx.operator``) and the person's display name, with the service that
vouched for them (``AgentContext.operator_label``: "Jane Doe", "Jane Doe via
admin-http"). Every notice, prompt and indicator line takes its words from here.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.notice.text import one_line

#: the longest reason a notice or the indicator shows (the access log keeps all of it)
SHOWN_REASON_CHARS = 200


def operator_label(ctx: Any) -> str:
    """The person as the employee should read it, on one line: display name, else key id, else "an operator"."""
    label = getattr(ctx, "operator_label", "") or getattr(ctx, "operator", "") or "an operator"
    return one_line(label)


def reason_sentence(reason: str) -> str:
    """The reason as every notice ends: "Reason given: ticket 4711." or "No reason was given."."""
    reason = one_line(reason or "")[:SHOWN_REASON_CHARS]
    return f"Reason given: {reason}." if reason else "No reason was given."


def access_reason(ctx: Any, args: Mapping | None = None) -> str:
    """The reason given for this access: the broker's stamp, else the command's ``reason`` argument."""
    stamped = getattr(ctx, "reason", "")
    raw = stamped or (args or {}).get("reason", "")
    return one_line(raw)[:SHOWN_REASON_CHARS] if isinstance(raw, str) else ""
