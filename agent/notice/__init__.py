"""Visible notices for the employee: on screen where possible, always in the access log.

* :class:`Notifier` — ``notify(title, text)``, the agent's
  ``AgentContext.notify``.
* :func:`announce` — shows a notice of a kind (``start``, ``live_view``,
  ``remote_control``...) and applies ``LocalPolicy.mandatory_notices``:
  a server argument cannot silence a mandatory one.
* :func:`select_backend` — the platform's way to show one.
"""
from agent.notice.backends import (
    CommandBackend,
    LaunchSpec,
    LogOnlyBackend,
    NoticeBackend,
    TkWindowBackend,
    macos_notification_command,
    select_backend,
    windows_msg_command,
    windows_toast_command,
)
from agent.notice.display import gui_available, has_display
from agent.notice.notifier import Notifier
from agent.notice.policy import announce, silence_requested

__all__ = [
    "CommandBackend",
    "LaunchSpec",
    "LogOnlyBackend",
    "NoticeBackend",
    "Notifier",
    "TkWindowBackend",
    "announce",
    "gui_available",
    "has_display",
    "macos_notification_command",
    "select_backend",
    "silence_requested",
    "windows_msg_command",
    "windows_toast_command",
]
