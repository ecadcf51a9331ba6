"""The broker's connections: who is there, greeting, presence, dropping.

:class:`PeerTable` owns the bookkeeping every other part of the broker reads:
``peers`` (routing id -> :class:`Peer`), ``conns`` (client id -> routing ids
of its greeted connections), ``subscribers``, ``providers`` (service name ->
routing id) and ``online`` (agent client id -> online since). It admits a
connection's first frame, answers HELLO (enrolling a new key by token, or
recording it pending within the caps), greets, marks agents online and
offline, applies key state changes to live connections and drops peers.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import zmq

from broker.server import enrolment

from broker.core import permissions
from broker.core.envelope import ErrorCode, Header, Kind, pack_body, pack_header
from broker.core.batches import batch_offer
from broker.server.twins import FINGERPRINTS, TwinWatch
from broker.server.registry import ACCEPTED, REJECTED, REVOKED, placeholder_id
from broker.core.vocabulary import pending_key_advice

if TYPE_CHECKING:
    from broker.server.loop import Broker

log = logging.getLogger(__name__)

_EMPTY = b""
#: what a HELLO may say about the peer (kept as ``Peer.info``, 200 characters each)
_INFO_FIELDS = ("client_id", "label", "hostname", "version", "os", "user", *FINGERPRINTS)


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


class PeerTable:
    """Every connection of one broker, and what happens to them."""

    def __init__(self, broker: "Broker"):
        self.broker = broker
        self.registry = broker.registry
        self.counters = broker.counters
        self.flow = broker.flow
        self.peers: dict[bytes, Peer] = {}
        #: client id -> routing ids of its greeted connections (agents: one;
        #: an operator may run several tools at once)
        self.conns: dict[str, list[bytes]] = {}
        self.subscribers: dict[bytes, Peer] = {}
        #: service name ("store") -> routing id of the service providing it
        self.providers: dict[str, bytes] = {}
        self.online: dict[str, float] = {}  # agent client id -> online since
        self.twins = TwinWatch()

    # -- arrival -----------------------------------------------------------------

    def as_sender(self, client_id: str, role: str, key: str) -> Peer:
        """Who to send as for ``client_id`` (a bulk run's or approved command's requester): its live connection,
        or, when it is gone, its identity alone (audit records name it; nothing is sent to it)."""
        for rid in self.conns.get(client_id, ()):
            peer = self.peers.get(rid)
            if peer is not None:
                return peer
        return Peer(rid=b"", key=key, role=role, client_id=client_id, sender=client_id.encode())
    def admit(self, rid: bytes, key: str, frame: zmq.Frame) -> Peer:
        """A new connection (or a new key on a known routing id): its role
        from the key's record; unknown keys are pending and unrecorded."""
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
        peer.last_seen = self.broker.clock()
        self.peers[rid] = peer
        if peer.role == "agent" and (evidence := self.twins.speaks_again(rid, peer.client_id, address)):
            self.broker.records.security(peer, "agent_id_twin", evidence)
        return peer

    def on_hello(self, peer: Peer, header: Header, frames) -> None:
        """HELLO: a waiting key may enrol by token; a known one is greeted; a
        service may say which services it provides and that it takes batches."""
        data = self.broker.read_body(peer, header, frames)
        if data is None:
            return
        info = {k: str(v)[:200] for k, v in data.items() if k in _INFO_FIELDS and isinstance(v, (str, int, float))}
        if peer.role == permissions.PENDING_ROLE:
            if not self._enrol_by_token(peer, data, info):
                return
        peer.batches = peer.role == "service" and data.get("batches") is True
        self.greet(peer, header, info)
        if peer.role == "service" and isinstance(data.get("provides"), list):
            for name in [n for n in data["provides"][:8] if isinstance(n, str) and len(n) <= 32]:
                self.providers[name] = peer.rid
                log.info("%s provides %r", peer.client_id, name)

    # -- enrolment by HELLO ---------------------------------------------------------
    def _enrol_by_token(self, peer: Peer, data: dict, info: dict) -> bool:
        """A key that is not accepted says HELLO: enrol it if it shows the
        enrolment token for a new client id; else record it pending (within
        the caps) and tell it to wait. A claim on a known, blocked or reserved
        id and a refused token are security events about the claimed id."""
        claim = enrolment.judge(self.registry, peer.key, enrolment.claimed_id(data.get("client_id")))
        token = data.get("token")
        token_ok = enrolment.token_matches(token, self.broker.config.enrol_token)
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
        self.broker.send_error(peer.rid, None, ErrorCode.NOT_ENROLLED, detail)
        return False

    def _accept_by_token(self, peer: Peer, claim: enrolment.Claim, info: dict) -> None:
        """The token admits a new id: accepted at once, past the pending caps."""
        record = self.registry.note_pending(peer.key, claim.client_id, info.get("label", ""), info.get("hostname", ""), peer.address)
        self.registry.set_state(record, ACCEPTED)
        peer.recorded = True
        self.counters["enrolled_by_token"] += 1
        log.info("key %s (%s) from %s accepted by enrolment token", peer.key[:8], record.client_id, peer.address or "?")
        self.reauthorise({peer.key}, tell_peer=False)

    def _note_pending(self, peer: Peer, claim: enrolment.Claim, info: dict) -> str:
        """Record (or refresh) a pending key; returns why it was not recorded
        ("" when it was): a new key past the per-source or total cap."""
        label, hostname = info.get("label", ""), info.get("hostname", "")
        if not peer.recorded:
            c = self.broker.config
            full = enrolment.no_room(self.registry, peer.address, c.max_pending_per_source, c.max_pending_keys)
            if full:
                self.counters["pending_not_recorded"] += 1
                self.broker.records.security(peer, "pending_cap", f"new key {peer.key[:8]} not recorded: {full}",
                                             subject=claim.client_id or None, throttle=("address", peer.address))
                return full
            record = self.registry.note_pending(peer.key, claim.client_id, label, hostname, peer.address)
            peer.recorded = True
            log.warning("new key %s from %s is pending as %s: %s",
                        peer.key[:8], peer.address or "?", record.client_id, pending_key_advice(peer.key[:8]))
        else:
            record = self.registry.note_pending(peer.key, claim.client_id, label, hostname)
        peer.client_id = record.client_id
        return ""

    def _report_claim(self, peer: Peer, claim: enrolment.Claim, token: object, token_ok: bool) -> None:
        """Security events for a waiting key's HELLO, about the id it claims."""
        security = self.broker.records.security
        subject = claim.client_id or None
        throttle = None if peer.recorded else ("address", peer.address)
        if token is not None and not token_ok:
            self.counters["enrol_token_refused"] += 1
            security(peer, "bad_enrol_token", f"new key {peer.key[:8]} presented a wrong enrolment token",
                     subject=subject, throttle=throttle)
        elif token_ok:  # a valid token for an id it does not admit
            self.counters["enrol_token_refused"] += 1
        event = enrolment.CLAIM_EVENTS.get(claim.status)
        if event is not None:
            note = "the enrolment token does not admit it; " if token_ok else ""
            detail = f"new key {peer.key[:8]} claims {claim.client_id}: {claim.why}; {note}pending until an admin decides"
            security(peer, event, detail, subject=subject, throttle=throttle)
        elif token_ok:
            security(peer, "enrol_token_refused", f"new key {peer.key[:8]} presented the token without a client id",
                     throttle=throttle)

    # -- greeting ------------------------------------------------------------------
    def greet(self, peer: Peer, header: Header, info: dict) -> None:
        """Register a greeted connection, answer WELCOME, hand over what waited."""
        rids = self.conns.setdefault(peer.client_id, [])
        if peer.role == "agent":
            for old_rid in rids:
                if old_rid != peer.rid:
                    self.flow.forget(old_rid)
                    self._replacing(old_rid, peer, info)
                if old_rid != peer.rid and self.peers.pop(old_rid, None) is not None:
                    log.info("%s reconnected (the new connection replaces the old one)", peer.client_id)
            rids[:] = [peer.rid]
        elif peer.rid not in rids:
            rids.append(peer.rid)
        peer.hello, peer.info = True, info
        welcome = pack_body(self._welcome(peer))
        self.flow.start(peer.rid)  # the peer counts what it takes from this WELCOME on
        self.broker.send(peer.rid, _EMPTY, pack_header(Kind.WELCOME, corr=header.msg_id), welcome)
        commands = self.broker.command_router
        if peer.role == "agent":
            record = self.registry.get(peer.key)
            if info.get("hostname") and record is not None and record.hostname != info["hostname"]:
                self.registry.set_hostname(record, info["hostname"])
            self.broker.targets.remember(peer.client_id, info)
            self.set_online(peer, True, "hello")
            for cmd in self.broker.commands.open_for(peer.client_id):
                commands.deliver(cmd)
        else:
            for cmd in self.broker.commands.unsent_results(peer.client_id):
                commands.send_result(cmd)

    def _replacing(self, old_rid: bytes, peer: Peer, info: dict) -> None:
        """An agent's new connection replaces a live one: a clone is a security event (:mod:`broker.server.twins`)."""
        old = self.peers.get(old_rid)
        if old is None:
            return
        evidence = self.twins.replacing(old, replace(peer, info=info))
        if evidence:
            self.broker.records.security(peer, "agent_id_clone", evidence)

    def _welcome(self, peer: Peer) -> dict:
        """What WELCOME tells a peer: who it is, the timing, batch and flow
        terms, and (for an agent under a rate limit) where its buckets stand."""
        broker = self.broker
        t = broker.config.timing
        welcome = {
            "client_id": peer.client_id,
            "role": peer.role,
            "heartbeat_s": t.heartbeat_s,
            "peer_timeout_s": t.peer_timeout_s,
            "boot_id": broker.boot_id,
            "server_time": time.time(),
            "batch": batch_offer(),
        }
        if peer.role == "agent" and broker.quotas is not None:
            # a well-behaved agent paces itself, from where its buckets stand (they outlive connections)
            welcome["rate_limit"] = {**broker.config.rate_limit.offer(), **broker.quotas.left(peer.client_id, broker.clock())}
        welcome["flow"] = self.flow.offer()
        return welcome

    # -- presence and leaving ----------------------------------------------------------
    def set_online(self, peer: Peer, online: bool, reason: str) -> None:
        """Mark an agent online or offline: touch its key, record presence."""
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
        self.broker.records.note(
            Kind.PRESENCE,
            f"presence.{cid}",
            {"client_id": cid, "state": "online" if online else "offline", "reason": reason, "ts": now, "info": peer.info},
            sender=peer.sender,
        )

    def drop(self, peer: Peer, reason: str) -> None:
        """Forget a connection everywhere; an agent's last one takes it offline."""
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
                    self.set_online(peer, False, reason)

    def forget(self, rid: bytes) -> None:
        """A routing id the socket no longer reaches."""
        peer = self.peers.get(rid)
        if peer is not None:
            self.drop(peer, "disconnected")

    def beat(self, now: float, timeout_s: float, heartbeat: bytes | None) -> None:
        """Drop peers silent for ``timeout_s``; send ``heartbeat`` (a packed
        header, or None for no beat this time) to every greeted one."""
        send = self.broker.send
        for peer in list(self.peers.values()):
            if now - peer.last_seen > timeout_s:
                self.drop(peer, "heartbeat timeout")
            elif heartbeat is not None and peer.hello:
                send(peer.rid, _EMPTY, heartbeat, _EMPTY)

    def reauthorise(self, keys: set[str], tell_peer: bool = True) -> int:
        """Apply new key states to every live connection of ``keys``; returns
        how many connections were closed (told REVOKED and dropped)."""
        send_error = self.broker.send_error
        closed = 0
        for peer in [p for p in self.peers.values() if p.key in keys]:
            record = self.registry.get(peer.key)
            if record is None:
                continue
            if record.state == ACCEPTED:
                peer.role, peer.client_id = record.role, record.client_id
                peer.sender = record.client_id.encode()
                if tell_peer:  # a pending peer waits: tell it to say hello again
                    send_error(peer.rid, None, ErrorCode.HELLO_REQUIRED, "key accepted")
            elif record.state in (REJECTED, REVOKED) and peer.role in (REJECTED, REVOKED):
                peer.role = record.state  # already cut off
            elif record.state in (REJECTED, REVOKED):
                send_error(peer.rid, None, ErrorCode.REVOKED, f"key {record.state}")
                self.drop(peer, f"key {record.state}")
                peer.role = record.state
                self.peers[peer.rid] = peer  # kept so further frames are refused, not re-admitted
                closed += 1
        return closed
