"""Options, logging and output helpers shared by the ``ems`` sub-commands.

Every component's sub-command module (``agent.cli``, ``gui.cli``,
``broker.server.cli`` ...) builds on these, so they live on the ground floor:
nothing below the CLI imports ``broker.cli``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from broker.core import private_files
from broker.core.config import DATA_DIR_ENV, DEFAULT_DATA_DIR, resolve_data_dir


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    """The ``--data-dir`` option every command shares."""
    parser.add_argument("--data-dir", default=None, help=f"data directory (default: ${DATA_DIR_ENV} or ./{DEFAULT_DATA_DIR})")


def setup_logging(level: str, log_file: str | None) -> None:
    """One handler on the root logger: ``log_file`` if given, else stderr."""
    handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def start_private(args: argparse.Namespace) -> None:
    """Tighten the data dir of a sub-command that owns it (``set_defaults(owns_data_dir=True)``), if it exists yet:
    take from it whatever permissions an older EMS left to other users.

    Only the ``run`` action owns it (``ems agent access-log`` is read by the
    employee). The umask is set before this, first thing in ``ems``'s main.
    """
    if not getattr(args, "owns_data_dir", False) or getattr(args, "action", "run") != "run":
        return
    private_files.secure_tree(resolve_data_dir(getattr(args, "data_dir", None)))


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")


def add_operator_options(parser: argparse.ArgumentParser) -> None:
    """What every operator tool that talks to the bus takes: ``--data-dir``, ``--json`` and ``--server``."""
    add_data_dir(parser)
    add_json(parser)
    parser.add_argument("--server", help="broker endpoint (default: from the profile)")


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, default=_jsonable, sort_keys=True)
    sys.stdout.write("\n")
    sys.stdout.flush()


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    return str(value)


def ago(ts: float | None, now: float | None = None) -> str:
    """'3 s ago', '5 min ago', 'never'."""
    if not ts:
        return "never"
    delta = (now or time.time()) - ts
    if delta < 90:
        return f"{max(0, int(delta))} s ago"
    if delta < 5400:
        return f"{int(delta // 60)} min ago"
    if delta < 172800:
        return f"{int(delta // 3600)} h ago"
    return f"{int(delta // 86400)} d ago"


def table(rows: list[list[str]], headers: list[str]) -> str:
    """A plain aligned text table."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(str(c))) for w, c in zip(widths, row)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)
