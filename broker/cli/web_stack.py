"""The web view's part of ``ems up``: its database (a private MariaDB, or ``--mysql-url``) and the sync worker.

Without ``--mysql-url`` the private instance in ``DATA/mysql`` runs under
the supervisor, first of all services; its ready check waits until it
answers on its socket, then runs ``ems sync init`` (idempotent: database,
tables, users, grants) on every start, restarts included. With
``--mysql-url`` the init runs once, before anything starts, so a wrong
URL stops ``ems up`` with one line. The sync worker (``ems sync run``)
starts last, so it stops first: before the database it writes into.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from broker.cli.supervisor import Service
from broker.core import keys
from broker.core.config import DataDir
from broker.core.errors import ConfigError
from broker.server.registry import ACCEPTED, KeyRegistry
from sync import cli as sync_cli
from sync.mariadb import CLIENT_CNF, PrivateMariaDB
from sync.mysql_url import MysqlUrl, redacted
from sync.web_crypto import import_key, key_path
from sync.web_db import WEB_FILE, WRITER_FILE, WebDbPlan, init_web_db

#: the sync worker's bus identity (its key is DATA/keys/sync.*)
SYNC_CLIENT_ID = "sync"


@dataclass
class WebView:
    data: DataDir
    where: str  # the database server, for the banner
    database_services: list[Service] = field(default_factory=list)
    #: this server joined a database another server's web UI serves (sync.shared_db): no web UI here
    joined: bool = False

    @staticmethod
    def worker_built() -> bool:
        return "run" in sync_cli.ACTIONS

    def sync_services(self, ems: Callable[..., list[str]], heartbeat: list[str]) -> list[Service]:
        """The sync worker, if this EMS has one (its key registered as a service)."""
        if not self.worker_built():
            return []
        register_sync_key(self.data)
        logs = self.data.logs
        return [Service("sync", ems("--log-file", str(logs / "sync.log"), "sync", "run", "--data-dir", str(self.data.root)),
                        logs / "sync.out")]

    def banner(self) -> list[str]:
        worker = "running" if self.worker_built() else "not in this EMS yet"
        web_ui = "none here: another server's web UI serves this database" if self.joined else self.data.root / WEB_FILE
        return [
            f"  web db      {self.where}",
            f"              credentials: sync writer {self.data.root / WRITER_FILE}, web UI {web_ui}",
            f"  sync worker {worker}   (log: {self.data.logs / 'sync.log'})",
        ]


def register_sync_key(data: DataDir) -> None:
    """The sync worker's key pair, accepted in the broker's registry as the ``sync`` service."""
    pair = keys.load_or_create(data.keys, SYNC_CLIENT_ID)
    registry = KeyRegistry(data.broker_db)
    try:
        if registry.get(pair.public) is None:
            registry.add(pair.public, SYNC_CLIENT_ID, "service", ACCEPTED, label="MySQL sync worker (ems up)")
    finally:
        registry.close()


def web_view(data: DataDir, mysql_url: str | None, after_init: Callable[[], object] = lambda: None,
             joining: str | None = None) -> WebView:
    """Prepare the web view's database: init on ``mysql_url`` now, or a private MariaDB service to run.

    ``after_init`` runs after every init (e.g. to write the web UI's configuration from the credentials).
    ``joining``: this server's id when it joins ``mysql_url``'s database, which another server's web UI
    serves (:mod:`sync.shared_db`; its web key must be in this data dir already).
    """
    plan = WebDbPlan()
    if mysql_url:
        admin = MysqlUrl.parse(mysql_url)
        database = admin.database or plan.database
        plan = WebDbPlan.joining(joining, database) if joining else WebDbPlan.for_database(database)
        init_web_db(admin, data.root, plan, joining=joining)
        after_init()
        return WebView(data, f"{plan.database} on {redacted(mysql_url)}", joined=bool(joining))
    instance = PrivateMariaDB.for_data_dir(data.root)
    instance.install()
    instance.write_client_cnf()

    def ready(pid: int) -> None:
        instance.wait_ready(pid=pid)
        init_web_db(instance.admin(), data.root, plan)
        after_init()

    service = Service("mariadb", instance.server_argv(), data.logs / "mariadb.out", env=instance.server_env(), ready=ready)
    shell = f"mariadb --defaults-file={Path(instance.directory) / CLIENT_CNF}"
    where = f"{plan.database} on a private MariaDB in {instance.directory} (127.0.0.1:{instance.port}; shell: {shell})"
    return WebView(data, where, [service])


def join_web_view(data: DataDir, mysql_url: str | None, web_key: str | None, server_id: str) -> WebView:
    """``ems up --join-web``: this server's sync writer in a database another server's web UI serves."""
    if not mysql_url:
        raise ConfigError("--join-web syncs into a database another EMS server serves: give its address with --mysql-url")
    if web_key:
        import_key(Path(web_key), key_path(data.root))
    return web_view(data, mysql_url, joining=server_id)
