"""Fleet clients for ``bench/fleet.py``: thousands of lean, mostly idle clients per process.

Two fleets, each one process with one loop (no thread per client):

``ems``   lean EMS agents: one CurveZMQ DEALER per agent, with the agent's
          timing (``timing_for(heartbeat_s)``, as ``ems agent`` uses) and the
          envelope of ``broker/core/envelope.py``. Each says HELLO (again when the
          broker answers HELLO_REQUIRED), sends a HEARTBEAT when it has sent
          nothing for a heartbeat interval, one EVENT ``event.<id>.sysinfo``
          (the agent's own sysinfo body) per ``--event-s``, and, like
          :class:`broker.core.client.BusClient`, drops and reopens its connection
          when the broker has been silent for the broker timeout.
``mqtt``  lean MQTT 3.1.1 clients on raw non-blocking sockets (CONNECT,
          PINGREQ, QoS 0 PUBLISH, SUBSCRIBE built by hand): a PINGREQ when
          nothing was sent for ``--heartbeat-s``, the same body on
          ``event/<id>/sysinfo`` per ``--event-s``, a reconnect with the same
          jittered back-off when the connection drops. ``--subscriber`` adds
          one client that subscribes to ``event/#`` and counts (the
          counterpart of the EMS persister).

Every ``--report-s`` the process prints one JSON line on stdout: how many
clients are ready (welcomed / CONNACKed), how many of those became ready
after the last SIGUSR1 (the mark a restart test sets), the earliest and latest
moment (wall clock) one of them became ready, and counters. SIGTERM stops it.

    python -m bench.fleet_clients ems --keys FILE --server tcp://127.0.0.1:P --server-key KEY
    python -m bench.fleet_clients mqtt --port P --clients 2500 --prefix m0
"""
from __future__ import annotations

import argparse
import errno
import json
import random
import selectors
import signal
import socket
import sys
import time
from collections import Counter
from pathlib import Path

import zmq

from agent import sysinfo
from broker.core.config import timing_for
from broker.core.config import ClientConfig, Timing
from broker.core.envelope import ErrorCode, Kind, decode, new_id, pack_body, pack_header, unpack_body
from broker.core.errors import ProtocolError

#: how long one poll of every socket may be deferred (bounds the O(sockets) poll cost)
POLL_INTERVAL_S = 0.05
#: how often every client's timers are looked at
SWEEP_INTERVAL_S = 0.2


class Signals:
    """SIGTERM/SIGINT stop the loop; SIGUSR1 sets a mark (wall clock) from which reports count fresh welcomes."""

    def __init__(self) -> None:
        self.stop = False
        self.mark = 0.0
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGUSR1, self._on_mark)

    def _on_stop(self, *_) -> None:
        self.stop = True

    def _on_mark(self, *_) -> None:
        self.mark = time.time()


def backoff_s(timing: Timing, attempt: int) -> float:
    """The client library's reconnect delay: doubling from the minimum, jittered."""
    return min(timing.reconnect_max_s, timing.reconnect_min_s * (2 ** attempt)) * random.uniform(0.5, 1.0)


def event_body() -> bytes:
    """What an agent reports every sysinfo interval: this machine's figures, the same for every client."""
    return pack_body(sysinfo.collect("fleet-sim"))


def error_name(code) -> str:
    try:
        return ErrorCode(code).name.lower()
    except ValueError:
        return str(code)


def write_keys(path: Path, agents: list[tuple[str, str, str]]) -> None:
    """A shard's key file: ``[[client_id, public, secret], ...]``, mode 0600."""
    path.touch(mode=0o600)
    path.write_text(json.dumps(agents))


