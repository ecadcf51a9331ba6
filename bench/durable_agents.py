"""Durable agents: many simulated agents, each with its own durable outbox, in one process (chaos and load runs).

Each simulated agent has its own Curve key, outbox and BusClient, enrols
with the enrolment token, and creates ``events`` numbered events whose
message ids are derived from (agent, number), so that a restart of this
process re-creates at most what it had not yet recorded as created and the
store can deduplicate. The process exits 0 once every event of every agent
has been acknowledged by the store (its outbox is empty), printing DONE.

    python -m bench.durable_agents --dir D --server tcp://127.0.0.1:P --server-key K --agents 50 --events 200
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from agent.delivery import DurableSender
from agent.outbox import Outbox
from broker.core import keys
from broker.core.client import BusClient
from broker.core.config import ClientConfig, Timing
from broker.core.envelope import Kind, pack_body

log = logging.getLogger("durable_agents")


class SimAgent:
    def __init__(self, root: Path, client_id: str, config: ClientConfig, token: str, events: int):
        self.client_id = client_id
        self.dir = root / self.client_id
        self.events = events
        pair = keys.load_or_create(self.dir / "keys", "agent")
        self.bus = BusClient(config, pair, hello={"client_id": self.client_id, "token": token})
        self.outbox = Outbox(self.dir / "outbox.db")
        self.sender = DurableSender(self.bus, self.outbox)
        self.progress_file = self.dir / "created"
        self.created = int(self.progress_file.read_text()) if self.progress_file.exists() else 0

    def create(self, n: int) -> None:
        """Put the next ``n`` events into the outbox, then record progress."""
        upto = min(self.events, self.created + n)
        if upto <= self.created:
            return
        self.outbox.put_many([
            (Kind.EVENT, "chaos", pack_body({"seq": seq, "agent": self.client_id}), None, f"{self.client_id}-{seq:08d}")
            for seq in range(self.created, upto)
        ])
        tmp = self.progress_file.with_suffix(".tmp")
        tmp.write_text(str(upto))
        os.replace(tmp, self.progress_file)
        self.created = upto

    def step(self) -> None:
        for env in self.bus.drain(1000, 0.0):
            self.sender.handle(env)
        self.sender.pump()

    @property
    def finished(self) -> bool:
        return self.created >= self.events and self.outbox.pending == 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--server", required=True)
    p.add_argument("--server-key", required=True)
    p.add_argument("--token", default=os.environ.get("EMS_ENROL_TOKEN", ""))
    p.add_argument("--agents", type=int, default=50)
    p.add_argument("--prefix", default="sim", help="agent ids are PREFIX-000, PREFIX-001, ...")
    p.add_argument("--events", type=int, default=200, help="events per agent")
    p.add_argument("--rate", type=float, default=1000.0, help="events per second, all agents together")
    p.add_argument("--heartbeat-s", type=float, default=0.5)
    p.add_argument("--timeout-s", type=float, default=600.0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    hb = args.heartbeat_s
    timing = Timing(heartbeat_s=hb, peer_timeout_s=3 * hb, broker_timeout_s=3 * hb, reconnect_min_s=0.05, reconnect_max_s=1.0)
    config = ClientConfig(server=args.server, server_key=args.server_key, timing=timing)
    fleet = [SimAgent(args.dir, f"{args.prefix}-{i:03d}", config, args.token, args.events) for i in range(args.agents)]
    for agent in fleet:
        agent.bus.connect()
    ready_by = time.monotonic() + 60
    while not all(a.bus.ready for a in fleet) and time.monotonic() < ready_by:
        for agent in fleet:
            agent.bus.poll(0.0)
        time.sleep(0.005)
    print("READY", time.time(), flush=True)
    start = time.monotonic()
    credit = 0.0
    last = start
    while time.monotonic() - start < args.timeout_s:
        now = time.monotonic()
        credit = min(credit + (now - last) * args.rate, args.rate)  # at most one second of burst
        last = now
        per_agent = int(credit // len(fleet))
        if per_agent:
            for agent in fleet:
                agent.create(per_agent)
            credit -= per_agent * len(fleet)
        for agent in fleet:
            agent.step()
        if all(agent.finished for agent in fleet):
            print("DONE", sum(a.created for a in fleet), time.time(), flush=True)
            return 0
        time.sleep(0.005)
    print("TIMEOUT", {a.client_id: a.outbox.stats()["pending"] for a in fleet if not a.finished}, flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
