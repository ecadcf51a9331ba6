"""Lean simulated agents that run commands: many in one process, one loop (``bench/fleet_clients.py``'s agents).

Each agent answers a COMMAND the way ``ems agent`` does, minus the work: COMMAND_STATUS ``delivered``,
then after ``--work-s`` a RESULT, ``ok`` unless its client id is in ``--fail`` (a power command in dry
run: what would have happened). A command id it has seen before is not run again (answered from its record
once it ran). Every ``--report-s`` one JSON line: the fleet's report plus how many commands ran and how many
arrived again (``repeated``: re-deliveries after a reconnect). For the bulk tests and ``bench/bulk.py``.

    python -m bench.command_fleet --keys FILE --server tcp://127.0.0.1:P --server-key=KEY [--fail ID,ID] [--work-s S]
"""
from __future__ import annotations

import argparse
import heapq
import json
import os
import sys
from pathlib import Path

from bench.fleet_clients import EmsAgent, EmsFleet, run
from broker.core.config import ClientConfig, timing_for
from broker.core.envelope import Kind, decode, pack_body, pack_header, unpack_body
from broker.core.errors import ProtocolError


class CommandFleet(EmsFleet):
    """:class:`EmsFleet` whose agents run commands (see the module docstring)."""

    def __init__(self, config: ClientConfig, agents: list[tuple[str, str, str]], fail: set[str], work_s: float):
        super().__init__(config, agents, event_s=3600.0)
        self.fail, self.work_s = fail, work_s
        self.executed: dict[tuple[str, str], dict] = {}  # (client id, command id) -> its result
        self.due: list[tuple[float, str, str, EmsAgent]] = []  # results to send: (when, command id, name, agent)
        self.pending: set[tuple[str, str]] = set()
        self.parent = os.getppid()  # a fleet whose starter died (a killed test run) stops instead of lingering

    def on_message(self, agent: EmsAgent, frames: list[bytes], now: float) -> None:
        try:
            env = decode(frames)
        except ProtocolError:
            env = None
        if env is None or env.kind is not Kind.COMMAND:
            super().on_message(agent, frames, now)
            return
        agent.last_heard = now
        cmd_id = env.header.msg_id
        body = unpack_body(env.body)
        self._reply(agent, Kind.COMMAND_STATUS, cmd_id, {"status": "delivered"}, now)
        key = (agent.client_id, cmd_id)
        if key in self.executed or key in self.pending:
            self.counts["repeated"] += 1
            if key in self.executed:
                self._reply(agent, Kind.RESULT, cmd_id, self.executed[key], now)
            return
        self.pending.add(key)
        heapq.heappush(self.due, (now + self.work_s, cmd_id, str(body.get("name")), agent))

    def sweep(self, now: float) -> None:
        if os.getppid() != self.parent:
            raise SystemExit("the process that started this fleet is gone")
        while self.due and self.due[0][0] <= now:
            _, cmd_id, name, agent = heapq.heappop(self.due)
            failed = agent.client_id in self.fail
            result = ({"ok": False, "error": f"{name}: simulated failure"} if failed
                      else {"ok": True, "output": {"dry_run": True, "would": name}})
            self.executed[(agent.client_id, cmd_id)] = result
            self.pending.discard((agent.client_id, cmd_id))
            self.counts["ran"] += 1
            if agent.sock is not None:
                self._reply(agent, Kind.RESULT, cmd_id, result, now)
        super().sweep(now)

    def _reply(self, agent: EmsAgent, kind: Kind, cmd_id: str, body: dict, now: float) -> None:
        if agent.sock is not None:
            agent.sock.send_multipart([pack_header(kind, f"command.{agent.client_id}", corr=cmd_id), pack_body(body)])
            agent.last_sent = now

    def report(self, mark: float) -> dict:
        return {**super().report(mark), "ran": self.counts["ran"], "repeated": self.counts["repeated"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keys", required=True, type=Path, help="key file: JSON [[client_id, public, secret], ...]")
    p.add_argument("--server", required=True, help="broker endpoint, tcp://HOST:PORT")
    p.add_argument("--server-key", required=True, help="the broker's Z85 public key (give it as --server-key=KEY)")
    p.add_argument("--fail", default="", help="client ids whose commands fail, comma-separated")
    p.add_argument("--work-s", type=float, default=0.05, help="how long each command takes (default %(default)s)")
    p.add_argument("--heartbeat-s", type=float, default=1.0, help="heartbeat interval (default %(default)s)")
    p.add_argument("--report-s", type=float, default=0.5, help="seconds between JSON report lines (default %(default)s)")
    args = p.parse_args(argv)
    agents = [tuple(a) for a in json.loads(args.keys.read_text())]
    config = ClientConfig(server=args.server, server_key=args.server_key, timing=timing_for(args.heartbeat_s))
    fleet = CommandFleet(config, agents, {f for f in args.fail.split(",") if f}, args.work_s)
    run(fleet, args.report_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
