"""What to run for an action: :class:`Action`, :class:`Step`, :class:`Plan` and the :class:`Planner` that
picks the argv for each platform (see :mod:`agent.power` for the table).
"""
from __future__ import annotations

import enum
import math
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass

from agent.context import CommandError


#: Linux package managers in the order they are looked for.
PACKAGE_MANAGERS = ("apt-get", "dnf", "yum", "zypper", "pacman", "apk")
#: How long an update check and an update may take.
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


class Planner:
    """Chooses the steps of an action for one platform and the tools installed.

    ``platform`` and ``which`` (name -> path or None) default to this
    machine's; tests pass others to see every platform's plan.
    ``systemd`` says whether systemd runs the machine (default: looked up).
    """

    def __init__(self, platform: str | None = None, which: Callable[[str], str | None] = shutil.which,
                 systemd: bool | None = None):
        self.platform = platform_name(platform)
        self.which = which
        self.systemd = os.path.isdir("/run/systemd/system") if systemd is None else systemd

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
