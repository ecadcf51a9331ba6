"""The EMS broker: one ROUTER socket, one thread, one poller.

The loop (``run``) waits on the ROUTER, the ZAP socket, the ROUTER's
monitor and a control pipe; the poll timeout is the heartbeat tick. Each
inbound message is checked (frames, authenticated key, header), then looked
up in the dispatch table by (role, kind); anything else is refused with an
error code, counted, and logged as a security event. What agents publish
(events, logs, security events, frames, batches) passes the agent's rate
limit (``broker/core/quota.py``) before anything is routed. Nothing a peer sends can
raise out of the loop.

``Broker`` is the loop and its wiring; the work is done by collaborators it
owns, each in its own module:

- ``peer_table`` (:mod:`broker.server.peers`): connections, HELLO and enrolment,
  greeting, presence, dropping, key changes applied to live peers;
- ``fanout`` (:mod:`broker.server.fanout`): subscriptions and fan-out of what
  agents publish, within each receiver's byte budget (:mod:`broker.server.flow`);
- ``command_router`` (:mod:`broker.server.command_router`): commands, their status
  and results;
- ``requests`` (:mod:`broker.server.requests`): REQUEST checks and routing; the
  broker's own ops are one table in :mod:`broker.server.request_ops`;
- ``records`` (:mod:`broker.server.own_records`): the broker's own security,
  audit and presence records;
- ``operations`` (:mod:`broker.server.operations`): what acts on many agents
  (targets, templates, bulk runs, approvals, playbooks, schedules, broadcasts;
  the first four named here too); ``group`` (:mod:`broker.server.group_commit`).

What they all use stays here: ``send``, ``send_error``, ``reply``,
``refuse`` and ``read_body``.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

import zmq
from zmq.utils.monitor import recv_monitor_message

from broker.core import keys as keyfiles
from broker.server import enrolment, zap
from broker.core import permissions
from broker.server.command_queue import CommandQueue
from broker.server.command_router import CommandRouter
from broker.core.config import BrokerConfig
from broker.core.envelope import (ErrorCode, Header, Kind, credit_of, decode_header, error_body, new_id, pack_body,
                                  pack_header, unpack_body)
from broker.core.errors import ProtocolError
from broker.server.fanout import Fanout
from broker.server.group_commit import GroupCommit
from broker.server.flow import FlowControl
from broker.server.journal import Journal
from broker.server.own_records import OwnRecords
from broker.server.peers import Peer, PeerTable
from broker.core.quota import METERED_KINDS, Quotas
from broker.server.registry import REJECTED, REVOKED, KeyRegistry
from broker.server.requests import Requests
from broker.server.operations import FleetOperations
from broker.core.stats import Counters, LogThrottle

log = logging.getLogger(__name__)

_EMPTY = b""
_NOBLOCK = int(zmq.NOBLOCK)
_MORE_NOBLOCK = int(zmq.SNDMORE) | _NOBLOCK
#: seconds between WAL checkpoints of broker.db (kept off the message path)
CHECKPOINT_INTERVAL_S = 10.0


class Broker:
    """Route EMS envelopes between authenticated peers.

    ``clock`` is monotonic time for liveness (injectable in tests);
    wall-clock time is only used for timestamps and command expiry.
    """

    def __init__(self, config: BrokerConfig, context: zmq.Context | None = None, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time):
        self.config = config
        self.clock = clock
        self.data = config.data_dir.ensure()
        self.keypair = keyfiles.load_or_create(self.data.keys, "broker")
        self.registry = KeyRegistry(self.data.broker_db, clock=wall_clock)
        self.counters = Counters()
        self.group = GroupCommit(self.data.broker_db, self.counters, enabled=config.group_commit)  # one commit per pass
        self.commands = CommandQueue(self.data.broker_db, group=self.group)
        self.journal = Journal(self.data.broker_db, presence_kind=int(Kind.PRESENCE), group=self.group)
        self.boot_id = new_id()
        self.started = time.time()
        self._own_context = context is None
        self.ctx = context or zmq.Context()
        self.endpoint = ""
        self._throttle = LogThrottle()
        #: per-agent token buckets on what agents publish (None: no limit configured)
        self.quotas = Quotas(config.rate_limit) if config.rate_limit.enabled else None
        #: per-connection byte budgets on best-effort traffic (broker/server/flow.py)
        self.flow = FlowControl(config.peer_budget_bytes, config.credit_every_bytes)
        self._budgets = self.flow.peers
        #: routing ids a send found gone: forgotten once the router holds nothing more
        #: from them (what a peer sent just before it left is still handled as its own)
        self._unreachable: set[bytes] = set()
        self._wire(wall_clock)
        self._ready = threading.Event()
        self._stopping = False
        self._wake_endpoint = f"inproc://ems-broker-wake-{id(self)}"
        self._dispatch = self._build_dispatch()

    def _wire(self, wall_clock: Callable[[], float]) -> None:
        """Make the collaborators; name the bookkeeping they share."""
        self.peer_table = PeerTable(self)
        self.fanout = Fanout(self)
        self.records = OwnRecords(self)
        self.command_router = CommandRouter(self)
        ops = self.operations = FleetOperations(self, wall_clock)
        self.targets, self.template_book, self.bulk, self.approvals = ops.targets, ops.templates, ops.bulk, ops.approvals
        self.requests = Requests(self)
        table = self.peer_table
        self.peers, self.conns, self.subscribers = table.peers, table.conns, table.subscribers
        self.providers, self.online = table.providers, table.online
        self.forwarded = self.requests.forwarded

    # -- life cycle ----------------------------------------------------------
    def _open_sockets(self) -> None:
        c = self.config
        self.zap_socket = self.ctx.socket(zmq.REP)
        self.zap_socket.linger = 0
        self.zap_socket.bind(zap.ZAP_ENDPOINT)

        router = self.ctx.socket(zmq.ROUTER)
        router.linger = 0
        router.curve_server = True
        router.curve_secretkey = self.keypair.secret_bytes
        router.curve_publickey = self.keypair.public_bytes
        router.zap_domain = b"ems"
        router.router_mandatory = 1
        router.sndhwm = c.send_hwm
        router.rcvhwm = c.receive_hwm
        router.maxmsgsize = c.max_message_bytes
        router.backlog = c.listen_backlog
        router.handshake_ivl = int(c.handshake_timeout_s * 1000)
        # no ZMTP heartbeats: EMS heartbeats are messages (and libzmq 4.3.5 can
        # abort with ZMTP heartbeats on a full receive queue, zeromq/libzmq#3937)
        self.monitor = router.get_monitor_socket(
            zmq.EVENT_ACCEPTED
            | zmq.EVENT_DISCONNECTED
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH
        )
        if c.bind.endswith(":0"):
            router.bind(c.bind[:-2] + ":*")
        else:
            router.bind(c.bind)
        self.endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.router = router
        self.wake = self.ctx.socket(zmq.PULL)
        self.wake.linger = 0
        self.wake.bind(self._wake_endpoint)
        self.poller = zmq.Poller()
        for sock in (self.router, self.zap_socket, self.monitor, self.wake):
            self.poller.register(sock, zmq.POLLIN)
        tmp = self.data.endpoint_file.with_suffix(".tmp")
        tmp.write_text(self.endpoint + "\n")
        os.replace(tmp, self.data.endpoint_file)

    def run(self) -> None:
        """Serve until :meth:`stop`. Opens sockets, loops, closes them."""
        self._open_sockets()
        self.operations.restore()  # bulk runs the last broker left unfinished go on (their agents are not back yet)
        log.info("broker %s listening on %s (public key %s)", self.boot_id, self.endpoint, self.keypair.public)
        log.info("per-agent rate limit: %s", self.config.rate_limit.describe())
        self._ready.set()
        tick_s = min(self.config.timing.heartbeat_s, 1.0) / 2
        next_tick = self.clock()
        self._next_heartbeat = next_tick
        self._next_checkpoint = next_tick + CHECKPOINT_INTERVAL_S
        try:
            while not self._stopping:
                timeout_ms = max(0, int((next_tick - self.clock()) * 1000))
                ready = dict(self.poller.poll(timeout_ms))
                if self.router in ready:
                    self._drain_router()
                if self.zap_socket in ready:
                    self._answer_zap()
                if self.monitor in ready:
                    self._read_monitor()
                if self.wake in ready:
                    self.wake.recv()
                now = self.clock()
                if now >= next_tick:
                    self._tick(now)
                    next_tick = now + tick_s
                self.group.commit()  # what this pass wrote, then what it said (broker/server/group_commit.py)
        finally:
            self._close()

    def stop(self) -> None:
        """Ask the loop to finish; safe from any thread or a signal handler."""
        self._stopping = True
        try:
            poke = self.ctx.socket(zmq.PUSH)
        except zmq.ZMQError:
            return  # context already closed: the loop has ended
        try:
            poke.linger = 0
            poke.connect(self._wake_endpoint)
            poke.send(b"", zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # loop not running: the flag is enough
        finally:
            poke.close()

    def wait_ready(self, timeout_s: float = 10.0) -> bool:
        return self._ready.wait(timeout_s)

    def _close(self) -> None:
        self.group.close()
        for sock in (self.router, self.monitor, self.zap_socket, self.wake):
            sock.close(linger=0)
        self.operations.close()
        for store in (self.registry, self.commands, self.journal):
            store.close()
        if self._own_context:
            self.ctx.term()
        log.info("broker stopped")

    # -- inbound ---------------------------------------------------------------
    def _drain_router(self) -> None:
        # plain recv with int flags: pyzmq's recv_multipart costs ~35 % more CPU here
        recv = self.router.recv
        for _ in range(self.config.batch):
            try:
                frames = [recv(_NOBLOCK, copy=False)]
            except zmq.Again:
                self._forget_unreachable()
                return
            while frames[-1].more:  # the rest of a message arrives with its first frame
                frames.append(recv(0, copy=False))
            try:
                self._handle(frames)
            except Exception:  # a bug must not stop the bus: counted, logged (throttled), answered
                self.counters["internal_errors"] += 1
                if self._throttle.allow("internal_error"):
                    log.exception("internal error handling a message")
                try:
                    self.send_error(frames[0].bytes, None, ErrorCode.INTERNAL, "")
                except zmq.ZMQError:
                    pass

    def _forget_unreachable(self) -> None:
        """Drop the peers a send found gone (their connection closed)."""
        while self._unreachable:
            self.peer_table.forget(self._unreachable.pop())

    def _handle(self, frames: list[zmq.Frame]) -> None:
        rid = frames[0].bytes
        try:
            key = frames[1].get("User-Id")
        except (zmq.ZMQError, IndexError):  # no ZAP identity: cannot happen on a Curve socket
            self.counters["dropped_unauthenticated"] += 1
            return
        peer = self.peers.get(rid)
        if peer is None or peer.key != key:
            peer = self.peer_table.admit(rid, key, frames[1])
        if len(frames) != 3:
            self.counters["bad_frames"] += 1
            self.refuse(peer, None, ErrorCode.BAD_FRAMES, f"{len(frames) - 1} frames, expected 2")
            return
        try:
            header = decode_header(frames[1].bytes)
        except ProtocolError as exc:
            self.counters[f"bad_{exc.code.name.lower()}"] += 1
            self.refuse(peer, None, exc.code, exc.detail)
            return
        peer.last_seen = self.clock()
        handler = self._dispatch.get((peer.role, header.kind))
        if handler is None:
            self._refuse_role(peer, header)
            return
        if not peer.hello and header.kind is not Kind.HELLO:
            self.counters["hello_required"] += 1
            self.send_error(peer.rid, header, ErrorCode.HELLO_REQUIRED, "")
            return
        handler(peer, header, frames)

    def _refuse_role(self, peer: Peer, header: Header) -> None:
        if peer.role == permissions.PENDING_ROLE:
            self.counters["refused_pending"] += 1
            # unrecorded keys cost nothing to make: one throttle per address, not per key
            self.records.security(peer, "pending_key_refused", f"{header.kind.name} from a key that is not accepted yet",
                                  throttle=None if peer.recorded else ("address", peer.address))
            self.send_error(peer.rid, header, ErrorCode.NOT_ENROLLED, "")
        elif peer.role in (REJECTED, REVOKED):
            self.counters["refused_revoked"] += 1
            self.records.security(peer, "revoked_key_refused", f"{header.kind.name} from a {peer.role} key")
            self.send_error(peer.rid, header, ErrorCode.REVOKED, "")
        else:
            self.counters["refused_role"] += 1
            why = permissions.refusal(peer.role, f"send {header.kind.name}")
            self.records.security(peer, "forbidden", why)
            self.send_error(peer.rid, header, ErrorCode.FORBIDDEN, why)

    def refuse(self, peer: Peer, header: Header | None, code: ErrorCode, detail: str) -> None:
        """Answer a malformed message with ``code``; a (throttled) security event."""
        self.records.security(peer, "malformed", f"{code.name}: {detail}")
        self.send_error(peer.rid, header, code, detail)

    # -- outbound --------------------------------------------------------------
    def send(self, rid: bytes, sender: bytes, header, body) -> bool:
        """Send to one peer without blocking; count and report a drop.

        With ROUTER_MANDATORY a full queue (EAGAIN) or a vanished peer
        (EHOSTUNREACH) fails on the routing-id frame, before anything of
        the message is queued.
        """
        if self.group.holding:  # a write of this pass is not committed yet: this goes after it
            return self.group.hold(self.send, rid, sender, header, body) or True
        send = self.router.send
        try:
            send(rid, _MORE_NOBLOCK)
        except zmq.Again:
            self.counters["dropped_hwm"] += 1
            return False
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self.counters["dropped_unroutable"] += 1
            self._unreachable.add(rid)
            return False
        send(sender, _MORE_NOBLOCK)
        send(header, _MORE_NOBLOCK)
        send(body, _NOBLOCK)
        budget = self._budgets.get(rid)  # bytes in flight to this peer, for its byte budget
        if budget is not None:
            budget.sent += len(sender) + len(header) + len(body)  # envelope.message_bytes, inlined: hot path
        return True

    def send_error(self, rid: bytes, header: Header | None, code: ErrorCode, detail: str, retry_after_s: float | None = None) -> None:
        """ERROR ``code`` to one peer, in answer to ``header`` (if any)."""
        corr = header.msg_id if header else None
        self.counters["errors_sent"] += 1
        self.send(rid, _EMPTY, pack_header(Kind.ERROR, corr=corr), error_body(code, detail, retry_after_s))

    def reply(self, peer: Peer, header: Header, result) -> None:
        """REPLY with ``result`` to ``peer``'s ``header``."""
        self.send(peer.rid, _EMPTY, pack_header(Kind.REPLY, corr=header.msg_id), pack_body(result))

    # -- dispatch table -------------------------------------------------------
    def _build_dispatch(self) -> dict[tuple[str, Kind], Callable]:
        peers, fanout, commands, requests = self.peer_table, self.fanout, self.command_router, self.requests
        handlers = {
            Kind.HELLO: peers.on_hello,
            Kind.HEARTBEAT: self._on_heartbeat,
            Kind.EVENT: fanout.on_agent_publish,
            Kind.LOG: fanout.on_agent_publish,
            Kind.SECURITY: fanout.on_agent_publish,
            Kind.FRAME: fanout.on_agent_publish,
            Kind.BATCH: fanout.on_agent_batch,
            Kind.SUBSCRIBE: fanout.on_subscribe,
            Kind.UNSUBSCRIBE: fanout.on_unsubscribe,
            Kind.REQUEST: requests.on_request,
            Kind.COMMAND: commands.on_command,
            Kind.COMMAND_STATUS: commands.on_command_status,
            Kind.RESULT: commands.on_result,
            Kind.ACK: self._on_ack,
            Kind.REPLY: requests.on_service_reply,
            Kind.ERROR: requests.on_service_reply,
        }
        table = {}
        for role, kinds in permissions.ROLE_KINDS.items():
            for kind in kinds:
                table[(role, kind)] = handlers[kind]
        if self.quotas is not None:  # what agents publish passes their token buckets first
            for kind in METERED_KINDS:
                table[("agent", kind)] = self._metered(table[("agent", kind)])
        return table

    def _metered(self, handler: Callable) -> Callable:
        """``handler`` behind the sender's rate limit: a message over it is
        dropped before its body is read or anything is routed."""
        admit, clock = self.quotas.admit, self.clock

        def metered(peer: Peer, header: Header, frames) -> None:
            if admit(peer.client_id, len(frames[1]) + len(frames[2]), clock()):
                handler(peer, header, frames)
            else:
                self._over_quota(peer, header)

        return metered

    def _over_quota(self, peer: Peer, header: Header) -> None:
        """Count a dropped message; tell the agent (and the security log) at
        most once per ``notice_s``, with how long to wait."""
        self.counters["dropped_rate_limited"] += 1
        retry_after_s = self.quotas.notice(peer.client_id, self.clock())
        if retry_after_s is None:
            return
        dropped, dropped_bytes = self.quotas.dropped(peer.client_id)
        self.counters["rate_limit_notices"] += 1
        detail = f"{dropped:,} messages ({dropped_bytes:,} bytes) dropped so far; limit {self.config.rate_limit.describe()}"
        self.records.security(peer, "rate_limited", detail)
        self.send_error(peer.rid, header, ErrorCode.RATE_LIMITED, detail, retry_after_s)

    def read_body(self, peer: Peer, header: Header, frames, expect: type = dict):
        """Unpack a body the broker must read; refuse it if malformed."""
        try:
            data = unpack_body(frames[2].bytes, self.config.max_body_bytes)
        except ProtocolError as exc:
            self.counters["bad_body"] += 1
            self.refuse(peer, header, exc.code, exc.detail)
            return None
        if not isinstance(data, expect):
            self.counters["bad_body"] += 1
            self.refuse(peer, header, ErrorCode.BAD_BODY, f"expected a {expect.__name__}")
            return None
        return data

    # -- what the broker answers itself -------------------------------------------
    def _on_heartbeat(self, peer: Peer, header: Header, frames) -> None:
        self.counters["heartbeats"] += 1
        self.flow.credit(peer.rid, credit_of(frames[2].bytes))

    def _on_ack(self, peer: Peer, header: Header, frames) -> None:
        """Store -> agent: committed message ids. Routed to the agent by topic ``ack.<agent>``."""
        target = header.topic[4:] if header.topic.startswith("ack.") else ""
        rids = self.conns.get(target)
        if not rids:
            self.counters["ack_unroutable"] += 1
            return
        self.counters["acks"] += 1
        self.send(rids[0], peer.sender, frames[1], frames[2])

    # -- timers ----------------------------------------------------------------------
    def _tick(self, now: float) -> None:
        """Drop silent peers and beat; checkpoint; give up old forwarded
        requests; expire commands; start due schedules (``ticks`` counts the passes)."""
        self.counters["ticks"] += 1
        timing = self.config.timing
        beat = now >= self._next_heartbeat
        if beat:
            self._next_heartbeat = now + timing.heartbeat_s
        self._forget_unreachable()  # a router too busy to run dry must not keep them forever
        self.peer_table.beat(now, timing.peer_timeout_s, pack_header(Kind.HEARTBEAT) if beat else None)
        if now >= self._next_checkpoint:
            self._next_checkpoint = now + CHECKPOINT_INTERVAL_S
            self.commands.checkpoint()
        self.requests.give_up(now)
        wall_now = time.time()
        self.command_router.expire_due(wall_now)
        self.operations.tick(wall_now)

    # -- ZAP and monitor ------------------------------------------------------
    def _answer_zap(self) -> None:
        for _ in range(100):
            try:
                frames = self.zap_socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            reply, outcome = zap.decide(self.registry, frames)
            self.counters[f"zap_{outcome}"] += 1
            if outcome in ("denied", "malformed"):
                address = frames[3].decode(errors="replace") if len(frames) > 3 else "?"
                if self._throttle.allow(("zap", address)):
                    log.warning("security: connection from %s refused: %s", address, reply[3].decode())
                self._refused_key(zap.key_of(frames), address)
            self.zap_socket.send_multipart(reply)

    def _refused_key(self, key: str, address: str) -> None:
        """A rejected or revoked key tried to connect: a security event about
        its client id (a stolen machine knocking shows up under its name)."""
        record = self.registry.get(key) if key else None
        if record is None:
            return
        peer = Peer(_EMPTY, key, record.state, record.client_id, _EMPTY, address=enrolment.source_of(address))
        self.records.security(peer, "connection_refused", f"a {record.state} key of {record.client_id} tried to connect from {address}",
                              throttle=("zap", key))

    def _read_monitor(self) -> None:
        while True:
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            name = zmq.Event(event["event"]).name.lower()
            self.counters[f"conn_{name}"] += 1
            if event["event"] & (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                if self._throttle.allow(("handshake", name)):
                    log.warning(
                        "security: handshake refused (%s, code %s): NULL/PLAIN clients and bad Curve keys cannot connect; %d so far",
                        name,
                        event["value"],
                        self.counters[f"conn_{name}"],
                    )


def serve_in_thread(config: BrokerConfig, **kwargs) -> tuple[Broker, threading.Thread]:
    """Start a broker on a background thread and wait until it listens."""
    broker = Broker(config, **kwargs)
    thread = threading.Thread(target=broker.run, name="ems-broker", daemon=True)
    thread.start()
    if not broker.wait_ready(10):
        raise RuntimeError("broker did not start within 10 s")
    return broker, thread
