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

from broker.errors import EmsError


class CommandError(EmsError):
    """A command that cannot be carried out; the message goes to the operator."""


@dataclass
class LocalPolicy:
    """The agent's local configuration: set at install, never loosened by the server.

    ``mandatory_notices`` lists the notices the employee always sees
    (``start``, ``live_view``, ``remote_control``); a server request cannot
    remove one.
    """

    allowed_roots: list[Path] = field(default_factory=list)
    max_file_bytes: int = 50 * 1024 * 1024
    mandatory_notices: frozenset[str] = frozenset({"start", "live_view", "remote_control"})
    #: power and update commands only print what they would run
    power_dry_run: bool = False
    log_forward_level: str = "INFO"
    log_forward_per_minute: int = 600

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
        )


@dataclass
class AgentContext:
    """Handed to every command handler."""

    client_id: str
    data_dir: Path
    policy: LocalPolicy
    #: append a line to the employee-readable access log
    access_log: Callable[[str, str], Any]
    #: show a notice to the logged-in user (and log it); never fails
    notify: Callable[[str, str], None]
    #: keep a record for durable delivery: report(kind, name, data) -> msg_id
    report: Callable[..., str]
    #: the operator (client id) who sent the current command
    operator: str = ""
