"""The console's one connection to the bus: a QThread that owns a BusClient.

:class:`BusWorker` is the only code in the GUI process that touches a
socket. Its thread builds the :class:`~broker.client.BusClient` (with the
factory it is given), connects, subscribes to the live topics and loops:

* take the GUI's requests from a thread-safe queue and run them (history
  queries, broker requests, commands); answers go back as
  :attr:`BusWorker.replied` / :attr:`BusWorker.request_failed` with the
  request id :meth:`BusWorker.submit` returned;
* drain the bus and sort the messages into plain Python lists (presence,
  sysinfo, security, audit, command status/results...), emitted together
  at most every ``flush_s`` so that 500 agents reporting every second cost
  the GUI thread ten small updates a second, not five hundred.

Widgets never call the bus: they submit requests and receive signals
(queued across the thread boundary by Qt). :meth:`BusWorker.stop` ends the
loop, closes the client in its own thread and waits for the thread.

HOOK(live view): after :meth:`BusWorker.watch_frames`, the updates on
``frame.<agent>.live`` are applied to a canvas in this thread and a
thumbnail of the screen comes out as :attr:`BusWorker.frame_received`. The
console does not start live views yet (that is the agent's ``live.start``
command plus a viewer window, still to come), so nothing subscribes to
frames by default, and nothing fakes them.
"""
from __future__ import annotations

import itertools
import logging
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QThread, Signal
from PySide6.QtGui import QImage

from broker import keys, permissions
from broker.cli import profile as profiles
from broker.client import CLOSED, AccessRevoked, BusClient
from broker.config import ClientConfig, DataDir, resolve_data_dir
from broker.envelope import Envelope, Kind, new_id
from broker.errors import EmsError, ProtocolError, RemoteError
from broker.vocabulary import is_final
from gui import qtcompat  # noqa: F401  (guards the Qt binding before any Qt call)
from gui.thumbnails import COMMAND as THUMBNAIL_COMMAND
from gui.thumbnails import decode_result as decode_thumbnail

log = logging.getLogger(__name__)

#: what the console watches live (history comes from the store)
LIVE_PREFIXES = ("presence.", "event.", "command.", "security.", "audit.")

#: what the console keeps of a sysinfo report
SYSINFO_FIELDS = ("hostname", "logged_in_user", "os", "cpu_percent", "memory_percent", "disk_percent", "disk_percent_mount")

ClientFactory = Callable[[], BusClient]


