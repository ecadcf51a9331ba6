"""``ems template``: named, parameterised commands (define: admins; run on a selector: operators)."""
from __future__ import annotations

import argparse

from broker.cli import bulk_cmd
from broker.cli.send import parse_params
from broker.core.cli_common import add_operator_options, print_json, table
from broker.core.errors import EmsError
from broker.core.profile import operator_client
from broker.core.templates import TYPES

EXAMPLES = """\
examples:
  ems template add patch-now os.update.apply --arg dry_run=false --approval \\
      --param "reboot:bool:default=false" --description "apply pending OS updates"
  ems template add restart-service service.restart --param "name:choice:required:choices=cups,sshd"
  ems template add shout chat.send --param "text:text:required:max_chars=200"
  ems template list
  ems template run patch-now 'group:lab&online' reboot=true --reason 'patch Tuesday' --canary 2 --wait
  ems template remove shout

--param NAME:TYPE[:required][:default=V][:min=N][:max=N][:max_chars=N][:choices=A,B][:help=TEXT]
types: """ + ", ".join(TYPES)


def configure(p) -> None:
    """Options of this sub-command (its name and one-line help are in ``broker.cli.main.SUBCOMMANDS``)."""
    p.description = ("Templates: a command with fixed arguments and typed parameters, run on a selector as a paced bulk "
                     "run (see ems send --help); one marked --approval always waits for a second operator.")
    p.epilog = EXAMPLES
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("action", choices=("list", "add", "remove", "run"))
    p.add_argument("words", nargs="*", metavar="WORD", help="add: NAME COMMAND; remove: NAME; run: NAME SELECTOR [param=value ...]")
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", help="add: a fixed argument (repeatable)")
    p.add_argument("--param", action="append", default=[], metavar="SPEC", help="add: a parameter (repeatable; see below)")
    p.add_argument("--approval", action="store_true", help="add: every run waits for a second operator's approval")
    p.add_argument("--description", default="", help="add: what it is for")
    p.add_argument("--reason", default="", help="run: why (shown to users for access commands; kept in the audit trail)")
    p.add_argument("--wait", action="store_true", help="run: follow the run to its end")
    p.add_argument("--ttl-s", type=float, default=None, help="run: each command expires after this long (default 1 h)")
    bulk_cmd.add_bulk_options(p)
    add_operator_options(p)
    p.set_defaults(run=run)


def param_spec(text: str) -> tuple[str, dict]:
    """``NAME:TYPE[:flag][:key=value]...`` -> (name, spec); the broker checks the spec itself."""
    parts = text.split(":")
    if len(parts) < 2:
        raise EmsError(f"--param {text!r}: NAME:TYPE first, e.g. hours:int:required:min=1")
    name, spec = parts[0], {"type": parts[1]}
    for part in parts[2:]:
        key, sep, value = part.partition("=")
        if not sep:
            spec[key] = True
        elif key == "choices":
            spec[key] = [c for c in value.split(",") if c]
        elif key in ("min", "max", "max_chars"):
            try:
                spec[key] = int(value) if key == "max_chars" or value.lstrip("-").isdigit() else float(value)
            except ValueError:
                raise EmsError(f"--param {text!r}: {key} must be a number") from None
        else:
            spec[key] = value
    return name, spec


def raw_values(pairs: list[str]) -> dict[str, str]:
    """``param=value`` words as text: the broker converts each to its parameter's type (or says why not)."""
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise EmsError(f"{pair!r} is not param=value")
        values[key] = value
    return values


def run(args) -> int:
    words = args.words
    if args.action in ("list",) and words:
        raise EmsError("list takes no more words")
    need = {"add": 2, "remove": 1}.get(args.action)
    if need is not None and len(words) != need:
        raise EmsError(f"{args.action} takes {'NAME COMMAND' if need == 2 else 'NAME'}")
    if args.action == "run":
        if len(words) < 2:
            raise EmsError("run takes NAME SELECTOR [param=value ...]")
        request = {"name": words[0], "selector": words[1], "params": raw_values(words[2:]), **bulk_cmd.options_of(args)}
        if args.reason:
            request["reason"] = args.reason
        return bulk_cmd.start_and_follow(args, "templates.run", request)
    with operator_client(args.data_dir, args.server) as client:
        if args.action == "list":
            answer = client.request("templates.list")
            if not args.json:
                rows = [[t["name"], t["command"], ", ".join(f"{n}:{s['type']}{'*' if s.get('required') else ''}"
                                                            for n, s in t["params"].items()) or "-",
                         "yes" if t["approval"] else "no", t["description"]] for t in answer]
                print(table(rows, ["TEMPLATE", "COMMAND", "PARAMS (* required)", "APPROVAL", "DESCRIPTION"]) if rows
                      else "no templates yet: ems template add NAME COMMAND --param ...")
                return 0
        elif args.action == "add":
            answer = client.request("templates.put", name=words[0], command=words[1], args=parse_params(args.arg),
                                    params=dict(param_spec(p) for p in args.param), approval=args.approval,
                                    description=args.description)
            if not args.json:
                print(f"template {answer['name']}: {answer['command']} with {len(answer['params'])} parameter(s)"
                      + (", every run waits for approval" if answer["approval"] else ""))
                return 0
        else:
            answer = client.request("templates.remove", name=words[0])
            if not args.json:
                print(f"template {words[0]} removed")
                return 0
    print_json(answer)
    return 0
