"""Which notices a server request may silence: only those local policy leaves optional.

``LocalPolicy.mandatory_notices`` (set at install) names the notice kinds
the employee always sees. :func:`announce` is the one place that applies
it: handlers pass the command's ``args`` and whatever they say, a
mandatory notice is shown; a request to hide one is refused and written to
the access log, and reported as a security event.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

from agent.context import AgentContext
from agent.notice.text import one_line
from agent.notice.who import operator_label
from broker.core.envelope import Kind

#: the access-log entry written when a server asks to hide a notice this computer makes mandatory
SILENCE_REFUSED = "notice silencing refused"
log = logging.getLogger(__name__)

#: argument names a server could use to ask for no on-screen notice
SILENCING_FLAGS = ("silent", "quiet", "no_notice", "hide_notice")
#: argument names that silence when set to false
NOTICE_SWITCHES = ("notice", "notify", "show_notice")


def silence_requested(args: Mapping) -> bool:
    """True when the command's arguments ask for the notice to be hidden."""
    if any(bool(args.get(name)) for name in SILENCING_FLAGS):
        return True
    return any(name in args and args[name] is False for name in NOTICE_SWITCHES)


def announce(ctx: AgentContext, kind: str, title: str, text: str, args: Mapping | None = None) -> bool:
    """Show notice ``kind`` unless the request silences it and local policy allows that.

    Returns True when the notice was shown. Either way it is in the access
    log (``ctx.notify`` writes it; a silenced one is written here).
    """
    args = args or {}
    if not silence_requested(args):
        ctx.notify(title, text)
        return True
    if kind in ctx.policy.mandatory_notices:
        who = operator_label(ctx) if ctx.operator else "the server"
        ctx.access_log(SILENCE_REFUSED, f"the {kind!r} notice is mandatory on this computer", operator=who)
        _report_refusal(ctx, kind)
        ctx.notify(title, text)
        return True
    ctx.access_log(one_line(title), f"{one_line(text)} (not shown on screen: the operator asked for no notice)", kind="notice")
    log.info("notice %r not shown: silenced by %s (allowed by local policy)", kind, ctx.operator)
    return False


def _report_refusal(ctx: AgentContext, kind: str) -> None:
    data = {"event": "notice_silence_refused", "notice": kind, "operator": ctx.operator}
    try:
        ctx.report(Kind.SECURITY, "notice_silence_refused", data)
    except Exception as exc:  # the refusal itself already happened and is logged locally
        log.warning("could not report a refused notice silencing: %s", exc)
