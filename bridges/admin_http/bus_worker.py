"""The one thread that talks to the bus for the admin HTTP listener.

A :class:`~broker.client.BusClient` is single-threaded, and HTTP requests
arrive on many threads. So HTTP handler threads never touch the client:
they hand a *job* (a function of the client) to :meth:`BusWorker.run` and
wait for its outcome. The bus thread runs jobs in arrival order, keeps the
one connection alive (heartbeats, reconnects, re-sent requests) and routes
each RESULT to whoever waits for that command (:meth:`BusWorker.watch`).

It sleeps in a single poll on the bus socket plus a self-pipe that a new
job writes one byte to, so a job starts at once and an idle listener wakes
only for heartbeats. One long-lived connection (instead of a BusClient per
HTTP request) means one Curve handshake, one ``admin-http`` peer at the
broker, and command results that always reach a live connection.
"""
from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import zmq

from broker import errors
from broker.client import PENDING, READY, AccessRevoked, BusClient
from broker.envelope import Envelope, Kind
from broker.errors import EmsError
from broker.vocabulary import FINAL

log = logging.getLogger(__name__)

T = TypeVar("T")
Job = Callable[[BusClient], T]


class BusUnavailable(EmsError):
    """The listener has no working bus connection (broker down, key not accepted, stopping)."""


