"""The admin HTTP listener's bus thread: the shared core plus command-result routing.

HTTP handler threads never touch the :class:`~broker.core.client.BusClient`:
they hand a *job* (a function of the client) to :meth:`BusWorker.run` and
wait for its outcome. The thread is :class:`broker.core.bus_worker.BusWorker`
(futures, a wake pipe, one long-lived connection: one Curve handshake, one
``admin-http`` peer at the broker). What this module adds is the
listener's own policy:

* a job first checks the connection (:meth:`_require_ready`), giving the
  broker a few seconds after start so the first request after ``ems up``
  does not fail needlessly, and saying why it cannot run otherwise;
* :meth:`BusWorker.watch` routes each RESULT to whoever waits for that
  command, drops waits past their time and every few seconds asks the
  broker about the rest, in case a result was missed.
"""
from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from broker.core import bus_worker as core
from broker.core import errors
from broker.core.bus_worker import BusUnavailable, Job
from broker.core.client import PENDING, READY, AccessRevoked, BusClient
from broker.core.envelope import Envelope, Kind
from broker.core.errors import EmsError
from broker.core.vocabulary import FINAL

log = logging.getLogger(__name__)

STOPPING = "the admin listener is stopping"

__all__ = ["BusUnavailable", "BusWorker"]


class BusWorker:
    """Runs every bus operation of the listener on the core's one thread."""

    def __init__(
        self,
        client: BusClient,
        startup_grace_s: float = 5.0,
        recheck_s: float = 2.0,
        recheck_timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.client = client
        self.startup_grace_s = startup_grace_s
        self.recheck_s = recheck_s
        self.recheck_timeout_s = recheck_timeout_s
        self.clock = clock
        self.core = core.BusWorker(client, on_envelope=self._on_message, on_pass=self._timers,
                                   tick_s=min(0.2, client.config.timing.heartbeat_s / 2), name="admin-http-bus")
        #: command id -> [(give-up time, future)]; touched by the bus thread only
        self._waiters: dict[str, list[tuple[float, concurrent.futures.Future]]] = {}
        self._waiters_lock = threading.Lock()  # only so stop() can fail what is left
        self._started_at = 0.0
        self._next_recheck = 0.0

    # -- any thread ------------------------------------------------------------
    def start(self, timeout_s: float = 5.0) -> None:
        """Start the bus thread (it connects; it does not wait for the broker)."""
        self._started_at = self.clock()
        self.core.start(timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread; jobs and waits still pending fail with BusUnavailable."""
        self.core.stop(timeout_s)
        stopping = BusUnavailable(STOPPING)
        with self._waiters_lock:
            for waiting in self._waiters.values():
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(stopping)
            self._waiters.clear()

    def submit(self, job: Job) -> concurrent.futures.Future:
        """Queue ``job`` for the bus thread; its Future holds the return value or exception."""
        def checked(client: BusClient) -> Any:
            self._require_ready()
            return job(client)
        try:
            return self.core.submit(checked)
        except BusUnavailable:
            raise BusUnavailable("the admin listener's bus thread is not running (stopping, or failed: see the log)") from None

    def run(self, job: Job, timeout_s: float) -> Any:
        """Run ``job`` on the bus thread and return its result (re-raising its exception).

        Raises :class:`broker.core.errors.TimeoutError` if it has not finished
        within ``timeout_s``; a job that had not started by then never runs.
        """
        future = self.submit(job)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            started = not future.cancel()
            if future.done() and not future.cancelled():
                return future.result()  # it finished just now
            more = " (it may still complete)" if started else ""
            raise errors.TimeoutError(f"the bus did not answer within {timeout_s:.0f} s{more}") from None
        except concurrent.futures.CancelledError:
            raise BusUnavailable(STOPPING) from None

    @property
    def alive(self) -> bool:
        """False once the bus thread has ended (stopped, or failed)."""
        return self.core.alive

    # -- bus thread only ---------------------------------------------------------
    def watch(self, cmd_id: str, timeout_s: float) -> concurrent.futures.Future:
        """A Future for the final outcome of command ``cmd_id`` (call from inside a job).

        It resolves with the RESULT body (``id``, ``target``, ``name``,
        ``status``, ``result``) and is dropped after ``timeout_s``.
        Registering inside the job that sent the command means no result can
        slip past: anything that arrived meanwhile is still queued.
        """
        if not self.core.on_bus_thread:
            raise EmsError("BusWorker.watch must be called from a job on the bus thread")
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._waiters_lock:
            self._waiters.setdefault(cmd_id, []).append((self.clock() + timeout_s, future))
        return future

    def _require_ready(self) -> None:
        """Raise BusUnavailable (saying why) unless the broker has welcomed us."""
        client = self.client
        grace = self._started_at + self.startup_grace_s - self.clock()
        if client.state != READY and grace > 0:
            try:
                client.wait_ready(grace)
            except errors.TimeoutError:
                pass
        if client.state == READY:
            return
        if client.state == PENDING:
            prefix = client.keypair.public[:8]
            raise BusUnavailable(
                f"the admin listener's bus key {prefix} is pending at the broker: "
                f"register it as a service (ems keys add <key> --id admin-http --role service)"
            )
        raise BusUnavailable(f"not connected to the broker at {client.config.server}")

    def _on_message(self, env: Envelope) -> None:
        if env.kind is not Kind.RESULT or (env.corr or "") not in self._waiters:
            return  # statuses and results nobody waits for: the broker keeps the record
        try:
            outcome = env.data()
        except EmsError as exc:
            log.warning("dropped a malformed result for %s: %s", env.corr, exc)
            return
        self._resolve(env.corr, outcome)

    def _resolve(self, cmd_id: str, outcome: dict) -> None:
        with self._waiters_lock:
            waiting = self._waiters.pop(cmd_id, [])
        for _, future in waiting:
            if not future.done():
                future.set_result(outcome)

    def _timers(self, client: BusClient) -> None:
        """Drop waits past their time; every few seconds ask the broker about
        the rest, in case a result was missed (e.g. across a broker restart)."""
        now = self.clock()
        with self._waiters_lock:
            for cmd_id in list(self._waiters):
                alive = [(until, f) for until, f in self._waiters[cmd_id] if until > now and not f.done()]
                if alive:
                    self._waiters[cmd_id] = alive
                else:
                    del self._waiters[cmd_id]
        if now < self._next_recheck or not self._waiters or self.core.fatal or client.state != READY:
            return
        self._next_recheck = now + self.recheck_s
        self._recheck(client)

    def _recheck(self, client: BusClient) -> None:
        for cmd_id in list(self._waiters):
            try:
                record = client.request("command.get", timeout_s=self.recheck_timeout_s, id=cmd_id)
            except AccessRevoked:
                return  # the next pass of the core notices and says so
            except EmsError as exc:
                log.debug("could not recheck command %s: %s", cmd_id, exc)
                return
            if isinstance(record, dict) and record.get("status") in FINAL:
                self._resolve(cmd_id, {k: record.get(k) for k in ("id", "target", "name", "status", "result")})
