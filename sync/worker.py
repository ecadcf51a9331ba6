"""The sync worker: a bus service that keeps ``ems_web`` current with this server's store.

One thread, one loop (:meth:`SyncWorker.step`):

* it asks the persister for the next page of changes (``store.changes``)
  from the watermarks committed in MySQL, as a long poll: the persister
  answers as soon as it commits something, so a change reaches MySQL in the
  same second it was stored; each page is written with its watermarks in
  one MySQL transaction (:class:`~sync.snapshot_db.SnapshotDB`);
* it answers ``sync.now`` (start a full snapshot; the answer is
  immediate), ``sync.status`` (last syncs, rows, progress, the last
  error, the auto-sync setting) and ``sync.auto`` (turn the automatic full
  snapshots on or off and set their period), which the broker forwards to
  the service that provides "sync";
* it starts a full snapshot on its first run and, while auto-sync is on,
  every ``full_every_s``.

MySQL failures (unreachable, refused password, a connection dropped in the
middle of a page, a full disk) roll the page back and are retried with
back-off; the bus side keeps answering, and since the store is the source
and the watermarks only move with a commit, nothing is lost.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from broker.core.client import BusClient
from broker.core.envelope import Envelope, ErrorCode, Kind, error_body, new_id, pack_body
from broker.core.errors import EmsError
from broker.core.vocabulary import auto_sync_problem
from sync.mysql_url import MysqlError
from sync.snapshot_db import SnapshotDB

log = logging.getLogger(__name__)

SERVICE = "sync"


@dataclass
class SyncConfig:
    """Every default of the sync worker in one place."""

    #: a full snapshot this often (the seed's "auto-sync servers every N minutes")
    full_every_s: float = 300.0
    #: whether those periodic full snapshots run at all (``sync.auto`` changes both while it runs)
    auto: bool = True
    #: how long the persister may hold a long poll when nothing changed
    wait_s: float = 5.0
    #: a page of changes: at most this many rows and about this many bytes
    page_rows: int = 20_000
    page_bytes: int = 6 * 1024 * 1024
    #: back-off after a MySQL failure: doubles from min to max
    retry_min_s: float = 0.5
    retry_max_s: float = 30.0


class SyncWorker:
    """The sync service (see the module docstring). ``clock`` is monotonic time."""

    def __init__(self, bus: BusClient, db: SnapshotDB, config: SyncConfig | None = None,
                 clock: Callable[[], float] = time.monotonic, on_auto: Callable[[dict], None] | None = None):
        self.bus, self.db, self.config, self.clock = bus, db, config or SyncConfig(), clock
        #: called with ``{"enabled", "every_s"}`` after ``sync.auto`` changed them (``ems sync run`` saves them)
        self.on_auto = on_auto
        self._stopping = False
        #: the change request in flight: (msg id, watermarks it asked from, give-up time, bus generation)
        self.inflight: tuple[str, dict, float, int] | None = None
        self.retry_s = self.config.retry_min_s
        self.next_try = 0.0
        self.next_full = clock() + self.config.full_every_s  # the first full snapshot: when MySQL has none
        self.full_wanted = False
        self.progress = {"done": 0, "total": 0}
        self.status = {"last_error": None, "error_since": None, "last_page": None, "pages": 0, "rows": 0, "failures": 0}

    def stop(self) -> None:
        self._stopping = True

    def run(self) -> None:
        """Join the bus, then :meth:`step` until :meth:`stop`."""
        self.bus.hello_info["provides"] = [SERVICE]
        self.bus.connect()
        self.bus.wait_ready(60)
        try:
            while not self._stopping:
                self.step()
        finally:
            self.db.close()
            self.bus.close(flush_s=0.5)

    def step(self, poll_s: float = 0.2) -> None:
        """One pass: reconnect MySQL when due, start a full snapshot when due, ask for changes, take one message."""
        now = self.clock()
        if not self.db.connected and now >= self.next_try:
            self._open_db(now)
        if self.db.connected:
            self._maybe_start_full(now)
            if self.inflight is None or now >= self.inflight[2] or self.inflight[3] != self.bus.generation:
                self._ask()
        env = self.bus.poll(poll_s)
        if env is not None:
            self._take(env)

    # -- MySQL -------------------------------------------------------------------------
    def _open_db(self, now: float) -> None:
        try:
            self.db.open()
        except MysqlError as exc:
            self._failed(exc, now)
            return
        self.inflight = None
        if self.db.never_synced:
            self.full_wanted = True

    def _failed(self, exc: MysqlError, now: float) -> None:
        """A MySQL failure: say it (once per cause), back off, ask again from the committed state later."""
        if self.status["last_error"] != str(exc):
            log.error("sync paused: %s (retrying with back-off; the bus side is unaffected, nothing is lost)", exc)
        self.status["last_error"] = str(exc)
        self.status["failures"] += 1
        self.status["error_since"] = self.status["error_since"] or time.time()
        self.db.close()
        self.inflight = None
        self.next_try = now + self.retry_s
        self.retry_s = min(self.retry_s * 2, self.config.retry_max_s)

    def _maybe_start_full(self, now: float) -> None:
        if not self.db.full_running and (self.full_wanted or (self.config.auto and now >= self.next_full)):
            try:
                gen = self.db.start_full()
            except MysqlError as exc:
                self._failed(exc, now)
                return
            log.info("full snapshot %d started", gen)
            self.full_wanted, self.inflight = False, None
            self.progress = {"done": 0, "total": 0}
        if self.next_full <= now:
            self.next_full = now + self.config.full_every_s

    # -- the change feed ---------------------------------------------------------------
    def _ask(self, ahead: dict | None = None) -> None:
        """Request the page after the committed watermarks, or after ``ahead`` (the page about to be
        written: the next one is read while this one is written; tombstones are only forgotten up to
        what is committed)."""
        acked = self.db.watermarks()
        marks = {**acked, **(ahead or {})}
        args = {"since": marks, "acked": acked, "max_rows": self.config.page_rows, "max_bytes": self.config.page_bytes,
                "wait_s": 0.0 if self.db.full_running or ahead else self.config.wait_s,
                "count": self.db.full_running and self.progress["total"] == 0}
        try:
            msg_id = self.bus.send(Kind.REQUEST, data={"op": "store.changes", "args": args}, msg_id=new_id())
        except EmsError as exc:
            log.debug("change request not sent now: %s", exc)
            self.inflight = None
            return
        give_up = self.clock() + args["wait_s"] + self.bus.config.timing.request_timeout_s
        self.inflight = (msg_id, marks, give_up, self.bus.generation)

    def _take(self, env: Envelope) -> None:
        if env.kind is Kind.REQUEST:
            self._answer(env)
        elif env.kind in (Kind.REPLY, Kind.ERROR) and self.inflight and env.corr == self.inflight[0]:
            basis, self.inflight = self.inflight[1], None
            if env.kind is Kind.ERROR:
                log.warning("store.changes refused: %s", _error_text(env))
                # ask again after a pause (the persister is away or busy)
                self.inflight = ("", basis, self.clock() + self.config.retry_min_s, self.bus.generation)
                return
            if basis == self.db.watermarks() and self.db.connected:  # else a full snapshot began meanwhile: ask again
                page = env.data()
                if page.get("more"):
                    self._ask(ahead={t: part["upto"] for t, part in page["tables"].items()})
                self._apply(page)

    def _apply(self, page: dict) -> None:
        head = page.get("head") or {}
        if any(mark > head.get(t, mark) for t, mark in self.db.watermarks().items()):
            log.warning("this store is newer than what MySQL was synced from (watermarks past its changes): full snapshot")
            self.full_wanted, self.inflight = True, None
            return
        total = page.get("total")
        if total is not None:
            self.progress = {"done": 0, "total": sum(total.values())}
        try:
            written = self.db.apply(page)
        except MysqlError as exc:
            self._failed(exc, self.clock())
            return
        if self.status["last_error"]:  # the back-off ends with a page written, not with a connection made
            log.warning("sync resumed: MySQL at %s takes pages again", self.db.url.where())
        self.status["last_error"] = self.status["error_since"] = None
        self.retry_s = self.config.retry_min_s
        self.status["pages"] += 1
        self.status["rows"] += written
        self.status["last_page"] = time.time()
        if self.db.full_running or total is not None:
            self.progress["done"] += written
        if not self.db.full_running:
            self.progress["done"] = max(self.progress["done"], self.progress["total"])

    # -- sync.now / sync.status ----------------------------------------------------------
    def _answer(self, env: Envelope) -> None:
        try:
            request = env.data()
            op = request.get("op") if isinstance(request, dict) else None
            if op == "sync.now":
                self.full_wanted = not self.db.full_running
                log.info("full snapshot asked for by %s", _asker(request))
                result = {"started": True, "already_running": self.db.full_running}
            elif op == "sync.status":
                result = self.snapshot_status()
            elif op == "sync.auto":
                result = self.set_auto(request.get("args") or {})
                log.info("auto-sync set to %s by %s", result, _asker(request))
            else:
                raise ValueError(f"unknown sync operation {op!r}")
            kind, body = Kind.REPLY, pack_body(result)
        except (ValueError, EmsError) as exc:
            kind, body = Kind.ERROR, error_body(ErrorCode.BAD_REQUEST, str(exc)[:300])
        try:
            self.bus.send(kind, body=body, corr=env.msg_id)
        except EmsError as exc:
            log.debug("sync answer not sent: %s", exc)

    def set_auto(self, args: dict) -> dict:
        """``sync.auto`` ``{"enabled", "every_s", "reason", "operator"}``: apply the setting now (the next
        periodic snapshot is one new period away); answers :meth:`auto_status`. ValueError if it is not valid."""
        setting = {name: args.get(name) for name in ("enabled", "every_s")}
        problem = auto_sync_problem(setting)
        if problem:
            raise ValueError(problem)
        self.config.auto, self.config.full_every_s = setting["enabled"], float(setting["every_s"])
        self.next_full = self.clock() + self.config.full_every_s
        if self.on_auto is not None:
            self.on_auto({"enabled": self.config.auto, "every_s": self.config.full_every_s})
        return self.auto_status()

    def auto_status(self) -> dict:
        """The automatic full snapshots as they run now: on or off, the period, seconds to the next one."""
        next_in_s = max(0.0, self.next_full - self.clock()) if self.config.auto else None
        return {"enabled": self.config.auto, "every_s": self.config.full_every_s, "next_in_s": next_in_s}

    def snapshot_status(self) -> dict:
        """What ``sync.status`` answers."""
        states = self.db.state.values()
        fulls = [s.last_full_sync for s in states if s.last_full_sync]
        return {
            "server_id": self.db.server_id,
            "mysql": self.db.url.where(),
            "database": self.db.url.database,
            "connected": self.db.connected,
            "last_full_sync": min(fulls) if len(fulls) == len(self.db.state) and fulls else None,
            "last_sync": self.status["last_page"],
            "rows_synced": sum(s.rows_synced for s in states),
            "full_running": self.db.full_running or self.full_wanted,
            "progress": dict(self.progress),
            "error": self.status["last_error"],
            "error_since": self.status["error_since"],
            "watermarks": self.db.watermarks(),
            "auto": self.auto_status(),
        }


def _asker(request: dict) -> str:
    """Who asked (the requester's key, and the person a vouching service names), for the log."""
    requester, args = request.get("requester") or {}, request.get("args") or {}
    person = args.get("operator") if isinstance(args, dict) else None
    name = person.get("name") if isinstance(person, dict) else None
    reason = args.get("reason") if isinstance(args, dict) else None
    return f"{requester.get('client_id', '?')}" + (f" for {name}" if name else "") + (f" ({reason})" if reason else "")


def _error_text(env: Envelope) -> str:
    try:
        data = env.data()
        return f"{data.get('error')}: {data.get('detail')}" if isinstance(data, dict) else str(data)
    except EmsError:
        return "undecodable error"