def emit(report: dict) -> None:
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------
# EMS agents
# ---------------------------------------------------------------------------
class EmsAgent:
    __slots__ = ("client_id", "public", "secret", "sock", "ready", "last_sent", "last_heard", "last_hello",
                 "next_event", "welcomed_at", "attempt", "reconnect_at", "broker_timeout_s", "hello")

    def __init__(self, client_id: str, public: str, secret: str):
        self.client_id, self.public, self.secret = client_id, public.encode(), secret.encode()
        self.sock: zmq.Socket | None = None
        self.ready = False
        self.last_sent = self.last_heard = self.last_hello = self.next_event = 0.0
        self.welcomed_at = 0.0
        self.attempt = 0
        self.reconnect_at = 0.0
        self.broker_timeout_s = 0.0
        self.hello = pack_body({"client_id": client_id, "hostname": client_id, "version": "fleet-sim", "os": "Linux",
                                "user": "sim"})


class EmsFleet:
    """Many lean EMS agents on one context and one poller."""

    def __init__(self, config: ClientConfig, agents: list[tuple[str, str, str]], event_s: float):
        self.config, self.timing, self.event_s = config, config.timing, event_s
        self.ctx = zmq.Context()
        self.ctx.set(zmq.MAX_SOCKETS, len(agents) + 64)
        self.agents = [EmsAgent(*a) for a in agents]
        self.by_socket: dict[zmq.Socket, EmsAgent] = {}
        self.poller = zmq.Poller()
        self.counts: Counter = Counter()
        self.body = event_body()

    def open(self, agent: EmsAgent, now: float) -> None:
        c = self.config
        sock = self.ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.curve_serverkey = c.server_key.encode("ascii")
        sock.curve_publickey = agent.public
        sock.curve_secretkey = agent.secret
        sock.sndhwm, sock.rcvhwm, sock.maxmsgsize = c.send_hwm, c.receive_hwm, c.max_message_bytes
        sock.reconnect_ivl = int(self.timing.reconnect_min_s * 1000)
        sock.reconnect_ivl_max = int(self.timing.reconnect_max_s * 1000)
        sock.connect(c.server)
        agent.sock, agent.ready, agent.last_heard = sock, False, now
        agent.broker_timeout_s = self.timing.broker_timeout_s
        self.by_socket[sock] = agent
        self.poller.register(sock, zmq.POLLIN)
        self.counts["opened"] += 1
        self.say_hello(agent, now)

    def close(self, agent: EmsAgent, now: float, why: str) -> None:
        if agent.sock is not None:
            self.poller.unregister(agent.sock)
            del self.by_socket[agent.sock]
            agent.sock.close(linger=0)
            agent.sock = None
        agent.ready = False
        agent.reconnect_at = now + backoff_s(self.timing, agent.attempt)
        agent.attempt = min(agent.attempt + 1, 16)
        self.counts[f"reopen_{why}"] += 1

    def send(self, agent: EmsAgent, kind: Kind, topic: str, body: bytes, now: float) -> None:
        try:
            agent.sock.send_multipart([pack_header(kind, topic, new_id()), body], zmq.NOBLOCK)
        except zmq.Again:
            self.counts["send_full"] += 1
            return
        agent.last_sent = now
        self.counts[kind.name.lower()] += 1

    def say_hello(self, agent: EmsAgent, now: float) -> None:
        agent.last_hello = now
        self.send(agent, Kind.HELLO, "", agent.hello, now)

    def on_message(self, agent: EmsAgent, frames: list[bytes], now: float) -> None:
        agent.last_heard = now
        try:
            env = decode(frames)
        except ProtocolError:
            self.counts["malformed"] += 1
            return
        kind = env.kind
        try:
            info = unpack_body(env.body) if kind in (Kind.WELCOME, Kind.ERROR) else {}
        except ProtocolError:
            info = {}
        if not isinstance(info, dict):
            info = {}
        if kind is Kind.WELCOME:
            agent.ready, agent.attempt, agent.welcomed_at = True, 0, time.time()
            agent.broker_timeout_s = max(self.timing.broker_timeout_s, float(info.get("peer_timeout_s", 0)))
            agent.next_event = now + random.uniform(0, self.event_s)  # spread the fleet's events over the interval
            self.counts["welcome"] += 1
        elif kind is Kind.ERROR:
            code = info.get("code")
            self.counts[f"error_{error_name(code)}"] += 1
            if code == ErrorCode.HELLO_REQUIRED:
                agent.ready = False
                self.say_hello(agent, now)
        else:
            self.counts[f"got_{kind.name.lower()}"] += 1

    def sweep(self, now: float) -> None:
        hb = self.timing.heartbeat_s
        for agent in self.agents:
            if agent.sock is None:
                if now >= agent.reconnect_at:
                    self.open(agent, now)
                continue
            if now - agent.last_heard > agent.broker_timeout_s:
                self.close(agent, now, "silent")
            elif not agent.ready:
                if now - agent.last_hello >= max(hb, 0.5):
                    self.say_hello(agent, now)
            elif now >= agent.next_event:
                agent.next_event += self.event_s
                self.send(agent, Kind.EVENT, f"event.{agent.client_id}.sysinfo", self.body, now)
            elif now - agent.last_sent >= hb:
                self.send(agent, Kind.HEARTBEAT, "", b"", now)

    def receive(self, timeout_s: float) -> None:
        for sock, _ in self.poller.poll(int(timeout_s * 1000)):
            agent = self.by_socket.get(sock)
            while agent is not None and agent.sock is sock:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.on_message(agent, frames, time.monotonic())

    def report(self, mark: float) -> dict:
        ready = [a for a in self.agents if a.ready]
        return {"n": len(self.agents), "ready": len(ready), "since_mark": sum(1 for a in ready if a.welcomed_at >= mark),
                "min_ready_at": min((a.welcomed_at for a in ready), default=0.0) if len(ready) == len(self.agents) else 0.0,
                "max_ready_at": max((a.welcomed_at for a in ready), default=0.0),
                "not_ready": [a.client_id for a in self.agents if not a.ready][:20], "counts": dict(self.counts)}

    def shutdown(self) -> None:
        for agent in self.agents:
            if agent.sock is not None:
                agent.sock.close(linger=0)
        self.ctx.term()


