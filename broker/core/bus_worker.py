"""One thread that talks to the bus on behalf of others: the shared core.

A :class:`~broker.core.client.BusClient` is single-threaded, while the programs
that use it on someone's behalf (the operator console, the admin HTTP
bridge, the sync worker, web bridges) have other threads that want answers.
:class:`BusWorker` is the one shape for that:

* its thread builds (or is given) the client, connects, and owns it;
* other threads hand it *jobs* -- functions of the client -- with
  :meth:`BusWorker.submit` (or the shorthands :meth:`request`,
  :meth:`send_command`, :meth:`subscribe`) and get a
  :class:`concurrent.futures.Future` holding the job's return value or its
  exception;
* every live message the client receives goes to ``on_envelope(env)``,
  on the bus thread, in arrival order;
* ``on_pass(client)`` runs once per loop pass for an adapter's own
  housekeeping and may return how soon (seconds) it wants the next pass.

The thread sleeps in one poll on the bus socket and a wake pipe; a new job
or :meth:`stop` writes a byte to the pipe. Idle, it wakes only for the
client's timers (every ``tick_s``, half a heartbeat by default) -- it never
polls a queue. Its life is explicit: :meth:`start` waits for the thread to
come up (with a timeout), :meth:`stop` asks it to end through the pipe and
joins it; jobs still queued then fail with :class:`BusUnavailable`.

This module is ground floor: it imports only the client library.
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import zmq

from broker.core.client import CLOSED, READY, AccessRevoked, BusClient
from broker.core.errors import EmsError

log = logging.getLogger(__name__)

T = TypeVar("T")
Job = Callable[[BusClient], T]
ClientSource = BusClient | Callable[[], BusClient]


class BusUnavailable(EmsError):
    """No working bus connection for this job (not started, stopping, revoked, or failed)."""


class BusWorker:
    """Owns a BusClient on one thread; runs jobs for other threads and returns Futures.

    ``client``: a BusClient, or a factory called on the bus thread (so a
    slow or failing construction never blocks the caller). ``on_envelope``
    and ``on_pass`` run on the bus thread; an exception they raise ends
    the thread (it is logged and reported to ``on_failed``).
    ``hold_jobs_until_ready``: jobs wait in the queue until the broker has
    welcomed us (the console); otherwise they run at once (and decide for
    themselves what to do without a connection).
    """

    def __init__(
        self,
        client: ClientSource,
        *,
        on_envelope: Callable[[Any], None] | None = None,
        on_pass: Callable[[BusClient], float | None] | None = None,
        on_failed: Callable[[str], None] | None = None,
        on_stopped: Callable[[], None] | None = None,
        tick_s: float | None = None,
        max_batch: int = 200,
        hold_jobs_until_ready: bool = False,
        name: str = "bus-worker",
    ):
        self._source = client
        self.client: BusClient | None = client if isinstance(client, BusClient) else None
        self.on_envelope = on_envelope
        self.on_pass = on_pass
        self.on_failed = on_failed
        self.on_stopped = on_stopped
        self.tick_s = tick_s
        self.max_batch = max_batch
        self.hold_jobs_until_ready = hold_jobs_until_ready
        self.name = name
        #: why the connection is unusable for good ("" while it is fine)
        self.fatal = ""
        self._jobs: queue.SimpleQueue[tuple[Job, concurrent.futures.Future]] = queue.SimpleQueue()
        self._held: list[tuple[Job, concurrent.futures.Future]] = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        #: guards the job queue's entrance and the wake pipe against stop()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._started = threading.Event()
        self._thread: threading.Thread | None = None

    # -- any thread ------------------------------------------------------------
    def start(self, timeout_s: float = 5.0) -> None:
        """Start the bus thread and wait until it runs (it does not wait for the broker)."""
        if self._thread is not None:
            raise EmsError(f"{self.name} was already started")
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise EmsError(f"the bus thread {self.name} did not start within {timeout_s:.0f} s")

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Ask the thread to end (through the pipe) and join it; True if it ended.

        Jobs still queued fail with :class:`BusUnavailable`; the thread
        closes the client itself.
        """
        with self._lock:
            if not self._stopping.is_set():
                self._stopping.set()
                self._wake()
        if self._thread is None:  # never started: fail what was queued, free the pipe and the client
            self._fail_pending()
            self._close_pipe()
            if self.client is not None:
                self.client.close()
            return True
        if self._thread is threading.current_thread():
            return True  # from a job or hook: the loop ends after this pass
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("the bus thread %s did not stop within %.0f s", self.name, timeout_s)
            return False  # it still polls the pipe: leave it open
        self._close_pipe()
        return True

    def submit(self, job: Job, on_done: Callable[[concurrent.futures.Future], None] | None = None) -> concurrent.futures.Future:
        """Queue ``job(client)`` for the bus thread; the Future holds its return value or exception.

        ``on_done(future)`` is attached before the job is queued, so it
        always runs on the bus thread once the job ends (never in the
        caller, even if the job is quicker than the caller).
        """
        future: concurrent.futures.Future = concurrent.futures.Future()
        if on_done is not None:
            future.add_done_callback(on_done)
        with self._lock:
            if self._stopping.is_set():
                raise BusUnavailable(self.fatal or f"the bus thread {self.name} is not running (stopping, or failed: see the log)")
            self._jobs.put((job, future))
            self._wake()
        return future

    def request(self, op: str, timeout_s: float | None = None, **args: Any) -> concurrent.futures.Future:
        """A broker request (:meth:`BusClient.request`) on the bus thread."""
        return self.submit(lambda client: client.request(op, timeout_s=timeout_s, **args))

    def send_command(self, target: str, name: str, args: dict | None = None, **options: Any) -> concurrent.futures.Future:
        """Queue a command (:meth:`BusClient.send_command`) on the bus thread."""
        return self.submit(lambda client: client.send_command(target, name, args, **options))

    def subscribe(self, prefixes: list[str], timeout_s: float | None = None) -> concurrent.futures.Future:
        """Add live topics (:meth:`BusClient.subscribe`); their messages reach ``on_envelope``."""
        return self.submit(lambda client: client.subscribe(prefixes, timeout_s=timeout_s))

    @property
    def alive(self) -> bool:
        """True from :meth:`start` until the thread has ended (stopped, or failed)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def finished(self) -> bool:
        """True once a started thread has ended."""
        return self._thread is not None and not self._thread.is_alive()

    @property
    def on_bus_thread(self) -> bool:
        """True when called from the bus thread (inside a job or a hook)."""
        return threading.current_thread() is self._thread

    def _wake(self) -> None:
        """Make the bus thread's poll return (called with ``_lock`` held)."""
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the thread wakes anyway

    def _close_pipe(self) -> None:
        with self._lock:
            if self._wake_r >= 0:
                os.close(self._wake_r)
                os.close(self._wake_w)
                self._wake_r = self._wake_w = -1

    # -- bus thread only ---------------------------------------------------------
    def _main(self) -> None:
        _name_os_thread(self.name)
        self._open()
        self._started.set()
        try:
            while not self._stopping.is_set():
                self._run_jobs()
                busy = self._pump() or (bool(self._held) and not self._holding())
                wanted = self.on_pass(self.client) if self.on_pass and self.client is not None else None
                self._sleep(0.0 if busy else wanted)
        except Exception as exc:
            log.exception("the bus thread %s failed", self.name)
            if self.on_failed is not None:
                self.on_failed(f"{type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._stopping.set()  # no new jobs: nobody would run them
            self._fail_pending()
            if self.client is not None:
                self.client.close()
            if self.on_stopped is not None:
                self.on_stopped()
            log.info("bus thread %s stopped", self.name)

    def _open(self) -> None:
        """Build the client (if given a factory) and connect; a failure is fatal, not raised."""
        try:
            if self.client is None:
                self.client = self._source()
            if self.client.state == CLOSED:
                self.client.connect()
        except (EmsError, OSError, zmq.ZMQError) as exc:
            self._set_fatal(f"cannot open the bus connection: {exc}")
        if self.tick_s is None:
            heartbeat_s = self.client.config.timing.heartbeat_s if self.client is not None else 1.0
            self.tick_s = min(1.0, heartbeat_s / 2)

    def _set_fatal(self, why: str) -> None:
        self.fatal = why
        log.error("%s", why)
        if self.on_failed is not None:
            self.on_failed(why)

    def _holding(self) -> bool:
        """True while queued jobs must wait for the broker's WELCOME."""
        return self.hold_jobs_until_ready and not self.fatal and (self.client is None or self.client.state != READY)

    def _run_jobs(self) -> None:
        while True:
            try:
                self._held.append(self._jobs.get_nowait())
            except queue.Empty:
                break
        if self._holding():
            return
        held, self._held = self._held, []
        for index, (job, future) in enumerate(held):
            if self._stopping.is_set():
                self._held = held[index:]
                return
            self._run_one(job, future)

    def _run_one(self, job: Job, future: concurrent.futures.Future) -> None:
        if not future.set_running_or_notify_cancel():
            return  # its caller gave up before it started
        try:
            if self.fatal:
                raise BusUnavailable(self.fatal)
            future.set_result(job(self.client))
        except AccessRevoked as exc:
            self._revoked(exc)
            future.set_exception(BusUnavailable(self.fatal))
        except Exception as exc:  # noqa: BLE001 - handed to whoever waits on the Future
            future.set_exception(exc)

    def _pump(self) -> bool:
        """Hand what already arrived to ``on_envelope`` (also runs the client's timers).

        True if a full batch was taken (more may be waiting: do not sleep).
        """
        if self.fatal or self.client is None:
            return False
        try:
            batch = self.client.drain(self.max_batch, 0.0)
        except AccessRevoked as exc:
            self._revoked(exc)
            return False
        if self.on_envelope is not None:
            for env in batch:
                self.on_envelope(env)
        return len(batch) >= self.max_batch

    def _revoked(self, exc: AccessRevoked) -> None:
        if not self.fatal:
            self._set_fatal(f"the broker revoked this bus key ({exc.detail or exc.message}); enrol a new one")

    def _sleep(self, wanted_s: float | None) -> None:
        timeout_s = self.tick_s if wanted_s is None else max(0.0, min(self.tick_s, wanted_s))
        poller = zmq.Poller()
        poller.register(self._wake_r, zmq.POLLIN)
        if self.client is not None and self.client.socket is not None and not self.fatal:
            poller.register(self.client.socket, zmq.POLLIN)
        events = dict(poller.poll(int(timeout_s * 1000)))
        if self._wake_r in events:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass

    def _fail_pending(self) -> None:
        stopping = BusUnavailable(self.fatal or f"the bus thread {self.name} is stopping")
        while True:
            try:
                self._held.append(self._jobs.get_nowait())
            except queue.Empty:
                break
        for _, future in self._held:
            if future.set_running_or_notify_cancel():
                future.set_exception(stopping)
        self._held = []


def _name_os_thread(name: str) -> None:
    """Show ``name`` for the calling thread in ps/top (Linux; elsewhere a no-op)."""
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: libc on Linux
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass
