"""Words several components share about commands: statuses, what is kept of
results, and the texts of refusals several components give (reasons, pending keys).

The broker's command queue moves a command forward through these statuses
and the broker publishes each change (``COMMAND_STATUS``); the client
library, the CLI, the GUI, the admin bridge and the persister read them.
This module is the one place they are spelled (ground floor: it imports
nothing of the project)::

    queued -> sent -> delivered -> done | failed
    queued | sent | delivered -> expired

Wire vocabulary (message kinds, topic roots, error codes and texts) lives in
:mod:`broker.core.envelope`; this module is about what a command's body says.
"""
from __future__ import annotations

from typing import Any

QUEUED, SENT, DELIVERED, DONE, FAILED, EXPIRED = "queued", "sent", "delivered", "done", "failed", "expired"
#: a command that waits for a second operator's approval (broker.server.approvals): not queued yet
HELD = "held"
#: statuses after which nothing about a command changes (its result is known, or it never ran)
FINAL = frozenset({DONE, FAILED, EXPIRED})
#: statuses of a command still waiting to run or to report, in the order they are reached
OPEN = (QUEUED, SENT, DELIVERED)
#: how far along each status is: a status change never goes to a lower rank
STATUS_RANK = {QUEUED: 0, SENT: 1, DELIVERED: 2, DONE: 3, FAILED: 3, EXPIRED: 3}

#: commands whose result is for now only (a screen thumbnail for a console
#: tile): once final, only their outcome is kept (see :func:`outcome_only`),
#: by the broker's queue and in the agent's record of executed commands
EPHEMERAL_RESULTS = frozenset({"thumbnail"})
#: bytes values longer than this are kept as their size once no longer needed
BULK_BYTES = 64 * 1024
#: the longest reason accepted for an access (shown to the employee, kept in the audit trail; the broker, the
#: agent and the admin API agree)
MAX_REASON_CHARS = 500


def reason_too_long(limit: int = MAX_REASON_CHARS) -> str:
    """What a reason over ``limit`` characters is refused with (agent, broker, admin bridge)."""
    return f"the reason is longer than {limit} characters"


def pending_key_advice(key_prefix: str = "ID") -> str:
    """What to do about a key the broker holds as pending (client library,
    broker log, error table, GUI): the one wording of the advice."""
    separator = "-- " if key_prefix.startswith("-") else ""  # Z85 keys may start with "-": argparse would take it for an option
    return f"an admin must accept it on the server: `ems keys accept {separator}{key_prefix}`"


def is_final(status: Any) -> bool:
    """Whether ``status`` (as read from a body: any type) is one of :data:`FINAL`."""
    return isinstance(status, str) and status in FINAL


def outcome_only(result: Any) -> Any:
    """What is kept of an :data:`EPHEMERAL_RESULTS` result: ok and error, not the output."""
    if not isinstance(result, dict):
        return result
    kept = {k: result[k] for k in ("ok", "error") if k in result}
    return kept | {"omitted": "the output of this command is not kept"}


def without_bulk(value: Any) -> Any:
    """``value`` with every bytes object over :data:`BULK_BYTES` replaced by its size."""
    if isinstance(value, (bytes, bytearray)) and len(value) > BULK_BYTES:
        return {"omitted_bytes": len(value), "note": "not kept once the command is final; run it again"}
    if isinstance(value, dict):
        return {k: without_bulk(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_bulk(v) for v in value]
    return value


# -- access commands: each needs a reason ----------------------------------------
#: Every command that looks into or changes an employee's computer, and what it
#: is (for messages and the docs). The broker refuses one whose ``args`` lack a
#: ``reason`` (:func:`reason_problem`); the CLI, the console and the admin API
#: ask for one first. The reason is shown to the employee, kept in their access
#: log and in the audit trail. Ending an access (``live.stop``,
#: ``control.close``), the remote input of an open control session (``input``,
#: covered by ``control.open``'s reason), ``files.roots`` (what may be shared,
#: not what is there), chat and ``sysinfo`` need none.
ACCESS_COMMANDS: dict[str, str] = {
    "capture": "a full-size screen capture, stored on the server",
    "thumbnail": "a small picture of the screen for a console tile",
    "live.start": "live view of the screen",
    "control.open": "remote control of the screen",
    "files.list": "listing a folder",
    "files.stat": "looking at a file",
    "files.download": "copying a file from the computer",
    "files.upload": "copying a file to the computer",
    "files.move": "moving or renaming a file",
    "files.delete": "deleting a file",
    "power.reboot": "restarting the computer",
    "power.shutdown": "shutting the computer down",
    "update.check": "checking for operating system updates",
    "update.apply": "installing operating system updates",
}


def clean_reason(value: Any) -> str:
    """A reason as kept: ``value`` stripped if it is a string, else ``""``."""
    return value.strip() if isinstance(value, str) else ""


def reason_problem(name: str, args: dict, how: str = "") -> str | None:
    """Why command ``name`` with ``args`` may not be sent for want of a reason,
    or None: not an access command, or a usable ``reason`` (not blank, at most
    :data:`MAX_REASON_CHARS` characters). A missing reason's message ends with
    what to do: ``how`` (default: the ``ems send`` form)."""
    what = ACCESS_COMMANDS.get(name)
    if what is None:
        return None
    reason = args.get("reason")
    if reason is not None and not isinstance(reason, str):
        return f"the reason must be text, not {type(reason).__name__}"
    reason = clean_reason(reason)
    if len(reason) > MAX_REASON_CHARS:
        return f"the reason is {len(reason)} characters, more than {MAX_REASON_CHARS}: say why in fewer words"
    if not reason:
        return (f"{name} ({what}) needs a reason, shown to the user and kept in the audit trail: "
                f"give a reason: {how or f'ems send AGENT {name} --reason ' + repr('...')}")
    return None


#: the sync worker's automatic full snapshots: the shortest and longest period one may set (``sync.auto``)
AUTO_SYNC_MIN_S = 60.0
AUTO_SYNC_MAX_S = 7 * 24 * 3600.0


def auto_sync_problem(args: Any) -> str | None:
    """Why ``args`` is not a valid ``sync.auto`` setting (``{"enabled": bool, "every_s": seconds}``), or None.
    The admin API checks it before the bus and the sync worker again before it applies it."""
    if not isinstance(args, dict) or set(args) != {"enabled", "every_s"}:
        return 'the auto-sync setting is {"enabled": true or false, "every_s": seconds}'
    every_s = args["every_s"]
    if not isinstance(args["enabled"], bool):
        return "enabled must be true or false"
    if isinstance(every_s, bool) or not isinstance(every_s, (int, float)) or not AUTO_SYNC_MIN_S <= every_s <= AUTO_SYNC_MAX_S:
        return f"every_s must be a number of seconds from {AUTO_SYNC_MIN_S:g} to {AUTO_SYNC_MAX_S:g} (1 minute to 1 week)"
    return None
