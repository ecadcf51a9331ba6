"""``ems schedule``: templates (or playbooks, or broadcasts) run by the broker at a time or on a cron expression, as the
person who scheduled them."""
from __future__ import annotations

import argparse

from broker.cli import bulk_cmd
from broker.cli.template_cmd import raw_values
from broker.core import cron
from broker.core.cli_common import add_operator_options, ago, print_json, table
from broker.core.errors import EmsError
from broker.core.profile import operator_client

POLICY = """\
when:
  --cron "MIN HOUR DAY MONTH WEEKDAY"  five fields: * 5 1-5 */15 1,15 jan..dec sun..sat; or @hourly @daily
                                      @weekly @monthly @yearly. When both DAY and WEEKDAY are given, either matches.
  --at "YYYY-MM-DD HH:MM"              once.
  Times are wall-clock times in --tz (an IANA zone; default UTC). Across a DST change a time that does not exist
  runs after the jump, and a time that happens twice runs the first time.

what: a template by default (NAME TEMPLATE SELECTOR); --playbook: NAME PLAYBOOK SELECTOR; --broadcast: NAME TEXT
SELECTOR (a tracked message, ems broadcast). Playbooks and broadcasts run at most once per slot (a crash as one
starts is not made up).

each slot runs at most once, and exactly once for template runs: the broker records the slot as taken (and the
next one) in one transaction before the run starts; after a crash it finds whether the run was stored and starts
it only if nothing of it was sent.

missed runs (the broker was down at a slot):
  --missed skip   (default) a slot more than --grace-s seconds late (default 60) is not made up; the slot is
                  recorded as missed and the next future slot is used.
  --missed once   if any slot was missed, run once when the broker is back (not once per missed slot).

each run is started as you: if your key is revoked or your role may no longer run templates, the slot is skipped,
a security event says why and the schedule is paused. A template marked --approval waits for a second operator
each time. The --reason is every run's reason in the audit trail.

examples:
  ems schedule add nightly-check --cron "0 2 * * *" --tz Europe/Berlin update-check 'group:lab' --reason "nightly"
  ems schedule add patch-once --at "2026-12-06 09:00" patch-now 'tag:canary' --param reboot=true \\
      --reason "CHG-1234" --missed once --max-parallel 5
  ems schedule add weekly-cleanup --cron "0 3 * * sun" --playbook disk-cleanup 'all' --reason "weekly cleanup"
  ems schedule add closing --at "2026-12-24 11:00" --broadcast "The office closes at 13:00 today." 'group:office' \
      --reason "holiday hours"
  ems schedule list
  ems schedule show nightly-check
  ems schedule pause nightly-check --reason "lab closed this week"
  ems schedule resume nightly-check --reason "lab open again"
  ems schedule remove nightly-check --reason "replaced by weekly"
"""


