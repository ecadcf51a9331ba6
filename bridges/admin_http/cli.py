"""``ems admin-http``: the admin HTTP API for the web UI (normally started by ``ems up``)."""
from __future__ import annotations

import argparse
import logging
import signal

from bridges.admin_http import AdminHttp, AdminHttpConfig
from bridges.admin_http.config import (
    AUDIT_FILE,
    CLIENT_ID,
    DEFAULT_LISTEN,
    ENDPOINT_FILE,
    KEY_NAME,
    TOKEN_ENV,
    parse_listen,
    token_from_env,
)
from broker.core import keys
from broker.core.cli_common import add_data_dir
from broker.core.profile import load as load_profile
from broker.core.client import BusClient
from broker.core.config import ClientConfig, DataDir, resolve_data_dir
from broker.core.errors import ConfigError

log = logging.getLogger(__name__)

DESCRIPTION = f"""\
Serve the admin HTTP API on a loopback address: the web UI's per-client
actions (reboot, shutdown, update check/apply) call it, and it talks to the
bus as service '{CLIENT_ID}' (key DATA/keys/{KEY_NAME}.*, registered by `ems up`).

Refuses to start unless {TOKEN_ENV} holds a long random token; every call
must send `Authorization: Bearer <token>` and a loopback Host header. Every
call is logged and written to DATA/logs/{AUDIT_FILE}.

  GET  /api/status                       broker status and this listener's bus state
  GET  /api/clients                      accepted agents, online or not
  POST /api/clients/ID/reboot            also: shutdown, update-check, update-apply
       body {{"reason": "...", "args": {{...}}, "ttl_s": N}}  (reason required)
       -> 202 with the command id; ?wait=1[&timeout_s=N] -> 200 with the result
  GET  /api/commands/ID                  a command's status and result
  POST /api/sync                         "sync this server now" (body {{"reason": "..."}}) -> 202

Header X-EMS-Operator names the person behind a call ("Jane Doe"); it is
required for the POST actions: the user is told that person did it, and the
broker's audit trail records the person with '{CLIENT_ID}' as the way in.
"""

EPILOG = f"""\
example:
  export {TOKEN_ENV}="$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
  ems admin-http --data-dir var &
  curl -s -H "Authorization: Bearer ${TOKEN_ENV}" http://127.0.0.1:9090/api/clients
  curl -s -H "Authorization: Bearer ${TOKEN_ENV}" -H 'Content-Type: application/json' \\
       -H 'X-EMS-Operator: Jane Doe' -d '{{"reason": "frozen desktop"}}' 'http://127.0.0.1:9090/api/clients/ID/reboot?wait=1'
"""


def configure(p) -> None:
    """Options of this sub-command (its name and one-line help are in ``broker.cli.main.SUBCOMMANDS``)."""
    p.description = DESCRIPTION
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    add_data_dir(p)
    p.add_argument("--listen", default=DEFAULT_LISTEN, help="loopback HOST:PORT to serve on (default %(default)s; port 0 picks one, "
                   f"written to DATA/{ENDPOINT_FILE})")
    p.add_argument("--server", help="broker endpoint (default: from the profile)")
    p.add_argument("--heartbeat-s", type=float, default=None, help="heartbeat interval before the broker's own applies")
    p.set_defaults(run=run, owns_data_dir=True, default_log_level="INFO")


def run(args) -> int:
    from broker.core.config import timing_for

    token = token_from_env()
    host, port = parse_listen(args.listen)
    data = DataDir(resolve_data_dir(args.data_dir))
    profile = load_profile(data)
    config = ClientConfig(server=args.server or profile.server, server_key=profile.server_key)
    if args.heartbeat_s:
        config.timing = timing_for(args.heartbeat_s)
    client = BusClient(config, _keypair(data), hello={"client_id": CLIENT_ID})
    admin = AdminHttp(AdminHttpConfig(token=token, host=host, port=port), client, data.logs / AUDIT_FILE, data.root / ENDPOINT_FILE)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: admin.request_stop())
    admin.start()
    try:
        admin.wait()
    finally:
        admin.stop()
    return 0


def _keypair(data: DataDir) -> keys.KeyPair:
    try:
        return keys.load(data.keys, KEY_NAME)
    except ConfigError as exc:
        raise ConfigError(
            f"{exc}; `ems up` with {TOKEN_ENV} set creates it and registers it as service '{CLIENT_ID}' "
            f"(by hand: create the pair, then `ems keys add <public key> --id {CLIENT_ID} --role service`)"
        ) from exc
