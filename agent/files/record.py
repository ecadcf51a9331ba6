"""The record of every file operation, refused ones included, and the argument checks the commands share.

Each operation is kept for the store as ``event.<agent>.fileop``
(``file_operations``) with the operator's id, and written to the
employee-readable access log.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from agent.accesses import FILE_TRANSFER
from agent.context import AgentContext, CommandError
from agent.notice.policy import announce
from agent.notice.who import access_reason, operator_label, reason_sentence
from agent.outbox import Priority
from broker.core.envelope import Kind

log = logging.getLogger(__name__)


def flag(args: dict, key: str) -> bool:
    """``args[key]`` as a bool (default False); CommandError for anything else."""
    value = args.get(key, False)
    if type(value) is not bool:
        raise CommandError(f"{key} must be true or false")
    return value


def number(args: dict, key: str, default: int | None, minimum: int = 0) -> int | None:
    """``args[key]`` as an int >= ``minimum`` (or ``default``); CommandError for anything else."""
    value = args.get(key, default)
    if value is None:
        return None
    if type(value) is not int or value < minimum:
        raise CommandError(f"{key} must be an integer >= {minimum}")
    return value


# -- the record ------------------------------------------------------------------


#: operations that move a file's contents: a series of them is a transfer the indicator shows
TRANSFER_OPS = frozenset({"download", "upload"})


def audited(op: str) -> Callable:
    """Keep a ``fileop`` record (and an access-log line) for every call, refused ones too."""

    def wrap(body: Callable[[dict, AgentContext, dict], dict]) -> Callable[[dict, AgentContext], dict]:
        @functools.wraps(body)
        def handler(args: dict, ctx: AgentContext) -> dict:
            raw = args.get("path") if isinstance(args, dict) else None
            record: dict[str, Any] = {"op": op, "path": raw if type(raw) is str and raw else repr(raw), "size": None}
            reason = access_reason(ctx, args if isinstance(args, dict) else {})
            try:
                if not isinstance(args, dict):
                    raise CommandError("arguments must be a map")
                result = body(args, ctx, record)
            except Exception as exc:
                error = str(exc) if isinstance(exc, CommandError) else f"{type(exc).__name__}: {exc}"
                _keep_record(ctx, record, False, error, reason)
                raise
            _keep_record(ctx, record, True, None, reason)
            if op in TRANSFER_OPS:
                _shown(ctx, args, op, record["path"])
            return result

        return handler

    return wrap


def _shown(ctx: AgentContext, args: dict, op: str, path: str) -> None:
    """The indicator shows the transfer while chunks keep coming; its first chunk is also a notice."""
    who, reason = operator_label(ctx), access_reason(ctx, args)
    _access, started = ctx.accesses.touch(FILE_TRANSFER, ctx.operator, reason, who)
    if started:
        what = "copying a file from this computer" if op == "download" else "copying a file to this computer"
        announce(ctx, FILE_TRANSFER, "Files transferred", f"{who} is {what}: {path}. {reason_sentence(reason)}", args)


def _keep_record(ctx: AgentContext, record: dict, ok: bool, error: str | None, reason: str) -> None:
    data = {**record, "ok": ok, "error": error, "operator": ctx.operator, "command": ctx.command_id}
    try:
        ctx.report(Kind.EVENT, "fileop", data, priority=Priority.IMPORTANT)
    except Exception as exc:  # noqa: BLE001 - the operation's outcome still goes back to the operator
        log.error("could not keep the record of file %s %s: %s", record["op"], record["path"], exc)
    detail = record["path"] + ("" if ok else f" (refused: {error})")
    try:
        ctx.access_log(f"file {record['op']}", detail, operator=ctx.operator_label, reason=reason)
    except Exception as exc:  # noqa: BLE001 - as above
        log.error("could not write the access log: %s", exc)
