"""Where a notice appears: one small interface, one backend per platform.

* Linux/X11 with a display (and Tk): :class:`TkWindowBackend` starts
  ``python -m agent.notice.window`` (a small always-on-top window that
  closes itself after a few seconds); a crash there cannot reach the agent.
* No display: :class:`LogOnlyBackend` (the :class:`~agent.notice.Notifier`
  has already written the access log and the agent log).
* Windows and macOS: :class:`CommandBackend` runs the argv that
  :func:`windows_msg_command` / :func:`windows_toast_command` /
  :func:`macos_notification_command` build. The operator's words (a reason)
  never pass through a shell or get pasted into a script: they travel as a
  separate argv item or an environment variable.
"""
from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from agent.notice.display import child_env, gui_available, module_argv
from agent.notice.text import clip

log = logging.getLogger(__name__)

#: how long a notice window stays up unless the user dismisses it
DEFAULT_NOTICE_S = 12.0
#: longest title / text a notice shows (the access log keeps the whole text)
MAX_TITLE_CHARS = 80
MAX_TEXT_CHARS = 500

#: PowerShell AppUserModelID that Windows lets post toasts without registration
_POWERSHELL_APP_ID = r"{1AC14E77-02E7-4E5D-B744-2EB1AE5198B7}\WindowsPowerShell\v1.0\powershell.exe"

# The script is a constant: title and text come from EMS_NOTICE_* variables.
_TOAST_SCRIPT = f"""
$ErrorActionPreference = 'Stop'
[Windows.UI.Notifications.ToastNotificationManager, Windows.UI.Notifications, ContentType = WindowsRuntime] > $null
$xml = [Windows.UI.Notifications.ToastNotificationManager]::GetTemplateContent([Windows.UI.Notifications.ToastTemplateType]::ToastText02)
$nodes = $xml.GetElementsByTagName('text')
$nodes.Item(0).AppendChild($xml.CreateTextNode($env:EMS_NOTICE_TITLE)) > $null
$nodes.Item(1).AppendChild($xml.CreateTextNode($env:EMS_NOTICE_TEXT)) > $null
$toast = [Windows.UI.Notifications.ToastNotification]::new($xml)
[Windows.UI.Notifications.ToastNotificationManager]::CreateToastNotifier('{_POWERSHELL_APP_ID}').Show($toast)
"""

_OSASCRIPT_LINES = ("on run argv", "display notification (item 2 of argv) with title (item 1 of argv)", "end run")


class NoticeBackend(Protocol):
    """Shows a notice on the user's screen. ``show`` must not block or raise."""

    name: str

    def show(self, title: str, text: str) -> None: ...

    def close(self, dismiss: bool = False) -> None:
        """Release resources; ``dismiss`` also takes notices still on screen away."""


@dataclass(frozen=True)
class LaunchSpec:
    """A program to start: its argv and the variables added to its environment."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def _leading_word(title: str) -> str:
    """A title that no argument parser can take for an option."""
    title = clip(title, MAX_TITLE_CHARS).lstrip("-/ ")
    return title or "EMS"


def windows_msg_command(title: str, text: str, seconds: float = DEFAULT_NOTICE_S) -> LaunchSpec:
    """``msg * /TIME:n "title: text"``: a message box in every session (works from a service)."""
    message = f"{_leading_word(title)}: {clip(text, 255 - MAX_TITLE_CHARS)}"
    return LaunchSpec(["msg", "*", f"/TIME:{max(1, int(seconds))}", message])


def windows_toast_command(title: str, text: str) -> LaunchSpec:
    """A PowerShell toast; the script is fixed, the words arrive as environment variables."""
    encoded = base64.b64encode(_TOAST_SCRIPT.encode("utf-16-le")).decode("ascii")
    argv = ["powershell.exe", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-WindowStyle", "Hidden", "-EncodedCommand", encoded]
    return LaunchSpec(argv, {"EMS_NOTICE_TITLE": clip(title, MAX_TITLE_CHARS), "EMS_NOTICE_TEXT": clip(text, MAX_TEXT_CHARS)})


def macos_notification_command(title: str, text: str) -> LaunchSpec:
    """``osascript`` ``display notification`` with title and text passed as script arguments."""
    argv = ["osascript"]
    for line in _OSASCRIPT_LINES:
        argv += ["-e", line]
    return LaunchSpec(argv + [_leading_word(title), clip(text, MAX_TEXT_CHARS)])


class _Children:
    """Started notice processes, reaped as they finish (no zombies, no waiting)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def dismiss(self) -> None:
        """Stop every child still running (by its pid), waiting briefly for each."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs = []

    def reap(self) -> int:
        """Forget finished children; how many are still running."""
        alive = []
        for proc in self.procs:
            code = proc.poll()
            if code is None:
                alive.append(proc)
            elif code != 0:
                log.warning("notice program %s exited with %s", proc.args[0] if proc.args else "?", code)
        self.procs = alive
        return len(alive)

    def start(self, argv: list[str], env: Mapping[str, str]) -> subprocess.Popen:
        flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)
        proc = subprocess.Popen(argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, creationflags=flags)
        self.procs.append(proc)
        return proc


class LogOnlyBackend:
    """No screen to show anything on: the access log and the agent log carry the notice."""

    name = "log"

    def show(self, title: str, text: str) -> None:
        log.debug("no display: notice %r only logged", title)

    def close(self, dismiss: bool = False) -> None:
        pass


class TkWindowBackend:
    """A small always-on-top Tk window per notice, in its own process."""

    name = "tk-window"

    def __init__(self, seconds: float = DEFAULT_NOTICE_S):
        self.seconds = seconds
        self._children = _Children()

    def show(self, title: str, text: str) -> None:
        slot = self._children.reap()  # stack below notices still on screen
        argv = module_argv(
            "agent.notice.window", "--seconds", f"{self.seconds:g}", "--slot", str(slot), "--",
            clip(title, MAX_TITLE_CHARS), clip(text, MAX_TEXT_CHARS),
        )
        try:
            self._children.start(argv, child_env())
        except OSError as exc:
            log.warning("could not open a notice window (%s); the notice is in the access log", exc)

    def close(self, dismiss: bool = False) -> None:
        """Reap finished windows; open ones stay up until their own timeout unless ``dismiss``."""
        if dismiss:
            self._children.dismiss()
        else:
            self._children.reap()


class CommandBackend:
    """Runs a platform's notification program built by ``builder(title, text)``."""

    def __init__(self, name: str, builder: Callable[[str, str], LaunchSpec]):
        self.name = name
        self.builder = builder
        self._children = _Children()

    def show(self, title: str, text: str) -> None:
        self._children.reap()
        spec = self.builder(title, text)
        try:
            self._children.start(spec.argv, {**os.environ, **spec.env})
        except OSError as exc:
            log.warning("could not run %s (%s); the notice is in the access log", spec.argv[0], exc)

    def close(self, dismiss: bool = False) -> None:
        if dismiss:
            self._children.dismiss()
        else:
            self._children.reap()


def select_backend(platform: str | None = None, env: Mapping[str, str] | None = None, seconds: float = DEFAULT_NOTICE_S) -> NoticeBackend:
    """The notice backend for this machine (``platform`` as in ``sys.platform``)."""
    platform = sys.platform if platform is None else platform
    if platform == "win32":
        return CommandBackend("windows-msg", lambda title, text: windows_msg_command(title, text, seconds))
    if platform == "darwin":
        return CommandBackend("macos-notification", macos_notification_command)
    if gui_available(env, platform):
        return TkWindowBackend(seconds)
    return LogOnlyBackend()
