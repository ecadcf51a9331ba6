"""Running a :class:`~agent.power.plans.Plan`: each step to completion with a timeout (its whole process
group stopped on timeout), or detached; output kept head and tail.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable

from agent.context import CommandError
from agent.power.parsers import PARSERS
from agent.power.plans import Action, Plan, Planner, Step

log = logging.getLogger(__name__)


#: Output kept per step: the head and the tail of longer output.
OUTPUT_HEAD_BYTES = 4 * 1024
OUTPUT_TAIL_BYTES = 12 * 1024
#: Update names returned (the count is always complete).
MAX_UPDATE_NAMES = 500


class PowerExecutor(Planner):
    """Plans (see :class:`Planner`) and runs power and update actions for one platform.

    In ``dry_run`` nothing runs: :meth:`execute` only describes the plan.
    ``clock`` times the steps.
    """

    def __init__(
        self,
        platform: str | None = None,
        which: Callable[[str], str | None] = shutil.which,
        dry_run: bool = False,
        systemd: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__(platform, which, systemd)
        self.dry_run = dry_run
        self.clock = clock

    def execute(self, plan: Plan) -> dict:
        """Run ``plan`` (or, in dry run, only describe it). The result map.

        Raises :class:`CommandError` when a step is missing, times out or
        exits with a code that is not in its ``ok_codes``; the message
        ends with the tail of its output.
        """
        result: dict = {
            "action": plan.action.value,
            "platform": plan.platform,
            "package_manager": plan.package_manager,
            "dry_run": self.dry_run,
            "argv": plan.argv,
        }
        if plan.delay_s is not None:
            result["delay_s"] = plan.delay_s
        if self.dry_run:
            log.info("dry run of %s: would run %s", plan.action.value, plan.argv)
            return result
        steps, updates, available = [], [], None
        for step in plan.steps:
            outcome = self._run(step)
            steps.append(outcome)
            if step.parser and outcome.get("output") is not None:
                updates = PARSERS[step.parser](outcome.pop("_full_output"))
                available = bool(updates) or (step.updates_code is not None and outcome["returncode"] == step.updates_code)
            outcome.pop("_full_output", None)
        result["steps"] = steps
        if plan.action in (Action.UPDATE_CHECK, Action.UPDATE_APPLY):
            result["update_count"] = len(updates)
            result["updates"] = updates[:MAX_UPDATE_NAMES]
        if plan.action is Action.UPDATE_CHECK:
            result["updates_available"] = available
        return result

    def _run(self, step: Step) -> dict:
        env = {**os.environ, **dict(step.env)} if step.env else None
        shown = " ".join(step.argv) if len(" ".join(step.argv)) < 200 else step.argv[0] + " ..."
        started = self.clock()
        if step.detach:
            try:
                proc = subprocess.Popen(
                    step.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    env=env, start_new_session=True,
                )
            except OSError as exc:
                raise CommandError(f"could not start {shown}: {exc}") from exc
            log.info("started %s (pid %d)", shown, proc.pid)
            return {"argv": list(step.argv), "pid": proc.pid, "detached": True}
        try:
            returncode, stdout = _run_bounded(step.argv, env, step.timeout_s)
        except FileNotFoundError as exc:
            raise CommandError(f"{step.argv[0]} is not installed on this machine") from exc
        except subprocess.TimeoutExpired as exc:
            tail = truncate(exc.output or b"", 0)[0]
            raise CommandError(
                f"{shown} did not finish within {step.timeout_s:g} s and was stopped with its child processes; "
                f"output:\n{tail}"
            ) from exc
        except OSError as exc:
            raise CommandError(f"could not run {shown}: {exc}") from exc
        duration = round(self.clock() - started, 3)
        log.info("%s exited %d after %.1f s", shown, returncode, duration)
        if returncode not in step.ok_codes:
            raise CommandError(f"{shown} exited with code {returncode}; output:\n{truncate(stdout, 0)[0]}")
        text = stdout.decode("utf-8", "replace")
        output, cut = truncate(stdout)
        return {
            "argv": list(step.argv),
            "returncode": returncode,
            "output": output,
            "output_truncated": cut,
            "duration_s": duration,
            "_full_output": text,
        }


def _run_bounded(argv: tuple[str, ...], env: dict | None, timeout_s: float) -> tuple[int, bytes]:
    """Run ``argv`` to completion (stdout and stderr together); on timeout stop it and its children.

    The child gets a session (POSIX) or process group (Windows) of its own
    so that a timeout stops helpers it started too (apt's download methods...).
    """
    posix = os.name == "posix"
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
        start_new_session=posix,
        creationflags=0 if posix else subprocess.CREATE_NEW_PROCESS_GROUP,
    )
    try:
        stdout, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        if posix:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        else:
            proc.kill()
        try:
            stdout, _ = proc.communicate(timeout=5.0)
        except subprocess.TimeoutExpired:  # a helper that left the session still holds the pipe
            stdout = b""
        exc.output = stdout
        raise
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc.returncode, stdout


def truncate(raw: bytes, head: int = OUTPUT_HEAD_BYTES, tail: int = OUTPUT_TAIL_BYTES) -> tuple[str, bool]:
    """``raw`` as text, keeping its first ``head`` and last ``tail`` bytes; and whether it was cut."""
    if len(raw) <= head + tail:
        return raw.decode("utf-8", "replace"), False
    cut = len(raw) - head - tail
    text = raw[:head].decode("utf-8", "replace") + f"\n... [{cut} bytes cut] ...\n" + raw[-tail:].decode("utf-8", "replace")
    return text, True
