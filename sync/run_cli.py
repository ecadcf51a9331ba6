"""``ems sync run`` (the sync worker) and ``ems sync --now`` (ask it for a full snapshot, with a progress bar)."""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from broker.core import keys
from broker.core.client import BusClient
from broker.core.config import ClientConfig, DataDir, resolve_data_dir
from broker.core.errors import EmsError, RemoteError
from broker.core.private_files import FILE_MODE, private_dir
from broker.core.profile import load as load_profile
from broker.core.profile import operator_client
from broker.core.progress import ProgressBar
from broker.core.vocabulary import auto_sync_problem
from sync.mysql_url import MysqlUrl
from sync.snapshot_db import SnapshotDB
from sync.web_crypto import WebKey, key_path
from sync.web_db import writer_url
from sync.worker import SyncConfig, SyncWorker

log = logging.getLogger(__name__)

#: the sync worker's key pair in DATA/keys (registered as a service by ``ems up``)
KEY_NAME = "sync"
#: how long ``--now`` follows a snapshot before it gives up watching (the snapshot goes on)
NOW_WATCH_S = 3600.0
#: the auto-sync setting last made over the bus (``sync.auto``, the web's Servers tab), relative to the data dir
AUTO_FILE = Path("sync") / "auto.json"


def add_options(p) -> None:
    """The run action's options (beside ``init``'s)."""
    p.add_argument("--now", action="store_true",
                   help="ask the running sync worker for a full snapshot now and show its progress")
    p.add_argument("--server", help="broker endpoint (default: from the profile)")
    p.add_argument("--full-every-min", type=float, default=SyncConfig.full_every_s / 60,
                   help="run: a full snapshot every N minutes (default %(default)g; "
                        f"a setting saved from the web's Servers tab in DATA/{AUTO_FILE} wins)")
    p.add_argument("--writer-url", help="run: the sync writer's MySQL URL (default: DATA/sync/mysql.json from `ems sync init`)")


def build_worker(data_root, server: str | None = None, mysql: MysqlUrl | None = None,
                 config: SyncConfig | None = None) -> SyncWorker:
    """The data dir's sync worker: its bus key, the writer's MySQL URL, the web key (created if absent)."""
    data = DataDir(data_root)
    profile = load_profile(data)
    client_config = ClientConfig(server=server or profile.server, server_key=profile.server_key)
    bus = BusClient(client_config, keys.load(data.keys, KEY_NAME), hello={"client_id": KEY_NAME, "provides": ["sync"]})
    db = SnapshotDB(mysql or writer_url(data.root), server_id=profile.server_key, web_key=WebKey.load_or_create(key_path(data.root)),
                    server_name=_host_name(), version=_version())
    config = config or SyncConfig()
    saved = load_auto(data.root)
    if saved is not None:
        config.auto, config.full_every_s = saved["enabled"], float(saved["every_s"])
    return SyncWorker(bus, db, config, on_auto=lambda setting: save_auto(data.root, setting))


def load_auto(data_root) -> dict | None:
    """The saved auto-sync setting, or None (none saved, or not readable: then the command line's)."""
    path = Path(data_root) / AUTO_FILE
    try:
        setting = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None
    problem = auto_sync_problem(setting)
    if problem:
        log.warning("ignoring %s: %s", path, problem)
        return None
    return setting


def save_auto(data_root, setting: dict) -> None:
    """Keep ``setting`` for the next start (0600, written whole then renamed); a failure is logged, not fatal."""
    path = Path(data_root) / AUTO_FILE
    try:
        private_dir(path.parent)
        temp = path.with_name(path.name + ".tmp")
        with os.fdopen(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE), "w") as out:
            json.dump(setting, out)
        os.replace(temp, path)
    except OSError as exc:
        log.error("auto-sync setting not saved to %s (it holds until the worker restarts): %s", path, exc)


def run_worker(args) -> int:
    """Run the sync worker until SIGTERM / Ctrl-C."""
    config = SyncConfig(full_every_s=max(args.full_every_min, 0.1) * 60)
    mysql = MysqlUrl.parse(args.writer_url) if args.writer_url else None
    worker = build_worker(resolve_data_dir(args.data_dir), args.server, mysql, config)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    log.info("sync worker for %s into %s", worker.db.server_id, worker.db.url.where())
    worker.run()
    return 0


def run_now(args) -> int:
    """``--now``: start a full snapshot and draw its progress until it is done."""
    client = operator_client(args.data_dir, args.server)
    try:
        try:
            started = client.request("sync.now")
        except RemoteError as exc:
            raise EmsError(f"the sync worker did not take the request: {exc}") from exc
        if started.get("already_running"):
            print("a full snapshot is already under way; following it", file=sys.stderr)
        return _follow(client)
    finally:
        client.close()


def _follow(client: BusClient) -> int:
    bar, deadline, seen_running = ProgressBar("full snapshot"), time.monotonic() + NOW_WATCH_S, False
    while time.monotonic() < deadline:
        status = client.request("sync.status")
        if status.get("error"):
            print(f"\nsync paused: {status['error']} (it retries by itself)", file=sys.stderr)
        progress = status.get("progress") or {}
        if status.get("full_running"):
            seen_running = True
            if progress.get("total"):
                bar(min(progress["done"], progress["total"]), progress["total"])
        elif seen_running or status.get("last_full_sync"):
            total = progress.get("total") or progress.get("done") or 0
            bar(total, total)
            print(f"full snapshot done: {status.get('rows_synced', 0):,} rows synced so far in {status.get('database')}")
            return 0
        time.sleep(0.2)
    print("still running; `ems sync --now` again to follow it", file=sys.stderr)
    return 1


def _host_name() -> str:
    import socket

    return socket.gethostname()


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("ems")
    except Exception:  # not installed as a package (a source checkout)
        return "dev"
