"""``ems web``: the web UI's accounts from the command line (``ems web add-user NAME --role ROLE``).

There is no default account: the first admin is made here. The password
is asked twice on the terminal (or read from stdin with
``--password-stdin``), never taken from the command line.
"""
from __future__ import annotations

import getpass
import sys

from broker.core.cli_common import add_data_dir
from broker.core.config import resolve_data_dir
from sync.web_users import ROLES, WebUserError, add_user


def configure(p) -> None:
    """Options of ``ems web``."""
    p.description = ("The web UI's accounts. add-user NAME --role viewer|operator|admin creates one "
                     "(the first admin comes from here: there is no default account).")
    add_data_dir(p)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    add = actions.add_parser("add-user", help="create a web UI account")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--display-name", default="", help="the person's name as the audit trail shows it (default: the user name)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin (one line) instead of asking")
    p.set_defaults(run=run)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise WebUserError("the two passwords differ")
    return first


def run(args) -> int:
    data_root = resolve_data_dir(args.data_dir)
    password = _password(args.password_stdin)
    user_id = add_user(data_root, args.username, args.role, password, args.display_name)
    print(f"web user {args.username} ({args.role}) created, id {user_id}")
    return 0
