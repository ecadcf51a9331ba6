"""``ems tail``: watch live bus topics, one line per message."""
from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time

from broker.core import permissions
from broker.core.cli_common import add_data_dir, print_json
from broker.core.profile import operator_client
from broker.core.envelope import Envelope, Kind
from broker.core.errors import ProtocolError

DEFAULT_PREFIXES = ["event.", "log.", "security.", "presence.", "command.", "audit."]


def configure(p) -> None:
    """Options of this sub-command (its name and one-line help are in ``broker.cli.main.SUBCOMMANDS``)."""
    p.description = (
        "Print live bus messages whose topic starts with one of PREFIX (default: all of "
        + ", ".join(DEFAULT_PREFIXES)
        + "). One line each: time, topic, sender, summary. The live feed is best effort; history comes from "
        "the store."
    )
    p.epilog = "examples:  ems tail presence.\n           ems tail event.AGENT. --json | jq ."
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("prefixes", nargs="*", metavar="PREFIX", help="topic prefixes, e.g. event.  presence.  security.")
    p.add_argument("--json", action="store_true", help="one JSON object per line (ts, kind, topic, sender, data)")
    p.add_argument("--count", type=int, default=0, help="stop after this many messages (default: run until Ctrl-C)")
    add_data_dir(p)
    p.add_argument("--server", help="broker endpoint (default: from the profile)")
    p.set_defaults(run=run)


def summary(env: Envelope, data) -> str:
    """A short human line for one message."""
    if env.kind is Kind.PRESENCE and isinstance(data, dict):
        return f"{data.get('state')} ({data.get('reason', '')})"
    if env.kind in (Kind.COMMAND_STATUS, Kind.RESULT) and isinstance(data, dict):
        return f"{data.get('name')} {data.get('id')} {data.get('status')}"
    if env.kind is Kind.SECURITY and isinstance(data, dict):
        return f"{data.get('event')}: {data.get('detail', '')}"
    if isinstance(data, dict):
        parts = [f"{k}={v}" for k, v in data.items() if isinstance(v, (str, int, float, bool)) and v != ""]
        return " ".join(parts)
    if isinstance(data, (bytes, bytearray)):
        return f"<{len(data)} bytes>"
    return str(data)


def run(args) -> int:
    prefixes = args.prefixes
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    width = shutil.get_terminal_size((120, 20)).columns
    seen = 0
    with operator_client(args.data_dir, args.server) as client:
        if not prefixes:  # the defaults this key's role may read (others would be refused)
            prefixes = permissions.readable_prefixes(client.role, DEFAULT_PREFIXES)
        client.subscribe(prefixes)
        if not args.json:
            print(f"watching {' '.join(prefixes)} on {client.config.server} (Ctrl-C to stop)", file=sys.stderr)
        try:
            while not stopping and (not args.count or seen < args.count):
                env = client.poll(0.5)
                if env is None or env.kind in (Kind.REPLY, Kind.ERROR):
                    continue
                seen += 1
                try:
                    data = env.data()
                except ProtocolError as exc:
                    data = f"<undecodable body: {exc}>"
                if args.json:
                    print_json({"ts": env.header.ts, "kind": env.kind.name, "topic": env.topic, "sender": env.sender, "data": data})
                    continue
                stamp = time.strftime("%H:%M:%S", time.localtime(env.header.ts)) + f".{int(env.header.ts * 1000) % 1000:03d}"
                line = f"{stamp}  {env.topic:<32} {env.sender or '-':<16} {summary(env, data)}"
                print(line[:width] if sys.stdout.isatty() else line, flush=True)
        except KeyboardInterrupt:
            pass
        if client.dropped_backlog and not args.json:
            print(f"({client.dropped_backlog} messages dropped: the terminal could not keep up)", file=sys.stderr)
    return 0
