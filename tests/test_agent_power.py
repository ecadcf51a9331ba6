"""Power and update commands: every platform's plan in dry run, the runner with real processes.

What is tried: the argv for reboot, shutdown, update check and update
apply on Linux (each of apt-get with and without ``apt``, dnf, yum, zypper,
pacman with and without ``checkupdates``, apk; with and without systemd;
with no package manager and no shutdown tool at all), Windows (PowerShell
and the Windows Update COM API; pwsh when Windows PowerShell is missing)
and macOS, by injecting the platform and the set of installed binaries; the
notice the user gets before a reboot; bad delays; the step runner on real
child processes (exit codes that mean "updates available", failures with
the output's tail, timeouts, truncation, a missing binary, a detached
step); the update-list parsers on sample outputs; and, where apt exists,
the real ``apt list --upgradable`` (read-only, bounded by a timeout).
Nothing here reboots, shuts down or installs anything.
"""
from __future__ import annotations

import dataclasses
import shutil
import sys

import pytest

from agent.context import AgentContext, CommandError, LocalPolicy
from agent.power import Power
from agent.power import executor as power_executor
from agent.power.executor import PowerExecutor
from agent.power.parsers import PARSERS
from agent.power.plans import WINDOWS_CHECK_SCRIPT, Action, Plan, Step


def which_of(*present: str):
    """A ``which`` for a machine where exactly ``present`` are installed."""
    return lambda name: f"/usr/bin/{name}" if name in present else None


def dry(platform: str, *present: str, systemd: bool = True) -> PowerExecutor:
    return PowerExecutor(platform=platform, which=which_of(*present), dry_run=True, systemd=systemd)


def argv_of(executor: PowerExecutor, action: Action, **kwargs) -> list[list[str]]:
    result = executor.execute(executor.plan(action, **kwargs))
    assert result["dry_run"] is True and "steps" not in result  # nothing ran
    return result["argv"]


# -- Linux updates ----------------------------------------------------------------------

LINUX_UPDATES = {
    ("apt-get", "apt"): (
        [["apt-get", "update", "-q"], ["apt", "list", "--upgradable"]],
        [["apt-get", "update", "-q"], ["apt-get", "-y", "-q", "-o", "Dpkg::Options::=--force-confdef", "-o",
                                       "Dpkg::Options::=--force-confold", "upgrade"]],
    ),
    ("apt-get",): ([["apt-get", "update", "-q"], ["apt-get", "-s", "-q", "upgrade"]], None),
    ("dnf", "yum"): ([["dnf", "-q", "check-update"]], [["dnf", "-y", "upgrade"]]),
    ("yum",): ([["yum", "-q", "check-update"]], [["yum", "-y", "update"]]),
    ("zypper",): (
        [["zypper", "--non-interactive", "refresh"], ["zypper", "--non-interactive", "list-updates"]],
        [["zypper", "--non-interactive", "update"]],
    ),
    ("pacman",): ([["pacman", "-Sy"], ["pacman", "-Qu"]], [["pacman", "-Syu", "--noconfirm"]]),
    ("pacman", "checkupdates"): ([["checkupdates"]], [["pacman", "-Syu", "--noconfirm"]]),
    ("apk",): ([["apk", "update"], ["apk", "version", "-l", "<"]], [["apk", "update"], ["apk", "upgrade"]]),
}


@pytest.mark.parametrize("present", list(LINUX_UPDATES), ids="+".join)
def test_linux_update_argv_per_package_manager(present):
    check, apply = LINUX_UPDATES[present]
    executor = dry("linux", *present, "systemctl")
    assert argv_of(executor, Action.UPDATE_CHECK) == check
    if apply is not None:
        assert argv_of(executor, Action.UPDATE_APPLY) == apply
    manager = executor.execute(executor.plan(Action.UPDATE_CHECK))["package_manager"]
    assert manager == present[0]


def test_check_without_refresh_only_lists():
    assert argv_of(dry("linux", "apt-get", "apt"), Action.UPDATE_CHECK, refresh=False) == [["apt", "list", "--upgradable"]]
    assert argv_of(dry("linux", "zypper"), Action.UPDATE_CHECK, refresh=False) == [["zypper", "--non-interactive", "list-updates"]]
    assert argv_of(dry("linux", "pacman"), Action.UPDATE_CHECK, refresh=False) == [["pacman", "-Qu"]]


