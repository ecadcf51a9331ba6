"""``ems bulk``: follow, list and cancel bulk runs (one command to many agents: ``ems send SELECTOR ...``);
the bulk options and the start-and-follow that ``ems send`` and ``ems template run`` share."""
from __future__ import annotations

import sys
import time

from broker.core.cli_common import add_operator_options, ago, print_json, table
from broker.core.errors import EmsError
from broker.core.profile import operator_client
from broker.core.progress import ProgressBar
from broker.core.vocabulary import DONE
from broker.server.bulk_store import HELD, LAUNCHED, RUNNING, WAITING

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
    add_operator_options(p)
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
    """Poll ``run_id`` with a progress bar until nothing of it is open (a held run: until it is decided); its last state."""
    bar = None
    while True:
        answer = client.request("bulk.get", id=run_id, limit=0)
        counts = answer["counts"]
        over = answer["count"] - counts.get(WAITING, 0) - counts.get(LAUNCHED, 0)
        bar = bar or ProgressBar(f"{answer['name']} on {answer['count']:,}")
        bar(over, answer["count"])
        if over == answer["count"] or (answer["state"] not in (RUNNING, HELD) and not counts.get(LAUNCHED)):
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
            print_capped(unfinished, ["AGENT", "STATUS", "COMMAND"], 50)
    return 0 if answer["counts"].get(DONE, 0) == answer["count"] else 1


def print_capped(rows: list[list[str]], headers: list[str], cap: int) -> None:
    """A table of the first ``cap`` rows, and how many more ``--json`` shows."""
    print(table(rows[:cap], headers))
    if len(rows) > cap:
        print(f"  ... and {len(rows) - cap:,} more (--json for all)")


def add_bulk_options(p) -> None:
    """The pacing options of a run (``ems send SELECTOR``, ``ems template run``)."""
    bulk = p.add_argument_group("many agents (a selector, or any of these: a bulk run, followed with `ems bulk`)")
    bulk.add_argument("--max-parallel", type=int, metavar="N", help="at most N commands open at once (1-1000, default 20)")
    bulk.add_argument("--canary", type=int, metavar="N", help="run the first N alone and wait for their outcome first")
    bulk.add_argument("--halt-on-failure", type=float, metavar="PCT",
                      help="halt once more than PCT %% of the finished commands failed (nothing more starts)")
    bulk.add_argument("--dry-run", action="store_true", help="list the agents and what would run; send nothing")


def options_of(args) -> dict:
    """The run's options as the broker takes them (only those given)."""
    out = {"dry_run": args.dry_run}
    for name in ("max_parallel", "canary"):
        if getattr(args, name) is not None:
            out[name] = getattr(args, name)
    if args.halt_on_failure is not None:
        out["halt_failure_pct"] = args.halt_on_failure
    if getattr(args, "ttl_s", None) is not None:
        out["ttl_s"] = args.ttl_s
    return out


def start_and_follow(args, op: str, request: dict) -> int:
    """``op`` (bulk.start, templates.run); a dry run is shown, a run is followed with --wait."""
    with operator_client(args.data_dir, args.server) as client:
        answer = client.request(op, **request)
        if request.get("dry_run"):
            return show_dry_run(args, answer)
        if not args.json:
            print(f"bulk run {answer['id']}: {answer['name']} to {answer['count']:,} agent(s) matching {answer['selector']!r}"
                  + (f" ({answer['why']})" if answer["state"] == HELD else ""), file=sys.stderr)
        if not args.wait:
            if args.json:
                print_json(answer)
            else:
                print(f"follow it: ems bulk show {answer['id']} --follow", file=sys.stderr)
            return 0
        final = follow(client, answer["id"])
    return show(args, final)


def show_dry_run(args, answer: dict) -> int:
    if args.json:
        print_json(answer)
        return 0
    options = answer["options"]
    halt = f"halt when more than {options['halt_failure_pct']:g} % fail" if options["halt_failure_pct"] is not None else "no halt"
    canary = f"the first {options['canary']} alone, then " if options["canary"] else ""
    print(f"dry run: {answer['name']} would go to {answer['count']:,} agent(s) matching {answer['selector']!r}: "
          f"{canary}at most {options['max_parallel']} at a time, {halt}; each expires after {options['ttl_s']:g} s")
    print(table([[t["client_id"], "online" if t["online"] else "offline (queued until it returns)"] for t in answer["targets"]],
                ["AGENT", "STATE"]))
    print("nothing was sent")
    return 0
