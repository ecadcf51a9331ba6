"""Consent, set on the endpoint: the employee's Allow before control (or live view).

``LocalPolicy.ask_before`` (written at install) names the accesses that wait
for the employee; :func:`require_consent` is the one place that applies it.
A server can ask for consent where the policy does not (``ask_consent:
true``), never skip it: an argument asking to skip it is refused, written
to the access log and reported as a security event, and the employee is
asked anyway. "Decline" or no answer within ``consent_timeout_s`` fails the
command with "declined by the user" / "no answer from the user", which is
what the operator sees.
"""
from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Callable, Mapping

from agent.context import AgentContext, CommandError
from agent.notice.display import child_env, gui_available, module_argv
from agent.notice.text import clip
from agent.notice.who import access_reason, operator_label, reason_sentence
from broker.core.envelope import Kind

log = logging.getLogger(__name__)

#: arguments a server could use to ask for no consent prompt
SKIP_FLAGS = ("skip_consent", "no_consent", "without_consent")
#: ``consent: false`` skips too; ``ask_consent: true`` tightens (asks where policy does not)
CONSENT_SWITCH = "consent"
ASK_FLAG = "ask_consent"
#: every consent argument a command accepts (for the commands that check their arguments)
CONSENT_ARGS = (*SKIP_FLAGS, CONSENT_SWITCH, ASK_FLAG)

DECLINED = "declined by the user"
NO_ANSWER = "no answer from the user"
#: what is asked, by access kind: "<who> wants to <...>"
WANTS_TO = {"remote_control": "control this computer", "live_view": "view your screen"}

#: ask(question, reason, timeout_s) -> "allow" | "decline" | "timeout"
Ask = Callable[[str, str, float], str]


def skip_requested(args: Mapping) -> bool:
    """True when the command's arguments ask to go ahead without the employee's answer."""
    return any(bool(args.get(flag)) for flag in SKIP_FLAGS) or args.get(CONSENT_SWITCH) is False


def require_consent(ctx: AgentContext, kind: str, args: Mapping, ask: Ask | None = None) -> None:
    """Ask the employee when local policy (or the request) wants it; CommandError unless they allow."""
    if skip_requested(args):
        _refuse_skip(ctx, kind)
    if kind not in ctx.policy.ask_before and args.get(ASK_FLAG) is not True:
        return
    who, reason = operator_label(ctx), access_reason(ctx, args)
    question = f"{who} wants to {WANTS_TO.get(kind, 'access this computer')}"
    answer = (ask or ask_on_screen)(question, reason, ctx.policy.consent_timeout_s)
    what = kind.replace("_", " ")
    if answer == "allow":
        ctx.access_log(f"{what} allowed", f"you allowed {who}" + (f" (reason: {reason})" if reason else ""))
        return
    if answer == "decline":
        ctx.notify(f"{what.capitalize()} declined", f"You declined: {who} cannot {WANTS_TO.get(kind, 'access this computer')}. "
                   + reason_sentence(reason))
        raise CommandError(DECLINED)
    ctx.notify(f"{what.capitalize()} not allowed", f"{who} asked to {WANTS_TO.get(kind, 'access this computer')}; "
               f"there was no answer within {ctx.policy.consent_timeout_s:g} s, so the answer is no.")
    raise CommandError(NO_ANSWER)


def ask_on_screen(question: str, reason: str, timeout_s: float) -> str:
    """Show the consent prompt (:mod:`agent.indicator.prompt`) and wait for its answer."""
    if not gui_available():
        log.warning("consent needed but there is no screen to ask on: treated as no answer")
        return "timeout"
    argv = module_argv("agent.indicator.prompt", "--timeout", f"{timeout_s:g}", "--", clip(question, 200), clip(reason, 300))
    try:
        done = subprocess.run(argv, env=child_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout_s + 15, creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("the consent prompt failed (%s): treated as no answer", exc)
        return "timeout"
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])["answer"]
    except (ValueError, IndexError, KeyError, TypeError):
        log.warning("the consent prompt gave no answer (exit %s): %s", done.returncode, done.stderr.strip()[-300:])
        return "timeout"
    return answer if answer in ("allow", "decline") else "timeout"


def _refuse_skip(ctx: AgentContext, kind: str) -> None:
    who = operator_label(ctx) if ctx.operator else "the server"
    if kind in ctx.policy.ask_before:
        ctx.access_log("consent skipping refused",
                       f"{who} asked to skip your consent for {kind.replace('_', ' ')}; this computer's local policy requires it")
    try:
        ctx.report(Kind.SECURITY, "consent_skip_refused", {"event": "consent_skip_refused", "access": kind, "operator": ctx.operator})
    except Exception as exc:  # the refusal itself already happened
        log.warning("could not report a refused consent skip: %s", exc)
