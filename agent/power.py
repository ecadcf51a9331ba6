"""Reboot, shutdown and OS updates: the right commands for each platform behind one interface.

:class:`PowerExecutor` turns an action (:class:`Action`) into a
:class:`Plan`, a list of argv :class:`Step` s chosen for the platform and
the tools installed, and runs it (:meth:`PowerExecutor.execute`).

======== ================================= ========================================
platform update check / apply              reboot / shutdown
======== ================================= ========================================
Linux    the first of apt-get, dnf, yum,   ``systemctl reboot|poweroff`` (now) or
         zypper, pacman, apk found         ``shutdown -r|-P +minutes`` (delayed);
                                           without systemd ``shutdown``, detached
Windows  PowerShell and the Windows Update ``shutdown /r|/s /t seconds /c message``
         Agent COM API
         (``Microsoft.Update.Session``)
macOS    ``softwareupdate -l`` / ``-i -a`` ``shutdown -r|-h +minutes`` (or ``now``)
======== ================================= ========================================

In dry-run mode (:attr:`LocalPolicy.power_dry_run`, or the constructor
flag) nothing runs: the result says exactly which argv would run.

Reboot and shutdown tell the logged-in user first (``ctx.notify``) and
leave them ``delay_s`` seconds (60 by default; Linux and macOS count in
whole minutes, rounded up). Update commands run to completion with a
timeout and return their exit codes and (truncated) output; a failing step
fails the command with the tail of its output. They block the calling
thread for as long as the package manager takes.
"""
from __future__ import annotations

import enum
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.context import AgentContext, CommandError

log = logging.getLogger(__name__)

#: Linux package managers in the order they are looked for.
PACKAGE_MANAGERS = ("apt-get", "dnf", "yum", "zypper", "pacman", "apk")
#: Output kept per step: the head and the tail of longer output.
OUTPUT_HEAD_BYTES = 4 * 1024
OUTPUT_TAIL_BYTES = 12 * 1024
#: Update names returned (the count is always complete).
MAX_UPDATE_NAMES = 500
CHECK_TIMEOUT_S = 600.0
APPLY_TIMEOUT_S = 3 * 3600.0
#: Longest delay accepted for reboot/shutdown (a week).
MAX_DELAY_S = 7 * 24 * 3600
DEFAULT_DELAY_S = 60

_POWERSHELL = ("-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-Command")
_WU_SEARCH = (
    "$ErrorActionPreference='Stop';"
    "$s=New-Object -ComObject Microsoft.Update.Session;"
    "$r=$s.CreateUpdateSearcher().Search(\"IsInstalled=0 and IsHidden=0 and Type='Software'\");"
)
#: Lists pending Windows updates, one title per line.
WINDOWS_CHECK_SCRIPT = _WU_SEARCH + "foreach($u in $r.Updates){'UPDATE: '+$u.Title}"
#: Downloads and installs every pending Windows update (accepting EULAs).
WINDOWS_APPLY_SCRIPT = _WU_SEARCH + (
    "if($r.Updates.Count -eq 0){'No updates to install';exit 0};"
    "$c=New-Object -ComObject Microsoft.Update.UpdateColl;"
    "foreach($u in $r.Updates){if(-not $u.EulaAccepted){$u.AcceptEula()};[void]$c.Add($u);'UPDATE: '+$u.Title};"
    "$d=$s.CreateUpdateDownloader();$d.Updates=$c;[void]$d.Download();"
    "$i=$s.CreateUpdateInstaller();$i.Updates=$c;$res=$i.Install();"
    "'ResultCode='+$res.ResultCode+' RebootRequired='+$res.RebootRequired;"
    "if($res.ResultCode -ne 2){exit 1}"
)


class Action(str, enum.Enum):
    """What the executor can do."""

    REBOOT = "reboot"
    SHUTDOWN = "shutdown"
    UPDATE_CHECK = "update.check"
    UPDATE_APPLY = "update.apply"


@dataclass(frozen=True)
class Step:
    """One command of a plan.

    ``ok_codes`` are exit codes that are not failures; ``updates_code`` is
    the exit code meaning "updates are available" (dnf/yum: 100);
    ``parser`` names the function in :data:`PARSERS` that finds update
    names in the output; ``detach`` starts the command and does not wait
    (a ``shutdown`` that sleeps until its time).
    """

    argv: tuple[str, ...]
    timeout_s: float = CHECK_TIMEOUT_S
    ok_codes: frozenset[int] = frozenset({0})
    updates_code: int | None = None
    parser: str | None = None
    detach: bool = False
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Plan:
    """The steps for one action on one platform."""

    action: Action
    platform: str
    steps: tuple[Step, ...]
    package_manager: str | None = None
    delay_s: int | None = None

    @property
    def argv(self) -> list[list[str]]:
        return [list(step.argv) for step in self.steps]


