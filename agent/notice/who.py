"""How the employee reads who is accessing the computer and why: one place for both.

The broker stamps the operator's key id on every command (``ctx.operator``);
where it also stamps the operator's display name and the command's reason
(``ctx.operator_name``, ``ctx.reason``), those win. Every notice, prompt and
indicator line takes its words from here.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.notice.text import one_line

MAX_REASON_CHARS = 200


def operator_label(ctx: Any) -> str:
    """The person as the employee should read it: display name, else key id, else "an operator"."""
    return one_line(getattr(ctx, "operator_name", "") or getattr(ctx, "operator", "") or "an operator")


def access_reason(ctx: Any, args: Mapping | None = None) -> str:
    """The reason given for this access: the broker's stamp, else the command's ``reason`` argument."""
    stamped = getattr(ctx, "reason", "")
    raw = stamped or (args or {}).get("reason", "")
    return one_line(raw)[:MAX_REASON_CHARS] if isinstance(raw, str) else ""
