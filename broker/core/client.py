"""The client library every EMS peer uses to talk to the broker.

:class:`BusClient` owns one CurveZMQ DEALER socket and is used from one
thread. It says HELLO, keeps heartbeats going, notices a silent or
restarted broker and reconnects with jittered backoff, re-subscribes after a
reconnect, and turns ERROR replies into exceptions for request/response
calls. Peers build their own loop around :meth:`BusClient.poll`, which
returns the application messages (events, commands, results...) and handles
the protocol ones itself (request / response is :mod:`broker.core.client_calls`)::

    client = BusClient(ClientConfig(server, server_key), keypair, hello={...})
    client.connect()
    client.wait_ready(10)
    while running:
        env = client.poll(0.5)
        if env is not None:
            handle(env)
"""
from __future__ import annotations

import collections
import logging
import math
import random
import time
from typing import Any, Callable

import zmq

from broker.core.client_calls import Calls, error_of
from broker.core.config import ClientConfig, RateLimit
from broker.core.envelope import (
    ERROR_TEXT,
    Envelope,
    ErrorCode,
    Kind,
    agent_topic,
    credit_body,
    decode,
    flow_terms,
    new_id,
    pack_body,
    pack_header,
)
from broker.core.errors import EmsError, ProtocolError, RemoteError, SendError, TimeoutError
from broker.core.keys import KeyPair
from broker.core.quota import METERED_KINDS, AgentQuota
from broker.core.vocabulary import pending_key_advice

log = logging.getLogger(__name__)

CONNECTING, PENDING, READY, REVOKED, CLOSED = "connecting", "pending", "ready", "revoked", "closed"

#: application messages kept while a request waits for its reply
MAX_BACKLOG = 100_000


class AccessRevoked(RemoteError):
    """The broker revoked or rejected this peer's key."""


#: an agent paces itself at this share of the rates its broker allows: the
#: broker's buckets see arrival times, which a busy network can bunch together
PACE_SHARE = 0.95


class RateLimited(SendError):
    """The broker asked this peer to stop publishing for a while (``RATE_LIMITED``)."""


