"""The admin HTTP listener as one unit: audit log, bus thread, HTTP server.

::

    admin = AdminHttp(AdminHttpConfig(token=...), BusClient(...), audit_path)
    url = admin.start()          # bound and serving; the bus connects in the background
    ...
    admin.stop()                 # stops accepting, fails what waits, closes everything
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from bridges.admin_http.api import AdminApi
from bridges.admin_http.audit import AuditLog
from bridges.admin_http.bus_worker import BusWorker
from bridges.admin_http.config import AdminHttpConfig
from bridges.admin_http.server import AdminHttpServer
from broker.core.client import BusClient
from broker.core.errors import ConfigError, EmsError

log = logging.getLogger(__name__)


class AdminHttp:
    """Start, run and stop the admin HTTP listener (the BusClient is handed over, unconnected)."""

    def __init__(self, config: AdminHttpConfig, client: BusClient, audit_path: Path, endpoint_file: Path | None = None):
        self.config = config
        self.audit = AuditLog(audit_path)
        self.worker = BusWorker(client, startup_grace_s=config.bus_startup_grace_s)
        self.api = AdminApi(self.worker, config)
        self.endpoint_file = endpoint_file
        self.server: AdminHttpServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._stop_requested = threading.Event()

    @property
    def url(self) -> str:
        return self.server.url if self.server is not None else ""

    def start(self) -> str:
        """Bind, start the bus thread and the HTTP thread; returns the URL served."""
        try:
            self.server = AdminHttpServer(self.config, self.api, self.audit)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {self.config.host}:{self.config.port}: {exc.strerror or exc} "
                              "(is another `ems admin-http` running? choose another port with --listen)") from exc
        try:
            self.audit.open()
            self.worker.start()
        except Exception:
            self.server.server_close()
            self.server = None
            raise
        self._serve_thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                              name="admin-http-serve", daemon=True)
        self._serve_thread.start()
        if self.endpoint_file is not None:
            tmp = self.endpoint_file.with_suffix(".tmp")
            tmp.write_text(self.url + "\n")
            os.replace(tmp, self.endpoint_file)
        log.info("admin HTTP API listening on %s (audit log %s)", self.url, self.audit.path)
        return self.url

    def request_stop(self) -> None:
        """Ask :meth:`wait` to return (safe from a signal handler)."""
        self._stop_requested.set()

    def wait(self) -> None:
        """Block until :meth:`request_stop`; raise if the bus thread died (so a supervisor restarts us)."""
        while not self._stop_requested.wait(1.0):  # wakes every second so signals get handled
            if not self.worker.alive:
                raise EmsError("the admin listener's bus thread has stopped (see the log above); exiting")

    def stop(self) -> None:
        """Stop accepting, fail pending bus work (callers get 502), finish open requests, close."""
        if self.server is not None:
            self.server.shutdown()
        self.worker.stop()
        if self.server is not None:
            self.server.server_close()
            self.server = None
        if self._serve_thread is not None:
            self._serve_thread.join(5)
        self.audit.close()
        if self.endpoint_file is not None:
            try:
                self.endpoint_file.unlink()
            except FileNotFoundError:
                pass
        log.info("admin HTTP API stopped")