# ---------------------------------------------------------------------------
# MQTT clients (MQTT 3.1.1, QoS 0, packets by hand)
# ---------------------------------------------------------------------------
PINGREQ = b"\xc0\x00"
CONNACK, PUBLISH, SUBACK, PINGRESP = 2, 3, 9, 13


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def mqtt_connect(client_id: str, keepalive_s: int) -> bytes:
    """CONNECT, protocol level 4, clean session."""
    rest = _string("MQTT") + b"\x04\x02" + keepalive_s.to_bytes(2, "big") + _string(client_id)
    return b"\x10" + _remaining_length(len(rest)) + rest


def mqtt_publish(topic: str, payload: bytes) -> bytes:
    """PUBLISH at QoS 0 (no packet id)."""
    rest = _string(topic) + payload
    return b"\x30" + _remaining_length(len(rest)) + rest


def mqtt_subscribe(packet_id: int, topic_filter: str) -> bytes:
    rest = packet_id.to_bytes(2, "big") + _string(topic_filter) + b"\x00"
    return b"\x82" + _remaining_length(len(rest)) + rest


def mqtt_packets(buf: bytearray) -> list[tuple[int, bytes]]:
    """Take every complete packet off the front of ``buf`` as (type, body)."""
    out = []
    while len(buf) >= 2:
        length, shift, i = 0, 0, 1
        while True:
            if i >= len(buf):
                return out
            byte = buf[i]
            length |= (byte & 0x7F) << shift
            i += 1
            if not byte & 0x80:
                break
            shift += 7
        if len(buf) < i + length:
            return out
        out.append((buf[0] >> 4, bytes(buf[i:i + length])))
        del buf[:i + length]
    return out


DOWN, CONNECTING, WAIT_CONNACK, READY = range(4)


