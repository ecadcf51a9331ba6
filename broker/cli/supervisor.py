"""Run a set of processes, restart the ones that die, stop them all cleanly.

Used by ``ems up``: each part of the server stack (MariaDB, broker,
persister, local agent, sync worker, ...) is its own process; one that
exits unexpectedly is restarted with a growing delay and the restart is
logged.

Order is the contract: services start in list order (a service's
``ready`` check, if any, must pass before the next one starts) and stop
one at a time in reverse order, each given ``grace_s`` to exit on SIGTERM
before it is killed, so whatever writes into another service stops before
the service it writes into (the sync worker before MariaDB, agents and
the persister before the broker).
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from broker.core.errors import EmsError

log = logging.getLogger(__name__)


@dataclass
class Service:
    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    #: called with the new process's pid after each start; returns once it serves, raises EmsError if it does not
    ready: Callable[[int], None] | None = None
    process: subprocess.Popen | None = None
    restarts: int = 0
    restart_at: float = 0.0
    started_at: float = 0.0


class Supervisor:
    """Start, watch and stop :class:`Service` processes."""

    def __init__(self, services: list[Service], max_backoff_s: float = 30.0):
        self.services = services
        self.max_backoff_s = max_backoff_s
        self._stopping = False

    def start(self) -> None:
        """Start every service in order, each after the previous one is ready; on a failure stop those started and raise."""
        for service in self.services:
            self._spawn(service)
            try:
                self._wait_ready(service)
            except BaseException:
                self.shutdown()
                raise

    def _wait_ready(self, service: Service) -> None:
        if service.ready is not None and service.process is not None:
            service.ready(service.process.pid)

    def _spawn(self, service: Service) -> None:
        service.log_path.parent.mkdir(parents=True, exist_ok=True)
        with service.log_path.open("ab") as out:
            service.process = subprocess.Popen(
                service.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **service.env},
                start_new_session=True,  # Ctrl-C in the terminal reaches the supervisor only
            )
        service.started_at = time.monotonic()
        log.info("started %s (pid %d), log: %s", service.name, service.process.pid, service.log_path)

    def watch_once(self) -> None:
        """Restart any service that has exited (with backoff)."""
        now = time.monotonic()
        for service in self.services:
            proc = service.process
            if proc is not None and proc.poll() is not None:
                if now - service.started_at > 60:
                    service.restarts = 0  # it ran fine for a while: start the backoff over
                delay = min(self.max_backoff_s, 0.5 * (2 ** service.restarts))
                service.restarts += 1
                service.restart_at = now + delay
                log.warning("%s exited with code %s; restarting in %.1f s (restart #%d), see %s",
                            service.name, proc.returncode, delay, service.restarts, service.log_path)
                service.process = None
            if service.process is None and not self._stopping and now >= service.restart_at:
                self._spawn(service)
                try:
                    self._wait_ready(service)
                except EmsError as exc:
                    log.warning("%s did not come back: %s", service.name, exc)

    def run(self, poll_s: float = 0.5) -> None:
        """Watch until :meth:`stop` is called (e.g. from a signal handler)."""
        while not self._stopping:
            self.watch_once()
            time.sleep(poll_s)

    def stop(self) -> None:
        self._stopping = True

    def shutdown(self, grace_s: float = 10.0) -> None:
        """Stop the services one at a time, last started first: SIGTERM, wait up to ``grace_s``, SIGKILL."""
        self._stopping = True
        for service in reversed(self.services):
            proc = service.process
            if proc is None or proc.poll() is not None:
                continue
            began = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace_s)
                log.info("stopped %s in %.2f s", service.name, time.monotonic() - began)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killing it", service.name, grace_s)
                proc.kill()
                proc.wait()
