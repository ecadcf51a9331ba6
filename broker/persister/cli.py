"""``ems persist``: run the SQLite persister (normally started by ``ems up``)."""
from __future__ import annotations

import signal

from broker.core import keys
from broker.core.cli_common import add_data_dir
from broker.core.profile import load as load_profile
from broker.core.client import BusClient
from broker.core.config import ClientConfig, DataDir, resolve_data_dir
from broker.persister.crypto import SecurityManager
from broker.persister.service import Persister, PersisterConfig
from broker.persister.store import Store

STORE_FILE = "store.db"
DATA_KEYS_FILE = "store-keys.json"


def configure(p) -> None:
    """Options of this sub-command (its name and one-line help are in ``broker.cli.main.SUBCOMMANDS``)."""
    p.description = (
        "Run the persister: it stores every event, log, security event, session and audit record "
        "in DATA/store.db, acknowledges agents' records once committed (so they leave the agents' outboxes), "
        "answers history queries (ems history) and purges old rows. Sensitive fields are encrypted with the "
        "key in DATA/keys/store-keys.json."
    )
    add_data_dir(p)
    p.add_argument("--server", help="broker endpoint (default: from the profile)")
    p.add_argument("--synchronous", default="NORMAL", choices=["NORMAL", "FULL"],
                   help="SQLite durability: NORMAL survives process crashes, FULL also power loss (slower)")
    p.add_argument("--heartbeat-s", type=float, default=None, help="heartbeat interval before the broker's own applies")
    p.set_defaults(run=run, owns_data_dir=True, default_log_level="INFO")


def open_store(data: DataDir, synchronous: str = "NORMAL") -> Store:
    """The data dir's store with its encryption keys."""
    return Store(data.root / STORE_FILE, SecurityManager(data.keys / DATA_KEYS_FILE), synchronous=synchronous)


def run(args) -> int:
    from broker.core.config import timing_for

    data = DataDir(resolve_data_dir(args.data_dir))
    profile = load_profile(data)
    config = ClientConfig(server=args.server or profile.server, server_key=profile.server_key)
    if args.heartbeat_s:
        config.timing = timing_for(args.heartbeat_s)
    client = BusClient(config, keys.load(data.keys, "persister"), hello={"client_id": "persister", "provides": ["store"]})
    persister = Persister(client, open_store(data, args.synchronous), PersisterConfig())
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: persister.stop())
    persister.run()
    return 0
