"""``ems broadcast``: one chat message to every agent a selector picks, and who got and read it."""
from __future__ import annotations

import argparse
import sys
import time

from broker.core.cli_common import add_operator_options, ago, print_json, table
from broker.core.profile import operator_client
from broker.core.progress import ProgressBar
from broker.cli.bulk_cmd import print_capped

POLL_S = 0.3
#: a recipient's statuses once the message reached the user's screen (or access log)
REACHED = ("delivered", "read")
#: statuses after which nothing more happens to a recipient unless the user reads it
SETTLED = ("delivered", "read", "failed", "cancelled")


def configure(p) -> None:
    """Options of this sub-command (its name and one-line help are in ``broker.cli.main.SUBCOMMANDS``)."""
    p.description = (
        "Broadcasts: one chat message to every agent a selector picks (ems targets SELECTOR previews them), "
        "with a reason kept in the audit trail. Each user sees it in a chat window (or, without a display, in the "
        "access log); the agent reports it delivered, then read when the user presses Read. Offline agents get it "
        "when they return (within --ttl). send: start one (--wait: a progress bar until every recipient has it); "
        "list: the newest; show ID: who has it, who read it, who not (--follow: until all have it); cancel ID: "
        "recipients not reached yet never get it. Viewers see counts only, never the text or the recipients.")
    shared = argparse.ArgumentParser(add_help=False)
    add_operator_options(shared)
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    send = sub.add_parser("send", help="send a message to every agent SELECTOR picks", parents=[shared])
    send.add_argument("selector", metavar="SELECTOR", help="which agents (all, id:desk-*, group:finance&online, ...)")
    send.add_argument("text", metavar="TEXT", help="the message (1-10,000 characters)")
    send.add_argument("--reason", required=True, help="why (kept in the audit trail with your name)")
    send.add_argument("--max-parallel", type=int, metavar="N", help="at most N messages on their way at once (1-1000, default 20)")
    send.add_argument("--ttl", type=float, metavar="SECONDS", help="how long a message waits for an offline agent (default 3600)")
    send.add_argument("--wait", action="store_true", help="a progress bar until every recipient has it (or it failed)")
    sub.add_parser("list", help="the newest broadcasts with their counts", parents=[shared]).add_argument(
        "--limit", type=int, default=20, help="how many (1-200, default 20)")
    show = sub.add_parser("show", help="one broadcast: who has it, who read it, who not", parents=[shared])
    show.add_argument("id", metavar="ID", help="the broadcast (ems broadcast list)")
    show.add_argument("--follow", action="store_true", help="a progress bar until every recipient has it (or it failed)")
    cancel = sub.add_parser("cancel", help="recipients not reached yet never get it", parents=[shared])
    cancel.add_argument("id", metavar="ID", help="the broadcast (ems broadcast list)")
    cancel.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    p.set_defaults(run=run)


def run(args) -> int:
    with operator_client(args.data_dir, args.server) as client:
        if args.action == "list":
            return show_list(args, client.request("broadcast.list", limit=args.limit))
        if args.action == "send":
            answer = client.request("broadcast.send", **send_request(args))
            if not args.json:
                print(f"broadcast {answer['id']} to {answer['count']:,} agent(s) matching {answer['selector']!r}", file=sys.stderr)
            if not args.wait:
                if not args.json:
                    print(f"follow it: ems broadcast show {answer['id']} --follow", file=sys.stderr)
                return show(args, answer)
            answer = follow(client, answer["id"])
        elif args.action == "cancel":
            answer = client.request("broadcast.cancel", id=args.id, reason=args.reason)
        else:
            answer = follow(client, args.id) if args.follow else client.request("broadcast.get", id=args.id)
    return show(args, answer)


def send_request(args) -> dict:
    """``broadcast.send``'s arguments from the command line (only the options given)."""
    request = {"selector": args.selector, "text": args.text, "reason": args.reason}
    if args.max_parallel is not None:
        request["max_parallel"] = args.max_parallel
    if args.ttl is not None:
        request["ttl_s"] = args.ttl
    return request


def follow(client, broadcast_id: str) -> dict:
    """Poll with a progress bar until every recipient is settled (delivered, read, failed or cancelled)."""
    bar = None
    while True:
        answer = client.request("broadcast.get", id=broadcast_id, limit=0)
        settled = sum(answer["counts"].get(s, 0) for s in SETTLED)
        bar = bar or ProgressBar(f"broadcast to {answer['count']:,}")
        bar(settled, answer["count"])
        if settled >= answer["count"]:
            return client.request("broadcast.get", id=broadcast_id)
        time.sleep(POLL_S)


def summary(counts: dict) -> str:
    return ", ".join(f"{n:,} {status}" for status, n in sorted(counts.items()))


def show_list(args, answer: list[dict]) -> int:
    if args.json:
        print_json(answer)
    else:
        rows = [[b["id"], b["person"], b["selector"], b["state"], summary(b["counts"]), ago(b["created"])] for b in answer]
        print(table(rows, ["BROADCAST", "FROM", "SELECTOR", "STATE", "RECIPIENTS", "SENT"]) if rows else "no broadcasts yet")
    return 0


def show(args, answer: dict) -> int:
    """Print a broadcast; exit 0 when every recipient has it, 1 otherwise (a send without --wait, a cancel: 0)."""
    reached = sum(answer["counts"].get(s, 0) for s in REACHED)
    if args.json:
        print_json(answer)
    else:
        print(f"broadcast {answer['id']} from {answer['person']} to {answer['selector']!r}: {answer['state']}"
              + (f" (sending: {answer['run_state']})" if answer["run_state"] else ""))
        if "text" in answer:
            print(f"  reason: {answer['reason']}\n  text: {answer['text']}")
        print(f"  {answer['count']:,} recipient(s): {summary(answer['counts'])}")
        if "recipients" in answer:
            rows = [[r["client_id"], r["status"], _when(r["delivered_ts"]), _when(r["read_ts"])] for r in answer["recipients"]]
            print_capped(rows, ["AGENT", "STATUS", "DELIVERED", "READ"], 200)
    if args.action == "cancel" or (args.action == "send" and not args.wait):
        return 0
    return 0 if reached == answer["count"] else 1


def _when(ts: float | None) -> str:
    return ago(ts) if ts else "-"

