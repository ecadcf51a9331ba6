"""A pending-key flood, run as its own process by tests: an outsider who has
the broker's public key makes a fresh Curve key per connection, from one
source address, and says HELLO with each.

    python key_flood.py ENDPOINT SERVER_KEY SOURCE_IP [WINDOW] [IN_FLIGHT]

Keeps making keys until its stdin closes: as fast as the broker answers,
with at most IN_FLIGHT (default 200) HELLOs unanswered at once and at most
WINDOW (default 1,000) sockets open (the oldest closed as new ones open).
Prints ``made N answered M`` about every 100 keys (M: answers received,
NOT_ENROLLED), flushed, for the test to follow.
"""
from __future__ import annotations

import collections
import select
import sys
import time

import zmq

from broker.core.envelope import Kind, pack_body, pack_header

#: an unanswered HELLO stops counting as in flight after this long
GIVE_UP_S = 10.0


class Flood:
    def __init__(self, endpoint: str, server_key: str, source: str, window: int, in_flight: int):
        self.target = f"tcp://{source}:0;{endpoint.removeprefix('tcp://')}"
        self.server_key = server_key.encode()
        self.window, self.max_in_flight = window, in_flight
        self.ctx = zmq.Context()
        self.ctx.set(zmq.MAX_SOCKETS, window + in_flight + 2000)  # closing sockets free their slot late
        self.poller = zmq.Poller()
        self.open: collections.deque = collections.deque()
        self.waiting: dict[zmq.Socket, float] = {}  # unanswered -> when sent
        self.made = self.answered = 0

    def open_one(self) -> None:
        if len(self.open) >= self.window:
            old = self.open.popleft()
            self.waiting.pop(old, None)
            self.poller.unregister(old)
            old.close(linger=0)
        public, secret = zmq.curve_keypair()
        sock = self.ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = self.server_key, public, secret
        sock.connect(self.target)
        sock.send_multipart([pack_header(Kind.HELLO), pack_body({"client_id": f"junk-{self.made}", "hostname": "flood"})], zmq.NOBLOCK)
        self.poller.register(sock, zmq.POLLIN)
        self.open.append(sock)
        self.waiting[sock] = time.monotonic()
        self.made += 1

    def read_answers(self, timeout_ms: int) -> None:
        for sock, _ in self.poller.poll(timeout_ms):
            while sock.poll(0):
                sock.recv_multipart()
                if self.waiting.pop(sock, None) is not None:
                    self.answered += 1
        stale = time.monotonic() - GIVE_UP_S
        for sock in [s for s, sent in self.waiting.items() if sent < stale]:
            del self.waiting[sock]

    def run(self) -> None:
        reported = 0
        while not select.select([sys.stdin], [], [], 0)[0]:  # stdin closed (readable at EOF): stop
            while len(self.waiting) < self.max_in_flight:
                self.open_one()
            self.read_answers(20)
            if self.made - reported >= 100:
                reported = self.made
                print(f"made {self.made} answered {self.answered}", flush=True)
        print(f"made {self.made} answered {self.answered}", flush=True)
        for sock in self.open:
            sock.close(linger=0)
        self.ctx.term()


def main() -> int:
    endpoint, server_key, source = sys.argv[1:4]
    window = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    in_flight = int(sys.argv[5]) if len(sys.argv) > 5 else 200
    Flood(endpoint, server_key, source, window, in_flight).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
