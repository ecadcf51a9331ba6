"""``ems sync ACTION``: the web view's MySQL side (``init`` prepares the database; ``run`` is the sync worker).

``ACTIONS`` maps each action to its function; an action not built yet is
refused with a message rather than absent from the parser.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from broker.core.cli_common import add_data_dir
from broker.core.config import DataDir, resolve_data_dir
from broker.core.profile import load as load_profile
from broker.core.errors import EmsError
from sync import run_cli, web_db
from sync.mariadb import PrivateMariaDB, private_instance_dir
from sync.mysql_url import MysqlUrl, redacted
from sync.web_crypto import import_key, key_path


def configure(p) -> None:
    """Options of this sub-command (its name and one-line help are in ``broker.cli.main.SUBCOMMANDS``)."""
    p.description = (
        "init: create (or migrate, never dropping anything) the web view's database, its tables and two MySQL users "
        "(the sync writer, and the web UI's user, which may only read the snapshot tables and write the web UI's own); "
        "their passwords are generated into DATA/sync/mysql.json and DATA/web/mysql.json (0600). "
        "Without --mysql-url it uses the private MariaDB that `ems up` runs in DATA/mysql. "
        "Several EMS servers share one database: the first serves the web UI; each other one runs "
        "`ems sync init --join --web-key FILE --mysql-url URL` with a copy of the first one's DATA/web/web.key "
        "(it gets a sync writer of its own and no web UI user)."
    )
    add_data_dir(p)
    p.add_argument("action", nargs="?", default="run", choices=("run", "init"),
                   help="init: prepare the database; run (default): the sync worker")
    p.add_argument("--mysql-url", help="an administrator's URL of an existing MySQL/MariaDB server "
                                       "(mysql://user:pass@host:port/ or mysql://user@localhost/?unix_socket=PATH)")
    p.add_argument("--database", help=f"database name (default: the one --mysql-url names, else {web_db.DEFAULT_DATABASE})")
    p.add_argument("--writer-user", help=f"the sync writer's MySQL user (default {web_db.DEFAULT_WRITER} for database "
                                         f"{web_db.DEFAULT_DATABASE}, else DATABASE_sync)")
    p.add_argument("--web-user", help=f"the web UI's MySQL user (default {web_db.DEFAULT_WEB_USER} for database "
                                      f"{web_db.DEFAULT_DATABASE}, else DATABASE_web)")
    p.add_argument("--join", action="store_true",
                   help="init: join a database another EMS server's web UI serves (a sync writer of this server's own, "
                        "named ems_sync_<id>; no web UI user); needs that server's web key (--web-key)")
    p.add_argument("--web-key", metavar="FILE",
                   help="init: a copy of the serving server's DATA/web/web.key, put in this data dir (0600)")
    p.add_argument("--grant-host", action="append", dest="grant_hosts", metavar="HOST",
                   help="host the two users connect from (repeatable; default: localhost and 127.0.0.1)")
    run_cli.add_options(p)
    p.set_defaults(run=run, owns_data_dir=True, default_log_level="INFO")


def admin_url(data_root: Path, mysql_url: str | None) -> MysqlUrl:
    """``--mysql-url``, else the private instance's administrator (which must be running: ``ems up``)."""
    if mysql_url:
        return MysqlUrl.parse(mysql_url)
    instance = PrivateMariaDB.existing(private_instance_dir(data_root))
    return instance.admin()


def plan_of(args, joining: str | None = None) -> web_db.WebDbPlan:
    """The users and database ``init`` sets up; ``joining``: this server's id when it joins a shared database."""
    hosts = tuple(args.grant_hosts) if args.grant_hosts else web_db.DEFAULT_HOSTS
    database = args.database or (MysqlUrl.parse(args.mysql_url).database if args.mysql_url else "") or web_db.DEFAULT_DATABASE
    if joining:
        plan = web_db.WebDbPlan.joining(joining, database, hosts)
        return replace(plan, writer=args.writer_user) if args.writer_user else plan
    plan = web_db.WebDbPlan.for_database(database, hosts)
    return replace(plan, writer=args.writer_user or plan.writer, web_user=args.web_user or plan.web_user)


def run_init(args) -> int:
    """Create or migrate the web view's database and users, and say where the credentials are."""
    root = resolve_data_dir(args.data_dir)
    if args.join and not args.mysql_url:
        raise EmsError("--join shares a database another EMS server serves: give its address with --mysql-url")
    admin = admin_url(root, args.mysql_url)
    if args.web_key:
        import_key(Path(args.web_key), key_path(root))
    joining = load_profile(DataDir(root)).server_key if args.join else None
    report = web_db.init_web_db(admin, root, plan_of(args, joining), joining=joining)
    where = redacted(args.mysql_url) if args.mysql_url else f"the private MariaDB ({admin.where()})"
    print(f"database {report.database} on {where}: "
          + (f"{report.changes} tables/columns added" if report.changes else "schema current"))
    for user, path in report.credentials.items():
        state = "created" if user in report.users_created else "exists"
        print(f"  user {user} ({state}): credentials in {path}")
    if not joining:
        print(f"  web key {key_path(root)}: another EMS server joins this database with a copy of it "
              "(ems sync init --join --web-key FILE --mysql-url URL)")
    return 0


#: action -> its function (``ems up`` starts the worker when ``run`` is here)
ACTIONS = {"init": run_init, "run": run_cli.run_worker}


def run(args) -> int:
    if getattr(args, "now", False):
        return run_cli.run_now(args)
    if args.action not in ACTIONS:
        raise EmsError(f"`ems sync {args.action}` is not built yet; `ems sync init` prepares the database")
    return ACTIONS[args.action](args)
