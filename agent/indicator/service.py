"""The indicator capability: what the employee sees while anyone accesses the computer.

:class:`Indicator` watches the agent's :class:`~agent.accesses.AccessRegistry`
from the agent loop (:meth:`Indicator.poll`): when it changes the backend
shows the new list, and when it empties the indicator goes away. It ends
thumbnail and file-transfer series that went quiet, and carries out what
the user did on the indicator: "End" calls the ender the access kind
registered (:meth:`Indicator.on_end`; remote control always has one, live
view only when ``LocalPolicy.user_may_end_live_view``), "Access log" calls
``open_access_log``.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from agent.accesses import LIVE_VIEW, AccessRegistry, ActiveAccess
from agent.capability import Capability
from agent.context import AgentContext, LocalPolicy
from agent.indicator.backends import IndicatorBackend, bar, select_indicator
from agent.notice.display import child_env, module_argv

log = logging.getLogger(__name__)

#: the access-log window (built elsewhere); without it the text log is opened
ACCESS_LOG_WINDOW = "agent.access_log_window"

Ender = Callable[[ActiveAccess, AgentContext], None]


class Indicator(Capability):
    """Shows the registry's accesses on the ``backend`` and acts on the user's End / Access log."""

    name = "indicator"

    def __init__(self, accesses: AccessRegistry, policy: LocalPolicy, backend: IndicatorBackend | None = None,
                 open_access_log: Callable[[], None] | None = None, log_path: Path | None = None):
        self.accesses = accesses
        self.policy = policy
        self.backend = backend if backend is not None else select_indicator(policy.indicator)
        self.open_access_log = open_access_log or (lambda: self._spawn(access_log_argv(log_path)))
        self._enders: dict[str, Ender] = {}
        self._shown_version = accesses.version
        self._spawned: list[subprocess.Popen] = []
        #: the indicator's last "shown" report: how many accesses, where its buttons are
        self.on_screen: dict = {}

    def on_end(self, kind: str, ender: Ender) -> None:
        """Let the user end accesses of ``kind`` from the indicator (``ender(access, ctx)`` ends one)."""
        self._enders[kind] = ender

    def endable(self, access: ActiveAccess) -> bool:
        """Whether the indicator offers End for ``access``: local policy decides for live view."""
        return access.kind in self._enders and (access.kind != LIVE_VIEW or self.policy.user_may_end_live_view)

    # -- the runner's calls -------------------------------------------------------------
    def poll(self, ctx: AgentContext) -> None:
        """Every loop pass: end quiet series, redraw on change, act on the user's clicks."""
        for access in self.accesses.expire():
            ctx.access_log(f"{access.kind.replace('_', ' ')} ended", f"{access.who}: nothing more since {self.accesses.series_idle_s:g} s")
        if self.accesses.version != self._shown_version:
            self.refresh()
        for event in self.backend.events():
            self._handle(event, ctx)
        self._spawned = [p for p in self._spawned if p.poll() is None]

    def refresh(self) -> None:
        """Show the accesses going on now (none: the indicator goes away)."""
        self._shown_version = self.accesses.version
        self.on_screen = {}
        self.backend.show([access.as_dict() | {"endable": self.endable(access)} for access in self.accesses.snapshot()])

    def close(self, ctx: AgentContext) -> None:
        self.backend.close()

    # -- the user's clicks ----------------------------------------------------------------
    def _handle(self, event: dict, ctx: AgentContext) -> None:
        what = event.get("event")
        if what == "shown":
            self.on_screen = event
        elif what == "end":
            self._end(str(event.get("key", "")), ctx)
        elif what == "access_log":
            try:
                self.open_access_log()
            except Exception:
                log.exception("could not open the access log for the user")
        elif what == "unavailable" and self.backend.name != "bar":
            log.warning("the %s indicator cannot be shown here; using the privacy bar", self.backend.name)
            self.backend.close()
            self.backend = bar()
            self.refresh()

    def _end(self, key: str, ctx: AgentContext) -> None:
        access = self.accesses.get(key)
        if access is None or not self.endable(access):
            log.info("the user pressed End on %r, which cannot be ended from the indicator (now)", key)
            return
        try:
            self._enders[access.kind](access, ctx)
        except Exception:
            log.exception("ending %s for the user failed", key)

    def _spawn(self, argv: list[str] | None) -> None:
        if argv is None:
            log.warning("no way to open the access log on this desktop")
            return
        self._spawned.append(subprocess.Popen(argv, env=child_env(), stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL, start_new_session=True))


def access_log_argv(log_path: Path | None) -> list[str] | None:
    """How to show the access log: its window when installed, else the platform's opener on the text file."""
    if importlib.util.find_spec(ACCESS_LOG_WINDOW) is not None:
        return module_argv(ACCESS_LOG_WINDOW)
    if log_path is None:
        return None
    opener = {"win32": "notepad.exe", "darwin": "open"}.get(sys.platform) or shutil.which("xdg-open")
    return [opener, os.fspath(log_path)] if opener else None
