"""``ems``: the one command-line entry point.

Each sub-command lives in its own module under ``broker.cli`` with an
``add_parser(subparsers)`` that declares its options (its help text is its
documentation) and a ``run(args) -> int``.

Every process starts private (:func:`start_private`): umask 077, and a
command that owns a data dir first takes from it whatever permissions an
older EMS left to other users.
"""
from __future__ import annotations

import argparse
import logging
import sys

from broker.cli import admin_cmd, agent_cmd, broker_cmd, crypto_cmd, gui_cmd, history, keys_cmd, persist, send, status, tail, up
from broker import private_files
from broker.config import DATA_DIR_ENV, DEFAULT_DATA_DIR, resolve_data_dir
from broker.errors import EmsError

#: commands that run as the owner of their data dir (``agent`` only for ``run``, not ``access-log``)
OWNS_DATA_DIR = frozenset({"up", "broker", "persist", "admin-http", "agent", "gui"})

COMMANDS = (up, broker_cmd, persist, admin_cmd, agent_cmd, status, send, tail, history, keys_cmd, crypto_cmd, gui_cmd)

EPILOG = f"""\
data dir: every command takes --data-dir DIR (default: ${DATA_DIR_ENV}, else ./{DEFAULT_DATA_DIR}).
It holds the server's keys, databases, logs and the operator profile that
lets the CLI on the server machine connect without further flags.

start here:  ems up            (broker + local agent, prints what to try next)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ems",
        description="EMS: employee monitoring and remote support over one encrypted ZeroMQ bus.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-level", default=None, choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log verbosity (default: INFO for servers and agents, WARNING for client tools)")
    parser.add_argument("--log-file", help="write logs to this file instead of stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in COMMANDS:
        module.add_parser(subparsers)
    return parser


def setup_logging(level: str, log_file: str | None) -> None:
    handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def start_private(args: argparse.Namespace) -> None:
    """Tighten the data dir of a command in :data:`OWNS_DATA_DIR` (if it exists yet).

    The umask is set first thing in :func:`main`, before the log file opens.
    """
    if args.command not in OWNS_DATA_DIR or getattr(args, "action", "run") != "run":
        return
    private_files.secure_tree(resolve_data_dir(getattr(args, "data_dir", None)))


def main(argv: list[str] | None = None) -> int:
    private_files.restrict_umask()
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level or getattr(args, "default_log_level", "WARNING"), args.log_file)
    start_private(args)
    try:
        return args.run(args) or 0
    except EmsError as exc:
        print(f"ems {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
