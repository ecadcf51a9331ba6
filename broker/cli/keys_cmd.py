"""``ems keys``: enrolment, like salt-key: list, accept, reject, revoke, unblock, add, label, name."""
from __future__ import annotations

import argparse
import time

from broker.core.cli_common import add_data_dir, add_json, ago, print_json, table
from broker.cli.history import parse_time
from broker.core.profile import operator_client
from broker.core.config import ROLES
from broker.core.errors import EmsError
from broker.server.registry import STATES

BLOCKED = "blocked"  # a state of a client id, listed with --state blocked


def configure(p) -> None:
    """Options of this sub-command (its name and one-line help are in ``broker.cli.main.SUBCOMMANDS``)."""
    p.description = (
        "Manage who may connect. A new agent's key is pending until accepted here (or until it "
        "presents the enrolment token set with EMS_ENROL_TOKEN on the server, for a client id never enrolled "
        "before). ID is a client id or a prefix of the public key (6+ chars). Revoking a client id revokes "
        "every key that ever claimed it, closes their connections and blocks the id until `ems keys unblock`; "
        "revoking an accepted key's prefix does the same for its id; revoking the prefix of a key that is not accepted "
        "(pending, rejected) revokes that key alone."
    )
    shared = argparse.ArgumentParser(add_help=False)
    add_data_dir(shared)
    add_json(shared)
    shared.add_argument("--server", help="broker endpoint (default: from the profile)")
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    lister = sub.add_parser("list", help="every key with its state", parents=[shared])
    lister.add_argument("--state", choices=STATES + (BLOCKED,), help="only keys in this state (blocked: blocked client ids)")
    for action, text in (("accept", "accept a pending key"), ("revoke", "revoke a client id (every key) or one key"),
                         ("unblock", "let a revoked client id enrol again (with a new key, accepted here)")):
        a = sub.add_parser(action, help=text, parents=[shared])
        a.add_argument("id", help="client id or public key prefix (one that starts with '-' goes after --: accept -- -Ab3)")
        a.add_argument("--reason", default="", help="recorded in the audit trail")
    reject = sub.add_parser("reject", help="reject a pending key, or all of them with --pending", parents=[shared])
    reject.add_argument("id", nargs="?", help="client id or public key prefix")
    reject.add_argument("--pending", action="store_true", help="reject every pending key (in bulk, one audit row)")
    reject.add_argument("--older-than", metavar="DURATION", help="with --pending: only keys pending longer than this (30s, 10m, 2h, 7d)")
    reject.add_argument("--reason", default="", help="recorded in the audit trail")
    add = sub.add_parser("add", help="register a public key directly (e.g. a remote operator)", parents=[shared])
    add.add_argument("public_key", help="Z85 public key (40 chars; one that starts with '-' goes after --: add -- -Ab3...)")
    add.add_argument("--id", dest="client_id", required=True, help="the client id / operator name")
    add.add_argument("--role", default="agent", choices=ROLES, help="role (default agent)")
    add.add_argument("--name", default="", help='the person behind an operator key, e.g. "Jane Doe": what the employee '
                     "is told and the audit trail records (default: the client id)")
    label = sub.add_parser("label", help="set a device label", parents=[shared])
    label.add_argument("id")
    label.add_argument("label")
    name = sub.add_parser("name", help="set the display name of the person behind a key (admins)", parents=[shared])
    name.add_argument("id", help="client id or public key prefix")
    name.add_argument("name", help='e.g. "Jane Doe" (\'\' clears it: the client id is shown)')
    p.set_defaults(run=run)


def older_than_s(text: str | None, now: float) -> float:
    """``--older-than 10m`` in seconds (0 when not given)."""
    if text is None:
        return 0.0
    seconds = now - parse_time(text, now)
    if seconds < 0:
        raise EmsError(f"--older-than {text!r} is in the future: give a duration such as 10m, 2h or 7d")
    return seconds


