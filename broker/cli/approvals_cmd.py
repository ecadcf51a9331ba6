"""``ems approvals``, ``ems approve``, ``ems deny``: two-person approval of sensitive commands."""
from __future__ import annotations

from broker.core.cli_common import add_operator_options, ago, print_json, table
from broker.core.errors import EmsError
from broker.core.profile import operator_client

RULES_HELP = ("Commands named with `ems approvals require NAME...` (admins) wait, sent alone or to many agents, until "
              "an operator who is not the requester approves them: `ems approve ID --reason ...`, or `ems deny ID --reason ...`. "
              "Both people and both reasons are kept in the audit trail; an undecided request expires after an hour.")


def configure(p) -> None:
    """Options of this sub-command (its name and one-line help are in ``broker.cli.main.SUBCOMMANDS``)."""
    if p.prog.rsplit(" ", 1)[-1] in ("approve", "deny"):
        p.description = "Approve or deny a held request (see `ems approvals`); never your own. " + RULES_HELP
        p.add_argument("request_id", metavar="ID", help="the request (ems approvals)")
        p.add_argument("--reason", required=True, help="why (kept in the audit trail beside the requester's reason)")
    else:
        p.description = ("list (default): pending requests (--state all for every one); rules: what needs approval; "
                         "require / release NAME...: change that (admins). " + RULES_HELP)
        p.add_argument("action", nargs="?", default="list", choices=("list", "rules", "require", "release"))
        p.add_argument("names", nargs="*", metavar="NAME", help="require/release: command names, e.g. reboot shutdown")
        p.add_argument("--state", default="pending", choices=("pending", "approved", "denied", "expired", "all"),
                       help="list: which requests (default %(default)s)")
    add_operator_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    with operator_client(args.data_dir, args.server) as client:
        if args.command in ("approve", "deny"):
            answer = client.request("approvals.decide", id=args.request_id, approve=args.command == "approve", reason=args.reason)
            return _done(args, answer)
        if args.action in ("require", "release"):
            if not args.names:
                raise EmsError(f"{args.action} needs command names, e.g. ems approvals {args.action} reboot shutdown")
            answer = client.request("approvals.require", names=args.names, remove=args.action == "release")
            print_json(answer) if args.json else print("need approval now: " + (", ".join(answer["rules"]) or "nothing"))
            return 0
        if args.action == "rules":
            rules = client.request("approvals.rules")
            print_json(rules) if args.json else print("need approval: " + (", ".join(rules) or "nothing (ems approvals require NAME)"))
            return 0
        requests = client.request("approvals.list", state=args.state)
    if args.json:
        print_json(requests)
        return 0
    rows = [[r["id"], r["summary"], f"{r['requester_name']} ({r['requester']})", r["reason"], ago(r["created"]), r["state"],
             r["decided_name"]] for r in requests]
    print(table(rows, ["REQUEST", "WHAT", "ASKED BY", "REASON", "ASKED", "STATE", "DECIDED BY"]) if rows
          else f"no {args.state if args.state != 'all' else ''} approval requests".replace("  ", " "))
    return 0


def _done(args, answer: dict) -> int:
    if args.json:
        print_json(answer)
    else:
        print(f"{answer['state']}: {answer['summary']} (asked by {answer['requester_name']}: {answer['reason'] or 'no reason'})")
    return 0
