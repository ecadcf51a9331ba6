"""``ems keys``: enrolment, like salt-key: list, accept, reject, revoke, add, label."""
from __future__ import annotations

import argparse

from broker.cli.common import add_data_dir, add_json, ago, print_json, table
from broker.cli.profile import operator_client
from broker.config import ROLES


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "keys",
        help="list / accept / reject / revoke agent and operator keys",
        description="Manage who may connect. A new agent's key is pending until accepted here (or until it "
        "presents the enrolment token set with EMS_ENROL_TOKEN on the server). Revoking closes the live "
        "connection and refuses the next one. ID is a client id or a prefix of the public key (6+ chars).",
    )
    shared = argparse.ArgumentParser(add_help=False)
    add_data_dir(shared)
    add_json(shared)
    shared.add_argument("--server", help="broker endpoint (default: from the profile)")
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    sub.add_parser("list", help="every key with its state", parents=[shared])
    for action in ("accept", "reject", "revoke"):
        a = sub.add_parser(action, help=f"{action} a key", parents=[shared])
        a.add_argument("id", help="client id or public key prefix")
        a.add_argument("--reason", default="", help="recorded in the audit trail")
    add = sub.add_parser("add", help="register a public key directly (e.g. a remote operator)", parents=[shared])
    add.add_argument("public_key", help="Z85 public key (40 chars)")
    add.add_argument("--id", dest="client_id", required=True, help="the client id / operator name")
    add.add_argument("--role", default="agent", choices=ROLES, help="role (default agent)")
    label = sub.add_parser("label", help="set a device label", parents=[shared])
    label.add_argument("id")
    label.add_argument("label")
    p.set_defaults(run=run)


def run(args) -> int:
    with operator_client(args.data_dir, args.server) as client:
        if args.action == "list":
            result = client.request("keys.list")
        elif args.action == "add":
            result = client.request("keys.add", public_key=args.public_key, client_id=args.client_id, role=args.role)
        elif args.action == "label":
            result = client.request("keys.label", id=args.id, label=args.label)
        else:
            result = client.request(f"keys.{args.action}", id=args.id, reason=args.reason)
    if args.json:
        print_json(result)
    elif args.action == "list":
        rows = [[r["client_id"], r["role"], r["state"], r["label"] or r["hostname"], r["public_key"][:12], ago(r["last_seen"])] for r in result]
        print(table(rows, ["ID", "ROLE", "STATE", "LABEL", "KEY", "LAST SEEN"]) if rows else "no keys")
    else:
        print(f"{result['client_id']} ({result['role']}): {result['state']}")
    return 0
