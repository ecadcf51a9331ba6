"""The floor under the EMS broker, for bench/fleet.py: a CurveZMQ ROUTER with ZAP and nothing else.

It opens its ROUTER with the broker's socket options (``BrokerConfig``
defaults: HWMs, backlog, handshake timeout, ROUTER_MANDATORY, ZAP domain),
answers ZAP with the broker's own decision function (``broker.server.zap.decide``
over a key registry), and speaks just enough of the protocol for the fleet's
lean agents: WELCOME to a HELLO, HELLO_REQUIRED to anything else from a
connection that has not said HELLO, a HEARTBEAT to every greeted connection
each heartbeat interval. No presence, journal, routing or per-peer records:
its memory and CPU per connection are what libzmq, CurveZMQ, ZAP and a
minimal Python loop cost, the floor any broker on this stack starts from.

    python -m bench.fleet_floor --bind tcp://127.0.0.1:PORT --dir DIR --ready-file PATH

``DIR`` holds ``keys/floor.{public,secret}`` and ``registry.db``; the
endpoint is written to ``--ready-file`` once bound. SIGTERM stops it.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import zmq

from broker.core import keys

from broker.server import zap
from broker.core.config import timing_for
from broker.core.config import BrokerConfig, DataDir
from broker.core.envelope import ErrorCode, Kind, decode_header, error_body, pack_body, pack_header
from broker.core.errors import ProtocolError
from broker.server.registry import KeyRegistry

_NOBLOCK = int(zmq.NOBLOCK)


def open_router(ctx: zmq.Context, config: BrokerConfig, pair: keys.KeyPair) -> zmq.Socket:
    """A ROUTER set up like the broker's."""
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    router.curve_server = True
    router.curve_secretkey = pair.secret_bytes
    router.curve_publickey = pair.public_bytes
    router.zap_domain = b"ems"
    router.router_mandatory = 1
    router.sndhwm, router.rcvhwm = config.send_hwm, config.receive_hwm
    router.maxmsgsize = config.max_message_bytes
    router.backlog = config.listen_backlog
    router.handshake_ivl = int(config.handshake_timeout_s * 1000)
    router.bind(config.bind)
    return router


def serve(config: BrokerConfig, registry: KeyRegistry, pair: keys.KeyPair, ready_file: Path, stop: list[bool]) -> None:
    ctx = zmq.Context()
    zap_socket = ctx.socket(zmq.REP)
    zap_socket.linger = 0
    zap_socket.bind(zap.ZAP_ENDPOINT)
    router = open_router(ctx, config, pair)
    tmp = ready_file.with_suffix(".tmp")
    tmp.write_text(router.getsockopt_string(zmq.LAST_ENDPOINT) + "\n")
    os.replace(tmp, ready_file)
    t = config.timing
    welcome = pack_body({"client_id": "", "role": "agent", "heartbeat_s": t.heartbeat_s, "peer_timeout_s": t.peer_timeout_s,
                         "boot_id": "floor", "server_time": time.time()})
    greeted: set[bytes] = set()
    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    poller.register(zap_socket, zmq.POLLIN)
    next_beat = time.monotonic() + t.heartbeat_s
    while not stop[0]:
        ready = dict(poller.poll(max(0, int((next_beat - time.monotonic()) * 1000))))
        if zap_socket in ready:
            for _ in range(100):
                try:
                    frames = zap_socket.recv_multipart(_NOBLOCK)
                except zmq.Again:
                    break
                zap_socket.send_multipart(zap.decide(registry, frames)[0])
        if router in ready:
            for _ in range(config.batch):
                try:
                    frames = router.recv_multipart(_NOBLOCK)
                except zmq.Again:
                    break
                answer(router, greeted, frames, welcome)
        if time.monotonic() >= next_beat:
            next_beat = time.monotonic() + t.heartbeat_s
            beat = pack_header(Kind.HEARTBEAT)
            for rid in list(greeted):
                if not send(router, rid, beat, b""):
                    greeted.discard(rid)
    router.close(0)
    zap_socket.close(0)
    ctx.term()


def answer(router: zmq.Socket, greeted: set[bytes], frames: list[bytes], welcome: bytes) -> None:
    if len(frames) != 3:
        return
    rid = frames[0]
    try:
        header = decode_header(frames[1])
    except ProtocolError:
        return
    if header.kind is Kind.HELLO:
        greeted.add(rid)
        send(router, rid, pack_header(Kind.WELCOME, corr=header.msg_id), welcome)
    elif rid not in greeted:
        send(router, rid, pack_header(Kind.ERROR, corr=header.msg_id), error_body(ErrorCode.HELLO_REQUIRED, ""))


def send(router: zmq.Socket, rid: bytes, header: bytes, body: bytes) -> bool:
    """False if the connection is gone (a full queue just skips this one)."""
    try:
        router.send_multipart([rid, b"", header, body], _NOBLOCK)
    except zmq.Again:
        return True
    except zmq.ZMQError as exc:
        if exc.errno == zmq.EHOSTUNREACH:
            return False
        raise
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bind", required=True, help="endpoint, tcp://127.0.0.1:PORT")
    p.add_argument("--dir", required=True, type=Path, help="holds keys/floor.{public,secret} and registry.db")
    p.add_argument("--ready-file", required=True, type=Path, help="written with the endpoint once bound")
    p.add_argument("--heartbeat-s", type=float, default=5.0, help="heartbeat interval (default %(default)s)")
    args = p.parse_args(argv)
    config = BrokerConfig(DataDir(args.dir), bind=args.bind, timing=timing_for(args.heartbeat_s))
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    signal.signal(signal.SIGINT, lambda *_: stop.__setitem__(0, True))
    registry = KeyRegistry(args.dir / "registry.db")
    try:
        serve(config, registry, keys.load(args.dir / "keys", "floor"), args.ready_file, stop)
    finally:
        registry.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
