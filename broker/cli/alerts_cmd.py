"""``ems alerts`` (alerts, rules, acknowledging; ``serve`` runs the service) and ``ems inbox`` (your notices)."""
from __future__ import annotations

import argparse
import logging

from broker.core.cli_common import add_operator_options, ago, print_json, table
from broker.core.config import DataDir, resolve_data_dir
from broker.core.errors import EmsError
from broker.core.profile import operator_client

ALERTS_EPILOG = """\
examples:
  ems alerts                       open alerts        ems alerts --all    history, suppressed ones too
  ems alerts ack 12 --reason 'disk cleaned, watching it'
  ems alerts rules
  ems alerts rule set offline --threshold 120 --reason 'laptops matter'
  ems alerts rule set cpu-lab --kind cpu --threshold 95 --for-min 15 --margin 10 --reason 'lab builds'
  ems alerts rule set sec --kind security --events agent_id_clone,impersonation --reason 'clones'
  ems alerts rule remove cpu-lab --reason 'lab closed'

kinds: offline (threshold: seconds), cpu (threshold: %, --for-min), disk (threshold: %), version (--minimum,
empty: this server's), security (--events). serve: run the service (ems up does); it reads DATA/alerts.json:
offline_expected_s (600: an ordered reboot/shutdown/update's offline is expected that long), minimum_version,
tick_s, delivery (for e-mail/webhook deliveries)."""
_RULE_OPTIONS = {"threshold": float, "margin": float, "clear_s": float, "update_delta": float}


def configure(p) -> None:
    """Options of ``ems alerts`` or ``ems inbox`` (which one: the parser's name)."""
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    if p.prog.rsplit(" ", 1)[-1] == "inbox":
        p.description = ("Your inbox: every alert (and, for operators and admins, every approval request of someone else) "
                         "as it opened, updated and resolved. list (default) [--unread]; read ID... or --all "
                         "(marks them read; --archive also hides them); count.")
        p.add_argument("action", nargs="?", default="list", choices=("list", "read", "count"))
        p.add_argument("ids", nargs="*", type=int, metavar="ID", help="read: inbox ids")
        p.add_argument("--unread", action="store_true", help="list: unread only")
        p.add_argument("--archived", action="store_true", help="list: the archived ones instead")
        p.add_argument("--all", action="store_true", help="read: every notice of yours")
        p.add_argument("--archive", action="store_true", help="read: archive them too")
    else:
        p.description = ("Alerts raised by the alerts service's rules (offline, CPU, disk, agent version, security events). "
                         "list (default): open alerts; --all: every one, resolved and suppressed too (an offline after an "
                         "ordered reboot is recorded as suppressed, nobody is told). ack ID --reason; rules; rule set/remove "
                         "(admins; each change is kept with your name). serve: run the service.")
        p.epilog = ALERTS_EPILOG
        p.add_argument("action", nargs="?", default="list", choices=("list", "rules", "rule", "ack", "serve"))
        p.add_argument("words", nargs="*", metavar="WORD", help="rule: set|remove NAME; ack: ID")
        p.add_argument("--all", action="store_true", help="list: every alert, not only open ones")
        p.add_argument("--target", default="", help="list: one agent's alerts")
        p.add_argument("--reason", default="", help="ack, rule set/remove: why (kept with your name)")
        p.add_argument("--kind", help="rule set: offline, cpu, disk, version or security (needed for a new rule)")
        for name in _RULE_OPTIONS:
            p.add_argument(f"--{name.replace('_', '-')}", type=float, help=f"rule set: {name}")
        p.add_argument("--for-min", type=float, help="rule set: minutes the condition must hold (cpu)")
        p.add_argument("--update-min", type=float, help="rule set: at most one update notice per this many minutes")
        p.add_argument("--severity", choices=("info", "warning", "critical"), help="rule set: how loud")
        p.add_argument("--events", help="rule set (security): event names, comma separated")
        p.add_argument("--minimum", help="rule set (version): the oldest version agents should run")
        p.add_argument("--disable", action="store_true", help="rule set: keep the rule but stop judging it")
        p.add_argument("--description", help="rule set: what it is for")
        p.add_argument("--heartbeat-s", type=float, default=None, help="serve: heartbeat interval before the broker's applies")
    add_operator_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    if args.command == "alerts" and args.action == "serve":
        from broker.alerts.runner import serve

        if args.log_level is None:  # a server logs what it does, like ems broker and ems persist
            logging.getLogger().setLevel(logging.INFO)
        return serve(DataDir(resolve_data_dir(args.data_dir)), args.server, args.heartbeat_s)
    with operator_client(args.data_dir, args.server) as client:
        if args.command == "inbox":
            return _inbox(args, client)
        if args.action == "rule":
            return _rule(args, client)
        if args.action == "ack":
            if len(args.words) != 1 or not args.words[0].isdigit():
                raise EmsError("ack takes one alert id (ems alerts lists them) and --reason '...'")
            answer = client.request("alerts.ack", id=int(args.words[0]), reason=args.reason)
            return _out(args, answer, f"alert {answer['id']} acknowledged by {answer['acked_name']}: {answer['ack_reason']}"
                        f" ({answer['state']})")
        if args.action == "rules":
            rules = client.request("alerts.rules")
            rows = [[r["name"], r["kind"], _limit_of(r), r["severity"], "yes" if r["enabled"] else "no", r["description"]] for r in rules]
            return _out(args, rules, table(rows, ["RULE", "KIND", "CONDITION", "SEVERITY", "ON", "DESCRIPTION"]) if rows
                        else "no rules: ems alerts rule set NAME --kind ... --reason ...")
        alerts = client.request("alerts.list", all=args.all, **({"target": args.target} if args.target else {}))
    rows = [[a["id"], a["state"], a["severity"], a["rule"], a["target"], a["title"], ago(a["opened_at"]),
             a["suppressed"] or (f"acked by {a['acked_name']}" if a["acked_name"] else "")] for a in alerts]
    return _out(args, alerts, table(rows, ["ID", "STATE", "SEVERITY", "RULE", "TARGET", "WHAT", "OPENED", "NOTE"]) if rows
                else ("no alerts yet" if args.all else "no open alerts (ems alerts --all for the history)"))


