"""``python -m bridges.server_info``: this server as JSON on stdout, for the web UI's Servers tab.

Asks the broker live, with the bridge's own service key (``DATA/keys/server-info.*``)::

    {"server":  {"server_id", "public_key", "host", "endpoint", "version", "boot_id", "started", "uptime_s"},
     "broker":  {"peers", "online_agents", "pending_keys", "services", "journal", ...},
     "counters": {...}, "commands": {"queued": N, ...},
     "clients": [{"client_id", "label", "hostname", "state": "online"|"offline", "last_seen", "version", "user", ...}],
     "sync":    {"running": true, "status": {...}}  or  {"running": false, "error": "sync worker not running"},
     "generated_at": <unix time>}

``server_id`` is the broker's public key: the one identity of this server
that never changes while its data dir lives. ``clients`` is the broker's
``agents`` answer (presence as the bus sees it now, not the MySQL snapshot).
``sync`` is the sync service's ``sync.status``; when no sync worker is
connected the rest is still answered. Exit codes: :class:`bridges.bridge_call.Exit`.
"""
from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from importlib import metadata

from bridges.bridge_call import SERVER_INFO, BridgeCall, add_common_args, run
from broker.core.envelope import ErrorCode
from broker.core.errors import RemoteError
from broker.core.errors import TimeoutError as BusTimeout

#: what ``sync`` says when the broker has no sync service to ask
SYNC_NOT_RUNNING = "sync worker not running"
#: share of the time left that ``sync.status`` may take (the rest of the answer matters more)
SYNC_SHARE = 0.5
_SERVER_FIELDS = ("boot_id", "endpoint", "public_key", "started", "uptime_s")


def collect(call: BridgeCall) -> dict:
    """The whole answer (see the module docstring)."""
    status = call.request("status")
    clients = call.request("agents")
    broker = dict(status.get("broker") or {})
    server = {key: broker.pop(key, None) for key in _SERVER_FIELDS}
    server.update(server_id=server["public_key"], host=socket.gethostname(), version=_version())
    return {"server": server, "broker": broker, "counters": status.get("counters", {}), "commands": status.get("commands", {}),
            "clients": clients, "sync": sync_state(call), "generated_at": time.time()}


def sync_state(call: BridgeCall) -> dict:
    """``{"running": true, "status": ...}`` from the sync service, or why there is none."""
    timeout_s = call.remaining("the broker") * SYNC_SHARE
    try:
        return {"running": True, "status": call.client.request("sync.status", timeout_s=timeout_s)}
    except RemoteError as exc:
        if exc.code == ErrorCode.UNAVAILABLE:  # the broker knows no provider of "sync"
            return {"running": False, "error": SYNC_NOT_RUNNING}
        if exc.code == ErrorCode.BAD_REQUEST and "unknown operation" in (exc.detail or ""):  # a broker older than sync
            return {"running": False, "error": f"{SYNC_NOT_RUNNING} (this broker has no sync service)"}
        raise
    except BusTimeout:  # a sync worker that does not answer in time must not cost the rest
        return {"running": None, "error": f"the sync worker did not answer within {timeout_s:.1f} s"}


def _version() -> str:
    try:
        return metadata.version("ems")
    except metadata.PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bridges.server_info", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    args = p.parse_args(argv)

    def work(call: BridgeCall) -> None:
        text = json.dumps(collect(call), sort_keys=True, default=str)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    return run(SERVER_INFO, args, work)


if __name__ == "__main__":
    sys.exit(main())