def platform_name(value: str | None = None) -> str:
    """``linux``, ``windows`` or ``darwin`` for ``sys.platform``-like names."""
    value = (value or sys.platform).lower()
    if value.startswith("win"):
        return "windows"
    if value.startswith("darwin") or value == "macos":
        return "darwin"
    if value.startswith("linux"):
        return "linux"
    return value


# -- parsing update lists -------------------------------------------------------------


def _parse_apt(text: str) -> list[str]:
    # "bash/stable 5.2.15-2+b7 amd64 [upgradable from: 5.2.15-2+b2]"
    return [line.split("/", 1)[0] for line in text.splitlines() if "[upgradable from" in line]


def _parse_apt_simulate(text: str) -> list[str]:
    # "Inst bash [5.2.15-2+b2] (5.2.15-2+b7 Debian:12.5/stable [amd64])"
    return [line.split()[1] for line in text.splitlines() if line.startswith("Inst ") and len(line.split()) > 1]


def _parse_dnf(text: str) -> list[str]:
    names = []
    for line in text.splitlines():
        parts = line.split()
        if not parts or line.startswith((" ", "Last metadata", "Obsoleting", "Security:")):
            if line.startswith("Obsoleting"):
                break
            continue
        if len(parts) == 3 and "." in parts[0]:
            names.append(parts[0])
    return names


def _parse_zypper(text: str) -> list[str]:
    # "v | repo | name | current | available | arch"
    names = []
    for line in text.splitlines():
        cols = [c.strip() for c in line.split("|")]
        if len(cols) >= 5 and cols[0] == "v":
            names.append(cols[2])
    return names


def _parse_first_word(text: str) -> list[str]:
    # pacman -Qu / checkupdates: "name old -> new"
    return [line.split()[0] for line in text.splitlines() if line.strip() and "->" in line]


def _parse_apk(text: str) -> list[str]:
    # "musl-1.2.4-r1 < 1.2.4-r2"
    return [line.split()[0] for line in text.splitlines() if " < " in line]


def _parse_softwareupdate(text: str) -> list[str]:
    # "* Label: macOS Ventura 13.6.1-22G313"
    names = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("* Label:"):
            names.append(line[len("* Label:") :].strip())
        elif line.startswith("* ") and ":" not in line:
            names.append(line[2:].strip())
    return names


def _parse_windows(text: str) -> list[str]:
    return [line[len("UPDATE: ") :].strip() for line in text.splitlines() if line.startswith("UPDATE: ")]


PARSERS: dict[str, Callable[[str], list[str]]] = {
    "apt": _parse_apt,
    "apt-simulate": _parse_apt_simulate,
    "dnf": _parse_dnf,
    "zypper": _parse_zypper,
    "pacman": _parse_first_word,
    "apk": _parse_apk,
    "softwareupdate": _parse_softwareupdate,
    "windows": _parse_windows,
}


# -- the executor ---------------------------------------------------------------------


