"""``ems``: the one command-line entry point, and the only module that knows every component.

Each sub-command is one module, owned by its component, with
``configure(parser)`` (its options; the description is its documentation)
and ``run(args) -> int``. :data:`SUBCOMMANDS` names them; only the module
of the command being run is imported, so ``ems tail`` never loads Qt and
``ems --help`` loads nothing but this file.

Every process starts private: umask 077 first thing, and a command that
owns a data dir first takes from it whatever permissions an older EMS left
to other users (:func:`broker.core.cli_common.start_private`).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import NamedTuple

from broker.core import private_files
from broker.core.cli_common import setup_logging, start_private
from broker.core.config import DATA_DIR_ENV, DEFAULT_DATA_DIR
from broker.core.errors import EmsError


class Subcommand(NamedTuple):
    module: str
    help: str


#: every ``ems`` sub-command: name -> (module with configure/run, one-line help), in ``--help`` order
SUBCOMMANDS: dict[str, Subcommand] = {
    "up": Subcommand("broker.cli.up", "start the server stack (broker + persister + local agent) and keep it running"),
    "broker": Subcommand("broker.server.cli", "run the message broker"),
    "persist": Subcommand("broker.persister.cli", "run the SQLite persister (the durable store)"),
    "admin-http": Subcommand("bridges.admin_http.cli", "run the admin HTTP API for the web UI (needs EMS_ADMIN_TOKEN)"),
    "agent": Subcommand("agent.cli", "run the agent (or: ems agent access-log)"),
    "status": Subcommand("broker.cli.status", "agents (online/offline, last seen, version) and broker counters"),
    "send": Subcommand("broker.cli.send", "send a command to an agent (ping, sysinfo, ...)"),
    "bulk": Subcommand("broker.cli.bulk_cmd", "bulk runs (ems send SELECTOR ...): list, show ID [--follow], cancel ID"),
    "broadcast": Subcommand("broker.cli.broadcast_cmd", "one chat message to many agents (a selector), and who read it"),
    "approvals": Subcommand("broker.cli.approvals_cmd", "two-person approval: pending requests; what needs approval"),
    "approve": Subcommand("broker.cli.approvals_cmd", "approve a held request (not your own): ems approve ID --reason ..."),
    "deny": Subcommand("broker.cli.approvals_cmd", "deny a held request: ems deny ID --reason ..."),
    "alerts": Subcommand("broker.cli.alerts_cmd", "alerts from rules (offline, CPU, disk, version, security): list, ack, rules"),
    "inbox": Subcommand("broker.cli.alerts_cmd", "your inbox: alerts and approval requests, read/unread"),
    "template": Subcommand("broker.cli.template_cmd", "named commands with typed parameters: add / list / run on a selector"),
    "playbook": Subcommand("broker.cli.playbook_cmd", "template steps in order with conditions, run per target: add / run / show"),
    "schedule": Subcommand("broker.cli.schedule_cmd", "templates run on a cron expression or once at a time: add / list / show"),
    "targets": Subcommand("broker.cli.targets_cmd", "which agents a selector picks (group:finance&online); tags and groups"),
    "tail": Subcommand("broker.cli.tail", "watch live topics (events, presence, commands, security...)"),
    "history": Subcommand("broker.cli.history", "stored history: sessions, logs, security events, audit trail..."),
    "keys": Subcommand("broker.cli.keys_cmd", "list / accept / reject / revoke / unblock agent and operator keys"),
    "crypto": Subcommand("broker.persister.crypto_cli", "store encryption keys: status, rotate"),
    "sync": Subcommand("sync.cli", "the web view's MySQL: init (database, tables, users); run: the sync worker"),
    "web": Subcommand("sync.web_cli", "the web UI's accounts: add-user NAME --role viewer|operator|admin"),
    "gui": Subcommand("gui.cli", "the operator console: fleet grid, per-client history and charts, actions"),
}

EPILOG = f"""\
data dir: every command takes --data-dir DIR (default: ${DATA_DIR_ENV}, else ./{DEFAULT_DATA_DIR}).
It holds the server's keys, databases, logs and the operator profile that
lets the CLI on the server machine connect without further flags.

start here:  ems up            (broker + local agent, prints what to try next)
"""


def build_parser(chosen: str | None = "*") -> argparse.ArgumentParser:
    """The ``ems`` parser; only ``chosen``'s module is imported and configured (every one with ``"*"``, none with None)."""
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
    for name, sub in SUBCOMMANDS.items():
        sub_parser = subparsers.add_parser(name, help=sub.help, description=sub.help)
        if chosen in (name, "*"):
            importlib.import_module(sub.module).configure(sub_parser)
    return parser


def chosen_command(argv: list[str]) -> str | None:
    """The sub-command named in ``argv`` (the first word that is one), or None."""
    return next((word for word in argv if word in SUBCOMMANDS), None)


def main(argv: list[str] | None = None) -> int:
    private_files.restrict_umask()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(chosen_command(argv)).parse_args(argv)
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