class MqttClient:
    __slots__ = ("client_id", "topic", "sock", "state", "inbuf", "last_sent", "last_heard", "next_event", "ready_at",
                 "attempt", "reconnect_at", "opened_at", "subscribe")

    def __init__(self, client_id: str, subscribe: str = ""):
        self.client_id, self.topic, self.subscribe = client_id, f"event/{client_id}/sysinfo", subscribe
        self.sock: socket.socket | None = None
        self.state = DOWN
        self.inbuf = bytearray()
        self.last_sent = self.last_heard = self.next_event = self.ready_at = self.reconnect_at = self.opened_at = 0.0
        self.attempt = 0


class MqttFleet:
    """Many lean MQTT clients on one epoll selector."""

    def __init__(self, port: int, client_ids: list[str], timing: Timing, event_s: float, subscriber: bool):
        self.address = ("127.0.0.1", port)
        self.timing, self.event_s = timing, event_s
        self.keepalive_s = int(timing.peer_timeout_s)
        self.clients = [MqttClient(cid) for cid in client_ids]
        self.subscriber = MqttClient(f"{client_ids[0]}-sub", subscribe="event/#") if subscriber else None
        self.sel = selectors.DefaultSelector()
        self.counts: Counter = Counter()
        self.body = event_body()

    def all_clients(self) -> list[MqttClient]:
        return self.clients + ([self.subscriber] if self.subscriber else [])

    def open(self, c: MqttClient, now: float) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex(self.address)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self.counts[f"connect_{errno.errorcode.get(code, code)}"] += 1
            c.reconnect_at, c.attempt = now + backoff_s(self.timing, c.attempt), min(c.attempt + 1, 16)
            return
        c.sock, c.state, c.opened_at, c.last_heard = sock, CONNECTING, now, now
        c.inbuf.clear()
        self.sel.register(sock, selectors.EVENT_WRITE, c)
        self.counts["opened"] += 1

    def fail(self, c: MqttClient, now: float, why: str) -> None:
        if c.sock is not None:
            self.sel.unregister(c.sock)
            c.sock.close()
            c.sock = None
        c.state = DOWN
        c.reconnect_at, c.attempt = now + backoff_s(self.timing, c.attempt), min(c.attempt + 1, 16)
        self.counts[f"reopen_{why}"] += 1

    def send(self, c: MqttClient, packet: bytes, now: float, what: str) -> None:
        try:
            sent = c.sock.send(packet)
        except OSError:
            sent = -1
        if sent != len(packet):  # a kernel buffer that cannot take a few bytes: the connection is dead
            self.fail(c, now, "send")
            return
        c.last_sent = now
        self.counts[what] += 1

    def on_readable(self, c: MqttClient, now: float) -> None:
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.fail(c, now, "closed")
            return
        c.last_heard = now
        c.inbuf += data
        for kind, body in mqtt_packets(c.inbuf):
            if kind == CONNACK:
                if len(body) >= 2 and body[1] == 0:
                    c.state, c.attempt, c.ready_at = READY, 0, time.time()
                    c.next_event = now + random.uniform(0, self.event_s)
                    self.counts["connack"] += 1
                    if c.subscribe:
                        self.send(c, mqtt_subscribe(1, c.subscribe), now, "subscribe")
                else:
                    self.fail(c, now, "refused")
                    return
            elif kind == PUBLISH:
                self.counts["received"] += 1
            elif kind == PINGRESP:
                self.counts["pingresp"] += 1

    def receive(self, timeout_s: float) -> None:
        for key, mask in self.sel.select(timeout_s):
            c: MqttClient = key.data
            now = time.monotonic()
            if c.state == CONNECTING:
                if c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    self.fail(c, now, "connect")
                    continue
                self.sel.modify(c.sock, selectors.EVENT_READ, c)
                c.state = WAIT_CONNACK
                self.send(c, mqtt_connect(c.client_id, self.keepalive_s), now, "connect")
            elif mask & selectors.EVENT_READ:
                self.on_readable(c, now)

    def sweep(self, now: float) -> None:
        hb = self.timing.heartbeat_s
        for c in self.all_clients():
            if c.state == DOWN:
                if now >= c.reconnect_at:
                    self.open(c, now)
            elif c.state != READY:
                if now - c.opened_at > self.timing.broker_timeout_s:
                    self.fail(c, now, "handshake")
            elif now - c.last_heard > self.timing.broker_timeout_s:
                self.fail(c, now, "silent")
            elif now >= c.next_event and not c.subscribe:
                c.next_event += self.event_s
                self.send(c, mqtt_publish(c.topic, self.body), now, "publish")
            elif now - c.last_sent >= hb:
                self.send(c, PINGREQ, now, "pingreq")

    def report(self, mark: float) -> dict:
        ready = [c for c in self.clients if c.state == READY]
        return {"n": len(self.clients), "ready": len(ready), "since_mark": sum(1 for c in ready if c.ready_at >= mark),
                "min_ready_at": min((c.ready_at for c in ready), default=0.0) if len(ready) == len(self.clients) else 0.0,
                "max_ready_at": max((c.ready_at for c in ready), default=0.0),
                "not_ready": [c.client_id for c in self.clients if c.state != READY][:20], "counts": dict(self.counts)}

    def shutdown(self) -> None:
        for c in self.all_clients():
            if c.sock is not None:
                c.sock.close()
        self.sel.close()


