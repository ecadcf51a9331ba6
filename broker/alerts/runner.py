"""Running the alerts service as its own process (``ems alerts serve``, started by ``ems up``)."""
from __future__ import annotations

import signal
from importlib import metadata

from broker.alerts import settings as alert_settings
from broker.alerts.book import ALERTS_FILE, AlertBook
from broker.alerts.delivery import Dispatcher
from broker.alerts.service import PROVIDES, AlertService
from broker.core import keys
from broker.core.client import BusClient
from broker.core.config import ClientConfig, DataDir, timing_for
from broker.core.profile import load as load_profile

#: the service's key in DATA/keys (made and accepted by ``ems up``) and its client id
KEY_NAME = CLIENT_ID = "alerts"


def server_version() -> str:
    """This installation's EMS version (the broker's: they are installed together), or ``""``."""
    try:
        return metadata.version("ems")
    except metadata.PackageNotFoundError:
        return ""


def serve(data: DataDir, server: str | None = None, heartbeat_s: float | None = None, sinks=None) -> int:
    """Run the service for ``data`` until SIGTERM/SIGINT; ``sinks``: more deliveries beside the inbox and what
    alerts.json's ``delivery`` section configures (e-mail, webhook: :mod:`broker.alerts.delivery`)."""
    settings = alert_settings.load(data.root)  # a broken alerts.json stops us here, not in a loop
    deliveries = [Dispatcher.from_section(settings.delivery, data.root)] if settings.delivery else []
    profile = load_profile(data)
    config = ClientConfig(server=server or profile.server, server_key=profile.server_key)
    if heartbeat_s:
        config.timing = timing_for(heartbeat_s)
    client = BusClient(config, keys.load(data.keys, KEY_NAME), hello={"client_id": CLIENT_ID, "provides": PROVIDES})
    service = AlertService(client, AlertBook(data.root / ALERTS_FILE), settings, sinks=[*deliveries, *(sinks or [])],
                           server_version=server_version())
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: service.stop())
    try:
        service.run()
    finally:
        for dispatcher in deliveries:
            dispatcher.close()  # its workers end; what is unsent stays in the outbox for the next start
    return 0
