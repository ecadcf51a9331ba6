"""``ems send``: send a command to an agent, optionally wait for its result."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from broker.cli import bulk_cmd
from broker.core.cli_common import add_operator_options, print_json
from broker.core.profile import operator_client
from broker.core.errors import EmsError, TimeoutError
from broker.core.vocabulary import ACCESS_COMMANDS, DONE, HELD, reason_problem
from broker.server.registry import AGENT_ID

EXIT_DONE, EXIT_FAILED, EXIT_TIMEOUT = 0, 1, 3


def configure(p) -> None:
    """Options of this sub-command (its name and one-line help are in ``broker.cli.main.SUBCOMMANDS``)."""
    p.description = (
        "Queue a command for an agent. It gets an id at once; an offline agent receives it when it "
        "returns (within --ttl-s). Status moves queued -> sent -> delivered -> done/failed/expired. "
        "Arguments are key=value (values parsed as JSON when they can be: n=3, flag=true)."
    )
    p.epilog = (
        "examples:  ems send AGENT ping --wait\n"
        "           ems send 'group:lab&online' os.update.check --max-parallel 50 --wait\n"
        "           ems send 'tag:kiosk' reboot --reason 'kiosk image 4.2' --canary 3 --halt-on-failure 10 --wait\n           ems send AGENT help --wait         # every command it answers\n"
        "           ems send AGENT sysinfo --wait --json\n"
        "           ems send AGENT capture --reason 'ticket 4711: error dialog' --wait\n\n"
        "Commands that look into or change the user's computer need --reason (shown to the user, kept in the "
        "audit trail): " + ", ".join(ACCESS_COMMANDS) + "."
    )
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("agent", metavar="target", help="an agent's client id (see `ems status`), or a selector: one command "
                   "to each agent it picks, paced (group:finance&online, desk-1,desk-2; preview: ems targets SELECTOR)")
    p.add_argument("command_name", metavar="command", help="command name, e.g. ping or sysinfo")
    p.add_argument("params", nargs="*", metavar="key=value", help="command arguments")
    p.add_argument("--data-from", metavar="FILE", help="send FILE's bytes as the data argument (files.upload)")
    p.add_argument("--wait", action="store_true", help="wait for the result and print it")
    p.add_argument("--timeout-s", type=float, default=60.0, help="how long --wait waits (default %(default)s)")
    p.add_argument("--ttl-s", type=float, default=None, help="expire the command if not run within this time (default: the broker's, 24 h)")
    p.add_argument("--reason", default="", help="why: required for commands that look into or change the user's computer "
                   "(shown to the user, recorded in the audit trail)")
    bulk_cmd.add_bulk_options(p)
    add_operator_options(p)
    p.set_defaults(run=run)


def parse_params(pairs: list[str]) -> dict:
    args = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise EmsError(f"argument {pair!r} is not key=value")
        try:
            args[key] = json.loads(value)
        except ValueError:
            args[key] = value
    return args


def read_data(path: str) -> bytes:
    """The bytes of ``path`` for ``--data-from``; EmsError saying why not."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise EmsError(f"--data-from {path}: {exc.strerror or exc}") from exc


def readable(output) -> str:
    """A result for a person: the command's own ``text`` rendering if it has one (``help``), else indented JSON."""
    if isinstance(output, dict) and isinstance(output.get("text"), str):
        return output["text"]
    return json.dumps(output, indent=2, default=str)


def run(args) -> int:
    params = parse_params(args.params)
    if args.data_from:
        params["data"] = read_data(args.data_from)
    if args.reason:
        params["reason"] = args.reason
    problem = reason_problem(args.command_name, params, f"ems send {args.agent} {args.command_name} --reason '...'")
    if problem is not None:  # the broker would refuse it: say so before connecting
        raise EmsError(problem)
    if is_bulk(args):
        return send_bulk(args, params)
    client = operator_client(args.data_dir, args.server)
    try:
        # the statuses on the way are printed only while waiting, and not with --json
        first = client.send_command(args.agent, args.command_name, params, ttl_s=args.ttl_s, statuses=args.wait and not args.json)
        if not args.json:
            print(f"command {first['id']} ({args.command_name}) for {args.agent}: {first['status']}", file=sys.stderr)
            if first["status"] == HELD:
                print(f"  it needs a second operator's approval: ems approve {first['id']} --reason '...' (by someone else)",
                      file=sys.stderr)
        if not args.wait:
            if args.json:
                print_json(first)
            return EXIT_DONE

        def show(status: dict) -> None:
            if not args.json:
                print(f"  -> {status['status']}", file=sys.stderr)

        try:
            outcome = client.wait_result(first["id"], args.timeout_s, on_status=show)
        except TimeoutError as exc:
            print(f"ems send: {exc}; check later with `ems status` (the command stays queued until it expires)", file=sys.stderr)
            return EXIT_TIMEOUT
    finally:
        # a one-shot tool: what the client handed its socket last (a credit, a heartbeat)
        # leaves before the process does; the command itself was confirmed by its `queued` answer
        client.close(flush_s=client.config.timing.close_flush_s)
    if args.json:
        print_json(outcome)
    else:
        result = outcome.get("result") or {}
        if result.get("ok"):
            print(readable(result.get("output")))
        else:
            print(f"error: {result.get('error', outcome['status'])}")
    return EXIT_DONE if outcome["status"] == DONE else EXIT_FAILED


def is_bulk(args) -> bool:
    """A selector (not one plain client id), or any bulk option: one command per agent, as a bulk run."""
    options = (args.max_parallel, args.canary, args.halt_on_failure)
    return args.dry_run or any(o is not None for o in options) or not AGENT_ID.match(args.agent)


def send_bulk(args, params: dict) -> int:
    """Start (or preview) a bulk run; with --wait, follow it to its end."""
    request = {"selector": args.agent, "name": args.command_name, "args": params, **bulk_cmd.options_of(args)}
    return bulk_cmd.start_and_follow(args, "bulk.start", request)
