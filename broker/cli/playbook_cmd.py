"""``ems playbook``: ordered template steps run per target (define: admins; run on a selector: operators)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from broker.cli.template_cmd import raw_values
from broker.core.cli_common import add_operator_options, print_json, table
from broker.core.errors import EmsError
from broker.core.profile import operator_client
from broker.core.progress import ProgressBar
from broker.server.playbook_runs import ACTIVE, ENDED, HELD, RUNNING, WAITING

POLL_S = 0.3
EXAMPLES = """\
examples:
  ems playbook add patch.json          (or: --from-json '{"name": ..., "steps": [...]}')
  ems playbook list
  ems playbook run patch 'group:lab' --param window_h=4 --reason 'patch Tuesday' --dry-run
  ems playbook run patch 'group:lab' --param window_h=4 --reason 'patch Tuesday' --max-parallel 10 --wait
  ems playbook show RUN --follow
  ems playbook cancel RUN --reason 'wrong window'
  ems playbook remove patch

a playbook file:
  {"name": "patch", "description": "check, repair if the check fails, apply",
   "steps": [{"template": "check"},
             {"template": "repair", "when": "failed"},
             {"template": "apply", "params": {"reboot": false}, "when": "result.ok == true"}]}
when (on the last step that ran on the same target): ok (default), failed, always,
  or result.FIELD OP VALUE (OP: == != < <= > >=; VALUE: a number, "text" or true/false)"""


def configure(p) -> None:
    """Options of this sub-command (its name and one-line help are in ``broker.cli.main.SUBCOMMANDS``)."""
    p.description = ("Playbooks: template steps in order, each run on a target only if its condition on the step "
                     "before holds there; run on a selector, paced, every step audited with your reason.")
    p.epilog = EXAMPLES
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("action", choices=("list", "add", "remove", "run", "show", "cancel"))
    p.add_argument("words", nargs="*", metavar="WORD",
                   help="add: FILE.json; remove: NAME; run: NAME SELECTOR; show, cancel: RUN")
    p.add_argument("--from-json", metavar="JSON", help="add: the playbook as JSON text instead of a file")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="run: a value for the steps' parameters they leave open (repeatable)")
    p.add_argument("--reason", default="", help="run (required), cancel: why (kept with every step in the audit trail)")
    p.add_argument("--dry-run", action="store_true", help="run: list targets x steps; start nothing")
    p.add_argument("--max-parallel", type=int, metavar="N", help="run: at most N targets in their steps at once (1-1000)")
    p.add_argument("--ttl-s", type=float, default=None, help="run: each step's command expires after this long (default 1 h)")
    p.add_argument("--wait", action="store_true", help="run: follow the run to its end with a progress bar")
    p.add_argument("--follow", action="store_true", help="show: a progress bar until the run ends")
    add_operator_options(p)
    p.set_defaults(run=run)


def definition(args) -> dict:
    """The playbook to add, from FILE.json or --from-json (the broker checks it)."""
    if args.from_json is not None and args.words:
        raise EmsError("add takes FILE.json or --from-json, not both")
    try:
        text = args.from_json if args.from_json is not None else Path(args.words[0]).read_text()
        data = json.loads(text)
    except IndexError:
        raise EmsError("add takes FILE.json (or --from-json JSON)") from None
    except OSError as exc:
        raise EmsError(f"cannot read {args.words[0]}: {exc.strerror}") from None
    except ValueError as exc:
        raise EmsError(f"the playbook is not JSON ({exc}); see ems playbook --help for an example") from None
    if not isinstance(data, dict):
        raise EmsError("the playbook is a JSON object: name, description, steps")
    return data


def run(args) -> int:
    words, action = args.words, args.action
    need = {"list": 0, "remove": 1, "run": 2, "show": 1, "cancel": 1}.get(action)
    if need is not None and len(words) != need:
        raise EmsError(f"{action} takes " + {0: "no more words", 1: "NAME" if action == "remove" else "RUN",
                                            2: "NAME SELECTOR (values as --param NAME=VALUE)"}[need])
    if action == "run" and not args.reason.strip():
        raise EmsError("run needs --reason: why this playbook runs (kept with every step in the audit trail)")
    with operator_client(args.data_dir, args.server) as client:
        if action == "list":
            return show_list(args, client.request("playbooks.list"))
        if action == "add":
            answer = client.request("playbooks.put", **definition(args))
            message = f"playbook {answer['name']}: {len(answer['steps'])} step(s)"
        elif action == "remove":
            answer = client.request("playbooks.remove", name=words[0])
            message = f"playbook {words[0]} removed"
        elif action == "run":
            return start(args, client)
        elif action == "cancel":
            return show_run(args, client.request("playbooks.cancel", id=words[0], reason=args.reason))
        else:
            return show_run(args, follow(client, words[0]) if args.follow else client.request("playbooks.get", id=words[0]))
    print_json(answer) if args.json else print(message)
    return 0


def start(args, client) -> int:
    request = {"name": args.words[0], "selector": args.words[1], "params": raw_values(args.param), "reason": args.reason,
               "dry_run": args.dry_run}
    if args.max_parallel is not None:
        request["max_parallel"] = args.max_parallel
    if args.ttl_s is not None:
        request["ttl_s"] = args.ttl_s
    answer = client.request("playbooks.run", **request)
    if args.dry_run:
        return show_dry_run(args, answer)
    if not args.json:
        print(f"playbook run {answer['id']}: {answer['playbook']} on {answer['count']:,} agent(s) matching "
              f"{answer['selector']!r}" + (f" ({answer['why']})" if answer["state"] == HELD else ""), file=sys.stderr)
    if not args.wait:
        print_json(answer) if args.json else print(f"follow it: ems playbook show {answer['id']} --follow", file=sys.stderr)
        return 0
    return show_run(args, follow(client, answer["id"]))


def follow(client, run_id: str) -> dict:
    """Poll ``run_id`` with a progress bar (targets through their steps) until nothing of it is open; its last state."""
    bar = None
    while True:
        answer = client.request("playbooks.get", id=run_id, limit=0)
        counts, total = answer["counts"], answer["count"]
        over = total - counts.get(WAITING, 0) - counts.get(ACTIVE, 0)
        bar = bar or ProgressBar(f"playbook {answer['playbook']} on {total:,}")
        bar(over, total)
        if over == total or (answer["state"] not in (RUNNING, HELD) and not counts.get(ACTIVE)):
            bar(total, total)
            return client.request("playbooks.get", id=run_id)
        time.sleep(POLL_S)


def show_list(args, playbooks: list[dict]) -> int:
    if args.json:
        print_json(playbooks)
        return 0
    rows = [[p["name"], " -> ".join(s["template"] + ("" if s["when"] == "ok" else f" [{s['when']}]") for s in p["steps"]),
             p["description"]] for p in playbooks]
    print(table(rows, ["PLAYBOOK", "STEPS", "DESCRIPTION"]) if rows else "no playbooks yet: ems playbook add FILE.json")
    return 0


def show_run(args, answer: dict) -> int:
    """Print a run, a row per target and a column per step; exit 0 when every target went through, 1 otherwise."""
    if args.json:
        print_json(answer)
    else:
        reason = f" ({answer['reason']})" if answer.get("reason") else ""
        print(f"playbook run {answer['id']}: {answer['playbook']} on {answer['selector']!r} by {answer['person']}{reason}: "
              f"{answer['state']}" + (f" ({answer['why']})" if answer["why"] else ""))
        header = ["AGENT", "STATE"] + [f"{s['number']}:{s['template']}" for s in answer["steps"]] + ["WHY"]
        rows = [[t["client_id"], t["state"]] + [s["status"] for s in t["steps"]] + [t["why"] or "-"]
                for t in answer["targets"][:50]]
        print(table(rows, header))
        if answer["count"] > 50:
            print(f"  {answer['count'] - 50:,} more target(s) not shown (--json shows them all)")
    return 0 if answer["counts"].get(ENDED, 0) == answer["count"] else 1


def show_dry_run(args, answer: dict) -> int:
    if args.json:
        print_json(answer)
        return 0
    print(f"dry run: playbook {answer['playbook']} would go to {answer['count']:,} agent(s) matching {answer['selector']!r}, "
          f"at most {answer['options']['max_parallel']} at a time, each target through these steps:")
    print(table([[s["number"], s["template"], s["command"], s["when"]] for s in answer["steps"]],
                ["STEP", "TEMPLATE", "COMMAND", "WHEN"]))
    offline = "offline: its steps wait in the queue until it returns"
    print(table([[t["client_id"], "online" if t["online"] else offline] for t in answer["targets"]],
                ["AGENT", "STATE"]))
    print("nothing was sent")
    return 0