def profile_client_factory(data_dir: str | None, server: str | None = None) -> ClientFactory:
    """A factory for the operator's BusClient, from the profile in ``data_dir``
    (what ``ems up`` writes; the same one ``ems status`` and ``ems tail`` use).

    The profile and key are read now, so a wrong data dir fails at once with
    a :class:`~broker.errors.ConfigError`; the client itself is made in the
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
    #: longest wait for bus traffic before the request queue is looked at again
    poll_s: float = 0.02
    #: live items are handed to the GUI at most this often
    flush_s: float = 0.1
    #: messages taken per pass (small: see gil_switch_interval_s)
    max_batch: int = 200
    request_timeout_s: float = 5.0
    #: how long stop() waits for the thread
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


@dataclass
class _Request:
    req_id: str
    op: str
    args: dict = field(default_factory=dict)
    #: run on the answer in the worker thread before it goes to the GUI (decoding images, writing a file)
    prepare: Callable[[Any], Any] | None = None


class BusWorker(QThread):
    """The bus thread. Create it, connect its signals, ``start()``; ``stop()`` at the end."""

    #: state (connecting, pending, ready, revoked, failed, closed), detail
    connection_changed = Signal(str, str)
    #: who we are on the bus: {client_id, role, server}, on every (re)connect
    welcomed = Signal(object)
    #: the broker's ``agents`` answer (list of dicts), on every (re)connect
    agents_loaded = Signal(object)
    #: the store's ``clients`` rows, on every (re)connect
    clients_loaded = Signal(object)
    #: lists of live items, oldest first
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
    #: HOOK(live view): client id, thumbnail QImage (decoded and scaled here)
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
        self.config = config or WorkerConfig()
        self._factory = client_factory
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._pending: dict[str, list] = {}
        self._last_flush = 0.0
        self._last_stats = 0.0
        self._state = ""
        self._open_commands: set[str] = set()
        self._canvases: dict = {}  # client id -> agent.screen.protocol.LiveCanvas (HOOK(live view))
        self._thumbnail_at: dict[str, float] = {}
        self._full_views: set[str] = set()  # clients with a live-view window open (full-size frames)
        self._saved_switch_interval: float | None = None
        self.stats: dict[str, int] = {"received": 0, "undecodable": 0, "flushes": 0, "requests": 0, "frames_dropped": 0}
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
        return self._put("request", dict(args, op=op), prepare)

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
        self._requests.put(_Request(cmd_id, "command", {"target": target, "name": name, "args": args or {}, "ttl_s": ttl_s}))
        return cmd_id

    def request_thumbnail(self, client_id: str, args: dict, ttl_s: float) -> str:
        """Ask ``client_id`` for a screen thumbnail (its ``thumbnail`` command); the answer comes,
        decoded, as ``thumbnail_received``. Counted per client in ``thumbnail_requests``."""
        cmd_id = new_id()
        self.thumbnail_requests[client_id] += 1
        self._requests.put(_Request(cmd_id, "thumbnail", {"target": client_id, "args": args, "ttl_s": ttl_s}))
        return cmd_id

    def watch_frames(self, client_id: str) -> str:
        """HOOK(live view): receive ``frame.<client_id>.`` frames (best effort, latest wins)."""
        return self._put("subscribe", {"prefixes": [f"frame.{client_id}."]})

    def unwatch_frames(self, client_id: str) -> str:
        self._full_views.discard(client_id)
        return self._put("unsubscribe", {"prefixes": [f"frame.{client_id}."]})

    def watch_live(self, client_id: str) -> str:
        """Like :meth:`watch_frames`, and every applied update also comes out full size as ``live_frame``."""
        self._full_views.add(client_id)  # a set add: atomic, read by the worker thread
        return self.watch_frames(client_id)

    def start(self, *args) -> None:
        """Start the thread (and shorten the GIL switch interval while it runs)."""
        if self.config.gil_switch_interval_s is not None and self._saved_switch_interval is None:
            self._saved_switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(self.config.gil_switch_interval_s)
        super().start(*args)

    def stop(self) -> bool:
        """End the loop, close the client (in its thread) and wait; True if the thread ended."""
        self._stopping.set()
        finished = True
        if self.isRunning():
            finished = self.wait(int(self.config.stop_timeout_s * 1000))
            if not finished:
                log.error("the bus thread did not stop within %.0f s", self.config.stop_timeout_s)
        if finished and self._saved_switch_interval is not None:
            sys.setswitchinterval(self._saved_switch_interval)
            self._saved_switch_interval = None
        return finished

    def _put(self, kind: str, args: dict, prepare: Callable[[Any], Any] | None = None) -> str:
        req_id = f"r{next(self._ids)}"
        self._requests.put(_Request(req_id, kind, args, prepare))
        return req_id

    # -- the thread --------------------------------------------------------------------
    def run(self) -> None:
        self._emit_state("connecting", "")
        try:
            client = self._factory()
        except (EmsError, OSError) as exc:
            self._emit_state("failed", str(exc))
            return
        try:
            if client.state == CLOSED:
                client.connect()
            self._loop(client)
        except AccessRevoked as exc:
            self._emit_state("revoked", str(exc))
        except Exception as exc:  # the thread's last line: report, never die silently
            log.exception("the bus thread failed")
            self._emit_state("failed", f"{type(exc).__name__}: {exc}")
        finally:
            self._flush(force=True)
            client.close()
            if self._state not in ("revoked", "failed"):
                self._emit_state("closed", "")

    def _loop(self, client: BusClient) -> None:
        generation = 0
        subscribed = False
        while not self._stopping.is_set():
            if client.ready and client.generation != generation:
                subscribed = subscribed or self._subscribe(client)  # the client re-subscribes by itself after a reconnect
                if subscribed:
                    generation = client.generation
                    self._emit_state("ready", f"{client.client_id} ({client.role}) on {client.config.server}")
                    self.identity = {"client_id": client.client_id, "role": client.role, "server": client.config.server}
                    self.welcomed.emit(dict(self.identity))
                    self._resync(client)
            elif not client.ready:
                self._emit_state(client.state, client.config.server)
            if client.ready:
                self._serve_requests(client)
            for env in client.drain(self.config.max_batch, self.config.poll_s):
                self._take(env)
            self._flush()
            self._report_stats(client)

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
        for cmd_id in list(self._open_commands):  # a result missed while we were away
            try:
                record = client.request("command.get", timeout_s=timeout, id=cmd_id)
            except EmsError:
                continue
            self._remember({"id": cmd_id, **{k: record.get(k) for k in ("target", "name", "status", "updated", "result")}},
                           "results" if is_final(record.get("status")) else "status")

    def _serve_requests(self, client: BusClient) -> None:
        while not self._stopping.is_set():
            try:
                req = self._requests.get_nowait()
            except queue.Empty:
                return
            self._flush(force=True)  # live items that came first reach the GUI first
            self.stats["requests"] += 1
            try:
                result = self._execute(client, req)
            except EmsError as exc:
                self.request_failed.emit(req.req_id, req.op, _describe(exc))
            except (TypeError, ValueError) as exc:  # arguments msgpack cannot carry: the GUI's bug, not the bus's
                log.exception("request %s (%s) could not be sent", req.req_id, req.op)
                self.request_failed.emit(req.req_id, req.op, f"{type(exc).__name__}: {exc}")
            else:
                if req.prepare is not None:
                    try:
                        result = req.prepare(result)
                    except (OSError, ValueError) as exc:
                        self.request_failed.emit(req.req_id, req.op, str(exc))
                        continue
                self.replied.emit(req.req_id, req.op, result)

    def _execute(self, client: BusClient, req: _Request) -> Any:
        timeout = self.config.request_timeout_s
        if req.op == "request":
            args = dict(req.args)
            op = args.pop("op")
            return client.request(op, timeout_s=timeout, **args)
        if req.op == "command":
            a = req.args
            status = client.send_command(a["target"], a["name"], a["args"], ttl_s=a["ttl_s"], timeout_s=timeout, cmd_id=req.req_id)
            self._open_commands.add(req.req_id)
            return status
        if req.op == "thumbnail":  # not followed after a reconnect: a picture is for now or never
            a = req.args
            return client.send_command(a["target"], THUMBNAIL_COMMAND, a["args"], ttl_s=a["ttl_s"], timeout_s=timeout, cmd_id=req.req_id)
        if req.op == "subscribe":
            before = list(client.prefixes)
            try:
                return client.subscribe(req.args["prefixes"], timeout_s=timeout)
            except EmsError:  # refused (viewers may not watch screens): not asked again after a reconnect
                client.prefixes = before
                raise
        if req.op == "unsubscribe":
            client.prefixes = [p for p in client.prefixes if p not in req.args["prefixes"]]
            for prefix in req.args["prefixes"]:
                self._canvases.pop(prefix.split(".")[1], None)
            return client.call(Kind.UNSUBSCRIBE, {"prefixes": req.args["prefixes"]}, timeout_s=timeout).data()["prefixes"]
        raise EmsError(f"unknown worker operation {req.op!r}")

    # -- sorting live messages ---------------------------------------------------------
    def _take(self, env: Envelope) -> None:
        self.stats["received"] += 1
        kind = env.kind
        if kind is Kind.FRAME:
            self._take_frame(env)
            return
        if kind not in (Kind.PRESENCE, Kind.EVENT, Kind.SECURITY, Kind.COMMAND_STATUS, Kind.RESULT):
            return  # late replies, acks...
        try:
            data = env.data()
        except ProtocolError as exc:
            self.stats["undecodable"] += 1
            log.debug("dropped an undecodable %s on %s: %s", kind.name, env.topic, exc)
            return
        if not isinstance(data, dict):
            self.stats["undecodable"] += 1
            return
        meta = {"msg_id": env.msg_id, "ts": env.header.ts}
        topic = env.topic
        if kind is Kind.PRESENCE:
            client_id = topic.split(".", 1)[1] if "." in topic else data.get("client_id", "")
            self._remember({**meta, "client_id": client_id, "state": data.get("state"), "reason": data.get("reason"),
                            "info": data.get("info") if isinstance(data.get("info"), dict) else {}}, "presence")
        elif kind is Kind.SECURITY:
            self._remember({**data, **meta, "sender": env.sender, "topic": topic}, "security")
        elif kind is Kind.COMMAND_STATUS:
            if data.get("name") != THUMBNAIL_COMMAND:  # tile thumbnails stay out of the command log
                self._remember(data, "status")
        elif kind is Kind.RESULT and data.get("name") == THUMBNAIL_COMMAND:
            self.thumbnail_received.emit(str(data.get("id")), str(data.get("target")), *decode_thumbnail(data))
        elif kind is Kind.RESULT:
            self._open_commands.discard(str(data.get("id")))
            self._remember(data, "results")
        elif topic.startswith("audit."):
            self._remember({**data, **meta}, "audit")
        elif topic.startswith("event."):
            self._take_event(env, data, meta)

    def _take_event(self, env: Envelope, data: dict, meta: dict) -> None:
        parts = env.topic.split(".", 2)
        if len(parts) < 3 or not env.sender:
            return
        name = parts[2]
        if name == "sysinfo":  # the few fields the console shows (a full report carries disks, networks...)
            self._remember({k: data.get(k) for k in SYSINFO_FIELDS} | meta | {"client_id": env.sender}, "sysinfo")
        elif name == "chat":
            self._remember({**data, **meta, "client_id": env.sender}, "chat")
        elif name == "capture":  # a notice only: the image stays out of the GUI thread
            image = data.get("image")
            self._remember({k: data.get(k) for k in ("width", "height", "format", "quality", "operator")}
                           | meta | {"client_id": env.sender, "size": len(image) if isinstance(image, (bytes, bytearray)) else None},
                           "captures")

    def _take_frame(self, env: Envelope) -> None:
        """HOOK(live view): a watched screen's updates, applied here, off the GUI thread.

        Bodies follow :mod:`agent.screen.protocol` (the module both ends
        share); each client's picture is kept in its ``LiveCanvas`` and a
        thumbnail of it goes to the GUI at most ``thumbnail_interval_s``
        apart. The full-size live-view window is still to come.
        """
        from agent.screen.protocol import (  # only when someone watches
            APPLIED,
            GAP,
            LiveCanvas,
            parse,
        )

        sender = env.sender
        if not env.topic.startswith(f"frame.{sender}."):
            return
        canvas = self._canvases.get(sender)
        if canvas is None:
            canvas = self._canvases[sender] = LiveCanvas()
        try:
            update = parse(env.body)
            outcome = canvas.apply(update)
        except ProtocolError as exc:
            self.stats["frames_dropped"] += 1
            log.debug("dropped a live-view update from %s: %s", sender, exc)
            return
        if sender in self._full_views:
            if outcome == GAP:
                self.live_gap.emit(sender)
            elif outcome == APPLIED and canvas.image is not None and update.part == update.parts - 1:
                rgb = canvas.image if canvas.image.mode == "RGB" else canvas.image.convert("RGB")
                full = QImage(rgb.tobytes(), rgb.width, rgb.height, 3 * rgb.width, QImage.Format.Format_RGB888).copy()
                self.live_frame.emit(sender, full, update.ts, canvas.updates)
        now = time.monotonic()
        if outcome != APPLIED or canvas.image is None or now - self._thumbnail_at.get(sender, 0.0) < self.config.thumbnail_interval_s:
            return
        self._thumbnail_at[sender] = now
        picture = canvas.image.copy()
        picture.thumbnail((self.config.thumbnail_width, self.config.thumbnail_width))
        rgb = picture.convert("RGB")
        image = QImage(rgb.tobytes(), rgb.width, rgb.height, 3 * rgb.width, QImage.Format.Format_RGB888).copy()
        self.frame_received.emit(sender, image)

    def _remember(self, item: dict, bucket: str) -> None:
        self._pending.setdefault(bucket, []).append(item)

    def _flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self._pending or (not force and now - self._last_flush < self.config.flush_s):
            return
        self._last_flush = now
        pending, self._pending = self._pending, {}
        self.stats["flushes"] += 1
        signals = {
            "presence": self.presence_changed,
            "sysinfo": self.sysinfo_received,
            "security": self.security_received,
            "audit": self.audit_received,
            "captures": self.captures_received,
            "status": self.command_status,
            "results": self.command_result,
            "chat": self.chat_received,
        }
        for bucket, items in pending.items():
            signals[bucket].emit(items)

    def _report_stats(self, client: BusClient) -> None:
        now = time.monotonic()
        if now - self._last_stats >= 1.0:
            self._last_stats = now
            self.stats_changed.emit(dict(self.stats, dropped_backlog=client.dropped_backlog))

    def _emit_state(self, state: str, detail: str) -> None:
        if state != self._state:
            self._state = state
            self.connection_changed.emit(state, detail)


def _describe(exc: EmsError) -> str:
    """An error as a line for the operator."""
    if isinstance(exc, RemoteError):
        return exc.detail or exc.message
    return str(exc)
