"""One command to 1,000 and to 5,000 agents: an EMS bulk run beside the single-command path and a raw ceiling.

For each fleet size N, in one run on this machine:

``raw``     the ceiling: a bare CurveZMQ ROUTER in this process sends one 200-byte message to each of N
            DEALERs (a child process that echoes it) and takes the N replies; nothing stored, no protocol.
``single``  EMS, one operator sending N ordinary commands at once (pipelined, not one after another), each
            queued durably, audited, delivered, answered by a simulated agent and its result relayed back.
``bulk``    EMS, one ``bulk.start`` on selector ``all`` (max_parallel 1,000): the broker resolves, records
            and paces the N commands itself; the operator polls ``bulk.get``.

The agents are ``bench/command_fleet.py`` processes (2,500 per process), the broker is ``ems broker`` in its
own process; its CPU time (user + system from /proc) over each phase divided by N is the CPU per target.
Printed: wall time until every target answered and broker CPU per target, side by side, and bulk/raw and
bulk/single ratios. Shared, noisy machines: read the ratios.

    python -m bench.bulk                 # N = 1,000 and 5,000 (about 2 minutes)
    python -m bench.bulk --sizes 200     # a quick look
    python -m bench.bulk --json out.json
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq

from bench.stack import free_port, stop_child
from broker.core import keys
from broker.core.client import BusClient
from broker.core.config import ClientConfig, DataDir, timing_for
from broker.core.envelope import Kind, new_id
from broker.server.registry import KeyRegistry

SHARD = 2500
PAYLOAD = b"x" * 200
TICKS = os.sysconf("SC_CLK_TCK")


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


# -- the raw ceiling ---------------------------------------------------------------------------------
def _echo_dealers(endpoint: str, server_public: str, n: int) -> None:
    """Child: ``n`` CurveZMQ DEALERs that say hello once and echo every message."""
    ctx = zmq.Context()
    ctx.set(zmq.MAX_SOCKETS, n + 64)
    poller, socks = zmq.Poller(), []
    for _ in range(n):
        pair = keys.generate()
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = server_public.encode(), pair.public_bytes, pair.secret_bytes
        sock.connect(endpoint)
        sock.send(b"hello")
        poller.register(sock, zmq.POLLIN)
        socks.append(sock)
    while True:
        for sock, _ in poller.poll(1000):
            while True:
                try:
                    sock.send(sock.recv(zmq.NOBLOCK))
                except zmq.Again:
                    break


def raw_fanout(n: int) -> dict:
    """The ceiling: one message out to each of ``n`` DEALERs and its echo back, through a bare ROUTER."""
    ctx = zmq.Context()
    pair = keys.generate()
    router = ctx.socket(zmq.ROUTER)
    router.linger, router.curve_server = 0, True
    router.curve_secretkey, router.curve_publickey = pair.secret_bytes, pair.public_bytes
    router.rcvhwm = router.sndhwm = 0
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    router.bind(endpoint)
    child = mp.get_context("spawn").Process(target=_echo_dealers, args=(endpoint, pair.public, n), daemon=True)
    child.start()
    try:
        peers = set()
        while len(peers) < n:
            peers.add(router.recv_multipart()[0])
        cpu0, t0 = time.process_time(), time.perf_counter()
        for rid in peers:
            router.send_multipart([rid, PAYLOAD])
        for _ in range(n):
            router.recv_multipart()
        return {"wall_s": time.perf_counter() - t0, "cpu_us_per_target": (time.process_time() - cpu0) / n * 1e6}
    finally:
        stop_child(child)
        router.close()
        ctx.term()


# -- EMS ---------------------------------------------------------------------------------------------
class EmsRun:
    """A broker process with ``n`` accepted agents in command_fleet processes and an admin client."""

    def __init__(self, root: Path, n: int):
        self.root, self.n = root, n
        data = DataDir(root).ensure()
        admin = keys.load_or_create(data.keys, "admin")
        registry = KeyRegistry(data.broker_db)
        registry.add(admin.public, "admin", "admin")
        agents = []
        for i in range(n):
            pair = keys.generate()
            registry.add(pair.public, f"sim-{i:05d}", "agent")
            agents.append([f"sim-{i:05d}", pair.public, pair.secret])
        registry.close()
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.procs = [subprocess.Popen([sys.executable, "-m", "broker.cli.main", "broker", "--data-dir", str(root), "--bind",
                                        endpoint, "--heartbeat-s", "5"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        self.broker_pid = self.procs[0].pid
        server_key = keys.load_or_create(data.keys, "broker").public
        for at in range(0, n, SHARD):
            key_file = root / f"shard-{at}.json"
            key_file.write_text(json.dumps(agents[at:at + SHARD]))
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "bench.command_fleet", "--keys", str(key_file), "--server", endpoint,
                 f"--server-key={server_key}", "--work-s", "0", "--heartbeat-s", "5", "--report-s", "1"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.client = BusClient(ClientConfig(server=endpoint, server_key=server_key, timing=timing_for(5.0)), admin,
                                hello={"client_id": "admin"})
        self.client.connect()
        self.client.wait_ready(30)
        deadline = time.monotonic() + 120
        while self.client.request("status")["broker"]["online_agents"] < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.client.request('status')['broker']['online_agents']} of {n} agents came online")
            time.sleep(0.5)

    def singles(self) -> dict:
        """N ordinary commands sent at once, until every RESULT is back."""
        cpu0, t0 = cpu_s(self.broker_pid), time.perf_counter()
        ids = set()
        for i in range(self.n):
            cmd_id = new_id()
            ids.add(cmd_id)
            self.client.send(Kind.COMMAND, f"command.sim-{i:05d}", {"target": f"sim-{i:05d}", "name": "ping", "args": {}}, msg_id=cmd_id)
        deadline = time.monotonic() + 300
        while ids and time.monotonic() < deadline:
            for env in self.client.drain(10_000, 0.05):
                if env.kind is Kind.RESULT:
                    ids.discard(env.corr)
        if ids:
            raise RuntimeError(f"{len(ids)} single commands without a result")
        return {"wall_s": time.perf_counter() - t0, "cpu_us_per_target": (cpu_s(self.broker_pid) - cpu0) / self.n * 1e6}

    def bulk(self) -> dict:
        """One bulk run on every agent, until no target is open."""
        cpu0, t0 = cpu_s(self.broker_pid), time.perf_counter()
        run = self.client.request("bulk.start", selector="all", name="ping", max_parallel=1000)
        while True:
            counts = self.client.request("bulk.get", id=run["id"], limit=0)["counts"]
            if not counts.get("waiting") and not counts.get("launched"):
                break
            time.sleep(0.02)
        done = counts.get("done", 0)
        if done != self.n:
            raise RuntimeError(f"bulk run ended with {counts}")
        return {"wall_s": time.perf_counter() - t0, "cpu_us_per_target": (cpu_s(self.broker_pid) - cpu0) / self.n * 1e6}

    def close(self) -> None:
        self.client.close()
        for proc in reversed(self.procs):
            proc.terminate()
            proc.wait(15)


def measure(n: int) -> dict:
    say(f"N = {n:,}: raw ROUTER fan-out ...")
    raw = raw_fanout(n)
    with tempfile.TemporaryDirectory(prefix="ems-bulk-") as tmp:
        say(f"N = {n:,}: starting a broker and {n:,} simulated agents ...")
        ems = EmsRun(Path(tmp), n)
        try:
            say(f"N = {n:,}: single commands ...")
            single = ems.singles()
            say(f"N = {n:,}: bulk run ...")
            bulk = ems.bulk()
        finally:
            ems.close()
    return {"n": n, "raw": raw, "single": single, "bulk": bulk}


def print_table(rows: list[dict]) -> None:
    head = ["targets", "raw ROUTER s", "single cmds s", "bulk run s", "bulk/raw", "bulk/single",
            "CPU µs/target raw", "single", "bulk"]
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for r in rows:
        raw, single, bulk = r["raw"], r["single"], r["bulk"]
        print(" | ".join([f"{r['n']:,}", f"{raw['wall_s']:.3f}", f"{single['wall_s']:.3f}", f"{bulk['wall_s']:.3f}",
                          f"{bulk['wall_s'] / raw['wall_s']:.1f}x", f"{bulk['wall_s'] / single['wall_s']:.2f}x",
                          f"{raw['cpu_us_per_target']:.0f}", f"{single['cpu_us_per_target']:.0f}",
                          f"{bulk['cpu_us_per_target']:.0f}"]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,5000", help="fleet sizes, comma-separated (default %(default)s)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    rows = [measure(int(n)) for n in args.sizes.split(",")]
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