def configure(p) -> None:
    """Options of this sub-command (its name and one-line help are in ``broker.cli.main.SUBCOMMANDS``)."""
    p.description = ("Schedules: a template run on a selector, started by the broker on a cron expression or once at a "
                     "time, as the person who scheduled it (see ems template --help).")
    p.epilog = POLICY
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("action", choices=("add", "list", "show", "remove", "pause", "resume"))
    p.add_argument("words", nargs="*", metavar="WORD", help="add: NAME TEMPLATE SELECTOR (NAME PLAYBOOK SELECTOR with "
                   "--playbook, NAME TEXT SELECTOR with --broadcast); show/remove/pause/resume: NAME")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--playbook", action="store_true", help="add: the second word names a playbook (ems playbook list)")
    what.add_argument("--broadcast", action="store_true", help="add: the second word is a message to broadcast")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--cron", metavar="EXPR", help="add: run on this cron expression (see below)")
    when.add_argument("--at", metavar="TIME", help="add: run once at YYYY-MM-DD HH:MM (in --tz)")
    p.add_argument("--tz", default="UTC", help="add: the time zone of --cron and --at (IANA name; default UTC)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="add: a template parameter (repeatable)")
    p.add_argument("--reason", default="", help="why (add: every run's reason; remove/pause/resume: kept in the audit trail)")
    p.add_argument("--missed", choices=("skip", "once"), default="skip", help="add: what a slot missed while the broker was "
                   "down does (default skip; see below)")
    p.add_argument("--grace-s", type=int, default=None, metavar="N", help="add: a slot at most N s late still runs (default 60)")
    p.add_argument("--ttl-s", type=float, default=None, help="add: each command expires after this long (default 1 h)")
    bulk_cmd.add_bulk_options(p)
    add_operator_options(p)
    p.set_defaults(run=run)


def add_request(args) -> dict:
    """The ``schedules.add`` request of ``ems schedule add NAME TEMPLATE SELECTOR``."""
    if len(args.words) != 3:
        raise EmsError("add takes NAME TEMPLATE SELECTOR (and --cron EXPR or --at TIME)")
    if not args.cron and not args.at:
        raise EmsError("add needs --cron EXPR (e.g. '0 2 * * *') or --at 'YYYY-MM-DD HH:MM'")
    if not args.reason.strip():
        raise EmsError("add needs --reason: it is every run's reason in the audit trail")
    if args.dry_run:
        raise EmsError("a schedule has no dry run: preview it with ems template run TEMPLATE SELECTOR --dry-run")
    name, what, selector = args.words
    options = {k: v for k, v in bulk_cmd.options_of(args).items() if k != "dry_run"}
    if args.broadcast:
        op, run = "broadcast.send", {"text": what, "selector": selector, **_paced(options)}
    elif args.playbook:
        op, run = "playbooks.run", {"name": what, "selector": selector, "params": raw_values(args.param), **_paced(options)}
    else:
        op, run = "templates.run", {"name": what, "selector": selector, "params": raw_values(args.param), **options}
    request = {"name": name, "request_op": op, "reason": args.reason, "tz": args.tz, "missed": args.missed, "args": run}
    request["cron" if args.cron else "at"] = args.cron or args.at
    if args.grace_s is not None:
        request["grace_s"] = args.grace_s
    return request


def _paced(options: dict) -> dict:
    """What a playbook or a broadcast takes of the run options (no canary, no halt)."""
    return {k: v for k, v in options.items() if k in ("max_parallel", "ttl_s")}


def run(args) -> int:
    if args.action == "add":
        request = add_request(args)
    elif args.action == "list":
        if args.words:
            raise EmsError("list takes no NAME: it shows every schedule")
    elif len(args.words) != 1:
        raise EmsError(f"{args.action} takes the schedule's NAME (ems schedule list)")
    elif args.action != "show" and not args.reason.strip():
        raise EmsError(f"{args.action} needs --reason (kept in the audit trail)")
    with operator_client(args.data_dir, args.server) as client:
        if args.action == "add":
            answer = client.request("schedules.add", **request)
        elif args.action == "list":
            answer = client.request("schedules.list")
        elif args.action == "show":
            answer = client.request("schedules.get", id=args.words[0])
        else:
            answer = client.request(f"schedules.{args.action}", id=args.words[0], reason=args.reason)
    if args.json:
        print_json(answer)
    elif args.action == "list":
        print_list(answer)
    else:
        print_one(answer)
    return 0


def when_of(schedule: dict) -> str:
    if schedule.get("cron"):
        return f"cron {schedule['cron']!r}"
    return f"once at {cron.shown(schedule['at'], cron.zone(schedule['tz']))}"


def what_of(schedule: dict) -> str:
    """``TEMPLATE on 'SELECTOR'`` when the caller may see the arguments, else the op."""
    args = schedule.get("args") or {}
    if "text" in args and "selector" in args:
        return f"broadcast {args['text'][:40]!r} to {args['selector']!r}"
    if "name" in args and "selector" in args:
        kind = "playbook " if schedule.get("op") == "playbooks.run" else ""
        return f"{kind}{args['name']} on {args['selector']!r}"
    return schedule["op"]


def print_list(schedules: list[dict]) -> None:
    rows = [[s["name"], what_of(s), when_of(s), s["tz"], s["state"], s["next_due_text"], s["owner_name"], s["missed"]]
            for s in schedules]
    print(table(rows, ["SCHEDULE", "RUNS", "WHEN", "TZ", "STATE", "NEXT", "OWNER", "MISSED"]) if rows
          else "no schedules yet: ems schedule add NAME --cron EXPR TEMPLATE SELECTOR --reason WHY")


def print_one(schedule: dict) -> None:
    if schedule.get("removed"):
        print(f"schedule {schedule['name']} removed")
        return
    print(f"schedule {schedule['name']} ({schedule['id']}): {what_of(schedule)}, {when_of(schedule)} in {schedule['tz']}, "
          f"{schedule['state']}" + (f" ({schedule['why']})" if schedule["why"] else ""))
    print(f"  owner {schedule['owner_name']} ({schedule['owner']}); reason: {schedule['reason']}")
    print(f"  next: {schedule['next_due_text']}; missed slots: {schedule['missed']} (grace {schedule['grace_s']} s)")
    runs = schedule.get("runs")
    if runs:
        print(table([[ago(r["fired_at"]), r["run_id"] or "-", r["outcome"]] for r in runs], ["TAKEN", "RUN", "OUTCOME"]))