def _request(client, args) -> object:
    if args.action == "list":
        if args.state == BLOCKED:
            return client.request("keys.blocked")
        return client.request("keys.list", **({"state": args.state} if args.state else {}))
    if args.action == "add":
        return client.request("keys.add", public_key=args.public_key, client_id=args.client_id, role=args.role, name=args.name)
    if args.action == "label":
        return client.request("keys.label", id=args.id, label=args.label)
    if args.action == "name":
        return client.request("keys.name", id=args.id, name=args.name)
    if args.action == "reject" and args.pending:
        return client.request("keys.reject", pending=True, older_than_s=older_than_s(args.older_than, time.time()), reason=args.reason)
    return client.request(f"keys.{args.action}", id=args.id, reason=args.reason)


def run(args) -> int:
    if args.action == "reject" and bool(args.pending) == bool(args.id):
        raise EmsError("give either a key (ems keys reject ID) or --pending, not both")
    if args.action == "reject" and args.older_than and not args.pending:
        raise EmsError("--older-than goes with --pending")
    with operator_client(args.data_dir, args.server) as client:
        result = _request(client, args)
    if args.json:
        print_json(result)
    else:
        print(describe(args, result))
    return 0


def describe(args, result) -> str:
    """What a key command did, in words."""
    if args.action == "list" and args.state == BLOCKED:
        rows = [[b["client_id"], b["blocked_by"], ago(b["created"]), b["reason"]] for b in result]
        return table(rows, ["ID", "BLOCKED BY", "SINCE", "REASON"]) if rows else "no blocked client ids"
    if args.action == "list":
        rows = [[r["client_id"], r.get("name", ""), r["role"], r["state"], r["label"] or r["hostname"], r["public_key"][:12],
                 ago(r["last_seen"])] for r in result]
        return table(rows, ["ID", "NAME", "ROLE", "STATE", "LABEL", "KEY", "LAST SEEN"]) if rows else "no keys"
    if args.action == "revoke":
        return describe_revoke(result)
    if args.action == "unblock":
        return (f"{result['client_id']} is no longer blocked; its {result['revoked_keys']} revoked key(s) stay revoked: "
                f"a new key for it must be accepted with `ems keys accept` (the enrolment token does not admit it)")
    if args.action == "reject" and args.pending:
        return f"rejected {result['rejected']} pending key(s); {result['connections_closed']} live connection(s) closed"
    was = f" (was {result['was']})" if result.get("was") and result["was"] != result["state"] else ""
    named = f" named {result['name']!r}" if result.get("name") else ""
    return f"{result['client_id']} ({result['role']}){named}: {result['state']}{was}, key {result['public_key'][:12]}"


def describe_revoke(result: dict) -> str:
    """Exactly what a revoke changed: how many keys, in which states, and the block."""
    cid, revoked = result["client_id"], result["revoked"]
    counts = ", ".join(f"{n} {state}" for state, n in sorted(result["counts"].items())) or "none"
    keys = ", ".join(f"{k['public_key'][:8]} ({k['was']}{'' if k['client_id'] == cid else ', now claims ' + k['client_id']})" for k in revoked)
    lines = [f"revoked {len(revoked)} key(s) of {cid}: {counts}" + (f" [{keys}]" if keys else "")]
    if result["already_revoked"]:
        lines.append(f"{result['already_revoked']} key(s) were already revoked")
    if result["by"] == "id":
        lines.append(f"{cid} is blocked{' (already was)' if result['was_blocked'] else ''}: no key is accepted for it "
                     f"until `ems keys unblock {cid}`")
    else:
        lines.append(f"{cid} is {'still blocked' if result['blocked'] else 'not blocked'}: that key is not an accepted one, "
                     f"so revoking it alone blocks nothing (revoke the client id to block it)")
    lines.append(f"{result['connections_closed']} live connection(s) closed")
    return "\n".join(lines)