def test_package_manager_precedence_and_absence():
    assert dry("linux", "apk", "zypper", "apt-get").plan(Action.UPDATE_CHECK).package_manager == "apt-get"
    with pytest.raises(CommandError, match="no supported package manager"):
        dry("linux", "systemctl").plan(Action.UPDATE_CHECK)


def test_dnf_exit_100_is_success_meaning_updates():
    step = dry("linux", "dnf").plan(Action.UPDATE_CHECK).steps[0]
    assert (step.ok_codes, step.updates_code) == (frozenset({0, 100}), 100)


# -- Linux power ------------------------------------------------------------------------


def test_linux_reboot_and_shutdown_argv():
    systemd = dry("linux", "systemctl", "shutdown")
    assert argv_of(systemd, Action.REBOOT, delay_s=0) == [["systemctl", "reboot"]]
    assert argv_of(systemd, Action.SHUTDOWN, delay_s=0) == [["systemctl", "poweroff"]]
    assert argv_of(systemd, Action.REBOOT, delay_s=60, message="bye") == [["shutdown", "-r", "+1", "bye"]]
    assert argv_of(systemd, Action.SHUTDOWN, delay_s=61) == [["shutdown", "-P", "+2"]]
    assert systemd.plan(Action.REBOOT, delay_s=61).delay_s == 120  # minutes, rounded up
    assert not systemd.plan(Action.REBOOT, delay_s=60).steps[0].detach  # systemd's shutdown returns at once
    sysv = dry("linux", "shutdown", systemd=False)
    assert argv_of(sysv, Action.REBOOT, delay_s=0) == [["shutdown", "-r", "now"]]
    assert sysv.plan(Action.REBOOT, delay_s=300).steps[0].detach  # sysvinit's shutdown waits: do not block on it
    # systemctl present but not running the machine (a container): shutdown
    assert argv_of(dry("linux", "systemctl", "shutdown", systemd=False), Action.REBOOT, delay_s=0) == [["shutdown", "-r", "now"]]
    with pytest.raises(CommandError, match="needs the shutdown command"):
        dry("linux", "systemctl").plan(Action.REBOOT, delay_s=60)
    with pytest.raises(CommandError, match="neither systemctl nor shutdown"):
        dry("linux").plan(Action.SHUTDOWN, delay_s=0)


@pytest.mark.parametrize("delay", [-1, 7 * 24 * 3600 + 1, 1.5, "60", True, None])
def test_bad_delays_are_refused(delay):
    with pytest.raises(CommandError, match="delay_s"):
        dry("linux", "systemctl", "shutdown").plan(Action.REBOOT, delay_s=delay)


# -- Windows and macOS ------------------------------------------------------------------


def test_windows_argv():
    win = dry("win32", "powershell.exe", "shutdown")
    assert argv_of(win, Action.REBOOT, delay_s=60) == [["shutdown", "/r", "/t", "60"]]
    assert argv_of(win, Action.SHUTDOWN, delay_s=0, message="m") == [["shutdown", "/s", "/t", "0", "/c", "m"]]
    check = argv_of(win, Action.UPDATE_CHECK)
    assert check == [["powershell.exe", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-Command",
                      WINDOWS_CHECK_SCRIPT]]
    assert "Microsoft.Update.Session" in check[0][-1] and "IsInstalled=0" in check[0][-1]
    apply = argv_of(win, Action.UPDATE_APPLY)[0][-1]
    assert "CreateUpdateInstaller" in apply and "AcceptEula" in apply
    assert argv_of(dry("windows", "pwsh"), Action.UPDATE_CHECK)[0][0] == "pwsh"
    assert dry("win32").plan(Action.UPDATE_CHECK).package_manager == "windows-update"


def test_macos_argv():
    mac = dry("darwin", "softwareupdate", "shutdown")
    assert argv_of(mac, Action.UPDATE_CHECK) == [["softwareupdate", "--list"]]
    assert argv_of(mac, Action.UPDATE_APPLY) == [["softwareupdate", "--install", "--all"]]
    assert argv_of(mac, Action.REBOOT, delay_s=0) == [["shutdown", "-r", "now"]]
    assert argv_of(mac, Action.SHUTDOWN, delay_s=120) == [["shutdown", "-h", "+2"]]


def test_unknown_platform():
    with pytest.raises(CommandError, match="not supported"):
        dry("sunos5").plan(Action.UPDATE_CHECK)


# -- handlers ---------------------------------------------------------------------------


@pytest.fixture
def ctx(tmp_path):
    notices: list[tuple[str, str]] = []
    context = AgentContext(
        client_id="a1",
        data_dir=tmp_path,
        policy=LocalPolicy(power_dry_run=True),
        access_log=lambda event, detail="": "",
        notify=lambda title, text: notices.append((title, text)),
        report=lambda *a, **k: "m1",
        operator="op-bob",
    )
    context.notices = notices  # type: ignore[attr-defined]
    return context


def test_reboot_handler_notifies_the_user_first_and_runs_nothing_in_dry_run(ctx):
    result = Power(lambda _ctx: dry("linux", "systemctl", "shutdown")).reboot({"delay_s": 120, "reason": "kernel update"}, ctx)
    assert result["argv"] == [["shutdown", "-r", "+2", "EMS: your IT team will restart this computer. kernel update"]]
    assert result["dry_run"] is True and result["delay_s"] == 120
    [(title, text)] = ctx.notices
    assert title == "This computer will restart"
    assert text.startswith("[test only, nothing will happen] op-bob will restart this computer in 2 minutes.")
    assert "Reason given: kernel update." in text and result["notice"] == text


def test_handlers_on_this_machine_follow_the_policy_dry_run(ctx):
    for name in ("power.reboot", "power.shutdown", "update.check", "update.apply"):
        try:
            result = Power().handlers()[name]({"delay_s": 0}, ctx)
        except CommandError as exc:  # e.g. no package manager in a minimal container
            assert "not" in str(exc)
            continue
        assert result["dry_run"] is True and result["argv"] and "steps" not in result
    assert [title for title, _ in ctx.notices][:2] == ["This computer will restart", "This computer will shut down"]
    with pytest.raises(CommandError, match="reason"):
        Power().handlers()["power.reboot"]({"reason": 5}, ctx)
    with pytest.raises(CommandError, match="refresh"):
        Power().handlers()["update.check"]({"refresh": "no"}, ctx)


# -- running steps for real -------------------------------------------------------------


