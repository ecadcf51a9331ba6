"""``ems agent``: run the agent on an employee's machine, or show its access log."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from agent import access_location
from agent.access_log import AccessLog
from agent.access_summary import summary_text
from agent.context import LocalPolicy
from agent.runner import Agent, AgentConfig
from broker.core import keys
from broker.core.config import timing_for
from broker.core.cli_common import add_data_dir
from broker.core.config import DEFAULT_SERVER, ENROL_TOKEN_ENV, ClientConfig, Timing, resolve_data_dir
from broker.core.errors import ConfigError


def configure(p) -> None:
    """Options of this sub-command (its name and one-line help are in ``broker.cli.main.SUBCOMMANDS``)."""
    p.description = (
        "Run the EMS agent: it enrols with the broker (its key stays pending until an operator "
        "accepts it, or it presents the enrolment token), heartbeats, reports system information and answers "
        "commands. It always tells the user it is running; `ems agent access-log` shows what was done. "
        "Local policy is read from DATA/policy.json and cannot be loosened from the server: allowed folders, "
        "power dry run, extra mandatory notices, log forwarding, and how many screen thumbnails operators' "
        "consoles may take (thumbnails_per_minute, default 6, at most 12, 0 for none; the user is told who "
        "looks again every thumbnail_notice_every_s seconds, default 600) and full screen captures "
        "(captures_per_minute, default 4, at most 12, 0 for none; each one is shown to the user with the operator "
        "and the reason); the session events it reports (idle_after_s, default 300; session_poll_s, default 5; "
        "window_usage, default false: which application is in front, announced at start when on; never keys)."
    )
    p.add_argument("action", nargs="?", default="run", choices=["run", "access-log"],
                   help="run (default), or tell what IT did on this computer (access-log: found without flags, "
                   "in $EMS_ACCESS_DIR, /var/lib/ems/access or ~/.local/share/ems/access)")
    add_data_dir(p)
    p.add_argument("--raw", action="store_true", help="access-log: the entries as kept (JSON lines), not sentences")
    p.add_argument("--access-dir", help="run: where to keep the access log (default: $EMS_ACCESS_DIR, else "
                   "/var/lib/ems/access when the agent may write there, else ~/.local/share/ems/access)")
    p.add_argument("--server", default=DEFAULT_SERVER, help=f"broker endpoint (default {DEFAULT_SERVER})")
    p.add_argument("--server-key", help="the broker's public key (Z85) or a file holding it (the server's DATA/keys/broker.public); remembered after the first start")
    p.add_argument("--id", dest="client_id", default="", help="client id (default: derived from this machine's hardware)")
    p.add_argument("--label", default="", help="a device label shown to operators")
    p.add_argument("--sysinfo-interval-s", type=float, default=60.0, help="seconds between system reports (default %(default)s)")
    p.add_argument("--heartbeat-s", type=float, default=Timing.heartbeat_s, help="heartbeat interval before the broker's own applies (default %(default)s)")
    p.add_argument("--allow-root", action="append", default=[], metavar="DIR",
                   help="a folder operators may list, download from and upload to (repeatable; adds to DATA/policy.json)")
    p.add_argument("--power-dry-run", action="store_true", help="power and update commands only report what they would run")
    p.set_defaults(run=run, owns_data_dir=True, default_log_level="INFO")


def run(args) -> int:
    if args.action == "access-log":
        return print_access_log(args.data_dir, args.raw)
    data_dir = resolve_data_dir(args.data_dir)
    policy = LocalPolicy.load(data_dir / "policy.json")
    policy.allowed_roots += [Path(p).expanduser() for p in args.allow_root]
    policy.power_dry_run = policy.power_dry_run or args.power_dry_run
    config = AgentConfig(
        data_dir=data_dir,
        client=ClientConfig(server=args.server, server_key=_server_key(data_dir, args.server_key), timing=timing_for(args.heartbeat_s)),
        client_id=args.client_id,
        label=args.label,
        sysinfo_interval_s=args.sysinfo_interval_s,
        enrol_token=os.environ.get(ENROL_TOKEN_ENV, ""),
        policy=policy,
        access_dir=Path(args.access_dir).expanduser().resolve() if args.access_dir else access_location.access_dir_for_agent(),
    )
    agent = Agent(config)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.stop())
    agent.run()
    return 0


def print_access_log(data_dir: str | None, raw: bool) -> int:
    """What IT did on this computer, newest first (``raw``: the entries as kept), from wherever the agent keeps it."""
    log = AccessLog(access_location.find_access_log(data_dir))
    if raw:
        sys.stdout.write(log.raw() or f"(no access log at {log.path})\n")
    else:
        sys.stdout.write(f"What IT did on this computer ({log.path}), newest first:\n" + summary_text(log.entries()))
    return 0


def _server_key(data_dir: Path, given: str | None) -> str:
    """The broker key from the flag (then remembered) or from the last run."""
    remembered = data_dir / "server.public"
    if given:
        key = keys.load_public(given)
        data_dir.mkdir(parents=True, exist_ok=True)
        remembered.write_text(key + "\n")
        return key
    if remembered.exists():
        return keys.load_public(str(remembered))
    raise ConfigError(
        "the broker's public key is needed once: pass --server-key KEY_OR_FILE "
        "(it is in DATA/keys/broker.public on the server)"
    )