# ---------------------------------------------------------------------------
def run(fleet, report_s: float) -> None:
    """The one loop: poll (at most every POLL_INTERVAL_S), sweep timers, report."""
    signals = Signals()
    next_sweep = next_report = 0.0
    try:
        while not signals.stop:
            started = time.monotonic()
            if started >= next_sweep:
                fleet.sweep(started)
                next_sweep = started + SWEEP_INTERVAL_S
            if started >= next_report:
                emit({"t": time.time(), "mark": signals.mark, **fleet.report(signals.mark)})
                next_report = started + report_s
            fleet.receive(min(max(0.0, next_sweep - time.monotonic()), report_s))
            spare = POLL_INTERVAL_S - (time.monotonic() - started)
            if spare > 0:
                time.sleep(spare)
    finally:
        fleet.shutdown()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="fleet", required=True)
    for name in ("ems", "mqtt"):
        s = sub.add_parser(name, help=f"a fleet of lean {name.upper()} clients")
        s.add_argument("--heartbeat-s", type=float, default=Timing.heartbeat_s, help="heartbeat / PINGREQ interval (default %(default)s)")
        s.add_argument("--event-s", type=float, default=10.0, help="one event per client per this many seconds (default %(default)s)")
        s.add_argument("--report-s", type=float, default=0.5, help="seconds between JSON report lines (default %(default)s)")
        if name == "ems":
            s.add_argument("--keys", required=True, type=Path, help="shard key file: JSON [[client_id, public, secret], ...]")
            s.add_argument("--server", required=True, help="broker endpoint, tcp://HOST:PORT")
            s.add_argument("--server-key", required=True, help="the broker's Z85 public key")
        else:
            s.add_argument("--port", required=True, type=int, help="Mosquitto port on 127.0.0.1")
            s.add_argument("--clients", required=True, type=int, help="number of clients")
            s.add_argument("--prefix", required=True, help="client ids are PREFIX-00000, PREFIX-00001, ...")
            s.add_argument("--subscriber", action="store_true", help="one more client subscribed to event/#")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    timing = timing_for(args.heartbeat_s)
    if args.fleet == "ems":
        agents = [tuple(a) for a in json.loads(args.keys.read_text())]
        fleet = EmsFleet(ClientConfig(server=args.server, server_key=args.server_key, timing=timing), agents, args.event_s)
    else:
        ids = [f"{args.prefix}-{i:05d}" for i in range(args.clients)]
        fleet = MqttFleet(args.port, ids, timing, args.event_s, args.subscriber)
    run(fleet, args.report_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