def _limit_of(rule: dict) -> str:
    kind, threshold = rule["kind"], rule["threshold"]
    if kind == "offline":
        return f"offline > {threshold:g} s"
    if kind in ("cpu", "disk"):
        held = f" for {rule['for_s'] / 60:g} min" if rule["for_s"] else ""
        return f"{kind} > {threshold:g} %{held} (clears < {threshold - rule['margin']:g} %)"
    if kind == "version":
        return f"version < {rule['minimum'] or 'this server'}"
    return "events: " + ",".join(rule["events"])


def _rule(args, client) -> int:
    if len(args.words) != 2 or args.words[0] not in ("set", "remove"):
        raise EmsError("rule takes set NAME or remove NAME (and --reason '...')")
    verb, name = args.words
    if verb == "remove":
        answer = client.request("alerts.rule_remove", name=name, reason=args.reason)
        return _out(args, answer, f"rule {name} removed")
    current = next((r for r in client.request("alerts.rules") if r["name"] == name), None)
    if current is None and not args.kind:
        raise EmsError(f"no rule {name!r} yet: give --kind (offline, cpu, disk, version, security) to make it")
    rule = dict(current or {"name": name})
    changes = {key: getattr(args, key) for key in _RULE_OPTIONS if getattr(args, key) is not None}
    changes.update({k: v for k, v in (("kind", args.kind), ("severity", args.severity), ("minimum", args.minimum),
                                      ("description", args.description)) if v is not None})
    if args.for_min is not None:
        changes["for_s"] = args.for_min * 60
    if args.update_min is not None:
        changes["update_s"] = args.update_min * 60
    if args.events is not None:
        changes["events"] = [e.strip() for e in args.events.split(",") if e.strip()]
    rule.update(changes, enabled=not args.disable)
    answer = client.request("alerts.rule_put", rule=rule, reason=args.reason)
    return _out(args, answer, f"rule {answer['name']}: {_limit_of(answer)}" + ("" if answer["enabled"] else " (disabled)"))


def _inbox(args, client) -> int:
    if args.action == "count":
        answer = client.request("inbox.count")
        return _out(args, answer, f"{answer['unread']} unread of {answer['total']}")
    if args.action == "read":
        if bool(args.ids) == args.all:
            raise EmsError("read takes inbox ids (ems inbox lists them) or --all")
        answer = client.request("inbox.read", archive=args.archive, **({"all": True} if args.all else {"ids": args.ids}))
        return _out(args, answer, f"{answer['marked']} marked {'archived' if args.archive else 'read'}; {answer['unread']} unread left")
    items = client.request("inbox.list", unread=args.unread, archived=args.archived)
    rows = [[i["id"], "" if i["read"] else "*", i["kind"], i["state"], i["severity"], i["title"], ago(i["ts"])] for i in items]
    return _out(args, items, table(rows, ["ID", "NEW", "KIND", "STATE", "SEVERITY", "WHAT", "WHEN"]) if rows
                else "your inbox is empty" + (" of unread notices" if args.unread else ""))


def _out(args, answer, text: str) -> int:
    print_json(answer) if args.json else print(text)
    return 0
