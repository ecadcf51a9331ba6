"""``ems bulk``: follow, list and cancel bulk runs (one command to many agents: ``ems send SELECTOR ...``)."""
from __future__ import annotations

import time

from broker.core.cli_common import add_data_dir, add_json, ago, print_json, table
from broker.core.errors import EmsError
from broker.core.profile import operator_client
from broker.core.progress import ProgressBar
from broker.core.vocabulary import DONE
from broker.server.bulk_store import LAUNCHED, RUNNING, WAITING

POLL_S = 0.3


def configure(p) -> None:
    """Options of this sub-command (its name and one-line help are in ``broker.cli.main.SUBCOMMANDS``)."""
    p.description = ("Bulk runs: one command to every agent a selector picks, paced (ems send SELECTOR COMMAND "
                     "--max-parallel N --canary N --halt-on-failure PCT). list: the newest runs; show ID: one run, "
                     "per target (--follow: a progress bar until it ends); cancel ID: nothing more starts.")
    p.add_argument("action", choices=("list", "show", "cancel"), help="what to do")
    p.add_argument("run_id", nargs="?", metavar="ID", help="the run (show, cancel)")
    p.add_argument("--follow", action="store_true", help="show: a progress bar until the run ends")
    p.add_argument("--reason", default="", help="cancel: why (kept in the audit trail)")
    add_data_dir(p)
    add_json(p)
    p.add_argument("--server", help="broker endpoint (default: from the profile)")
    p.set_defaults(run=run)


def run(args) -> int:
    with operator_client(args.data_dir, args.server) as client:
        if args.action == "list":
            runs = client.request("bulk.list")
            if args.json:
                print_json(runs)
            else:
                rows = [[r["id"], r["name"], r["selector"], r["state"], summary(r["counts"]), ago(r["created"])] for r in runs]
                print(table(rows, ["RUN", "COMMAND", "SELECTOR", "STATE", "TARGETS", "STARTED"]) if rows else "no bulk runs yet")
            return 0
        if not args.run_id:
            raise EmsError(f"{args.action} needs the run ID (ems bulk list)")
        if args.action == "cancel":
            answer = client.request("bulk.cancel", id=args.run_id, reason=args.reason)
        else:
            answer = follow(client, args.run_id) if args.follow else client.request("bulk.get", id=args.run_id)
    return show(args, answer)


def follow(client, run_id: str) -> dict:
    """Poll ``run_id`` with a progress bar until nothing of it is open; its last state."""
    bar = None
    while True:
        answer = client.request("bulk.get", id=run_id, limit=0)
        counts = answer["counts"]
        over = answer["count"] - counts.get(WAITING, 0) - counts.get(LAUNCHED, 0)
        bar = bar or ProgressBar(f"{answer['name']} on {answer['count']:,}")
        bar(over, answer["count"])
        if over == answer["count"] or (answer["state"] != RUNNING and not counts.get(LAUNCHED)):
            bar(answer["count"], answer["count"])
            return client.request("bulk.get", id=run_id)
        time.sleep(POLL_S)


def summary(counts: dict) -> str:
    return ", ".join(f"{n:,} {status}" for status, n in sorted(counts.items()))


def show(args, answer: dict) -> int:
    """Print a run; exit 0 when every target is done, 1 otherwise."""
    if args.json:
        print_json(answer)
    else:
        print(f"run {answer['id']}: {answer['name']} on {answer['selector']!r} by {answer['sender']}: {answer['state']}"
              + (f" ({answer['why']})" if answer["why"] else ""))
        print(f"  {summary(answer['counts'])}")
        unfinished = [[t["client_id"], t["status"], t["command_id"]] for t in answer["targets"] if t["status"] != DONE]
        if unfinished:
            print(table(unfinished[:50], ["AGENT", "STATUS", "COMMAND"]))
            if len(unfinished) > 50:
                print(f"  ... and {len(unfinished) - 50:,} more (--json for all)")
    return 0 if answer["counts"].get(DONE, 0) == answer["count"] else 1
