"""The console's one connection to the bus: the shared bus worker core, seen through Qt.

:class:`BusWorker` is the only code in the GUI process that touches a
socket, and it does so through :class:`broker.core.bus_worker.BusWorker` (one
thread that owns the :class:`~broker.core.client.BusClient`, runs jobs, returns
futures and sleeps on the bus socket plus a wake pipe; no polling timer).
This adapter adds what the console needs:

* requests (history queries, broker requests, commands) are jobs on that
  thread; each job's future is turned into :attr:`BusWorker.replied` or
  :attr:`BusWorker.request_failed` with the request id
  :meth:`BusWorker.submit` returned (Qt queues the signal to the GUI thread);
* live messages are sorted and batched by :class:`gui.live_feed.LiveFeed`;
* on every (re)connect it subscribes to the live topics and resyncs
  (agents, stored clients, the fate of our open commands).

Widgets never call the bus: they submit requests and receive signals.
:meth:`BusWorker.stop` ends the thread, which closes the client itself.
"""
from __future__ import annotations

import concurrent.futures
import itertools
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from broker.core import bus_worker as core
from broker.core import keys, permissions
from broker.core import profile as profiles
from broker.core.client import REVOKED, BusClient
from broker.core.config import ClientConfig, DataDir, resolve_data_dir
from broker.core.envelope import Kind, new_id
from broker.core.errors import EmsError, RemoteError
from broker.core.vocabulary import is_final
from gui import qtcompat  # noqa: F401  (guards the Qt binding before any Qt call)
from gui.live_feed import LiveFeed
from gui.thumbnails import COMMAND as THUMBNAIL_COMMAND

log = logging.getLogger(__name__)

#: what the console watches live (history comes from the store)
LIVE_PREFIXES = ("presence.", "event.", "command.", "security.", "audit.")

ClientFactory = Callable[[], BusClient]


def profile_client_factory(data_dir: str | None, server: str | None = None) -> ClientFactory:
    """A factory for the operator's BusClient, from the profile in ``data_dir``
    (what ``ems up`` writes; the same one ``ems status`` and ``ems tail`` use).

    The profile and key are read now, so a wrong data dir fails at once with
    a :class:`~broker.core.errors.ConfigError`; the client itself is made in the
    worker thread that will own it, and connects there without blocking the
    GUI (a pending key shows as ``pending`` instead of failing).
    """
    data = DataDir(resolve_data_dir(data_dir))
    profile = profiles.load(data)
    keypair = keys.load(data.keys, profile.key_name)
    config = ClientConfig(server=server or profile.server, server_key=profile.server_key)
    return lambda: BusClient(config, keypair)


@dataclass
class WorkerConfig:
    #: live items are handed to the GUI at most this often
    flush_s: float = 0.1
    #: messages taken per pass (small: see gil_switch_interval_s)
    max_batch: int = 200
    request_timeout_s: float = 5.0
    #: how long start() waits for the thread to run, and stop() for it to end
    start_timeout_s: float = 5.0
    stop_timeout_s: float = 10.0
    prefixes: tuple[str, ...] = LIVE_PREFIXES
    #: live-view thumbnails are scaled to this width in the worker thread
    thumbnail_width: int = 320
    #: and sent to the GUI at most this often per client
    thumbnail_interval_s: float = 0.5
    #: rows of the store's client list fetched on (re)connect
    clients_limit: int = 1000
    #: Python's GIL switch interval while the worker runs (None: leave it). The
    #: binding lets go of the GIL on each call into Qt, so while this thread
    #: decodes a batch the GUI thread waits up to one interval per Qt call; the
    #: default 5 ms turned a 10 ms batch into a 100 ms freeze of the window
    #: (bench/gui.py: 0.5 ms halved the worst block, 0.2 ms halved it again).
    gil_switch_interval_s: float | None = 0.0002


class _Refused(Exception):
    """A request's ``prepare`` step refused the answer (its text goes to the operator)."""


