"""Reboot, shutdown and OS updates: the right commands for each platform behind one interface.

The :class:`Power` capability (``power.reboot``, ``power.shutdown``,
``update.check``, ``update.apply``) asks a
:class:`~agent.power.executor.PowerExecutor` to turn an action
(:class:`~agent.power.plans.Action`) into a
:class:`~agent.power.plans.Plan`, a list of argv steps chosen for the platform and
the tools installed (:mod:`~agent.power.plans`; the update lists are read
by :mod:`~agent.power.parsers`), and runs it (:mod:`~agent.power.executor`).

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
from agent.power.commands import Power

__all__ = ["Power"]