def py(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def real_plan(*steps: Step, action: Action = Action.UPDATE_CHECK) -> Plan:
    return Plan(action, "linux", steps, "test")


def test_steps_run_for_real_with_exit_codes_and_parsed_updates():
    executor = PowerExecutor(platform="linux", dry_run=False)
    listing = py("print('Listing...'); print('bash/stable 5.2 amd64 [upgradable from: 5.1]'); print('curl/stable 8 amd64 [upgradable from: 7]')")
    result = executor.execute(real_plan(Step(py("print('refreshed')")), Step(listing, parser="apt")))
    assert [s["returncode"] for s in result["steps"]] == [0, 0]
    assert result["steps"][0]["output"] == "refreshed\n" and result["steps"][0]["output_truncated"] is False
    assert (result["updates_available"], result["update_count"], result["updates"]) == (True, 2, ["bash", "curl"])
    dnf_like = Step(py("import sys; sys.exit(100)"), ok_codes=frozenset({0, 100}), updates_code=100, parser="dnf")
    assert executor.execute(real_plan(dnf_like))["updates_available"] is True
    none = Step(py("pass"), ok_codes=frozenset({0, 100}), updates_code=100, parser="dnf")
    assert executor.execute(real_plan(none))["updates_available"] is False


def test_a_failing_step_fails_the_command_with_its_output_and_stops():
    executor = PowerExecutor(platform="linux", dry_run=False)
    failing = Step(py("import sys; print('E: could not lock /var/lib/dpkg/lock'); sys.exit(100)"))
    never = Step(py("raise SystemExit('must not run')"))
    with pytest.raises(CommandError, match=r"exited with code 100; output:\nE: could not lock"):
        executor.execute(real_plan(failing, never))


def test_timeouts_missing_binaries_and_long_output():
    executor = PowerExecutor(platform="linux", dry_run=False)
    sleeper = py("import subprocess, sys, time; print('started', flush=True); subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); time.sleep(30)")
    with pytest.raises(CommandError, match=r"did not finish within 0.5 s and was stopped.*\nstarted"):
        executor.execute(real_plan(Step(sleeper, timeout_s=0.5)))  # the grandchild holds the pipe too: it is stopped as well
    with pytest.raises(CommandError, match="is not installed"):
        executor.execute(real_plan(Step(("ems-no-such-binary-here",))))
    result = executor.execute(real_plan(Step(py("print('x' * 100_000)"))))
    output = result["steps"][0]["output"]
    assert result["steps"][0]["output_truncated"] is True
    assert len(output) < power_executor.OUTPUT_HEAD_BYTES + power_executor.OUTPUT_TAIL_BYTES + 100 and "bytes cut" in output


def test_a_detached_step_is_started_and_not_waited_for(tmp_path):
    marker = tmp_path / "ran"
    executor = PowerExecutor(platform="linux", dry_run=False)
    result = executor.execute(real_plan(Step(py(f"open({str(marker)!r}, 'w').write('ok')"), detach=True), action=Action.REBOOT))
    assert result["steps"][0]["detached"] is True and result["steps"][0]["pid"] > 0
    import os
    os.waitpid(result["steps"][0]["pid"], 0)  # reap our own child for the check
    assert marker.read_text() == "ok"


def test_truncate_keeps_head_and_tail():
    text, cut = power_executor.truncate(b"a" * 10 + b"b" * 100 + b"c" * 10, head=10, tail=10)
    assert cut is True and text.startswith("a" * 10) and text.endswith("c" * 10) and "[100 bytes cut]" in text
    assert power_executor.truncate(b"short") == ("short", False)


# -- parsers ----------------------------------------------------------------------------

SAMPLES = {
    "apt": ("Listing...\nbash/stable-security 5.2.15-2+b7 amd64 [upgradable from: 5.2.15-2+b2]\n", ["bash"]),
    "apt-simulate": ("NOTE: simulation\nInst bash [5.2.15-2+b2] (5.2.15-2+b7 Debian:12.5/stable [amd64])\nConf bash (5.2)\n", ["bash"]),
    "dnf": ("\nkernel.x86_64    6.5.6-300.fc39    updates\nvim-minimal.x86_64  2:9.0-1.fc39  updates\nObsoleting Packages\nfoo.noarch 1 updates\n",
            ["kernel.x86_64", "vim-minimal.x86_64"]),
    "zypper": ("S | Repository | Name | Current Version | Available Version | Arch\n--+---\nv | Main | curl | 8.0 | 8.1 | x86_64\n", ["curl"]),
    "pacman": ("linux 6.5.1-1 -> 6.5.2-1\nvim 9.0-1 -> 9.0-2\n", ["linux", "vim"]),
    "apk": ("Installed:                                Available:\nmusl-1.2.4-r1                           < 1.2.4-r2\n", ["musl-1.2.4-r1"]),
    "softwareupdate": ("Software Update found the following new or updated software:\n* Label: macOS Ventura 13.6.1-22G313\n\tTitle: macOS", ["macOS Ventura 13.6.1-22G313"]),
    "windows": ("UPDATE: 2024-01 Cumulative Update (KB5034441)\nResultCode=2 RebootRequired=True\n", ["2024-01 Cumulative Update (KB5034441)"]),
}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_update_list_parsers(name):
    text, expected = SAMPLES[name]
    assert PARSERS[name](text) == expected


# -- the real check, where it is harmless -----------------------------------------------


def test_real_apt_list_upgradable_runs_read_only():
    """``apt list --upgradable`` only reads the local package lists (no ``apt-get update``).
    The test machines are Debian: apt must be there."""
    assert shutil.which("apt") and shutil.which("apt-get"), "this test runs on Debian (apt)"
    executor = PowerExecutor(dry_run=False)
    plan = executor.plan(Action.UPDATE_CHECK, refresh=False)
    assert plan.argv == [["apt", "list", "--upgradable"]]
    plan = dataclasses.replace(plan, steps=tuple(dataclasses.replace(s, timeout_s=60.0) for s in plan.steps))
    result = executor.execute(plan)
    step = result["steps"][0]
    assert step["returncode"] == 0 and "Listing" in step["output"]
    assert result["update_count"] == len(result["updates"]) and isinstance(result["updates_available"], bool)
