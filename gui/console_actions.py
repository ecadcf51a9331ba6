"""What the console offers: its toolbar actions and its history tabs, as data.

The window (:mod:`gui.main_window`) builds its toolbar, menus and tabs from
these tables; nothing here is a widget.
"""
from __future__ import annotations

from dataclasses import dataclass

from broker.core.vocabulary import ACCESS_COMMANDS


@dataclass(frozen=True)
class ActionSpec:
    """One toolbar action: the command it sends and how it is confirmed."""

    key: str
    label: str
    command: str  # the command name the agent runs
    shortcut: str
    destructive: bool = False
    explain: str = ""

    @property
    def needs_reason(self) -> bool:
        """Whether the operator is asked why first: every access command (the broker refuses one without)."""
        return self.command in ACCESS_COMMANDS


#: The commands are the agent's (agent.screen.handlers, agent.power); each
#: passes ``reason`` on, and the agent tells its user and keeps it in the
#: user-readable access log. An agent without one answers ``failed``.
ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("capture", "Capture now", "capture", "Ctrl+Shift+C", False,
               "Takes a screenshot of {name} now. The user is told, and the capture is stored and audited."),
    ActionSpec("reboot", "Reboot", "power.reboot", "Ctrl+R", True,
               "Restarts {name} after a one-minute warning to its user. Unsaved work may be lost."),
    ActionSpec("shutdown", "Shut down", "power.shutdown", "Ctrl+Shift+S", True,
               "Powers {name} off after a one-minute warning. It stays offline until someone switches it on again."),
    ActionSpec("update_check", "Check updates", "update.check", "Ctrl+U", False,
               "Asks {name} which operating system updates are pending. Nothing is installed."),
    ActionSpec("update_apply", "Apply updates", "update.apply", "Ctrl+Shift+U", True,
               "Installs the pending OS updates on {name}; it may restart when they need it."),
)
ACTION_BY_KEY = {a.key: a for a in ACTIONS}

#: (store kind, tab title, what the tab shows)
HISTORY_TABS: tuple[tuple[str, str, str], ...] = (
    ("sessions", "Sessions", "When this client came online and went offline"),
    ("captures", "Captures", "Screen captures of this client (Enter or double-click opens one full size; "
                             "opening, exporting and the previews are audited)"),
    ("messages", "Messages", "Chat with this client's user"),
    ("fileops", "File Ops", "File transfers and file operations on this client"),
    ("security", "Security", "Security events reported by or about this client"),
    ("logs", "Logs", "Log records this client forwarded"),
    ("audit", "Activity", "The audit trail: what operators did to this client, and why"),
)
NOUNS = {"sessions": "sessions", "captures": "captures", "messages": "messages", "fileops": "file operations",
         "security": "security events", "logs": "log records", "audit": "audit records"}
#: tabs the live feed keeps current (the others refresh with F5)
LIVE_KINDS = frozenset({"sessions", "captures", "security", "audit"})
