"""The power capability: ``power.reboot``, ``power.shutdown``, ``update.check``, ``update.apply``.

Reboot and shutdown tell the logged-in user first (``ctx.notify``); so does
an update. Each command builds its executor from the local policy on every
call (dry run or not), so :class:`Power` keeps no state between commands.
"""
from __future__ import annotations

from collections.abc import Callable

from agent.capability import Capability, Handler
from agent.context import AgentContext, CommandError
from agent.notice.who import access_reason, reason_sentence
from agent.power.executor import PowerExecutor
from agent.power.plans import DEFAULT_DELAY_S, Action

#: what a notice starts with when power actions are only simulated (dry run)
DRY_RUN_LABEL = "[test only, nothing will happen]"


def executor_for(ctx: AgentContext) -> PowerExecutor:
    """The executor for this machine, in dry run if the local policy says so."""
    return PowerExecutor(dry_run=ctx.policy.power_dry_run)


class Power(Capability):
    """Reboot, shutdown and OS updates; ``executor(ctx)`` makes the executor (tests pass another platform's)."""

    name = "power"

    def __init__(self, executor: Callable[[AgentContext], PowerExecutor] = executor_for):
        self._executor = executor

    def handlers(self) -> dict[str, Handler]:
        return {
            "power.reboot": self.reboot,
            "power.shutdown": self.shutdown,
            "update.check": self.update_check,
            "update.apply": self.update_apply,
        }

    def reboot(self, args: dict, ctx: AgentContext) -> dict:
        """Restart the computer after telling the user: ``delay_s`` (60), ``reason``.

        Linux and macOS schedule in whole minutes (rounded up); 0 restarts now.
        """
        return self._power(Action.REBOOT, args, ctx)

    def shutdown(self, args: dict, ctx: AgentContext) -> dict:
        """Shut the computer down after telling the user: ``delay_s`` (60), ``reason``."""
        return self._power(Action.SHUTDOWN, args, ctx)

    def update_check(self, args: dict, ctx: AgentContext) -> dict:
        """List pending OS updates: ``refresh`` (true) re-reads the package lists first.

        Returns ``updates_available``, ``update_count``, ``updates`` (names)
        and each step's exit code and output.
        """
        refresh = args.get("refresh", True)
        if type(refresh) is not bool:
            raise CommandError("refresh must be true or false")
        executor = self._executor(ctx)
        return executor.execute(executor.plan(Action.UPDATE_CHECK, refresh=refresh))

    def update_apply(self, args: dict, ctx: AgentContext) -> dict:
        """Install all pending OS updates non-interactively; does not reboot by itself."""
        executor = self._executor(ctx)
        plan = executor.plan(Action.UPDATE_APPLY)
        notice = (f"{ctx.operator_label} is installing operating system updates on this computer. "
                  + reason_sentence(access_reason(ctx, args)))
        ctx.notify("Installing updates", f"{DRY_RUN_LABEL} {notice}" if executor.dry_run else notice)
        return executor.execute(plan)

    def _power(self, action: Action, args: dict, ctx: AgentContext) -> dict:
        executor = self._executor(ctx)
        delay = args.get("delay_s", DEFAULT_DELAY_S)
        reason = args.get("reason") or ""
        if type(reason) is not str:
            raise CommandError("reason must be a string")
        verb = "restart" if action is Action.REBOOT else "shut down"
        plan = executor.plan(action, delay, message=f"EMS: your IT team will {verb} this computer. {reason}".strip())
        who = ctx.operator_label
        notice = (
            f"{who} will {verb} this computer in {delay_text(plan.delay_s or 0)}. Please save your work. "
            + reason_sentence(reason)
        )
        if executor.dry_run:
            notice = f"{DRY_RUN_LABEL} {notice}"
        ctx.notify(f"This computer will {verb}", notice)
        result = executor.execute(plan)
        result["notice"] = notice
        return result


def delay_text(seconds: int) -> str:
    """A delay for a person: "a moment", "less than a minute", "3 minutes"."""
    if seconds < 60:
        return "less than a minute" if seconds else "a moment"
    minutes = seconds // 60
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