class BusWorker(QObject):
    """The console's bus worker. Create it, connect its signals, ``start()``; ``stop()`` at the end."""

    #: state (connecting, pending, ready, revoked, failed, closed), detail
    connection_changed = Signal(str, str)
    #: who we are on the bus: {client_id, role, server}, on every (re)connect
    welcomed = Signal(object)
    #: the broker's ``agents`` answer (list of dicts), on every (re)connect
    agents_loaded = Signal(object)
    #: the store's ``clients`` rows, on every (re)connect
    clients_loaded = Signal(object)
    #: lists of live items, oldest first (see gui.live_feed)
    presence_changed = Signal(object)
    sysinfo_received = Signal(object)
    security_received = Signal(object)
    audit_received = Signal(object)
    captures_received = Signal(object)
    command_status = Signal(object)
    command_result = Signal(object)
    #: request id, operation, result
    replied = Signal(str, str, object)
    #: request id, operation, error text
    request_failed = Signal(str, str, str)
    #: a watched client's thumbnail: client id, QImage (decoded and scaled off the GUI thread)
    frame_received = Signal(str, QImage)
    #: tile thumbnails (gui.thumbnails): command id, client id, picture (null if none), why not
    thumbnail_received = Signal(str, str, QImage, str)
    #: live-view window: client id, full-size QImage, frame ts (agent's wall clock), updates applied
    live_frame = Signal(str, QImage, float, int)
    #: live-view window: client id; an update was lost (ask the agent for a full frame)
    live_gap = Signal(str)
    #: ``event.<agent>.chat`` records: {client_id, msg_id, ts, direction, status, body, message_id, ...}
    chat_received = Signal(object)
    #: counters, about once a second
    stats_changed = Signal(object)

    def __init__(self, client_factory: ClientFactory, config: WorkerConfig | None = None, parent=None):
        super().__init__(parent)
        self.setObjectName("ems-bus-worker")
        self.config = c = config or WorkerConfig()
        self.stats: dict[str, int] = {"received": 0, "undecodable": 0, "flushes": 0, "requests": 0, "frames_dropped": 0}
        self.feed = LiveFeed(self, c.flush_s, c.thumbnail_width, c.thumbnail_interval_s, self.stats)
        self.core = core.BusWorker(client_factory, on_envelope=self.feed.take, on_pass=self._on_pass,
                                   on_failed=self._on_failed, on_stopped=self._on_stopped, max_batch=c.max_batch,
                                   hold_jobs_until_ready=True, name="ems-bus-worker")
        self._ids = itertools.count(1)
        self._state = ""
        self._generation = 0
        self._subscribed = False
        self._last_stats = 0.0
        self._saved_switch_interval: float | None = None
        #: thumbnail requests per client id (asked from the GUI thread, see request_thumbnail)
        self.thumbnail_requests: Counter[str] = Counter()
        #: the last ``welcomed`` info ({client_id, role, server}; empty until connected), for windows opened later
        self.identity: dict[str, str] = {}

    # -- called from the GUI thread ------------------------------------------------
    def submit(self, op: str, *, prepare: Callable[[Any], Any] | None = None, **args: Any) -> str:
        """Ask the broker (``agents``, ``status``, ``store.query``...); the answer comes as ``replied``.

        ``prepare(answer)`` runs in the worker thread first and its result is
        what ``replied`` carries; an ``OSError`` or ``ValueError`` it raises
        comes out as ``request_failed`` with its message.
        """
        timeout = self.config.request_timeout_s
        return self._run(f"r{next(self._ids)}", "request", lambda client: client.request(op, timeout_s=timeout, **args), prepare)

    def query(self, kind: str, client_id: str | None = None, limit: int = 200, **filters: Any) -> str:
        """A history query of the store (``store.query``)."""
        args = {"kind": kind, "limit": limit, **{k: v for k, v in filters.items() if v is not None}}
        if client_id is not None:
            args["client_id"] = client_id
        return self.submit("store.query", **args)

    def send_command(self, target: str, name: str, args: dict | None = None, ttl_s: float | None = None,
                     cmd_id: str | None = None) -> str:
        """Queue a command; the request id is the command id (statuses carry it as ``id``)."""
        cmd_id = cmd_id or new_id()

        def job(client: BusClient) -> Any:
            status = client.send_command(target, name, args or {}, ttl_s=ttl_s, timeout_s=self.config.request_timeout_s, cmd_id=cmd_id,
                                         statuses=True)  # the command log shows each step, even when the live feed is dropped
            self.feed.open_commands.add(cmd_id)  # asked about again after a reconnect
            return status
        return self._run(cmd_id, "command", job)

    def request_thumbnail(self, client_id: str, args: dict, ttl_s: float) -> str:
        """Ask ``client_id`` for a screen thumbnail (its ``thumbnail`` command); the answer comes,
        decoded, as ``thumbnail_received``. Counted per client in ``thumbnail_requests``."""
        cmd_id = new_id()
        self.thumbnail_requests[client_id] += 1
        timeout = self.config.request_timeout_s  # not followed after a reconnect: a picture is for now or never
        return self._run(cmd_id, "thumbnail", lambda client: client.send_command(
            client_id, THUMBNAIL_COMMAND, args, ttl_s=ttl_s, timeout_s=timeout, cmd_id=cmd_id))

    def watch_frames(self, client_id: str) -> str:
        """Receive ``frame.<client_id>.`` frames (best effort, latest wins) as ``frame_received``."""
        return self._run(f"r{next(self._ids)}", "subscribe", partial(self._subscribe_frames, [f"frame.{client_id}."]))

    def unwatch_frames(self, client_id: str) -> str:
        self.feed.full_views.discard(client_id)
        return self._run(f"r{next(self._ids)}", "unsubscribe", partial(self._unsubscribe, client_id))

    def watch_live(self, client_id: str) -> str:
        """Like :meth:`watch_frames`, and every applied update also comes out full size as ``live_frame``."""
        self.feed.full_views.add(client_id)  # a set add: atomic, read by the worker thread
        return self.watch_frames(client_id)

    def start(self) -> None:
        """Start the thread (and shorten the GIL switch interval while it runs)."""
        if self.config.gil_switch_interval_s is not None and self._saved_switch_interval is None:
            self._saved_switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(self.config.gil_switch_interval_s)
        self._emit_state("connecting", "")
        self.core.start(self.config.start_timeout_s)

    def stop(self) -> bool:
        """End the thread (it closes the client) and wait; True if it ended."""
        finished = self.core.stop(self.config.stop_timeout_s)
        if not finished:
            log.error("the bus thread did not stop within %.0f s", self.config.stop_timeout_s)
        elif self._saved_switch_interval is not None:
            sys.setswitchinterval(self._saved_switch_interval)
            self._saved_switch_interval = None
        return finished

    def isRunning(self) -> bool:  # noqa: N802 - the QThread name the windows and tests know
        return self.core.alive

    def isFinished(self) -> bool:  # noqa: N802
        return self.core.finished

    def _run(self, req_id: str, op: str, job: Callable[[BusClient], Any], prepare: Callable[[Any], Any] | None = None) -> str:
        """Run ``job`` on the bus thread; its future comes back as ``replied`` or ``request_failed``."""
        def step(client: BusClient) -> Any:
            self.feed.flush(force=True)  # live items that came first reach the GUI first
            self.stats["requests"] += 1
            result = job(client)
            if prepare is None:
                return result
            try:
                return prepare(result)
            except (OSError, ValueError) as exc:
                raise _Refused(str(exc)) from exc
        try:
            self.core.submit(step, on_done=partial(self._answer, req_id, op))
        except core.BusUnavailable as exc:
            log.info("request %s (%s) not sent: %s", req_id, op, exc)
        return req_id

    def _answer(self, req_id: str, op: str, future: concurrent.futures.Future) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            self.replied.emit(req_id, op, future.result())
        elif isinstance(exc, EmsError):
            self.request_failed.emit(req_id, op, _describe(exc))
        elif isinstance(exc, _Refused):
            self.request_failed.emit(req_id, op, str(exc))
        else:  # arguments msgpack cannot carry, or a bug: the GUI's, not the bus's
            log.error("request %s (%s) failed", req_id, op, exc_info=exc)
            self.request_failed.emit(req_id, op, f"{type(exc).__name__}: {exc}")

    # -- on the bus thread ---------------------------------------------------------
    def _subscribe_frames(self, prefixes: list[str], client: BusClient) -> list[str]:
        before = list(client.prefixes)
        try:
            return client.subscribe(prefixes, timeout_s=self.config.request_timeout_s)
        except EmsError:  # refused (viewers may not watch screens): not asked again after a reconnect
            client.prefixes = before
            raise

    def _unsubscribe(self, client_id: str, client: BusClient) -> list[str]:
        prefixes = [f"frame.{client_id}."]
        client.prefixes = [p for p in client.prefixes if p not in prefixes]
        self.feed.forget_frames(client_id)
        return client.call(Kind.UNSUBSCRIBE, {"prefixes": prefixes}, timeout_s=self.config.request_timeout_s).data()["prefixes"]

    def _on_pass(self, client: BusClient) -> float | None:
        """After each pass: notice (re)connects, hand live items over, report counters."""
        if client.ready and client.generation != self._generation:
            self._subscribed = self._subscribed or self._subscribe(client)  # the client re-subscribes after a reconnect
            if self._subscribed:
                self._generation = client.generation
                self._emit_state("ready", f"{client.client_id} ({client.role}) on {client.config.server}")
                self.identity = {"client_id": client.client_id, "role": client.role, "server": client.config.server}
                self.welcomed.emit(dict(self.identity))
                self._resync(client)
        elif not client.ready:
            self._emit_state(client.state, client.config.server)
        self.feed.flush()
        self._report_stats(client)
        return self.feed.next_flush_s()

    def _subscribe(self, client: BusClient) -> bool:
        try:
            # only the streams this key's role may read: asking for others is refused as a whole
            client.subscribe(permissions.readable_prefixes(client.role, self.config.prefixes), timeout_s=self.config.request_timeout_s)
            return True
        except EmsError as exc:  # tried again on the next pass
            log.warning("could not subscribe to the live topics: %s", exc)
            self._emit_state("connecting", f"subscribing: {_describe(exc)}")
            return False

    def _resync(self, client: BusClient) -> None:
        """After (re)connecting: who exists, what the store knows, what became of our commands."""
        timeout = self.config.request_timeout_s
        try:
            self.agents_loaded.emit(client.request("agents", timeout_s=timeout))
        except EmsError as exc:
            log.warning("could not list the agents: %s", exc)
        try:
            self.clients_loaded.emit(client.request("store.query", timeout_s=timeout, kind="clients", limit=self.config.clients_limit))
        except EmsError as exc:  # no persister: live view still works
            log.info("no stored client facts: %s", exc)
            self.request_failed.emit("clients", "store.query", _describe(exc))
        for cmd_id in list(self.feed.open_commands):  # a result missed while we were away
            try:
                record = client.request("command.get", timeout_s=timeout, id=cmd_id)
            except EmsError:
                continue
            self.feed.remember({"id": cmd_id, **{k: record.get(k) for k in ("target", "name", "status", "updated", "result")}},
                               "results" if is_final(record.get("status")) else "status")

    def _report_stats(self, client: BusClient) -> None:
        now = time.monotonic()
        if now - self._last_stats >= 1.0:
            self._last_stats = now
            self.stats_changed.emit(dict(self.stats, dropped_backlog=client.dropped_backlog))

    def _on_failed(self, why: str) -> None:
        revoked = self.core.client is not None and self.core.client.state == REVOKED
        self._emit_state("revoked" if revoked else "failed", why)
        self.core.stop()  # from the bus thread: the loop ends after this pass

    def _on_stopped(self) -> None:
        self.feed.flush(force=True)
        if self._state not in ("revoked", "failed"):
            self._emit_state("closed", "")

    def _emit_state(self, state: str, detail: str) -> None:
        if state != self._state:
            self._state = state
            self.connection_changed.emit(state, detail)


def _describe(exc: EmsError) -> str:
    """An error as a line for the operator."""
    if isinstance(exc, RemoteError):
        return exc.detail or exc.message
    return str(exc)
