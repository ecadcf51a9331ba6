"""What a command handler may use: the agent's local configuration and services.

Handlers are small functions ``handler(args: dict, ctx: AgentContext) ->
dict`` registered in :mod:`agent.commands`. They raise
:class:`CommandError` with a message for the operator when a request
cannot be done (bad arguments, path outside the allowed roots, no
display...); the agent turns it into a ``failed`` result.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from agent.accesses import AccessRegistry
from broker.core.errors import EmsError


class CommandError(EmsError):
    """A command that cannot be carried out; the message goes to the operator."""


#: hard ceilings a policy file cannot exceed: thumbnails never become a recording
MAX_THUMBNAILS_PER_MINUTE = 12
MAX_THUMBNAIL_NOTICE_EVERY_S = 3600.0
#: full screen captures (stored on the server) are rarer still, each one announced
MAX_CAPTURES_PER_MINUTE = 12
#: the longest idle threshold and session polling interval a policy file may set
MAX_IDLE_AFTER_S = 24 * 3600.0
MAX_SESSION_POLL_S = 600.0
#: what consent can be asked for (``ask_before``), and the longest wait for an answer
CONSENT_KINDS = frozenset({"remote_control", "live_view"})
MAX_CONSENT_TIMEOUT_S = 600.0
#: a thumbnail or file-transfer series shows on the indicator until this long without a look
MAX_SERIES_IDLE_S = 3600.0
#: "auto": a tray icon where the desktop has a tray, else the bar; "bar": always the bar
INDICATOR_STYLES = ("auto", "bar")


@dataclass
class LocalPolicy:
    """The agent's local configuration: set at install, never loosened by the server.

    ``mandatory_notices`` lists the notices the employee always sees
    (``start``, ``live_view``, ``remote_control``, ``thumbnail``, ``capture``,
    ``file_transfer``);
    a server request cannot remove one.

    ``thumbnails_per_minute`` caps the small screen pictures operators'
    consoles show on client tiles (all operators together; 0 turns them
    off, at most :data:`MAX_THUMBNAILS_PER_MINUTE`); the employee is told
    who looks again every ``thumbnail_notice_every_s`` seconds while it goes
    on (at most :data:`MAX_THUMBNAIL_NOTICE_EVERY_S`).

    ``captures_per_minute`` caps full screen captures the same way (0 turns
    them off, at most :data:`MAX_CAPTURES_PER_MINUTE`); each one is shown
    to the employee with the operator and the reason.

    ``idle_after_s``, ``session_poll_s`` and ``window_usage`` shape what the
    agent reports about the employee's session (:mod:`agent.activity`):
    logins, locks and idle time always, the application in front only when
    ``window_usage`` is true (then the start notice says so); never keys.

    ``ask_before`` lists the accesses (``remote_control``, ``live_view``)
    that wait for the employee's Allow, at most ``consent_timeout_s``
    seconds; no answer is a refusal. ``user_may_end_live_view`` puts an
    End button beside a live view on the indicator (a control session
    always has one). ``indicator`` is ``auto`` (tray icon where there is a
    tray) or ``bar`` (always the privacy bar). A thumbnail or file-transfer
    series stays on the indicator until ``series_idle_s`` without a look.
    """

    allowed_roots: list[Path] = field(default_factory=list)
    max_file_bytes: int = 50 * 1024 * 1024
    mandatory_notices: frozenset[str] = frozenset({"start", "live_view", "remote_control", "thumbnail", "capture", "file_transfer"})
    #: power and update commands only print what they would run
    power_dry_run: bool = False
    log_forward_level: str = "INFO"
    log_forward_per_minute: int = 600
    thumbnails_per_minute: int = 6
    thumbnail_notice_every_s: float = 600.0
    captures_per_minute: int = 4
    #: the session counts as idle after this long without input (``session.idle`` in activity_logs)
    idle_after_s: float = 300.0
    #: how often the agent looks at the session (logins, lock, idle)
    session_poll_s: float = 5.0
    #: report which application is in front (its class, never a title); off unless the install turns it on
    window_usage: bool = False
    ask_before: frozenset[str] = frozenset()
    consent_timeout_s: float = 30.0
    user_may_end_live_view: bool = False
    indicator: str = "auto"
    series_idle_s: float = 60.0

    @classmethod
    def load(cls, path: Path) -> "LocalPolicy":
        """Read ``policy.json`` (written at install); defaults where it is silent.

        Mandatory notices listed there are *added* to the built-in ones:
        no file, flag or server command can remove a notice.
        """
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except ValueError as exc:
            raise EmsError(f"{path} is not valid JSON ({exc}); fix or remove it") from exc
        base = cls()
        return cls(
            allowed_roots=[Path(p).expanduser() for p in raw.get("allowed_roots", [])],
            max_file_bytes=int(raw.get("max_file_bytes", base.max_file_bytes)),
            mandatory_notices=base.mandatory_notices | frozenset(raw.get("mandatory_notices", [])),
            power_dry_run=bool(raw.get("power_dry_run", base.power_dry_run)),
            log_forward_level=str(raw.get("log_forward_level", base.log_forward_level)),
            log_forward_per_minute=int(raw.get("log_forward_per_minute", base.log_forward_per_minute)),
            thumbnails_per_minute=_bounded(path, raw, "thumbnails_per_minute", base.thumbnails_per_minute, MAX_THUMBNAILS_PER_MINUTE),
            thumbnail_notice_every_s=_bounded(path, raw, "thumbnail_notice_every_s", base.thumbnail_notice_every_s,
                                              MAX_THUMBNAIL_NOTICE_EVERY_S),
            captures_per_minute=_bounded(path, raw, "captures_per_minute", base.captures_per_minute, MAX_CAPTURES_PER_MINUTE),
            idle_after_s=_bounded(path, raw, "idle_after_s", base.idle_after_s, MAX_IDLE_AFTER_S),
            session_poll_s=_bounded(path, raw, "session_poll_s", base.session_poll_s, MAX_SESSION_POLL_S),
            window_usage=raw.get("window_usage", False) is True,
            ask_before=_consent_kinds(path, raw.get("ask_before", [])),
            consent_timeout_s=_bounded(path, raw, "consent_timeout_s", base.consent_timeout_s, MAX_CONSENT_TIMEOUT_S),
            user_may_end_live_view=_flag(path, raw, "user_may_end_live_view", base.user_may_end_live_view),
            indicator=_choice(path, raw, "indicator", base.indicator, INDICATOR_STYLES),
            series_idle_s=_bounded(path, raw, "series_idle_s", base.series_idle_s, MAX_SERIES_IDLE_S),
        )


def _bounded(path: Path, raw: dict, name: str, default, maximum):
    """``raw[name]`` (or ``default``) as a number in 0..maximum, of the default's type; EmsError otherwise."""
    value = raw.get(name, default)
    kind = type(default)
    if type(value) not in (int, float) or (kind is int and type(value) is not int) or not 0 <= value <= maximum:
        raise EmsError(f"{path}: {name} must be a{'n integer' if kind is int else ' number'} from 0 to {maximum}, not {value!r}")
    return kind(value)


