"""``ems targets``: which agents a selector picks; tags and groups on agents."""
from __future__ import annotations

import argparse

from broker.core.cli_common import add_operator_options, print_json, table
from broker.core.errors import EmsError
from broker.core.profile import operator_client
from broker.core.selectors import KEYS, WORDS

EXAMPLES = """\
examples:
  ems targets 'all&online'                        every agent now connected
  ems targets 'group:finance&os:windows*'         finance's Windows machines
  ems targets 'tag:kiosk,host:lobby-*'            kiosks and the lobby machines
  ems targets 'all&!version:>=1.4'                agents behind version 1.4
  ems targets tag kiosk 'host:lobby-*'            tag the lobby machines 'kiosk'
  ems targets group finance desk-7,desk-9         put two agents in group finance
  ems targets untag kiosk lobby-3                 take the tag off one
  ems targets list                                every tag and group, with counts

A selector is terms joined by ',' (or) and '&' (and), '!' in front negates.
A term is KEY:PATTERN (keys: {keys}; * matches any run of characters), a client id,
or one of: {words}. version:<1.4 and version:>=2 compare versions.""".format(keys=", ".join(KEYS), words=", ".join(WORDS))

#: action -> (kind, remove) for the ones that change tags and groups
CHANGES = {"tag": ("tag", False), "untag": ("tag", True), "group": ("group", False), "ungroup": ("group", True)}


def configure(p) -> None:
    """Options of this sub-command (its name and one-line help are in ``broker.cli.main.SUBCOMMANDS``)."""
    p.description = ("Preview which agents a selector picks (nothing is sent), and put tags and groups on agents "
                     "(operators; every change is in the audit trail). Commands, templates and broadcasts take the same selectors.")
    p.epilog = EXAMPLES
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("words", nargs="+", metavar="WORD",
                   help="SELECTOR (preview it), `list`, or tag|untag|group|ungroup NAME SELECTOR")
    add_operator_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    words = args.words
    with operator_client(args.data_dir, args.server) as client:
        if words == ["list"]:
            return _show_tags(args, client.request("targets.tags"))
        if words[0] in CHANGES:
            if len(words) != 3:
                raise EmsError(f"{words[0]} needs a NAME and a SELECTOR, e.g. ems targets {words[0]} kiosk 'host:lobby-*'")
            kind, remove = CHANGES[words[0]]
            answer = client.request("targets.tag", kind=kind, name=words[1], selector=words[2], remove=remove)
            return _show_change(args, words[0], answer)
        if len(words) != 1:
            raise EmsError("give one selector (quote it: ems targets 'group:finance&online')")
        return _show_preview(args, client.request("targets.resolve", selector=words[0]))


def _show_preview(args, answer: dict) -> int:
    if args.json:
        print_json(answer)
        return 0
    rows = [[t["client_id"], "online" if t["online"] else "offline", t["label"] or t["host"], t["os"], t["version"],
             " ".join([*(f"group:{g}" for g in t["groups"]), *(f"tag:{x}" for x in t["tags"])])] for t in answer["targets"]]
    if rows:
        print(table(rows, ["AGENT", "STATE", "LABEL / HOST", "OS", "VERSION", "GROUPS AND TAGS"]))
    online = sum(t["online"] for t in answer["targets"])
    print(f"{answer['count']} agent(s) match {answer['selector']!r} ({online} online); nothing was sent")
    return 0


def _show_change(args, action: str, answer: dict) -> int:
    if args.json:
        print_json(answer)
        return 0
    verb = "now carry" if action in ("tag", "group") else "no longer carry"
    print(f"{len(answer['changed'])} of {answer['matched']} matching agent(s) {verb} {answer['kind']}:{answer['name']}")
    return 0


def _show_tags(args, summary: list[dict]) -> int:
    if args.json:
        print_json(summary)
        return 0
    rows = [[s["kind"], s["name"], f"{s['agents']:,}"] for s in summary]
    print(table(rows, ["KIND", "NAME", "AGENTS"]) if rows else "no tags or groups yet: ems targets tag NAME SELECTOR")
    return 0