class BusWorker:
    """Owns a BusClient and runs every bus operation of the listener on one thread."""

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
        self.tick_s = min(0.2, client.config.timing.heartbeat_s / 2)
        self.clock = clock
        self._jobs: queue.SimpleQueue[tuple[Job, concurrent.futures.Future]] = queue.SimpleQueue()
        #: command id -> [(give-up time, future)]; touched by the bus thread only
        self._waiters: dict[str, list[tuple[float, concurrent.futures.Future]]] = {}
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        #: guards the job queue's entrance and the wake pipe against stop()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at = 0.0
        self._next_recheck = 0.0
        self._fatal = ""

    # -- any thread ------------------------------------------------------------
    def start(self, timeout_s: float = 5.0) -> None:
        """Start the bus thread (it connects; it does not wait for the broker)."""
        self._thread = threading.Thread(target=self._main, name="admin-http-bus", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise EmsError(f"the admin listener's bus thread did not start within {timeout_s:.0f} s")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread; jobs and waits still pending fail with BusUnavailable."""
        with self._lock:
            if self._stopping.is_set():
                return
            self._stopping.set()
            self._wake()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("the bus thread did not stop within %.0f s", timeout_s)
                return  # it still polls the pipe: leave it open
        with self._lock:
            os.close(self._wake_r)
            os.close(self._wake_w)

    def submit(self, job: Job) -> concurrent.futures.Future:
        """Queue ``job`` for the bus thread; its Future holds the return value or exception."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._stopping.is_set():
                raise BusUnavailable("the admin listener's bus thread is not running (stopping, or failed: see the log)")
            self._jobs.put((job, future))
            self._wake()
        return future

    def run(self, job: Job, timeout_s: float) -> Any:
        """Run ``job`` on the bus thread and return its result (re-raising its exception).

        Raises :class:`broker.errors.TimeoutError` if it has not finished
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
            raise BusUnavailable("the admin listener is stopping") from None

    def _wake(self) -> None:
        """Make the bus thread's poll return (called with ``_lock`` held)."""
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the thread wakes anyway

    @property
    def alive(self) -> bool:
        """False once the bus thread has ended (stopped, or failed)."""
        return self._thread is not None and self._thread.is_alive()

    # -- bus thread only ---------------------------------------------------------
    def watch(self, cmd_id: str, timeout_s: float) -> concurrent.futures.Future:
        """A Future for the final outcome of command ``cmd_id`` (call from inside a job).

        It resolves with the RESULT body (``id``, ``target``, ``name``,
        ``status``, ``result``) and is dropped after ``timeout_s``.
        Registering inside the job that sent the command means no result can
        slip past: anything that arrived meanwhile is still queued.
        """
        if threading.current_thread() is not self._thread:
            raise EmsError("BusWorker.watch must be called from a job on the bus thread")
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._waiters.setdefault(cmd_id, []).append((self.clock() + timeout_s, future))
        return future

    def _main(self) -> None:
        try:
            self.client.connect()
        except (EmsError, zmq.ZMQError) as exc:
            self._fatal = f"cannot open the bus connection: {exc}"
            log.error("%s", self._fatal)
        self._started_at = self.clock()
        self._started.set()
        try:
            while not self._stopping.is_set():
                self._run_jobs()
                self._pump()
                self._timers()
                self._sleep()
        except Exception:
            log.exception("the bus thread failed")
            raise
        finally:
            with self._lock:
                self._stopping.set()  # no new jobs: nobody would run them
            self._fail_pending()
            self.client.close()
            log.info("bus thread stopped")

    def _run_jobs(self) -> None:
        while not self._stopping.is_set():
            try:
                job, future = self._jobs.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue  # its HTTP caller gave up before it started
            try:
                self._require_ready()
                future.set_result(job(self.client))
            except AccessRevoked as exc:
                self._revoked(exc)
                future.set_exception(BusUnavailable(self._fatal))
            except Exception as exc:  # noqa: BLE001 - handed to the waiting HTTP thread, which answers with it
                future.set_exception(exc)

    def _require_ready(self) -> None:
        """Raise BusUnavailable (saying why) unless the broker has welcomed us.

        Shortly after start the connection gets a few seconds to come up, so
        the first request after ``ems up`` does not fail needlessly.
        """
        if self._fatal:
            raise BusUnavailable(self._fatal)
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
                f"register it as an operator (ems keys add <key> --id admin-http --role operator)"
            )
        raise BusUnavailable(f"not connected to the broker at {client.config.server}")

    def _pump(self) -> None:
        """Handle everything already received (also runs the client's timers)."""
        if self._fatal:
            return
        while True:
            try:
                env = self.client.poll(0)
            except AccessRevoked as exc:
                self._revoked(exc)
                return
            if env is None:
                return
            self._on_message(env)

    def _on_message(self, env: Envelope) -> None:
        waiting = self._waiters.get(env.corr or "")
        if env.kind is not Kind.RESULT or waiting is None:
            return  # statuses and results nobody waits for: the broker keeps the record
        try:
            outcome = env.data()
        except EmsError as exc:
            log.warning("dropped a malformed result for %s: %s", env.corr, exc)
            return
        self._resolve(env.corr, outcome)

    def _resolve(self, cmd_id: str, outcome: dict) -> None:
        for _, future in self._waiters.pop(cmd_id, []):
            if not future.done():
                future.set_result(outcome)

    def _timers(self) -> None:
        """Drop waits past their time; every few seconds ask the broker about
        the rest, in case a result was missed (e.g. across a broker restart)."""
        now = self.clock()
        for cmd_id in list(self._waiters):
            alive = [(until, f) for until, f in self._waiters[cmd_id] if until > now and not f.done()]
            if alive:
                self._waiters[cmd_id] = alive
            else:
                del self._waiters[cmd_id]
        if now < self._next_recheck or not self._waiters or self._fatal or self.client.state != READY:
            return
        self._next_recheck = now + self.recheck_s
        for cmd_id in list(self._waiters):
            try:
                record = self.client.request("command.get", timeout_s=self.recheck_timeout_s, id=cmd_id)
            except AccessRevoked as exc:
                self._revoked(exc)
                return
            except EmsError as exc:
                log.debug("could not recheck command %s: %s", cmd_id, exc)
                return
            if isinstance(record, dict) and record.get("status") in FINAL:
                self._resolve(cmd_id, {k: record.get(k) for k in ("id", "target", "name", "status", "result")})

    def _sleep(self) -> None:
        poller = zmq.Poller()
        poller.register(self._wake_r, zmq.POLLIN)
        if self.client.socket is not None and not self._fatal:
            poller.register(self.client.socket, zmq.POLLIN)
        events = dict(poller.poll(int(self.tick_s * 1000)))
        if self._wake_r in events:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass

    def _revoked(self, exc: AccessRevoked) -> None:
        self._fatal = f"the broker revoked the admin listener's bus key ({exc.detail or exc.message}); enrol a new one"
        log.error("%s", self._fatal)

    def _fail_pending(self) -> None:
        stopping = BusUnavailable("the admin listener is stopping")
        while True:
            try:
                _, future = self._jobs.get_nowait()
            except queue.Empty:
                break
            if future.set_running_or_notify_cancel():
                future.set_exception(stopping)
        for waiting in self._waiters.values():
            for _, future in waiting:
                if not future.done():
                    future.set_exception(stopping)
        self._waiters.clear()
