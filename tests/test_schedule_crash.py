"""A scheduled run survives the broker being SIGKILLed as it fires, and runs exactly once.

The broker is an ``ems broker`` subprocess; three simulated agents (bench/command_fleet.py, real CurveZMQ
DEALERs that count each command id they run) and an operator connect to it. A template run is scheduled a few
seconds ahead; the broker SIGKILLs itself (``EMS_SCHEDULE_CRASH_AT``) at one point of the firing:

* ``before-claim``: the slot not yet taken. Restarted, the slot is due (inside its grace window) and runs.
* ``after-claim``: the slot taken and the run's id chosen, nothing started. Restarted, no bulk run has that id,
  so nothing was sent: it starts now, under that id.
* ``after-start``: the bulk run stored and its commands queued, the outcome not recorded. Restarted, the run
  with that id exists: the slot says so, and the run goes on (bulk runs outlive restarts).

* ``after-claim`` and then, restarted, killed again after the second start stored the run: the third broker
  finds the run and does not start it a third time.

Each time: one bulk run, each agent ran the command once, the slot recorded once.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from broker.core import keys
from broker.core.client import BusClient
from broker.core.config import ClientConfig, DataDir, Timing
from broker.core.errors import EmsError
from broker.server.registry import KeyRegistry
from broker.server.schedules import CRASH_ENV
from conftest import wait_for

AGENTS = ["crash-0", "crash-1", "crash-2"]
TEMPLATE = {"name": "check", "command": "os.update.check", "args": {}, "params": {}}


class Stack:
    """A broker subprocess restartable on its port, an admin, an operator and a simulated fleet."""

    def __init__(self, root, procs, crash_at: str):
        self.root, self.procs = root, procs
        self.data = DataDir(root / "server").ensure()
        admin, operator = keys.load_or_create(self.data.keys, "admin"), keys.generate()
        registry = KeyRegistry(self.data.broker_db)
        registry.add(admin.public, "admin", "admin")
        registry.add(operator.public, "op-crash", "operator", name="Olga Operator")
        pairs = []
        for client_id in AGENTS:
            pair = keys.generate()
            registry.add(pair.public, client_id, "agent")
            pairs.append([client_id, pair.public, pair.secret])
        registry.close()
        self.bind, self.clients, self.fleet = "tcp://127.0.0.1:0", [], None
        self.start_broker({CRASH_ENV: crash_at})  # SIGKILLs itself at ``crash_at`` when a schedule fires
        self.server_key = keys.load(self.data.keys, "broker").public
        self.admin, self.operator = self.client(admin), self.client(operator)
        key_file = root / "fleet-keys.json"
        key_file.write_text(json.dumps(pairs))
        self.fleet_log = root / "fleet.out"
        with self.fleet_log.open("w") as out:
            self.fleet = subprocess.Popen(
                [sys.executable, "-m", "bench.command_fleet", "--keys", str(key_file), "--server", self.bind,
                 f"--server-key={self.server_key}", "--heartbeat-s", "0.5", "--report-s", "0.2"], stdout=out,
                stderr=subprocess.STDOUT)
        wait_for(lambda: {a["client_id"] for a in self.admin.request("agents") if a["state"] == "online"} >= set(AGENTS), 60,
                 what="the simulated agents online")

    def start_broker(self, env: dict) -> None:
        if self.data.endpoint_file.exists():
            self.data.endpoint_file.unlink()
        self.broker = self.procs.ems("broker", "broker", "--data-dir", str(self.data.root), "--bind", self.bind,
                                     "--heartbeat-s", "0.5", env=env)
        wait_for(self.data.endpoint_file.exists, 15, what="the broker to bind")
        self.bind = self.data.endpoint_file.read_text().strip()

    def client(self, pair) -> BusClient:
        c = BusClient(ClientConfig(server=self.bind, server_key=self.server_key, timing=Timing.fast()), pair)
        self.clients.append(c)
        c.connect()
        c.wait_ready(10)
        return c

    def ran(self) -> int:
        lines = [line for line in self.fleet_log.read_text().splitlines() if line.startswith("{")]
        return json.loads(lines[-1])["ran"] if lines else 0

    def close(self) -> None:
        for c in self.clients:
            c.close()
        if self.fleet is not None and self.fleet.poll() is None:
            self.fleet.terminate()
            self.fleet.wait(10)


def ask(client: BusClient, op: str, **args):
    """``op``'s answer, or None while the broker is away (the client reconnects by itself)."""
    try:
        return client.request(op, timeout_s=2, **args)
    except EmsError:
        return None


@pytest.mark.parametrize("points", [["before-claim"], ["after-claim"], ["after-start"], ["after-claim", "after-start"]],
                         ids=["before-claim", "after-claim", "after-start", "after-claim-then-after-start"])
def test_a_broker_killed_as_a_schedule_fires_runs_it_exactly_once(tmp_path, procs, points):
    stack = Stack(tmp_path, procs, points[0])
    try:
        killed_and_restarted(stack, points)
    finally:
        stack.close()


def killed_and_restarted(stack: Stack, points: list[str]) -> None:
    stack.admin.request("templates.put", **TEMPLATE)
    made = stack.operator.request("schedules.add", name="soon", request_op="templates.run", reason="crash drill",
                                  args={"name": "check", "selector": "id:crash-*"}, at=time.time() + 3)
    assert made["state"] == "enabled"
    for point, following in zip(points, [*points[1:], None]):
        assert stack.broker.wait(30) == -signal.SIGKILL  # it fired (or started the slot again), and died at ``point``
        assert stack.broker.log_path.read_text().count(f"{CRASH_ENV}={point}: SIGKILL now") == points.count(point)
        stack.start_broker({CRASH_ENV: following} if following else {})

    def one_slot():
        shown = ask(stack.operator, "schedules.get", id="soon")
        return shown if shown and shown["runs"] and shown["runs"][0]["outcome"] != "attempted" else None
    shown = wait_for(one_slot, 60, what="the slot's outcome")
    [slot] = shown["runs"]
    expected = "started: run" if points[-1] == "after-start" else "running: run"
    assert slot["outcome"].startswith(expected) and slot["run_id"] in slot["outcome"], slot
    runs = wait_for(lambda: ask(stack.operator, "bulk.list"), 30, what="the bulk runs")
    assert [r["id"] for r in runs] == [slot["run_id"]]
    wait_for(lambda: (r := ask(stack.operator, "bulk.get", id=slot["run_id"])) and r["counts"] == {"done": 3}, 60,
             what="the run to finish on the three agents")
    wait_for(lambda: stack.ran() == 3, 15, what="the fleet's count of commands run")
    ticks = stack.operator.request("status")["counters"]["ticks"]
    wait_for(lambda: (ask(stack.operator, "status") or {"counters": {"ticks": 0}})["counters"]["ticks"] >= ticks + 8, 30,
             what="eight more timer passes of the restarted broker")
    assert len(stack.operator.request("bulk.list")) == 1 and stack.ran() == 3  # it looked again and ran nothing
    assert len(stack.operator.request("schedules.get", id="soon")["runs"]) == 1