class PowerExecutor:
    """Plans and runs power and update actions for one platform.

    ``platform`` and ``which`` (name -> path or None) default to this
    machine's; tests pass others to see every platform's plan.
    ``systemd`` says whether systemd runs the machine (default: looked up).
    """

    def __init__(
        self,
        platform: str | None = None,
        which: Callable[[str], str | None] = shutil.which,
        dry_run: bool = False,
        systemd: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.platform = platform_name(platform)
        self.which = which
        self.dry_run = dry_run
        self.systemd = os.path.isdir("/run/systemd/system") if systemd is None else systemd
        self.clock = clock

    # -- planning ------------------------------------------------------------------

    def plan(self, action: Action | str, delay_s: int = DEFAULT_DELAY_S, message: str = "", refresh: bool = True) -> Plan:
        """The steps for ``action``. ``refresh`` re-reads the package lists before a check."""
        action = Action(action)
        if action in (Action.REBOOT, Action.SHUTDOWN):
            if type(delay_s) is not int or not 0 <= delay_s <= MAX_DELAY_S:
                raise CommandError(f"delay_s must be an integer from 0 to {MAX_DELAY_S}")
            return self._power_plan(action, delay_s, message)
        if self.platform == "linux":
            return self._linux_update_plan(action, refresh)
        if self.platform == "windows":
            script = WINDOWS_CHECK_SCRIPT if action is Action.UPDATE_CHECK else WINDOWS_APPLY_SCRIPT
            timeout = CHECK_TIMEOUT_S if action is Action.UPDATE_CHECK else APPLY_TIMEOUT_S
            step = Step((self._powershell(), *_POWERSHELL, script), timeout, parser="windows")
            return Plan(action, self.platform, (step,), "windows-update")
        if self.platform == "darwin":
            if action is Action.UPDATE_CHECK:
                step = Step(("softwareupdate", "--list"), CHECK_TIMEOUT_S, parser="softwareupdate")
            else:
                step = Step(("softwareupdate", "--install", "--all"), APPLY_TIMEOUT_S, parser="softwareupdate")
            return Plan(action, self.platform, (step,), "softwareupdate")
        raise CommandError(f"OS updates are not supported on {self.platform}")

    def _powershell(self) -> str:
        return "powershell.exe" if self.which("powershell.exe") or not self.which("pwsh") else "pwsh"

    def _power_plan(self, action: Action, delay_s: int, message: str) -> Plan:
        reboot = action is Action.REBOOT
        minutes = math.ceil(delay_s / 60)
        if self.platform == "windows":
            argv = ("shutdown", "/r" if reboot else "/s", "/t", str(delay_s))
            if message:
                argv += ("/c", message[:500])  # shutdown.exe's limit is 512 characters
            return Plan(action, self.platform, (Step(argv, 30.0),), delay_s=delay_s)
        if self.platform == "darwin":
            when = f"+{minutes}" if minutes else "now"
            argv = ("shutdown", "-r" if reboot else "-h", when) + ((message,) if message else ())
            return Plan(action, self.platform, (Step(argv, 30.0, detach=bool(minutes)),), delay_s=minutes * 60)
        if self.platform != "linux":
            raise CommandError(f"{action.value} is not supported on {self.platform}")
        has_systemctl = bool(self.which("systemctl")) and self.systemd
        if minutes == 0 and has_systemctl:
            step = Step(("systemctl", "reboot" if reboot else "poweroff"), 30.0)
        elif self.which("shutdown"):
            argv = ("shutdown", "-r" if reboot else "-P", f"+{minutes}" if minutes else "now")
            if message:
                argv += (message,)
            # systemd's shutdown schedules and returns; sysvinit's sleeps until the time
            step = Step(argv, 30.0, detach=bool(minutes) and not has_systemctl)
        elif has_systemctl:
            raise CommandError("a delayed reboot needs the shutdown command; use delay_s=0 or install it")
        else:
            raise CommandError("neither systemctl nor shutdown was found on this machine")
        return Plan(action, self.platform, (step,), delay_s=minutes * 60)

    def _linux_update_plan(self, action: Action, refresh: bool) -> Plan:
        manager = next((name for name in PACKAGE_MANAGERS if self.which(name)), None)
        if manager is None:
            raise CommandError(f"no supported package manager found (looked for {', '.join(PACKAGE_MANAGERS)})")
        check = action is Action.UPDATE_CHECK
        steps: list[Step]
        if manager == "apt-get":
            env = (("DEBIAN_FRONTEND", "noninteractive"), ("LC_ALL", "C"))
            update = Step(("apt-get", "update", "-q"), CHECK_TIMEOUT_S, env=env)
            if check:
                listing = (
                    Step(("apt", "list", "--upgradable"), CHECK_TIMEOUT_S, parser="apt", env=env)
                    if self.which("apt")
                    else Step(("apt-get", "-s", "-q", "upgrade"), CHECK_TIMEOUT_S, parser="apt-simulate", env=env)
                )
                steps = [update, listing] if refresh else [listing]
            else:
                upgrade = Step(
                    ("apt-get", "-y", "-q", "-o", "Dpkg::Options::=--force-confdef", "-o",
                     "Dpkg::Options::=--force-confold", "upgrade"),
                    APPLY_TIMEOUT_S, env=env,
                )
                steps = [update, upgrade]
        elif manager in ("dnf", "yum"):
            if check:
                steps = [Step((manager, "-q", "check-update"), CHECK_TIMEOUT_S, frozenset({0, 100}), 100, "dnf")]
            else:
                steps = [Step((manager, "-y", "upgrade" if manager == "dnf" else "update"), APPLY_TIMEOUT_S)]
        elif manager == "zypper":
            refresh_step = Step(("zypper", "--non-interactive", "refresh"), CHECK_TIMEOUT_S)
            if check:
                listing = Step(("zypper", "--non-interactive", "list-updates"), CHECK_TIMEOUT_S, parser="zypper")
                steps = [refresh_step, listing] if refresh else [listing]
            else:
                # 100-103: done, but a reboot or a restart of zypper itself is needed
                steps = [Step(("zypper", "--non-interactive", "update"), APPLY_TIMEOUT_S, frozenset({0, 100, 101, 102, 103}))]
        elif manager == "pacman":
            if check and self.which("checkupdates"):  # pacman-contrib: a safe check on a copy of the database
                steps = [Step(("checkupdates",), CHECK_TIMEOUT_S, frozenset({0, 2}), parser="pacman")]
            elif check:
                # -Qu exits 1 when nothing is upgradable; -Sy refreshes the real database
                listing = Step(("pacman", "-Qu"), CHECK_TIMEOUT_S, frozenset({0, 1}), parser="pacman")
                steps = [Step(("pacman", "-Sy"), CHECK_TIMEOUT_S), listing] if refresh else [listing]
            else:
                steps = [Step(("pacman", "-Syu", "--noconfirm"), APPLY_TIMEOUT_S)]
        else:  # apk
            update = Step(("apk", "update"), CHECK_TIMEOUT_S)
            if check:
                listing = Step(("apk", "version", "-l", "<"), CHECK_TIMEOUT_S, parser="apk")
                steps = [update, listing] if refresh else [listing]
            else:
                steps = [update, Step(("apk", "upgrade"), APPLY_TIMEOUT_S)]
        return Plan(action, "linux", tuple(steps), manager)

    # -- running -------------------------------------------------------------------

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


# -- command handlers -----------------------------------------------------------------


def executor_for(ctx: AgentContext) -> PowerExecutor:
    """The executor for this machine, in dry run if the local policy says so."""
    return PowerExecutor(dry_run=ctx.policy.power_dry_run)


def _power(action: Action, args: dict, ctx: AgentContext, executor: PowerExecutor | None = None) -> dict:
    executor = executor or executor_for(ctx)
    delay = args.get("delay_s", DEFAULT_DELAY_S)
    reason = args.get("reason") or ""
    if type(reason) is not str:
        raise CommandError("reason must be a string")
    verb = "restart" if action is Action.REBOOT else "shut down"
    plan = executor.plan(action, delay, message=f"EMS: your IT team will {verb} this computer. {reason}".strip())
    who = ctx.operator_label
    notice = (
        f"{who} will {verb} this computer in {_delay_text(plan.delay_s or 0)}. Please save your work."
        + (f" Reason: {reason}" if reason else "")
    )
    if executor.dry_run:
        notice = f"[test only, nothing will happen] {notice}"
    ctx.notify(f"This computer will {verb}", notice)
    result = executor.execute(plan)
    result["notice"] = notice
    return result


def _delay_text(seconds: int) -> str:
    if seconds < 60:
        return "less than a minute" if seconds else "a moment"
    minutes = seconds // 60
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def reboot(args: dict, ctx: AgentContext) -> dict:
    """Restart the computer after telling the user: ``delay_s`` (60), ``reason``.

    Linux and macOS schedule in whole minutes (rounded up); 0 restarts now.
    """
    return _power(Action.REBOOT, args, ctx)


def shutdown(args: dict, ctx: AgentContext) -> dict:
    """Shut the computer down after telling the user: ``delay_s`` (60), ``reason``."""
    return _power(Action.SHUTDOWN, args, ctx)


def update_check(args: dict, ctx: AgentContext) -> dict:
    """List pending OS updates: ``refresh`` (true) re-reads the package lists first.

    Returns ``updates_available``, ``update_count``, ``updates`` (names)
    and each step's exit code and output.
    """
    refresh = args.get("refresh", True)
    if type(refresh) is not bool:
        raise CommandError("refresh must be true or false")
    executor = executor_for(ctx)
    return executor.execute(executor.plan(Action.UPDATE_CHECK, refresh=refresh))


def update_apply(args: dict, ctx: AgentContext) -> dict:
    """Install all pending OS updates non-interactively; does not reboot by itself."""
    executor = executor_for(ctx)
    plan = executor.plan(Action.UPDATE_APPLY)
    notice = f"{ctx.operator_label} is installing operating system updates on this computer."
    ctx.notify("Installing updates", f"[test only, nothing will happen] {notice}" if executor.dry_run else notice)
    return executor.execute(plan)


HANDLERS: dict[str, Callable[[dict, AgentContext], dict]] = {
    "power.reboot": reboot,
    "power.shutdown": shutdown,
    "update.check": update_check,
    "update.apply": update_apply,
}
