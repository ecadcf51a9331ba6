"""The alerts service: a bus service (its own process and key) that judges rules and keeps inboxes.

It subscribes to presence, events (sysinfo), security records and the audit trail,
feeds them to the :class:`~broker.alerts.engine.Engine` (through
:class:`~broker.alerts.signals.Signals`), and hands every resulting
:class:`~broker.alerts.notices.Notice` to each of its *sinks*: objects with
``notify(notice)`` and ``flush(now)``. The inbox is the first sink; deliveries
(e-mail, webhook) are added by whoever builds the service (``sinks``), and they
get the ``delivery`` section of DATA/alerts.json (``settings.delivery``) as it is.

It answers ``alerts.*`` and ``inbox.*`` (:mod:`broker.alerts.ops`), saying
``provides: ["alerts", "inbox"]`` in its HELLO. On start it asks the broker which
agents are online before judging anyone offline; open alerts are in alerts.db, so
a restart neither loses nor repeats them.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Callable, Protocol

from broker.alerts.book import AlertBook
from broker.alerts.engine import Engine
from broker.alerts.inbox import Inbox
from broker.alerts.notices import Notice
from broker.alerts.ops import AlertOps, Forbidden
from broker.alerts.settings import AlertSettings
from broker.alerts.signals import Signals
from broker.core.client import BusClient
from broker.core.envelope import Envelope, ErrorCode, Kind, error_body, pack_body
from broker.core.errors import EmsError, ProtocolError
from broker.core.stats import LogThrottle

log = logging.getLogger(__name__)

PROVIDES = ["alerts", "inbox"]
SUBSCRIPTIONS = ["presence.", "event.", "security.", "audit."]
DRAIN_CHUNK = 200


class Sink(Protocol):
    """Where notices go: the inbox, and each delivery."""

    def notify(self, notice: Notice) -> None: ...

    def flush(self, now: float) -> None: ...


class AlertService:
    """Run the alert engine and the inboxes on the bus (one thread)."""

    def __init__(self, client: BusClient, book: AlertBook, settings: AlertSettings | None = None,
                 sinks: list[Sink] | None = None, clock: Callable[[], float] = time.time, server_version: str = ""):
        self.bus, self.book = client, book
        self.settings = settings or AlertSettings()
        self.engine = Engine(book, clock, self.settings.minimum_version or server_version)
        self.inbox = Inbox(book.conn)
        self.sinks: list[Sink] = [self.inbox, *(sinks or [])]
        self.signals = Signals(self.engine, self.settings.offline_expected_s)
        self.ops = AlertOps(self)
        self.stats: dict[str, int] = defaultdict(int)
        self._throttle = LogThrottle()
        self._stopping = False
        self._next_tick = 0.0

    def stop(self) -> None:
        self._stopping = True

    def connect(self) -> None:
        """Join the bus, subscribe, and learn who is online before judging anyone offline."""
        self.bus.hello_info["provides"] = PROVIDES
        self.bus.connect()
        self.bus.wait_ready(60)
        self.bus.subscribe(SUBSCRIPTIONS)
        self.learn_presence()
        log.info("alerts service subscribed to %s; %d rule(s)", " ".join(SUBSCRIPTIONS), len(self.engine.rules))

    def learn_presence(self) -> None:
        """Ask the broker ``agents``: each one's online state (offline since its last sighting)."""
        try:
            agents = self.bus.request("agents")
        except EmsError as exc:
            log.warning("could not ask the broker who is online (%s): offline alerts wait for presence records", exc)
            return
        for agent in agents if type(agents) is list else []:
            if type(agent) is dict and type(agent.get("client_id")) is str:
                online = agent.get("state") == "online"
                since = agent.get("last_seen") if type(agent.get("last_seen")) in (int, float) and agent["last_seen"] else None
                self.emit(self.engine.presence(agent["client_id"], online, since=None if online else since))

    def run(self) -> None:
        """Connect, then :meth:`step` until :meth:`stop`; close."""
        self.connect()
        try:
            while not self._stopping:
                self.step()
        finally:
            self.bus.close(flush_s=self.bus.config.timing.close_flush_s)
            self.book.close()

    def step(self, wait_s: float = 0.2) -> None:
        """One pass: take what came, answer requests, and judge time once per ``tick_s``."""
        for env in self.bus.drain(DRAIN_CHUNK, wait_s):
            self.take(env)
        now = self.engine.clock()
        if now >= self._next_tick:
            self._next_tick = now + self.settings.tick_s
            self._guarded("ticking", lambda: self.emit(self.engine.tick()))
            for sink in self.sinks:
                self._guarded(f"flushing {type(sink).__name__}", lambda s=sink: s.flush(now))

    def take(self, env: Envelope) -> None:
        """One bus message: a request is answered; anything else may change alerts. Never raises."""
        if env.kind is Kind.REQUEST:
            self._answer(env)
            return
        try:
            data = env.data()
        except ProtocolError:
            self.stats["undecodable"] += 1
            return
        notices = self._guarded(f"taking {env.topic[:60]}", lambda: self.signals.take(env, data))
        if notices is None:
            self.stats["ignored"] += 1
        else:
            self.emit(notices)

    def emit(self, notices: list[Notice]) -> None:
        """Hand each notice to every sink; a failing sink is logged and the others still get it."""
        for notice in notices:
            self.stats["notices"] += 1
            log.info("notice %s %s: %s", notice.key, notice.state, notice.title)
            for sink in self.sinks:
                self._guarded(f"notifying {type(sink).__name__}", lambda s=sink: s.notify(notice))

    def record_in_audit_trail(self, requester: dict, action: str, detail: dict) -> None:
        """A person's action through this service, into the bus's audit trail (``audit.note``) beside every other
        operator action; alerts.db keeps it too, so a broker that cannot take it now loses nothing."""
        person = {"id": str(requester.get("client_id") or ""), "name": str(requester.get("name") or requester.get("client_id") or "?")}
        try:
            self.bus.request("audit.note", timeout_s=5, action=action, person=person, detail=detail)
        except EmsError as exc:
            log.warning("audit: %s by %s is in alerts.db only: the broker did not take it (%s)", action, person["name"], exc)

    def _guarded(self, what: str, call: Callable[[], object]):
        try:
            return call()
        except Exception:  # one bad record or sink must not stop the alerts
            self.stats["internal_errors"] += 1
            if self._throttle.allow(what.split(" ", 1)[0]):
                log.exception("internal error %s", what)
            return None

    def _forbidden(self, request: dict, why: str) -> None:
        """A refusal the broker let through: logged and published as a security event."""
        requester = request["requester"]
        self.stats["forbidden"] += 1
        log.warning("security: forbidden %s from %s: %s", request.get("op"), requester.get("client_id", "?"), why)
        try:
            self.bus.publish(Kind.SECURITY, "alerts", {"event": "forbidden", "detail": why, "origin": self.bus.client_id,
                                                       "client_id": str(requester.get("client_id", "?"))[:200],
                                                       "role": str(requester.get("role", ""))[:20], "ts": self.engine.clock()})
        except EmsError as exc:  # the log and the counter still say it
            log.debug("security event not published: %s", exc)

    def _answer(self, env: Envelope) -> None:
        """A forwarded request: a REPLY, or an ERROR with the code that fits (never INTERNAL for bad input)."""
        try:
            request = env.data()
            if type(request) is not dict or type(request.get("args") or {}) is not dict or type(request.get("requester")) is not dict:
                raise ValueError("a forwarded request is a map with op, args (a map) and the requester the broker names")
            body, kind = pack_body(self.ops.answer(request.get("op"), request.get("args") or {}, request["requester"])), Kind.REPLY
        except (Forbidden, PermissionError) as exc:  # the broker checks first: this is the second line
            self._forbidden(request, str(exc))
            body, kind = error_body(ErrorCode.FORBIDDEN, str(exc)), Kind.ERROR
        except (ValueError, TypeError, OverflowError, ProtocolError, EmsError) as exc:
            body, kind = error_body(ErrorCode.BAD_REQUEST, str(exc)[:500]), Kind.ERROR
        except Exception:
            self.stats["internal_errors"] += 1
            log.exception("internal error answering %s", env.msg_id)
            body, kind = error_body(ErrorCode.INTERNAL, "the alerts service failed to answer; see its log"), Kind.ERROR
        try:
            self.bus.send(kind, body=body, corr=env.msg_id)
        except EmsError as exc:
            log.debug("the reply to request %s was not sent: %s", env.msg_id, exc)
