"""The operator profile: how CLI tools on the server machine reach the bus.

``ems up`` writes ``profile.json`` in the data dir (broker endpoint, broker
public key, and which key pair in ``keys/`` the operator uses), so that
``ems status``, ``ems tail``, ``ems send`` and ``ems keys`` need no flags.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from broker.core import keys
from broker.core.client import BusClient
from broker.core.config import ClientConfig, DataDir, resolve_data_dir
from broker.core.errors import ConfigError


@dataclass
class Profile:
    server: str
    server_key: str
    key_name: str = "operator"
    client_id: str = ""


def connectable(endpoint: str) -> str:
    """A bind address made dialable: ``tcp://0.0.0.0:P`` -> ``tcp://127.0.0.1:P``."""
    for wildcard in ("tcp://0.0.0.0:", "tcp://*:"):
        if endpoint.startswith(wildcard):
            return "tcp://127.0.0.1:" + endpoint[len(wildcard):]
    return endpoint


def save(data: DataDir, profile: Profile) -> None:
    tmp = data.profile.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(profile), indent=2) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, data.profile)


def load(data: DataDir) -> Profile:
    try:
        raw = json.loads(data.profile.read_text())
        return Profile(**raw)
    except FileNotFoundError:
        raise ConfigError(
            f"no operator profile in {data.root}: start the server with `ems up --data-dir {data.root}` "
            "or pass --data-dir / set EMS_HOME to the server's data dir"
        ) from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{data.profile} is not a valid profile: {exc}") from exc


def operator_client(data_dir: str | None, server: str | None = None) -> BusClient:
    """A connected, welcomed BusClient for the profile in ``data_dir``."""
    data = DataDir(resolve_data_dir(data_dir))
    profile = load(data)
    config = ClientConfig(server=server or profile.server, server_key=profile.server_key)
    client = BusClient(config, keys.load(data.keys, profile.key_name))
    client.connect()
    try:
        client.wait_ready(config.timing.request_timeout_s)
    except Exception:
        client.close()
        raise
    return client
