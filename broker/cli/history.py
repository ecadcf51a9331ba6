"""``ems history``: stored history from the persister, filtered and paged."""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import re
import sys
import time
from pathlib import Path

from broker.core import bounds
from broker.core.cli_common import add_operator_options, print_json, table
from broker.core.profile import operator_client
from broker.core.errors import EmsError

KINDS = ["clients", "sessions", "captures", "messages", "fileops", "logs", "security", "activity", "audit", "metrics", "commands",
         "quarantine"]
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: the columns a kind's table shows (others: the first 8 plain ones of its rows)
COLUMNS = {"audit": ["id", "ts", "person", "operator", "action", "target", "reason"]}
#: most rows the store returns per query
MAX_PAGE = 1000


def configure(p) -> None:
    """Options of this sub-command (its name and one-line help are in ``broker.cli.main.SUBCOMMANDS``)."""
    p.description = (
        "Query the persister's store. KIND is one of: " + ", ".join(KINDS) + ". "
        "`ems history capture ID --out FILE` saves a stored screen capture (the view is audited). "
        "Times are relative (30m, 2h, 7d), ISO dates (2026-11-25T10:00) or Unix seconds."
    )
    p.epilog = "examples:  ems history security --since 1d\n           ems history logs --agent AGENT --limit 20 --json"
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("kind", choices=KINDS + ["capture"], help="what to list")
    p.add_argument("capture_id", nargs="?", type=_row_id, help="with `capture`: the capture id")
    p.add_argument("--agent", help="only this agent's rows")
    p.add_argument("--since", help="rows at or after this time")
    p.add_argument("--until", help="rows before this time")
    p.add_argument("--limit", type=_page_size, default=50, help=f"rows per page, 1 to {MAX_PAGE} (default %(default)s)")
    p.add_argument("--before-id", type=_row_id, help="next page: rows older than this id (printed at the end of a page)")
    p.add_argument("--text", help="only rows whose text contains this (logs, security, activity)")
    p.add_argument("--out", help="with `capture`: file to write the image to")
    add_operator_options(p)
    p.set_defaults(run=run)


def _row_id(text: str) -> int:
    """An id as the store numbers rows: a whole number below 2^63."""
    try:
        return bounds.int64(int(text), "id", 0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a row id: use the id printed in the ID column or after 'more:' at the end of the "
            f"previous page (a whole number from 0 to {bounds.INT64_MAX})") from None


def _page_size(text: str) -> int:
    try:
        return bounds.int64(int(text), "limit", 1, MAX_PAGE)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of rows from 1 to {MAX_PAGE}") from None


def parse_time(text: str | None, now: float | None = None) -> float | None:
    """'30m' / '2h' / '7d' ago, an ISO date, or Unix seconds."""
    if text is None:
        return None
    match = _RELATIVE.match(text.strip())
    if match:
        return (now or time.time()) - float(match.group(1)) * _UNIT_S[match.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise EmsError(f"cannot read the time {text!r}: use 30m, 2h, 7d, an ISO date or Unix seconds") from None


def run(args) -> int:
    with operator_client(args.data_dir, args.server) as client:
        if args.kind == "capture":
            if args.capture_id is None:
                raise EmsError("give the capture id: ems history capture ID --out FILE")
            return _save_capture(client, args)
        query = {"kind": args.kind, "limit": args.limit}
        for key, value in (("client_id", args.agent), ("since", parse_time(args.since)), ("until", parse_time(args.until)),
                           ("before_id", args.before_id), ("text", args.text)):
            if value is not None:
                query[key] = value
        rows = client.request("store.query", **query)
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print(f"no {args.kind} rows match")
        return 0
    headers = COLUMNS.get(args.kind) or [k for k in rows[0] if not isinstance(rows[0][k], (bytes, dict, list))][:8]
    print(table([[_cell(_value(r, h)) for h in headers] for r in rows], [h.upper() for h in headers]))
    if len(rows) == args.limit and "id" in rows[-1]:
        print(f"\nmore: ems history {args.kind} --before-id {rows[-1]['id']}" + (f" --agent {args.agent}" if args.agent else ""), file=sys.stderr)
    return 0


def _value(row: dict, column: str):
    """A row's value for ``column``; ``person`` is the audit row's person, "Jane Doe via admin-http"."""
    if column != "person":
        return row.get(column)
    name = row.get("operator_name") or row.get("operator")
    return f"{name} via {row['via']}" if row.get("via") else name


def _cell(value) -> str:
    if isinstance(value, float) and value > 1e9:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    text = "" if value is None else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _save_capture(client, args) -> int:
    capture = client.request("store.capture", id=args.capture_id, purpose="export")
    if not capture:
        raise EmsError(f"no capture {args.capture_id}")
    image = capture.get("image") or b""
    if isinstance(image, str):
        image = base64.b64decode(image)
    out = Path(args.out or f"capture-{args.capture_id}.{capture.get('format') or 'jpg'}")
    out.write_bytes(image)
    print(f"saved {len(image)} bytes to {out}")
    return 0
