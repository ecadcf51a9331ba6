"""A raw Curve DEALER for fuzzing: sends whatever frames it is given and
waits for the answer correlated to one message, skipping the rest."""
from __future__ import annotations

import collections
import time
from typing import Callable

import zmq

from broker.core.envelope import Envelope, Kind, decode, new_id, pack_body, pack_header
from broker.core.errors import ProtocolError
from broker.core.keys import KeyPair


class RawPeer:
    """One enrolled (or pending) key on its own DEALER; no protocol logic."""

    def __init__(self, ctx: zmq.Context, endpoint: str, server_key: str, keypair: KeyPair, client_id: str, role: str):
        self.keypair, self.client_id, self.role = keypair, client_id, role
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.sndhwm = self.sock.rcvhwm = 100_000
        self.sock.curve_serverkey = server_key.encode("ascii")
        self.sock.curve_publickey = keypair.public_bytes
        self.sock.curve_secretkey = keypair.secret_bytes
        self.sock.connect(endpoint)
        #: the last COMMAND this peer received (an agent's ``{cmd}``)
        self.last_command = ""
        #: answers that arrived while another was awaited, by ``corr``
        self.early: collections.OrderedDict[str, Envelope] = collections.OrderedDict()

    def send(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames, zmq.NOBLOCK)

    def send_kind(self, kind: Kind, body, topic: str = "") -> str:
        msg_id = new_id()
        self.send([pack_header(kind, topic, msg_id), pack_body(body)])
        return msg_id

    def drain(self) -> int:
        """Read and drop whatever is queued (noting commands); how many."""
        n = 0
        while self.sock.poll(0):
            self._take(self.sock.recv_multipart())
            n += 1
        return n

    def answer(self, msg_id: str, timeout_s: float, idle: Callable[[], None] | None = None) -> Envelope | None:
        """The message whose ``corr`` is ``msg_id``, or None after ``timeout_s``;
        ``idle`` runs between polls (to pump a service on this thread)."""
        if msg_id in self.early:
            return self.early.pop(msg_id)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.sock.poll(0 if idle else 20):
                env = self._take(self.sock.recv_multipart())
                if env is not None and env.corr == msg_id:
                    return env
                if env is not None and env.corr:
                    self.early[env.corr] = env
                    while len(self.early) > 100:
                        self.early.popitem(last=False)
            elif idle is not None:
                idle()
        return None

    def _take(self, frames: list[bytes]) -> Envelope | None:
        try:
            env = decode(frames)
        except ProtocolError:
            return None
        if env.kind is Kind.COMMAND:
            self.last_command = env.msg_id
        return env

    def close(self) -> None:
        self.sock.close(linger=0)