def _consent_kinds(path: Path, raw) -> frozenset[str]:
    if not isinstance(raw, list) or not set(raw) <= CONSENT_KINDS:
        raise EmsError(f"{path}: ask_before must be a list of {', '.join(sorted(CONSENT_KINDS))}, not {raw!r}")
    return frozenset(raw)


def _flag(path: Path, raw: dict, name: str, default: bool) -> bool:
    value = raw.get(name, default)
    if type(value) is not bool:
        raise EmsError(f"{path}: {name} must be true or false, not {value!r}")
    return value


def _choice(path: Path, raw: dict, name: str, default: str, choices: tuple[str, ...]) -> str:
    value = raw.get(name, default)
    if value not in choices:
        raise EmsError(f"{path}: {name} must be one of {', '.join(choices)}, not {value!r}")
    return value


@dataclass
class AgentContext:
    """Handed to every command handler."""

    client_id: str
    data_dir: Path
    policy: LocalPolicy
    #: append an entry to the employee-readable access log: ``access_log(event, detail="", *, operator="", reason="", kind="")``
    access_log: Callable[..., Any]
    #: show a notice to the logged-in user (and log it); never fails
    notify: Callable[[str, str], None]
    #: keep a record for durable delivery: report(kind, name, data) -> msg_id
    report: Callable[..., str]
    #: the operator (client id of the key) who sent the current command
    operator: str = ""
    #: the person behind it, as the broker stamped it (a key's display name, or the
    #: person a bridge vouched for); see :attr:`operator_label`
    operator_name: str = ""
    #: the bridge the person came through (``admin-http``), or ""
    operator_via: str = ""
    #: the current command's id: records about it carry it (``command``), and the
    #: store names their operator from the broker's record of that command
    command_id: str = ""
    #: the accesses going on now (live view, control, file transfer, thumbnails): the indicator shows them
    accesses: AccessRegistry = field(default_factory=AccessRegistry)

    @property
    def operator_label(self) -> str:
        """Who the employee is told about: the person's name (``Jane Doe``, or
        ``Jane Doe via admin-http``), else the key's client id, else "an operator"."""
        name = self.operator_name or self.operator or "an operator"
        return f"{name} via {self.operator_via}" if self.operator_via else name


def operator_fields(stamp: Any) -> dict[str, str]:
    """The context fields for the broker's ``args.operator`` stamp (see
    :mod:`broker.server.operators`); empty for a command without one."""
    if not isinstance(stamp, dict):
        return {}
    name, via = stamp.get("name"), stamp.get("via")
    return {"operator_name": name if isinstance(name, str) else "", "operator_via": via if isinstance(via, str) else ""}