class BusClient(Calls):
    """One peer's connection to the broker (single-threaded).

    The connection, heartbeats and protocol messages are here; request /
    response (:meth:`call`, :meth:`request`, :meth:`subscribe`,
    :meth:`send_command`, :meth:`wait_result`) comes from
    :class:`broker.core.client_calls.Calls`.
    """

    def __init__(
        self,
        config: ClientConfig,
        keypair: KeyPair,
        hello: dict | None = None,
        context: zmq.Context | None = None,
        clock: Callable[[], float] = time.monotonic,
        pace: bool = True,
    ):
        """``pace``: as an agent, keep to the rate limit its broker's WELCOME
        states (what would be dropped raises :class:`RateLimited` instead of
        being sent); False only to test the broker's side of the limit."""
        if not config.server_key:
            raise EmsError("the broker's public key is required (Curve is never optional)")
        self.config = config
        self.keypair = keypair
        self.hello_info = dict(hello or {})
        self.pace = pace
        self.clock = clock
        self._own_context = context is None
        self.ctx = context or zmq.Context()
        self.socket: zmq.Socket | None = None
        self.state = CLOSED
        self.client_id = ""
        self.role = ""
        self.boot_id = ""
        #: the broker's last WELCOME (what it offers, e.g. ``batch``: see broker.core.batches.batch_terms)
        self.welcome: dict = {}
        #: increments on every WELCOME: peers compare it to notice a reconnect
        self.generation = 0
        self.prefixes: list[str] = []
        self.dropped_backlog = 0
        #: the broker's RATE_LIMITED notices: publish nothing before this (clock time)
        self.throttled_until = 0.0
        self.rate_limited = 0
        #: an agent's own copy of its rate limit (from WELCOME): what would be dropped is not sent
        self._pace: AgentQuota | None = None
        #: messages refused here by that copy (RateLimited raised, nothing sent)
        self.paced = 0
        self._backlog: collections.deque[Envelope] = collections.deque()
        #: bytes taken from the broker since its last WELCOME, and how many of
        #: them the broker has been told (its per-peer byte budget; broker/server/flow.py)
        self.received_bytes = 0
        self._credited = 0
        #: report credit every this many bytes (the WELCOME's ``flow``; None: only in heartbeats)
        self._credit_every: int | None = None
        self._heartbeat_s = config.timing.heartbeat_s
        self._broker_timeout_s = config.timing.broker_timeout_s
        self._attempt = 0
        self._reconnect_at = 0.0
        self._last_heard = 0.0
        self._last_sent = 0.0
        self._last_hello = 0.0
        self._last_error: dict | None = None
        self._poller = zmq.Poller()

    # -- connection life -----------------------------------------------------
    def connect(self) -> None:
        """Open the socket and say HELLO (non-blocking; see :meth:`wait_ready`)."""
        self._open()

    def _open(self) -> None:
        c = self.config
        sock = self.ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.curve_serverkey = c.server_key.encode("ascii")
        sock.curve_publickey = self.keypair.public_bytes
        sock.curve_secretkey = self.keypair.secret_bytes
        sock.sndhwm = c.send_hwm
        sock.rcvhwm = c.receive_hwm
        sock.maxmsgsize = c.max_message_bytes
        sock.reconnect_ivl = int(c.timing.reconnect_min_s * 1000)
        sock.reconnect_ivl_max = int(c.timing.reconnect_max_s * 1000)
        sock.connect_timeout = int(c.timing.connect_timeout_s * 1000)
        # no ZMTP heartbeats: ours are messages, and libzmq 4.3.5 can abort with
        # ZMTP heartbeats on while the receive queue is full (zeromq/libzmq#3937)
        sock.connect(c.server)
        self.socket = sock
        self._poller = zmq.Poller()
        self._poller.register(sock, zmq.POLLIN)
        self.state = CONNECTING
        self._last_heard = self.clock()
        self._say_hello()

    def close(self, flush_s: float = 0.0) -> None:
        """Close the socket (and the context if this client made it).

        ``flush_s`` bounds a flush: 0 (the default) drops at once whatever
        :meth:`send` queued that has not left yet. With ``flush_s`` > 0, what
        was handed to :meth:`send` before this call keeps ``flush_s`` seconds
        to leave (libzmq's linger: it is still sent once a connection, and
        its Curve handshake, come up within that time). If this client made
        its context, ``close`` blocks until all of it has left or the time
        is up, whichever is first; with a shared context it returns at once
        and that context's I/O thread keeps trying for up to ``flush_s`` (its
        ``term()`` waits for it).

        What is guaranteed: ``close`` never waits longer than ``flush_s``
        (plus the OS's own time to close a socket). What is not: *delivery*.
        Having left means written to the TCP connection, not received by the
        broker, let alone routed or stored: a broker that dies at that moment
        loses it. Anything that must arrive is confirmed by an answer (a
        request's REPLY, a command's ``queued`` status, the store's ACK), not
        by closing. Messages sent on a connection this client already gave up
        (after a reconnect) are gone either way.
        """
        linger_ms = max(0, int(flush_s * 1000)) if flush_s and math.isfinite(flush_s) else 0
        if self.socket is not None:
            self.socket.close(linger=linger_ms)
            self.socket = None
        if self.state != REVOKED:
            self.state = CLOSED
        if self._own_context:
            self.ctx.term()  # with linger: returns when the queue has left or linger_ms has passed
            self._own_context = False

    def __enter__(self) -> "BusClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def ready(self) -> bool:
        return self.state == READY

    @property
    def throttled(self) -> bool:
        """True while the broker's last RATE_LIMITED notice says to wait."""
        return self.clock() < self.throttled_until

    def wait_ready(self, timeout_s: float) -> None:
        """Block until the broker has welcomed us; raise with the reason if not."""
        deadline = self.clock() + timeout_s
        while self.state != READY:
            remaining = deadline - self.clock()
            if remaining <= 0:
                if self.state == PENDING:
                    key = self.keypair.public[:8]
                    raise TimeoutError(f"key {key} is pending: {pending_key_advice(key)}")
                raise TimeoutError(f"no answer from the broker at {self.config.server} within {timeout_s:.0f} s: is it running, and is the server key right?")
            env = self._poll_once(min(remaining, 0.2))
            if env is not None:
                self._keep(env)

    def _schedule_reconnect(self, why: str) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None
        delay = min(self.config.timing.reconnect_max_s, self.config.timing.reconnect_min_s * (2 ** self._attempt))
        delay *= random.uniform(0.5, 1.0)
        self._attempt = min(self._attempt + 1, 16)
        self._reconnect_at = self.clock() + delay
        self.state = CONNECTING
        log.warning("lost the broker at %s (%s); reconnecting in %.2f s", self.config.server, why, delay)

    # -- sending ------------------------------------------------------------
    def send(
        self,
        kind: Kind,
        topic: str = "",
        data: Any = None,
        *,
        body: bytes | None = None,
        msg_id: str | None = None,
        corr: str | None = None,
        expires: float | None = None,
    ) -> str:
        """Send one message; returns its id. Raises SendError if it cannot be queued,
        :class:`RateLimited` (a SendError) if an agent's rate limit would drop it."""
        if self.socket is None:
            raise SendError("not connected to the broker (reconnecting)")
        msg_id = msg_id or new_id()
        frames = [pack_header(kind, topic, msg_id, corr, expires), body if body is not None else pack_body(data)]
        if self._pace is not None and kind in METERED_KINDS and not self._pace.admit(len(frames[0]) + len(frames[1]), self.clock()):
            self.paced += 1
            raise RateLimited("over this agent's rate limit: the broker would drop it; try again shortly")
        try:
            self.socket.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again as exc:
            raise SendError("send queue is full: the broker is not keeping up or unreachable") from exc
        self._last_sent = self.clock()
        return msg_id

    def publish(self, kind: Kind, name: str, data: Any = None, *, body: bytes | None = None, msg_id: str | None = None) -> str:
        """Publish under this peer's own namespace, e.g. ``event.<me>.<name>``.

        Raises :class:`RateLimited` (a SendError) while the broker's
        retry-after runs: what would be sent now would only be dropped.
        """
        if self.throttled:
            raise RateLimited(f"rate-limited by the broker for another {self.throttled_until - self.clock():.2f} s")
        return self.send(kind, agent_topic(kind, self.client_id, name), data, body=body, msg_id=msg_id)

    def _say_hello(self) -> None:
        self._last_hello = self.clock()
        try:
            self.send(Kind.HELLO, data=self.hello_info)
        except SendError:
            pass  # the next poll retries

    # -- receiving -------------------------------------------------------------
    def poll(self, timeout_s: float = 0.0) -> Envelope | None:
        """Return the next application message, or None after ``timeout_s``.

        Heartbeats, WELCOME and protocol errors are handled here. Raises
        :class:`AccessRevoked` if the broker revoked our key.
        """
        if self._backlog:
            return self._backlog.popleft()
        deadline = self.clock() + timeout_s
        while True:
            env = self._poll_once(max(0.0, deadline - self.clock()))
            if env is not None:
                return env
            if self.clock() >= deadline:
                return None

    def drain(self, max_messages: int, timeout_s: float = 0.0) -> list[Envelope]:
        """Up to ``max_messages`` application messages: wait at most
        ``timeout_s`` for the first, then take whatever is already queued."""
        out: list[Envelope] = []
        while self._backlog and len(out) < max_messages:
            out.append(self._backlog.popleft())
        if not out:
            first = self._poll_once(timeout_s)
            if first is not None:
                out.append(first)
        while len(out) < max_messages and self.socket is not None:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            env = self._incoming(frames)
            if env is not None:
                out.append(env)
        return out

    def _poll_once(self, timeout_s: float) -> Envelope | None:
        """Wait at most ``timeout_s`` for one frame set; run timers."""
        self._timers()
        if self.socket is None:
            wait = min(timeout_s, max(0.0, self._reconnect_at - self.clock()))
            if wait:
                time.sleep(wait)
            self._timers()
            return None
        if not self._poller.poll(int(timeout_s * 1000)):
            self._timers()
            return None
        try:
            frames = self.socket.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return None
        return self._incoming(frames)

    def _incoming(self, frames: list[bytes]) -> Envelope | None:
        self._last_heard = self.clock()
        try:
            env = decode(frames)
        except ProtocolError as exc:
            self.received_bytes += sum(map(len, frames))
            log.warning("dropped a malformed message from the broker: %s", exc)
            return None
        if env.kind is Kind.WELCOME:  # the broker counts from its WELCOME on: so do we
            self.received_bytes = self._credited = 0
        self.received_bytes += sum(map(len, frames))
        env = self._handle_protocol(env)
        if self._credit_every is not None and self.received_bytes - self._credited >= self._credit_every:
            self._heartbeat()
        return env

    def _input_waiting(self) -> bool:
        """Whether something from the broker sits unread in the socket.

        Silence is measured from what *arrived*, not from when the caller
        last polled: a caller busy for longer than the broker timeout finds
        the broker's heartbeats queued here, and the broker was alive all
        along. They are read (and ``_last_heard`` moved) by the poll that
        follows. Only once nothing is waiting does silence count as loss, so
        a broker that really died is noticed one timeout after the caller
        has read what it sent before dying.
        """
        try:
            return bool(self.socket.get(zmq.EVENTS) & zmq.POLLIN)
        except zmq.ZMQError:
            return False

    def _heartbeat(self) -> None:
        """A HEARTBEAT that tells the broker how much we have taken (our credit)."""
        try:
            self.send(Kind.HEARTBEAT, body=credit_body(self.received_bytes))
            self._credited = self.received_bytes
        except SendError:
            pass  # the next one says it

    def _timers(self) -> None:
        now = self.clock()
        if self.state == REVOKED:
            raise AccessRevoked(ErrorCode.REVOKED, ERROR_TEXT[ErrorCode.REVOKED], (self._last_error or {}).get("detail", ""))
        if self.socket is None:
            if self.state != CLOSED and now >= self._reconnect_at:
                self._open()
            return
        if now - self._last_heard > self._broker_timeout_s and not self._input_waiting():
            self._schedule_reconnect(f"silent for {now - self._last_heard:.1f} s")
            return
        if self.state != READY and now - self._last_hello >= max(self._heartbeat_s, 0.5):
            self._say_hello()
        elif self.state == READY and now - self._last_sent >= self._heartbeat_s:
            self._heartbeat()

    def _handle_protocol(self, env: Envelope) -> Envelope | None:
        kind = env.kind
        if kind is Kind.HEARTBEAT:
            return None
        if kind is Kind.WELCOME:
            self._on_welcome(env)
            return None
        if kind is Kind.ERROR:
            err = error_of(env)
            code = err.get("code")
            if code == ErrorCode.HELLO_REQUIRED:
                if self.state == READY:
                    log.info("broker asked for HELLO again (restarted?): re-introducing")
                self.state = CONNECTING
                self._say_hello()
                return env if env.corr else None
            if code == ErrorCode.NOT_ENROLLED:
                if self.state != PENDING:
                    log.warning("waiting for enrolment: %s (key %s)", err.get("detail", ""), self.keypair.public[:8])
                self.state = PENDING
                return None if env.corr is None else env
            if code == ErrorCode.RATE_LIMITED:
                self._on_rate_limited(err)
                return None
            if code == ErrorCode.REVOKED:
                log.error("the broker revoked this key (%s): stopping", err.get("detail", ""))
                self._last_error = err
                self.state = REVOKED
                if self.socket is not None:
                    self.socket.close(linger=0)
                    self.socket = None
                raise AccessRevoked(ErrorCode.REVOKED, ERROR_TEXT[ErrorCode.REVOKED], err.get("detail", ""))
        return env

    def _on_welcome(self, env: Envelope) -> None:
        info = env.data()
        if self.state == READY and isinstance(info, dict) and info.get("boot_id") == self.boot_id:
            # the answer to a HELLO repeated while the TCP connection was not up yet (they
            # queue and arrive together): same broker, same connection, nothing to redo
            return
        self.welcome = info if isinstance(info, dict) else {}
        self.client_id = info.get("client_id", "")
        self.role = info.get("role", "")
        self.boot_id = info.get("boot_id", "")
        limits = RateLimit.from_offer(self.welcome.get("rate_limit"), PACE_SHARE) if self.pace and self.role == "agent" else None
        self._pace = AgentQuota(limits, self.clock()) if limits is not None else None
        if self._pace is not None:
            self._pace.start_from(self.welcome["rate_limit"])
        self._credit_every = flow_terms(self.welcome)
        self._heartbeat_s = float(info.get("heartbeat_s", self._heartbeat_s))
        self._broker_timeout_s = max(self.config.timing.broker_timeout_s, float(info.get("peer_timeout_s", 0)))
        self.state = READY
        self._attempt = 0
        self.generation += 1
        if self.prefixes:
            self.send(Kind.SUBSCRIBE, data={"prefixes": self.prefixes})
        log.info("connected to %s as %s (%s)", self.config.server, self.client_id, self.role)

    def _on_rate_limited(self, err: dict) -> None:
        """Honour the broker's retry-after (bounded to 0.05-60 s whatever it says)."""
        wait = err.get("retry_after_s")
        if not isinstance(wait, (int, float)) or not math.isfinite(wait):
            wait = 1.0
        wait = min(60.0, max(0.05, float(wait)))
        self.throttled_until = max(self.throttled_until, self.clock() + wait)
        self.rate_limited += 1
        log.warning("the broker rate-limits this peer (%s): publishing paused for %.2f s", err.get("detail", ""), wait)

    def _keep(self, env: Envelope) -> None:
        if len(self._backlog) >= MAX_BACKLOG:
            self._backlog.popleft()
            self.dropped_backlog += 1
        self._backlog.append(env)
