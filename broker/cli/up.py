"""``ems up``: the whole server stack with a local agent, in one command."""
from __future__ import annotations

import os
import signal
import socket
import sys

from bridges.admin_http.config import DEFAULT_LISTEN as ADMIN_LISTEN
from bridges.admin_http.config import TOKEN_ENV as ADMIN_TOKEN_ENV
from bridges.admin_http.config import token_from_env
from broker.core.cli_common import add_data_dir
from broker.core.profile import connectable
from broker.core.config import DEFAULT_BIND, DataDir, Timing, resolve_data_dir
from broker.cli.local_stack import prepare
from broker.cli.supervisor import Service, Supervisor
from broker.cli.web_serve import DEFAULT_WEB_LISTEN, parse_web_listen, vendor_hint, web_service, write_web_config
from broker.cli.web_stack import WebView, join_web_view, web_view


def configure(p) -> None:
    """Options of this sub-command (its name and one-line help are in ``broker.cli.main.SUBCOMMANDS``)."""
    p.description = (
        "Start the EMS server stack, each part its own supervised process (restarted if it dies): "
        "the broker, the SQLite persister, the alerts service, a local agent on this machine, and the web view: a private MariaDB in DATA/mysql "
        "(or --mysql-url) with the database `ems sync init` prepares, and the sync worker that fills it. The data dir gets the keys, the SQLite databases, "
        "one log file per process in DATA/logs/, and an operator profile so that `ems status`, `ems tail`, "
        "`ems send` and `ems keys` work here without flags. Ctrl-C stops everything."
    )
    add_data_dir(p)
    p.add_argument("--bind", default=DEFAULT_BIND, help=f"broker endpoint (default {DEFAULT_BIND}; use tcp://0.0.0.0:PORT to let other machines' agents in)")
    p.add_argument("--no-agent", action="store_true", help="do not run a local agent")
    p.add_argument("--operator-name", default="", metavar="NAME",
                   help='the person behind the local operator key, e.g. "Jane Doe": what the employee\'s notices and the '
                   "audit trail show (default: the name it already has, else this account's full name, else its login name; "
                   "`ems keys name` changes it later)")
    p.add_argument("--admin-listen", default=ADMIN_LISTEN,
                   help=f"admin HTTP API address, started when ${ADMIN_TOKEN_ENV} is set (default %(default)s)")
    p.add_argument("--mysql-url", help="the web view's database on an existing MySQL/MariaDB server: an administrator's URL "
                                       "(mysql://user:pass@host:port/ems_web) instead of the private MariaDB in DATA/mysql")
    p.add_argument("--join-web", action="store_true",
                   help="sync into a database another EMS server's web UI serves (needs --mysql-url, and that server's "
                        "DATA/web/web.key copied here or given with --web-key); this server then serves no web UI")
    p.add_argument("--web-key", metavar="FILE", help="with --join-web: a copy of the serving server's DATA/web/web.key")
    p.add_argument("--no-web", action="store_true", help="leave the web view out (no MariaDB, no sync worker, no web UI)")
    p.add_argument("--web-listen", default=DEFAULT_WEB_LISTEN, metavar="HOST:PORT",
                   help="where PHP's built-in server serves the web UI (default %(default)s)")
    p.add_argument("--heartbeat-s", type=float, default=Timing.heartbeat_s, help="heartbeat interval (default %(default)s)")
    p.set_defaults(run=run, owns_data_dir=True, default_log_level="INFO")


def _ems(*args: str) -> list[str]:
    return [sys.executable, "-m", "broker.cli.main", *args]


def _concrete(bind: str) -> str:
    """Port 0 means "pick one": pick it now, so the agent, the profile and the web UI's config know it."""
    if not bind.endswith(":0"):
        return bind
    host = bind.removeprefix("tcp://").rsplit(":", 1)[0].strip("[]")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host if host not in ("*", "") else "0.0.0.0", 0))
        return f"{bind[:-2]}:{probe.getsockname()[1]}"


