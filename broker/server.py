"""The EMS broker: one ROUTER socket, one thread, one poller.

The loop (``run``) waits on the ROUTER, the ZAP socket, the ROUTER's
monitor and a control pipe; the poll timeout is the heartbeat tick. Each
inbound message is checked (frames, authenticated key, header), then looked
up in the dispatch table by (role, kind); anything else is refused with an
error code, counted, and logged as a security event. What agents publish
(events, logs, security events, frames, batches) passes the agent's rate
limit (``broker/quota.py``) before anything is routed. Nothing a peer sends can
raise out of the loop.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, NoReturn

import zmq
from zmq.utils.monitor import recv_monitor_message

from broker import keys as keyfiles
from broker import bounds, enrolment, key_ops, permissions, zap
from broker.command_queue import (
    DELIVERED,
    DONE,
    EPHEMERAL_RESULTS,
    EXPIRED,
    FAILED,
    FINAL,
    SENT,
    TRANSIENT_ARGS,
    TRANSIENT_TTL_S,
    Command,
    CommandQueue,
)
from broker.config import BrokerConfig
from broker.envelope import (
    BATCH_TOPIC_ROOTS,
    ErrorCode,
    Header,
    Kind,
    batch_offer,
    check_batch,
    credit_of,
    decode_batch,
    decode_header,
    error_body,
    message_bytes,
    new_id,
    pack_body,
    pack_header,
    unpack_body,
)
from broker.errors import ProtocolError
from broker.flow import FlowControl
from broker.journal import Journal
from broker.quota import METERED_KINDS, Quotas
from broker.registry import ACCEPTED, REJECTED, REVOKED, STATES, KeyRegistry, RegistryError, placeholder_id
from broker.stats import Counters, LogThrottle

log = logging.getLogger(__name__)

_EMPTY = b""
_NOBLOCK = int(zmq.NOBLOCK)
_MORE_NOBLOCK = int(zmq.SNDMORE) | _NOBLOCK
#: topic prefixes one connection may subscribe to (fan-out cost is per prefix)
MAX_PREFIXES = 100
#: live topics whose readers the fan-out remembers (about 100 bytes each)
READERS_CACHE = 65_536
#: what an agent's RESULT may hold to be relayed and kept: the store's depth and
#: integer rules; sizes are bounded by the message size already
RESULT_LIMITS = bounds.TreeLimits(max_items=1_000_000, max_total_bytes=1 << 30, max_str_chars=1 << 30, max_bytes_len=1 << 30)
#: seconds between WAL checkpoints of broker.db (kept off the message path)
CHECKPOINT_INTERVAL_S = 10.0


@dataclass
class Peer:
    """One connection, keyed by its ROUTER routing id."""

    rid: bytes
    key: str
    role: str
    client_id: str
    sender: bytes  # the stamp put on everything this peer sends
    hello: bool = False
    last_seen: float = 0.0
    info: dict = field(default_factory=dict)
    prefixes: tuple[str, ...] = ()
    #: a service that takes agents' BATCH messages whole (the store; HELLO ``batches: true``)
    batches: bool = False
    #: where the connection comes from (ZMQ ``Peer-Address``; enrolment caps are per source)
    address: str = ""
    #: False for an unknown key past the pending caps: it may only say HELLO (and enrol by token)
    recorded: bool = True


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
        self.commands = CommandQueue(self.data.broker_db)
        self.journal = Journal(self.data.broker_db, presence_kind=int(Kind.PRESENCE))
        self.counters = Counters()
        self.boot_id = new_id()
        self.started = time.time()
        self._own_context = context is None
        self.ctx = context or zmq.Context()
        self.endpoint = ""
        self.peers: dict[bytes, Peer] = {}
        #: client id -> routing ids of its greeted connections (agents: one;
        #: an operator may run several tools at once)
        self.conns: dict[str, list[bytes]] = {}
        self.subscribers: dict[bytes, Peer] = {}
        #: service name ("store") -> routing id of the service providing it
        self.providers: dict[str, bytes] = {}
        #: forwarded request id -> (requester, service routing id, give-up time)
        self.forwarded: dict[str, tuple[bytes, bytes, float]] = {}
        self.online: dict[str, float] = {}  # agent client id -> online since
        self._throttle = LogThrottle()
        #: live topic -> roles that may receive it (permissions.live_readers, cached)
        self._readers: dict[str, frozenset[str]] = {}
        #: per-agent token buckets on what agents publish (None: no limit configured)
        self.quotas = Quotas(config.rate_limit) if config.rate_limit.enabled else None
        #: per-connection byte budgets on best-effort traffic (broker/flow.py)
        self.flow = FlowControl(config.peer_budget_bytes, config.credit_every_bytes)
        self._budgets = self.flow.peers
        self._ready = threading.Event()
        self._stopping = False
        self._wake_endpoint = f"inproc://ems-broker-wake-{id(self)}"
        self._dispatch = self._build_dispatch()

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
        for sock in (self.router, self.monitor, self.zap_socket, self.wake):
            sock.close(linger=0)
        self.registry.close()
        self.commands.close()
        self.journal.close()
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
                    self._send_error(frames[0].bytes, None, ErrorCode.INTERNAL, "")
                except zmq.ZMQError:
                    pass

    def _handle(self, frames: list[zmq.Frame]) -> None:
        rid = frames[0].bytes
        try:
            key = frames[1].get("User-Id")
        except (zmq.ZMQError, IndexError):  # no ZAP identity: cannot happen on a Curve socket
            self.counters["dropped_unauthenticated"] += 1
            return
        peer = self.peers.get(rid)
        if peer is None or peer.key != key:
            peer = self._new_peer(rid, key, frames[1])
        if len(frames) != 3:
            self.counters["bad_frames"] += 1
            self._refuse(peer, None, ErrorCode.BAD_FRAMES, f"{len(frames) - 1} frames, expected 2")
            return
        try:
            header = decode_header(frames[1].bytes)
        except ProtocolError as exc:
            self.counters[f"bad_{exc.code.name.lower()}"] += 1
            self._refuse(peer, None, exc.code, exc.detail)
            return
        peer.last_seen = self.clock()
        handler = self._dispatch.get((peer.role, header.kind))
        if handler is None:
            self._refuse_role(peer, header)
            return
        if not peer.hello and header.kind is not Kind.HELLO:
            self.counters["hello_required"] += 1
            self._send_error(peer.rid, header, ErrorCode.HELLO_REQUIRED, "")
            return
        handler(peer, header, frames)

    def _new_peer(self, rid: bytes, key: str, frame: zmq.Frame) -> Peer:
        try:
            address = enrolment.source_of(frame.get("Peer-Address"))
        except (zmq.ZMQError, UnicodeDecodeError):
            address = ""
        record = self.registry.get(key)
        if record is None:  # a new key: recorded (or not) when it says HELLO
            peer = Peer(rid, key, permissions.PENDING_ROLE, placeholder_id(key), _EMPTY, address=address, recorded=False)
        else:
            role = record.role if record.state == ACCEPTED else permissions.PENDING_ROLE
            if record.state in (REJECTED, REVOKED):
                role = record.state
            peer = Peer(rid, key, role, record.client_id, record.client_id.encode() if role != permissions.PENDING_ROLE else _EMPTY,
                        address=address)
        peer.last_seen = self.clock()
        self.peers[rid] = peer
        return peer

    def _refuse_role(self, peer: Peer, header: Header) -> None:
        if peer.role == permissions.PENDING_ROLE:
            self.counters["refused_pending"] += 1
            # unrecorded keys cost nothing to make: one throttle per address, not per key
            self._security(peer, "pending_key_refused", f"{header.kind.name} from a key that is not accepted yet",
                           throttle=None if peer.recorded else ("address", peer.address))
            self._send_error(peer.rid, header, ErrorCode.NOT_ENROLLED, "")
        elif peer.role in (REJECTED, REVOKED):
            self.counters["refused_revoked"] += 1
            self._security(peer, "revoked_key_refused", f"{header.kind.name} from a {peer.role} key")
            self._send_error(peer.rid, header, ErrorCode.REVOKED, "")
        else:
            self.counters["refused_role"] += 1
            self._security(peer, "forbidden", f"role {peer.role} may not send {header.kind.name}")
            self._send_error(peer.rid, header, ErrorCode.FORBIDDEN, f"role {peer.role} may not send {header.kind.name}")

    def _refuse(self, peer: Peer, header: Header | None, code: ErrorCode, detail: str) -> None:
        self._security(peer, "malformed", f"{code.name}: {detail}")
        self._send_error(peer.rid, header, code, detail)

    # -- outbound --------------------------------------------------------------
    def _send(self, rid: bytes, sender: bytes, header, body) -> bool:
        """Send to one peer without blocking; count and report a drop.

        With ROUTER_MANDATORY a full queue (EAGAIN) or a vanished peer
        (EHOSTUNREACH) fails on the routing-id frame, before anything of
        the message is queued.
        """
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
            self._forget(rid)
            return False
        send(sender, _MORE_NOBLOCK)
        send(header, _MORE_NOBLOCK)
        send(body, _NOBLOCK)
        budget = self._budgets.get(rid)  # bytes in flight to this peer, for its byte budget
        if budget is not None:
            budget.sent += len(sender) + len(header) + len(body)  # envelope.message_bytes, inlined: hot path
        return True

    def _send_error(self, rid: bytes, header: Header | None, code: ErrorCode, detail: str, retry_after_s: float | None = None) -> None:
        corr = header.msg_id if header else None
        self.counters["errors_sent"] += 1
        self._send(rid, _EMPTY, pack_header(Kind.ERROR, corr=corr), error_body(code, detail, retry_after_s))

    def _reply(self, peer: Peer, header: Header, result) -> None:
        self._send(peer.rid, _EMPTY, pack_header(Kind.REPLY, corr=header.msg_id), pack_body(result))

    def _publish(self, topic: str, sender: bytes, header, body) -> int:
        """Fan out to every subscriber whose prefix matches ``topic`` and
        whose role may read it (``permissions.LIVE_READERS``)."""
        delivered = 0
        readers = None
        size, admit = len(sender) + len(header) + len(body), self.flow.admit  # envelope.message_bytes, inlined
        for peer in list(self.subscribers.values()):
            if topic.startswith(peer.prefixes):
                if readers is None:  # once per message, and only if someone subscribed
                    readers = self._readers.get(topic) or self._readers_of(topic)
                if peer.role not in readers:
                    self.counters["withheld_by_role"] += 1
                    continue
                if not admit(peer.rid, size):
                    self._over_budget(peer)
                elif self._send(peer.rid, sender, header, body):
                    delivered += 1
                else:
                    self.counters["dropped_fanout"] += 1
        return delivered

    def _readers_of(self, topic: str) -> frozenset[str]:
        """The roles that may receive ``topic`` live, remembered per topic (a
        dict lookup on the fan-out path; the cache starts over when full)."""
        if len(self._readers) >= READERS_CACHE:
            self._readers.clear()
        readers = self._readers[topic] = permissions.live_readers(topic)
        return readers

    def _record(self, kind: Kind, topic: str, data, sender: bytes = _EMPTY) -> None:
        """A record the broker makes (audit, presence, security): journaled
        until the store has it, and published live."""
        header, body = pack_header(kind, topic), pack_body(data)
        self.journal.append(int(kind), topic, header, body)
        self._publish(topic, sender, header, body)

    def _security(self, peer: Peer | None, event: str, detail: str, subject: str | None = None, throttle: object = None) -> None:
        """Count every security event; log and publish them throttled.

        A flood of bad frames from one key is one counter, a few log lines
        and a few stored events per minute, each stating how many similar
        ones were held back, so an attacker cannot fill the log or the store.
        ``subject`` names the client the event is about when that is not the
        peer's own id (a new key claiming a known id: the claimed id);
        ``throttle`` replaces the peer's key as what one throttle counts.
        """
        self.counters[f"security_{event}"] += 1
        throttle_key = (event, throttle if throttle is not None else (peer.key if peer else None))
        if not self._throttle.allow(throttle_key):
            return
        held = self._throttle.suppressed(throttle_key)
        who = f"{peer.client_id} ({peer.role}, key {peer.key[:8]})" if peer else "broker"
        log.warning("security: %s from %s: %s%s", event, who, detail, f" (+{held} similar suppressed)" if held else "")
        record = {
            "event": event,
            "detail": detail,
            "client_id": subject if subject is not None else (peer.client_id if peer else ""),
            "role": peer.role if peer else "",
            "key": peer.key if peer else "",
            "suppressed_before": held,
            "ts": time.time(),
        }
        if peer is not None and subject is not None:
            record["peer_id"] = peer.client_id
        if peer is not None and peer.address:
            record["address"] = peer.address
        self._record(Kind.SECURITY, "security.broker", record)

    def _audit(self, peer: Peer, action: str, detail: dict) -> None:
        """An operator action, named: logged and published on ``audit.<who>``."""
        log.info("audit: %s (%s) %s %s", peer.client_id, peer.role, action, detail)
        self._record(
            Kind.EVENT,
            f"audit.{peer.client_id}",
            {"operator": peer.client_id, "role": peer.role, "action": action, "detail": detail,
             "target": detail.get("target") or detail.get("client_id") or "", "reason": detail.get("reason", ""), "ts": time.time()},
            sender=peer.sender,
        )

    # -- dispatch table -------------------------------------------------------
    def _build_dispatch(self) -> dict[tuple[str, Kind], Callable]:
        handlers = {
            Kind.HELLO: self._on_hello,
            Kind.HEARTBEAT: self._on_heartbeat,
            Kind.EVENT: self._on_agent_publish,
            Kind.LOG: self._on_agent_publish,
            Kind.SECURITY: self._on_agent_publish,
            Kind.FRAME: self._on_agent_publish,
            Kind.BATCH: self._on_agent_batch,
            Kind.SUBSCRIBE: self._on_subscribe,
            Kind.UNSUBSCRIBE: self._on_unsubscribe,
            Kind.REQUEST: self._on_request,
            Kind.COMMAND: self._on_command,
            Kind.COMMAND_STATUS: self._on_command_status,
            Kind.RESULT: self._on_result,
            Kind.ACK: self._on_ack,
            Kind.REPLY: self._on_service_reply,
            Kind.ERROR: self._on_service_reply,
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
        self._security(peer, "rate_limited", detail)
        self._send_error(peer.rid, header, ErrorCode.RATE_LIMITED, detail, retry_after_s)

    def _body(self, peer: Peer, header: Header, frames, expect: type = dict):
        """Unpack a body the broker must read; refuse it if malformed."""
        try:
            data = unpack_body(frames[2].bytes, self.config.max_body_bytes)
        except ProtocolError as exc:
            self.counters["bad_body"] += 1
            self._refuse(peer, header, exc.code, exc.detail)
            return None
        if not isinstance(data, expect):
            self.counters["bad_body"] += 1
            self._refuse(peer, header, ErrorCode.BAD_BODY, f"expected a {expect.__name__}")
            return None
        return data

    # -- handlers ------------------------------------------------------------
    def _on_hello(self, peer: Peer, header: Header, frames) -> None:
        data = self._body(peer, header, frames)
        if data is None:
            return
        info = {
            k: str(v)[:200]
            for k, v in data.items()
            if k in ("client_id", "label", "hostname", "version", "os", "user") and isinstance(v, (str, int, float))
        }
        if peer.role == permissions.PENDING_ROLE:
            if not self._enrol_by_token(peer, data, info):
                return
        peer.batches = peer.role == "service" and data.get("batches") is True
        self._greet(peer, header, info)
        if peer.role == "service" and isinstance(data.get("provides"), list):
            for name in [n for n in data["provides"][:8] if isinstance(n, str) and len(n) <= 32]:
                self.providers[name] = peer.rid
                log.info("%s provides %r", peer.client_id, name)

    def _enrol_by_token(self, peer: Peer, data: dict, info: dict) -> bool:
        """A key that is not accepted says HELLO: enrol it if it shows the
        enrolment token for a new client id; else record it pending (within
        the caps) and tell it to wait. A claim on a known, blocked or reserved
        id and a refused token are security events about the claimed id."""
        claim = enrolment.judge(self.registry, peer.key, enrolment.claimed_id(data.get("client_id")))
        token = data.get("token")
        token_ok = enrolment.token_matches(token, self.config.enrol_token)
        if token_ok and claim.status == enrolment.NEW:
            self._accept_by_token(peer, claim, info)
            return True
        full = self._note_pending(peer, claim, info)
        self._report_claim(peer, claim, token, token_ok)
        self.counters["hello_pending"] += 1
        if full:
            detail = f"not recorded: {full}; an enrolment token still admits a new id, or retry later"
        elif token_ok:
            detail = (f"the enrolment token does not admit {claim.client_id or 'a key without a client id'}"
                      f" (known, blocked or reserved): pending as {peer.client_id} until an admin decides")
        else:
            detail = f"pending as {peer.client_id}"
        self._send_error(peer.rid, None, ErrorCode.NOT_ENROLLED, detail)
        return False

    def _accept_by_token(self, peer: Peer, claim: enrolment.Claim, info: dict) -> None:
        """The token admits a new id: accepted at once, past the pending caps."""
        record = self.registry.note_pending(peer.key, claim.client_id, info.get("label", ""), info.get("hostname", ""), peer.address)
        self.registry.set_state(record, ACCEPTED)
        peer.recorded = True
        self.counters["enrolled_by_token"] += 1
        log.info("key %s (%s) from %s accepted by enrolment token", peer.key[:8], record.client_id, peer.address or "?")
        self._reauthorise(peer.key, tell_peer=False)

    def _note_pending(self, peer: Peer, claim: enrolment.Claim, info: dict) -> str:
        """Record (or refresh) a pending key; returns why it was not recorded
        ("" when it was): a new key past the per-source or total cap."""
        label, hostname = info.get("label", ""), info.get("hostname", "")
        if not peer.recorded:
            c = self.config
            full = enrolment.no_room(self.registry, peer.address, c.max_pending_per_source, c.max_pending_keys)
            if full:
                self.counters["pending_not_recorded"] += 1
                self._security(peer, "pending_cap", f"new key {peer.key[:8]} not recorded: {full}",
                               subject=claim.client_id or None, throttle=("address", peer.address))
                return full
            record = self.registry.note_pending(peer.key, claim.client_id, label, hostname, peer.address)
            peer.recorded = True
            log.warning("new key %s from %s is pending as %s: accept it with `ems keys accept %s`",
                        peer.key[:8], peer.address or "?", record.client_id, peer.key[:8])
        else:
            record = self.registry.note_pending(peer.key, claim.client_id, label, hostname)
        peer.client_id = record.client_id
        return ""

    def _report_claim(self, peer: Peer, claim: enrolment.Claim, token: object, token_ok: bool) -> None:
        """Security events for a waiting key's HELLO, about the id it claims."""
        subject = claim.client_id or None
        throttle = None if peer.recorded else ("address", peer.address)
        if token is not None and not token_ok:
            self.counters["enrol_token_refused"] += 1
            self._security(peer, "bad_enrol_token", f"new key {peer.key[:8]} presented a wrong enrolment token",
                           subject=subject, throttle=throttle)
        elif token_ok:  # a valid token for an id it does not admit
            self.counters["enrol_token_refused"] += 1
        event = enrolment.CLAIM_EVENTS.get(claim.status)
        if event is not None:
            note = "the enrolment token does not admit it; " if token_ok else ""
            detail = f"new key {peer.key[:8]} claims {claim.client_id}: {claim.why}; {note}pending until an admin decides"
            self._security(peer, event, detail, subject=subject, throttle=throttle)
        elif token_ok:
            self._security(peer, "enrol_token_refused", f"new key {peer.key[:8]} presented the token without a client id",
                           throttle=throttle)

    def _greet(self, peer: Peer, header: Header, info: dict) -> None:
        """Register a greeted connection, answer WELCOME, hand over what waited."""
        rids = self.conns.setdefault(peer.client_id, [])
        if peer.role == "agent":
            for old_rid in rids:
                if old_rid != peer.rid:
                    self.flow.forget(old_rid)
                if old_rid != peer.rid and self.peers.pop(old_rid, None) is not None:
                    log.info("%s reconnected (the new connection replaces the old one)", peer.client_id)
            rids[:] = [peer.rid]
        elif peer.rid not in rids:
            rids.append(peer.rid)
        peer.hello, peer.info = True, info
        t = self.config.timing
        welcome = {
            "client_id": peer.client_id,
            "role": peer.role,
            "heartbeat_s": t.heartbeat_s,
            "peer_timeout_s": t.peer_timeout_s,
            "boot_id": self.boot_id,
            "server_time": time.time(),
            "batch": batch_offer(),
        }
        if peer.role == "agent" and self.quotas is not None:
            # a well-behaved agent paces itself, from where its buckets stand (they outlive connections)
            welcome["rate_limit"] = {**self.config.rate_limit.offer(), **self.quotas.left(peer.client_id, self.clock())}
        welcome["flow"] = self.flow.offer()
        self.flow.start(peer.rid)  # the peer counts what it takes from this WELCOME on
        self._send(peer.rid, _EMPTY, pack_header(Kind.WELCOME, corr=header.msg_id), pack_body(welcome))
        if peer.role == "agent":
            record = self.registry.get(peer.key)
            if info.get("hostname") and record is not None and record.hostname != info["hostname"]:
                self.registry.set_hostname(record, info["hostname"])
            self._set_online(peer, True, "hello")
            for cmd in self.commands.open_for(peer.client_id):
                self._deliver(cmd)
        else:
            for cmd in self.commands.unsent_results(peer.client_id):
                self._send_result(cmd)

    def _on_heartbeat(self, peer: Peer, header: Header, frames) -> None:
        self.counters["heartbeats"] += 1
        self.flow.credit(peer.rid, credit_of(frames[2].bytes))

    def _over_budget(self, peer: Peer) -> None:
        """Count a best-effort message dropped over a peer's byte budget; say so
        (throttled) as an ops/security event naming the peer."""
        self.counters["dropped_over_budget"] += 1
        budget = self.flow.notice_due(peer.rid, self.clock())
        if budget is not None:
            self._security(peer, "slow_consumer", f"{budget.in_flight:,} bytes sent and not yet taken (budget {self.flow.budget_bytes:,}): "
                                                  f"{budget.dropped:,} live messages ({budget.dropped_bytes:,} bytes) dropped for it so far")

    def _on_agent_publish(self, peer: Peer, header: Header, frames) -> None:
        """EVENT / LOG / SECURITY / FRAME: check the topic is the sender's, fan out."""
        prefix = permissions.AGENT_TOPIC_PREFIX[header.kind]
        own = f"{prefix}.{peer.client_id}"
        topic = header.topic
        if not (topic == own or topic.startswith(own + ".")):
            self.counters["refused_topic"] += 1
            self._security(peer, "spoofed_topic", f"{peer.client_id} published on {topic!r}")
            self._send_error(peer.rid, header, ErrorCode.BAD_TOPIC, f"must start with {own}")
            return
        self.counters["routed"] += 1
        self._publish(topic, peer.sender, frames[1], frames[2])

    def _on_agent_batch(self, peer: Peer, header: Header, frames) -> None:
        """BATCH: many of the sender's records. Whole to the store (peers that
        said ``batches``); record by record to live subscribers of its topics,
        unpacked only if there are any."""
        try:
            count = check_batch(frames[2].buffer)
        except ProtocolError as exc:
            self.counters["refused_batches"] += 1
            self._refuse(peer, header, exc.code, exc.detail)
            return
        self.counters["routed_batches"] += 1
        self.counters["routed_batch_records"] += count
        live = []
        for sub in list(self.subscribers.values()):
            if sub.batches:
                if not self._send(sub.rid, peer.sender, frames[1], frames[2]):
                    self.counters["dropped_batches"] += 1
            elif _may_want(sub.prefixes, peer.client_id):
                live.append(sub)
        if live:
            self._fan_out_batch(peer, frames[2].bytes, live)

    def _fan_out_batch(self, peer: Peer, body: bytes, subscribers: list[Peer]) -> None:
        """Each record of a batch to the live subscribers whose prefixes match its topic."""
        try:
            records, refused = decode_batch(body, peer.client_id)
        except ProtocolError as exc:  # the store, which had it whole, refuses it the same way
            self.counters["bad_batches"] += 1
            if self._throttle.allow(("bad_batch", peer.key)):
                log.warning("undecodable batch from %s: %s", peer.client_id, exc.detail)
            return
        self.counters["batch_records_refused"] += len(refused)
        for record in records:
            header = readers = None
            for sub in subscribers:
                if record.topic.startswith(sub.prefixes):
                    readers = readers or self._readers.get(record.topic) or self._readers_of(record.topic)
                    if sub.role not in readers:
                        self.counters["withheld_by_role"] += 1
                        continue
                    header = header or pack_header(record.kind, record.topic, record.msg_id, ts=record.ts)
                    if not self.flow.admit(sub.rid, message_bytes(peer.sender, header, record.body)):
                        self._over_budget(sub)
                    elif not self._send(sub.rid, peer.sender, header, record.body):
                        self.counters["dropped_fanout"] += 1

    def _on_subscribe(self, peer: Peer, header: Header, frames) -> None:
        data = self._body(peer, header, frames)
        if data is None:
            return
        prefixes = data.get("prefixes")
        if not isinstance(prefixes, list) or not all(isinstance(p, str) and len(p) <= 200 for p in prefixes) or len(prefixes) > 100:
            self._refuse(peer, header, ErrorCode.BAD_REQUEST, "prefixes must be a list of up to 100 short strings")
            return
        forbidden = [p for p in prefixes if not permissions.may_subscribe(peer.role, p)]
        if forbidden:  # only topics this role may not read: refused, and a security event
            self.counters["refused_role"] += 1
            self._security(peer, "forbidden", f"role {peer.role} may not read {forbidden}")
            self._send_error(peer.rid, header, ErrorCode.FORBIDDEN, f"role {peer.role} may not read {forbidden}")
            return
        merged = tuple(dict.fromkeys(peer.prefixes + tuple(prefixes)))
        if len(merged) > MAX_PREFIXES:
            self._refuse(peer, header, ErrorCode.BAD_REQUEST, f"at most {MAX_PREFIXES} subscriptions per connection")
            return
        self._audit_watch(peer, prefixes)
        peer.prefixes = merged
        self.subscribers[peer.rid] = peer
        self._reply(peer, header, {"prefixes": list(peer.prefixes)})

    def _audit_watch(self, peer: Peer, prefixes: list[str]) -> None:
        """Name a person who subscribes to screens (``screen.watch``) or to
        other sensitive streams (``stream.watch``: captures, chat, file
        operations, the audit trail) in the audit trail."""
        screens, streams = [], {}
        for prefix in prefixes:
            classes = permissions.watched(peer.role, prefix)
            if "frame" in classes:
                screens.append(prefix)
            if classes - {"frame"}:
                streams[prefix] = sorted(classes - {"frame"})
        if screens:
            self._audit(peer, "screen.watch", {"prefixes": screens})
        if streams:
            self._audit(peer, "stream.watch", {"prefixes": list(streams), "streams": sorted({c for v in streams.values() for c in v})})

    def _on_unsubscribe(self, peer: Peer, header: Header, frames) -> None:
        data = self._body(peer, header, frames)
        if data is None:
            return
        prefixes = data.get("prefixes") or []
        if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
            self._refuse(peer, header, ErrorCode.BAD_REQUEST, "prefixes must be a list of strings")
            return
        drop = set(prefixes)
        peer.prefixes = tuple(p for p in peer.prefixes if p not in drop) if drop else ()
        if not peer.prefixes:
            self.subscribers.pop(peer.rid, None)
        self._reply(peer, header, {"prefixes": list(peer.prefixes)})

    def _on_ack(self, peer: Peer, header: Header, frames) -> None:
        """Store -> agent: committed message ids. Routed to the agent by topic ``ack.<agent>``."""
        target = header.topic[4:] if header.topic.startswith("ack.") else ""
        rids = self.conns.get(target)
        if not rids:
            self.counters["ack_unroutable"] += 1
            return
        self.counters["acks"] += 1
        self._send(rids[0], peer.sender, frames[1], frames[2])

    # -- requests --------------------------------------------------------------
    def _on_request(self, peer: Peer, header: Header, frames) -> None:
        data = self._body(peer, header, frames)
        if data is None:
            return
        op, args = data.get("op"), data.get("args") or {}
        if not isinstance(op, str) or not isinstance(args, dict):
            self._refuse(peer, header, ErrorCode.BAD_REQUEST, "request needs op (string) and args (map)")
            return
        if op not in permissions.REQUEST_OPS:
            self._send_error(peer.rid, header, ErrorCode.BAD_REQUEST, f"unknown operation {op!r}")
            return
        if not permissions.may_request(peer.role, op):
            self.counters["refused_role"] += 1
            self._security(peer, "forbidden", f"role {peer.role} may not call {op}")
            self._send_error(peer.rid, header, ErrorCode.FORBIDDEN, f"role {peer.role} may not call {op}")
            return
        kind = permissions.history_kind(op, args)
        if kind is not None and not permissions.may_read_history(peer.role, kind):
            self.counters["refused_role"] += 1
            self._security(peer, "forbidden", f"role {peer.role} may not read {kind} history")
            self._send_error(peer.rid, header, ErrorCode.FORBIDDEN, f"role {peer.role} may not read {kind} history")
            return
        if op.startswith(permissions.SERVICE_PREFIXES):
            self._forward_request(peer, header, op, args)
            return
        method = getattr(self, "_op_" + op.replace(".", "_"))
        try:
            result = method(peer, args)
        except (RegistryError, ValueError, KeyError, TypeError, OverflowError) as exc:  # bounds.BoundsError included
            self.counters["bad_requests"] += 1
            self._send_error(peer.rid, header, ErrorCode.BAD_REQUEST, str(exc)[:500])
            return
        self._reply(peer, header, result)

    def _forward_request(self, peer: Peer, header: Header, op: str, args: dict) -> None:
        """Hand a service operation to its provider, stamped with who asks."""
        service = op.split(".", 1)[0]
        rid = self.providers.get(service)
        if rid is None or rid not in self.peers:
            self.counters["service_unavailable"] += 1
            self._send_error(peer.rid, header, ErrorCode.UNAVAILABLE, f"no {service} service is connected (ems up starts it)")
            return
        if len(self.forwarded) >= 10_000:
            self._send_error(peer.rid, header, ErrorCode.THROTTLED, "too many requests in flight")
            return
        body = pack_body({"op": op, "args": args, "requester": {"client_id": peer.client_id, "role": peer.role}})
        fwd = pack_header(Kind.REQUEST, op, msg_id=header.msg_id)
        if self._send(rid, peer.sender, fwd, body):
            self.forwarded[header.msg_id] = (peer.rid, rid, self.clock() + self.config.timing.request_timeout_s * 3)
            self.counters["forwarded_requests"] += 1
        else:
            self._send_error(peer.rid, header, ErrorCode.UNAVAILABLE, f"the {service} service is not keeping up")

    def _on_service_reply(self, peer: Peer, header: Header, frames) -> None:
        """A service answers a forwarded request: route it to whoever asked."""
        waiting = self.forwarded.get(header.corr or "")
        if waiting is None or waiting[1] != peer.rid:  # only the service asked may answer
            self.counters["reply_unroutable"] += 1
            return
        del self.forwarded[header.corr]
        self._send(waiting[0], peer.sender, frames[1], frames[2])

    def _op_status(self, peer: Peer, args: dict) -> dict:
        return {
            "broker": {
                "boot_id": self.boot_id,
                "endpoint": self.endpoint,
                "public_key": self.keypair.public,
                "started": self.started,
                "uptime_s": time.time() - self.started,
                "peers": len(self.peers),
                "online_agents": len(self.online),
                "pending_keys": self.registry.pending_count(),
                "services": sorted(self.providers),
                "journal": len(self.journal),
                "journal_dropped": self.journal.dropped,
                "rate_limit": {**asdict(self.config.rate_limit), "summary": self.config.rate_limit.describe()},
                "flow": self.flow.status({rid: p.client_id for rid, p in self.peers.items()}),
            },
            "counters": self.counters.snapshot(),
            "commands": self.commands.counts(),
            "agents": self._op_agents(peer, args),
        }

    def _op_agents(self, peer: Peer, args: dict) -> list[dict]:
        out = []
        for record in self.registry.all():
            if record.role != "agent" or record.state != ACCEPTED:
                continue
            rids = self.conns.get(record.client_id)
            live = self.peers.get(rids[0]) if rids else None
            out.append(
                {
                    "client_id": record.client_id,
                    "label": record.label,
                    "hostname": record.hostname,
                    "state": "online" if record.client_id in self.online else "offline",
                    "last_seen": record.last_seen,
                    "version": (live.info.get("version") if live else "") or "",
                    "user": (live.info.get("user") if live else "") or "",
                    "dropped_rate_limited": self.quotas.dropped(record.client_id)[0] if self.quotas else 0,
                }
            )
        return out

    def _op_command_get(self, peer: Peer, args: dict) -> dict:
        """One command; its args and result only for its sender or an admin
        (anyone else gets the rest, with ``redacted`` naming what is left out)."""
        cmd_id = bounds.text(args.get("id"), "id", 200, empty=False)
        cmd = self.commands.get(cmd_id)
        if cmd is None:
            raise ValueError(f"no command {cmd_id!r}")
        return _visible(peer, cmd)

    def _op_command_list(self, peer: Peer, args: dict) -> list[dict]:
        """The newest commands (``limit`` ≤ 1000), optionally of one ``target`` and only ``names``."""
        limit = bounds.limit(args.get("limit"), "limit", 50, 1, 1000)
        target = bounds.optional_text(args.get("target"), "target")
        names = [] if args.get("names") is None else bounds.text_list(args["names"], "names", 16, 64)
        return [_visible(peer, c) for c in self.commands.recent(target, limit, tuple(names))]

    def _op_journal_read(self, peer: Peer, args: dict) -> list[dict]:
        limit = bounds.limit(args.get("limit"), "limit", 1000, 1, 10_000)
        return [{"seq": seq, "header": header, "body": body} for seq, header, body in self.journal.read(limit)]

    def _op_journal_ack(self, peer: Peer, args: dict) -> dict:
        return {"deleted": self.journal.ack(bounds.int64(args.get("upto"), "upto")), "left": len(self.journal)}

    def _op_keys_list(self, peer: Peer, args: dict) -> list[dict]:
        """Every key, or only those in ``state``."""
        state = args.get("state")
        if state is not None and state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}")
        return [r.as_dict() for r in self.registry.all() if state is None or r.state == state]

    def _op_keys_blocked(self, peer: Peer, args: dict) -> list[dict]:
        """Client ids blocked by a revoke, with who blocked them, when and why."""
        return self.registry.blocked_ids()

    def _op_keys_accept(self, peer: Peer, args: dict) -> dict:
        return self._change_key(peer, args, ACCEPTED)

    def _op_keys_reject(self, peer: Peer, args: dict) -> dict:
        if args.get("pending") is True:
            return key_ops.reject_pending(self, peer, args)
        return self._change_key(peer, args, REJECTED)

    def _op_keys_revoke(self, peer: Peer, args: dict) -> dict:
        return key_ops.revoke(self, peer, args)

    def _op_keys_unblock(self, peer: Peer, args: dict) -> dict:
        return key_ops.unblock(self, peer, args)

    def _op_keys_add(self, peer: Peer, args: dict) -> dict:
        key = bounds.text(args.get("public_key"), "public_key", 40)
        if not keyfiles.is_z85_key(key):
            raise ValueError("public_key must be a 40-character Z85 Curve key")
        client_id = bounds.text(args.get("client_id"), "client_id", 200, empty=False)
        role, label = bounds.text(args.get("role", "agent"), "role", 32), bounds.text(args.get("label", ""), "label", 100)
        problem = enrolment.add_problem(self.registry, key, client_id, role)
        if problem:
            self._refuse_key_op(peer, "keys.add", client_id, problem)
        record = self.registry.add(key, client_id, role, ACCEPTED, label)
        self._audit(peer, "keys.add", {"client_id": record.client_id, "role": record.role, "key": key})
        self._reauthorise(key)
        return record.as_dict()

    def _op_keys_label(self, peer: Peer, args: dict) -> dict:
        record = self.registry.find(bounds.text(args.get("id"), "id", 200, empty=False))
        self.registry.set_label(record, bounds.text(args.get("label"), "label", 1000)[:100])
        self._audit(peer, "keys.label", {"client_id": record.client_id, "label": record.label})
        return record.as_dict()

    def _change_key(self, peer: Peer, args: dict, state: str) -> dict:
        """Accept or reject one key (a client id resolves to its pending key)."""
        record = self.registry.find(bounds.text(args.get("id"), "id", 200, empty=False))
        reason = bounds.optional_text(args.get("reason"), "reason", 500) or ""
        if state == ACCEPTED:
            if record.state == REVOKED:
                self._refuse_key_op(peer, "keys.accept", record.client_id,
                                    f"{record.client_id} was revoked; a revoked key stays revoked (enrol a new key)")
            problem = enrolment.accept_problem(self.registry, record)
            if problem:
                self._refuse_key_op(peer, "keys.accept", record.client_id, problem)
        was = record.state
        replaced = self.registry.accepted_by_client(record.client_id) if state == ACCEPTED else None
        self.registry.set_state(record, state)
        self._audit(peer, f"keys.{state}", {"client_id": record.client_id, "key": record.public_key, "was": was,
                                           "reason": reason})
        self._reauthorise(record.public_key)
        if replaced is not None and replaced is not record:
            self._reauthorise(replaced.public_key)
        return {**record.as_dict(), "was": was}

    def _refuse_key_op(self, peer: Peer, op: str, client_id: str, why: str) -> NoReturn:
        """An admin's key operation that would break the enrolment rules: a
        security event about the id, and BAD_REQUEST with the reason."""
        self.counters["refused_key_ops"] += 1
        self._security(peer, "key_op_refused", f"{op} {client_id}: {why}", subject=client_id)
        raise ValueError(why)

    def _reauthorise(self, key: str, tell_peer: bool = True) -> None:
        """Apply a key's new state to its live connections at once."""
        self._reauthorise_many({key}, tell_peer)

    def _reauthorise_many(self, keys: set[str], tell_peer: bool = True) -> int:
        """Apply new key states to every live connection of ``keys``; returns
        how many connections were closed (told REVOKED and dropped)."""
        closed = 0
        for peer in [p for p in self.peers.values() if p.key in keys]:
            record = self.registry.get(peer.key)
            if record is None:
                continue
            if record.state == ACCEPTED:
                peer.role, peer.client_id = record.role, record.client_id
                peer.sender = record.client_id.encode()
                if tell_peer:  # a pending peer waits: tell it to say hello again
                    self._send_error(peer.rid, None, ErrorCode.HELLO_REQUIRED, "key accepted")
            elif record.state in (REJECTED, REVOKED) and peer.role in (REJECTED, REVOKED):
                peer.role = record.state  # already cut off
            elif record.state in (REJECTED, REVOKED):
                self._send_error(peer.rid, None, ErrorCode.REVOKED, f"key {record.state}")
                self._drop_peer(peer, f"key {record.state}")
                peer.role = record.state
                self.peers[peer.rid] = peer  # kept so further frames are refused, not re-admitted
                closed += 1
        return closed

    # -- commands ----------------------------------------------------------------
    def _on_command(self, peer: Peer, header: Header, frames) -> None:
        data = self._body(peer, header, frames)
        if data is None:
            return
        target, name, args = data.get("target"), data.get("name"), data.get("args", {})
        if not isinstance(target, str) or not isinstance(name, str) or not 0 < len(name) <= 64 or not isinstance(args, dict):
            self._refuse(peer, header, ErrorCode.BAD_REQUEST, "command needs target, name (strings) and args (map)")
            return
        problem = bounds.tree_problem(args)  # else its audit record would be quarantined by the store, not kept
        if problem is not None:
            self._refuse(peer, header, ErrorCode.BAD_REQUEST, f"command args: {problem}")
            return
        record = self.registry.accepted_by_client(target)
        if record is None or record.role != "agent":
            self._send_error(peer.rid, header, ErrorCode.UNKNOWN_TARGET, f"no accepted agent {target!r}")
            return
        now = time.time()
        expires = header.expires if header.expires is not None else now + self.config.command_ttl_s
        if name in TRANSIENT_ARGS:  # remote input is for now or never
            expires = min(expires, now + TRANSIENT_TTL_S)
        if expires <= now:
            self._send_error(peer.rid, header, ErrorCode.EXPIRED, "expiry is in the past")
            return
        cmd = self.commands.add(header.msg_id, target, peer.client_id, name, args, expires)
        if cmd is None:  # this id exists: a retry after a reconnect, or a clash
            existing = self.commands.get(header.msg_id)
            if existing is None or existing.sender != peer.client_id:
                self._send_error(peer.rid, header, ErrorCode.BAD_REQUEST, "command id already used")
            else:
                self._notify_status(existing)
            return
        self.counters["commands"] += 1
        self._journal_command(cmd)
        if name not in TRANSIENT_ARGS:  # remote input is audited as its session (control.open/close), not per event
            self._audit(peer, "command", {"id": cmd.id, "target": target, "name": name, "reason": args.get("reason", ""),
                                          "via": str(args.get("via", ""))[:32], "caller": str(args.get("caller", ""))[:64]})
        self._notify_status(cmd)
        if target in self.online:
            self._deliver(cmd)

    def _journal_command(self, cmd: Command) -> None:
        """Tell the store durably who sent a new command to whom (no args): the
        store names the operator of what the agent reports about it from
        this, never from the agent's word. Remote input and tile thumbnails
        lead to no such report and are left out."""
        if cmd.name in TRANSIENT_ARGS or cmd.name in EPHEMERAL_RESULTS:
            return
        topic = f"command.{cmd.target}"
        body = {"id": cmd.id, "target": cmd.target, "name": cmd.name, "status": cmd.status, "operator": cmd.sender,
                "created": cmd.created}
        self.journal.append(int(Kind.COMMAND_STATUS), topic, pack_header(Kind.COMMAND_STATUS, topic, corr=cmd.id), pack_body(body))

    def _deliver(self, cmd: Command) -> None:
        rids = self.conns.get(cmd.target)
        if not rids:
            return
        header = pack_header(Kind.COMMAND, f"command.{cmd.target}", msg_id=cmd.id, expires=cmd.expires)
        if self._send(rids[0], cmd.sender.encode(), header, pack_body({"name": cmd.name, "args": cmd.args})):
            if self.commands.advance(cmd, SENT):
                self._notify_status(cmd)

    def _own_command(self, peer: Peer, header: Header) -> Command | None:
        cmd = self.commands.get(header.corr or "")
        if cmd is None or cmd.target != peer.client_id:
            self._security(peer, "foreign_command", f"{header.kind.name} for command {header.corr!r} not addressed to it")
            self._send_error(peer.rid, header, ErrorCode.FORBIDDEN, "not your command")
            return None
        return cmd

    def _on_command_status(self, peer: Peer, header: Header, frames) -> None:
        data = self._body(peer, header, frames)
        if data is None:
            return
        cmd = self._own_command(peer, header)
        if cmd is None:
            return
        status = data.get("status")
        if status not in (DELIVERED, EXPIRED):
            self._refuse(peer, header, ErrorCode.BAD_REQUEST, "agents report delivered or expired")
            return
        if self.commands.advance(cmd, status, {"error": data.get("error", "")} if status == EXPIRED else None):
            self._notify_status(cmd)
            if status in FINAL:
                self._send_result(cmd)

    def _on_result(self, peer: Peer, header: Header, frames) -> None:
        data = self._body(peer, header, frames)
        if data is None:
            return
        cmd = self._own_command(peer, header)
        if cmd is None:
            return
        if cmd.status in FINAL:  # a repeated result (re-delivery after a restart)
            if not cmd.result_sent:
                self._send_result(cmd)
            return
        # forward first, then commit status + result + "forwarded" at once: if the
        # broker dies in between, the command is re-delivered and the agent
        # answers again from its record of executed commands
        problem = bounds.tree_problem(data, RESULT_LIMITS)
        if problem:  # nothing the operator's tools would choke on is relayed or kept
            self._security(peer, "malformed", f"result of command {cmd.id} refused: {problem}")
            data = {"ok": False, "error": f"the agent's result was refused by the broker: {problem}"}
        status = DONE if data.get("ok") else FAILED
        self._notify_status(cmd, status)  # the final status first, then the result it ends with
        forwarded = self._forward_result(cmd, status, data)
        self.commands.advance(cmd, status, data, result_sent=forwarded)

    def _notify_status(self, cmd: Command, status: str | None = None) -> None:
        """Tell the command's sender and ``command.<target>`` subscribers (the
        status given, or the recorded one)."""
        body = pack_body({"id": cmd.id, "target": cmd.target, "name": cmd.name, "status": status or cmd.status,
                          "operator": cmd.sender, "updated": time.time() if status else cmd.updated})
        topic = f"command.{cmd.target}"
        header = pack_header(Kind.COMMAND_STATUS, topic, corr=cmd.id)
        for rid in list(self.conns.get(cmd.sender, ())):
            if rid not in self.subscribers or not topic.startswith(self.subscribers[rid].prefixes) \
                    or not self.flow.fits(rid, len(header) + len(body)):  # its own copy, even when its live feed is dropped
                self._send(rid, _EMPTY, header, body)
        self._publish(topic, _EMPTY, header, body)

    def _send_result(self, cmd: Command) -> None:
        """Send a final outcome to its sender and remember that it went."""
        if self._forward_result(cmd):
            self.commands.mark_result_sent(cmd)

    def _forward_result(self, cmd: Command, status: str | None = None, result=None) -> bool:
        """RESULT to every live connection of the command's sender (the
        outcome given, or the one recorded)."""
        rids = self.conns.get(cmd.sender)
        if not rids:
            return False
        outcome = {"status": status or cmd.status, "result": cmd.result if result is None else result}
        body = pack_body({"id": cmd.id, "target": cmd.target, "name": cmd.name, **outcome})
        header = pack_header(Kind.RESULT, f"command.{cmd.target}", corr=cmd.id)
        sent = [self._send(rid, cmd.target.encode(), header, body) for rid in list(rids)]
        return any(sent)

    # -- presence and timers ----------------------------------------------------
    def _set_online(self, peer: Peer, online: bool, reason: str) -> None:
        cid = peer.client_id
        was = cid in self.online
        if online == was:
            return
        now = time.time()
        if online:
            self.online[cid] = now
        else:
            del self.online[cid]
        record = self.registry.get(peer.key)
        if record is not None:
            self.registry.touch(record, now)
        log.info("%s is %s (%s)", cid, "online" if online else "offline", reason)
        self.counters["presence_changes"] += 1
        self._record(
            Kind.PRESENCE,
            f"presence.{cid}",
            {"client_id": cid, "state": "online" if online else "offline", "reason": reason, "ts": now, "info": peer.info},
            sender=peer.sender,
        )

    def _drop_peer(self, peer: Peer, reason: str) -> None:
        self.peers.pop(peer.rid, None)
        self.flow.forget(peer.rid)
        self.subscribers.pop(peer.rid, None)
        for name in [n for n, rid in self.providers.items() if rid == peer.rid]:
            del self.providers[name]
            log.warning("service %r is gone (%s: %s)", name, peer.client_id, reason)
        rids = self.conns.get(peer.client_id)
        if rids and peer.rid in rids:
            rids.remove(peer.rid)
            if not rids:
                del self.conns[peer.client_id]
                if peer.role == "agent":
                    self._set_online(peer, False, reason)

    def _forget(self, rid: bytes) -> None:
        peer = self.peers.get(rid)
        if peer is not None:
            self._drop_peer(peer, "disconnected")

    def _tick(self, now: float) -> None:
        timing = self.config.timing
        beat = now >= self._next_heartbeat
        if beat:
            self._next_heartbeat = now + timing.heartbeat_s
        heartbeat = pack_header(Kind.HEARTBEAT)
        for peer in list(self.peers.values()):
            if now - peer.last_seen > timing.peer_timeout_s:
                self._drop_peer(peer, "heartbeat timeout")
            elif beat and peer.hello:
                self._send(peer.rid, _EMPTY, heartbeat, _EMPTY)
        if now >= self._next_checkpoint:
            self._next_checkpoint = now + CHECKPOINT_INTERVAL_S
            self.commands.checkpoint()
        for msg_id in [m for m, (_, _, until) in self.forwarded.items() if until < now]:
            del self.forwarded[msg_id]
        wall = time.time()
        for cmd in self.commands.due_to_expire(wall):
            if self.commands.advance(cmd, EXPIRED, {"error": "expired before the agent ran it"}):
                self.counters["commands_expired"] += 1
                self._notify_status(cmd)
                self._send_result(cmd)

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
        self._security(peer, "connection_refused", f"a {record.state} key of {record.client_id} tried to connect from {address}",
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


def _visible(peer: Peer, cmd: Command) -> dict:
    """``cmd`` as ``peer`` may see it: whole for its sender, an admin or a
    service; without ``permissions.COMMAND_PRIVATE_FIELDS`` for anyone else."""
    record = cmd.as_dict()
    if permissions.sees_whole_command(peer.role, peer.client_id, cmd.sender):
        return record
    for name in permissions.COMMAND_PRIVATE_FIELDS:
        record.pop(name, None)
    record["redacted"] = list(permissions.COMMAND_PRIVATE_FIELDS)
    return record


def _may_want(prefixes: tuple[str, ...], client_id: str) -> bool:
    """Whether any of ``prefixes`` can match a topic an agent may batch
    (``<root>.<client_id>`` or below it)."""
    for root in BATCH_TOPIC_ROOTS.values():
        own = f"{root}.{client_id}"
        below = own + "."
        for prefix in prefixes:
            if own.startswith(prefix) or prefix.startswith(below):
                return True
    return False


def serve_in_thread(config: BrokerConfig, **kwargs) -> tuple[Broker, threading.Thread]:
    """Start a broker on a background thread and wait until it listens."""
    broker = Broker(config, **kwargs)
    thread = threading.Thread(target=broker.run, name="ems-broker", daemon=True)
    thread.start()
    if not broker.wait_ready(10):
        raise RuntimeError("broker did not start within 10 s")
    return broker, thread