def run(args) -> int:
    data = DataDir(resolve_data_dir(args.data_dir))
    args.bind = _concrete(args.bind)
    args.admin_listen = _concrete(args.admin_listen)
    args.web_listen = _concrete(args.web_listen)
    args.admin_http = bool(os.environ.get(ADMIN_TOKEN_ENV))
    if args.admin_http:
        token_from_env()  # a weak token is refused now, not in a restart loop
    stack = prepare(data, args.bind, with_agent=not args.no_agent, operator_name=args.operator_name)
    web = None
    if not args.no_web:
        parse_web_listen(args.web_listen)  # a bad address stops ems up now, not in a restart loop
        admin_url = f"http://{args.admin_listen}" if args.admin_http else None
        token = token_from_env() if args.admin_http else None
        if args.join_web:
            web = join_web_view(data, args.mysql_url, args.web_key, stack.broker_key)
        else:
            web = web_view(data, args.mysql_url, after_init=lambda: write_web_config(data.root, admin_url, token, live_dir=data.root))
    common = ["--data-dir", str(data.root)]
    hb = ["--heartbeat-s", str(args.heartbeat_s)]
    services = [*(web.database_services if web else []),
        Service("broker", _ems("--log-file", str(data.logs / "broker.log"), "broker", *common, "--bind", args.bind, *hb), data.logs / "broker.out"),
    ]
    services.append(
        Service("persister", _ems("--log-file", str(data.logs / "persister.log"), "persist", *common, *hb), data.logs / "persister.out")
    )
    services.append(
        Service("alerts", _ems("--log-file", str(data.logs / "alerts.log"), "alerts", "serve", *common, *hb), data.logs / "alerts.out")
    )
    if args.admin_http:
        services.append(
            Service("admin-http", _ems("--log-file", str(data.logs / "admin-http.log"), "admin-http", *common,
                                       "--listen", args.admin_listen, *hb), data.logs / "admin-http.out")
        )
    if not args.no_agent:
        agent_dir = str(data.root / "agent")
        services.append(
            Service(
                "agent",
                _ems("--log-file", str(data.logs / "agent.log"), "agent", "--data-dir", agent_dir, "--server", connectable(args.bind),
                     f"--server-key={stack.broker_key}", "--id", stack.agent_id, *hb),
                data.logs / "agent.out",
            )
        )
    if web is not None:
        services += web.sync_services(_ems, hb)
        if not web.joined:
            services.append(web_service(data, args.web_listen))  # last up, first down: nothing reads after it stops
    supervisor = Supervisor(services)
    signal.signal(signal.SIGTERM, lambda *_: supervisor.stop())
    signal.signal(signal.SIGINT, lambda *_: supervisor.stop())
    supervisor.start()
    _print_banner(data, args, stack, web)
    try:
        supervisor.run()
    finally:
        print("\nstopping EMS...", file=sys.stderr)
        supervisor.shutdown()
        print("stopped.", file=sys.stderr)
    return 0


def _print_banner(data: DataDir, args, stack, web: WebView | None) -> None:
    flag = f" --data-dir {data.root}"
    lines = [
        "",
        "EMS is running.",
        f"  broker      {args.bind}   (public key in {data.keys / 'broker.public'})",
        f"  persister   {data.root / 'store.db'}   (history: ems history --help)",
        f"  alerts      {data.root / 'alerts.db'}   (ems alerts, ems inbox; settings: ems alerts --help)",
        f"  admin API   http://{args.admin_listen}/api/clients   (Authorization: Bearer ${ADMIN_TOKEN_ENV}; "
        f"calls audited in {data.logs / 'admin-http-audit.log'})"
        if args.admin_http else f"  admin API   off (set {ADMIN_TOKEN_ENV} to start it on {args.admin_listen})",
    ]
    if not args.no_agent:
        lines.append(f"  local agent {stack.agent_id}   (what it did, for the user: ems agent access-log)")
    if web and web.joined:
        lines.append("  web UI      served by the server whose database this one joined (--join-web)")
        lines += web.banner()
    elif web:
        lines.append(f"  web UI      http://{args.web_listen}/   (log in with an account from: ems web add-user NAME --role admin{flag})")
        lines += [f"              {hint}" for hint in [vendor_hint()] if hint]
        lines += web.banner()
    else:
        lines.append("  web view    off (--no-web)")
    lines += [
        f"  operator    {stack.operator_name} ({stack.operator_id}, admin), profile {data.profile}",
        f"              employees are told \"{stack.operator_name}\"; change it: "
        f"ems keys name {stack.operator_id} \"Your Name\"{flag} (or ems up --operator-name)",
        f"  logs        {data.logs}/",
        "",
        "Try, in another terminal:",
        f"  .venv/bin/ems status{flag}",
        f"  .venv/bin/ems tail{flag}",
    ]
    if not args.no_agent:
        lines.append(f"  .venv/bin/ems send {stack.agent_id} ping --wait{flag}")
    lines += [
        "",
        "Connect an agent from another machine:",
        f"  ems agent --server tcp://THIS_HOST:PORT --server-key='{stack.broker_key}'",
        f"  then accept it: .venv/bin/ems keys list{flag} ; .venv/bin/ems keys accept ID{flag}",
        "",
        "Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(lines), flush=True)
