"""The bus as real processes: SIGKILL the broker or an agent and see what survives.

The broker and agents run as ``ems broker`` / ``ems agent`` subprocesses on
a random loopback port with short heartbeats (0.5 s: offline after 1.5 s);
the test drives them through a real operator BusClient.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from broker.core import keys
from broker.core.client import BusClient
from broker.core.config import ClientConfig, DataDir, Timing
from broker.core.envelope import Kind
from broker.server.registry import KeyRegistry

from conftest import next_message, wait_for

HEARTBEAT = "0.5"  # offline after 1.5 s; shorter flaps on a loaded 2-core machine


class Stack:
    """A broker subprocess (restartable on the same port) plus enrolled peers."""

    def __init__(self, root, procs):
        self.root, self.procs = root, procs
        self.data = DataDir(root / "server").ensure()
        self.admin_keys = keys.load_or_create(self.data.keys, "admin")
        registry = KeyRegistry(self.data.broker_db)
        registry.add(self.admin_keys.public, "alice", "admin")
        registry.close()
        self.bind = "tcp://127.0.0.1:0"
        self.broker = None
        self.start_broker()
        self.server_key = keys.load(self.data.keys, "broker").public
        self.clients = []

    def start_broker(self):
        if self.data.endpoint_file.exists():
            self.data.endpoint_file.unlink()
        self.broker = self.procs.ems("broker", "broker", "--data-dir", str(self.data.root), "--bind", self.bind, "--heartbeat-s", HEARTBEAT)
        wait_for(self.data.endpoint_file.exists, 15, what="the broker to bind")
        self.bind = self.data.endpoint_file.read_text().strip()

    def kill_broker(self):
        self.broker.send_signal(signal.SIGKILL)
        self.broker.wait(10)

    def operator(self) -> BusClient:
        timing = Timing.fast()
        c = BusClient(ClientConfig(server=self.bind, server_key=self.server_key, timing=timing), self.admin_keys)
        self.clients.append(c)
        c.connect()
        c.wait_ready(10)
        return c

    def enrol_agent(self, admin: BusClient, client_id: str):
        agent_dir = self.root / client_id
        pair = keys.load_or_create(agent_dir / "keys", "agent")
        admin.request("keys.add", public_key=pair.public, client_id=client_id, role="agent")
        return agent_dir

    def start_agent(self, client_id: str, *extra: str) -> subprocess.Popen:
        return self.procs.ems(
            client_id,
            "agent", "--data-dir", str(self.root / client_id), "--server", self.bind,
            f"--server-key={self.server_key}", "--id", client_id, "--heartbeat-s", HEARTBEAT, *extra,
        )

    def close(self):
        for c in self.clients:
            c.close()


@pytest.fixture
def stack(tmp_path, procs):
    s = Stack(tmp_path, procs)
    yield s
    s.close()


def executions(agent_dir, cmd_id: str) -> int:
    with sqlite3.connect(agent_dir / "agent.db") as db:
        return db.execute("SELECT count(*) FROM executed WHERE id=?", (cmd_id,)).fetchone()[0]


def test_command_to_offline_agent_survives_broker_sigkill(stack):
    """Queue a command for an offline agent, SIGKILL the broker, restart it,
    start the agent: the command runs exactly once and the result reaches the
    operator who sent it (its client reconnects on its own)."""
    op = stack.operator()
    agent_dir = stack.enrol_agent(op, "agent-q")
    first = op.send_command("agent-q", "ping", {"echo": "across a crash"})
    assert first["status"] == "queued"

    stack.kill_broker()
    stack.start_broker()
    agent = stack.start_agent("agent-q")

    outcome = op.wait_result(first["id"], timeout_s=30)
    assert outcome["status"] == "done"
    assert outcome["result"]["output"]["echo"] == "across a crash"
    assert executions(agent_dir, first["id"]) == 1

    # a second agent restart does not run it again either
    agent.send_signal(signal.SIGKILL)
    agent.wait(10)
    stack.start_agent("agent-q")
    second = op.send_command("agent-q", "ping", {"echo": "after restart"})
    assert op.wait_result(second["id"], timeout_s=30)["status"] == "done"
    assert executions(agent_dir, first["id"]) == 1
    assert op.request("command.get", id=first["id"])["status"] == "done"


def test_sigkilled_agent_goes_offline_within_timeout(stack):
    """SIGKILL a running agent: a presence 'offline' event follows within the
    peer timeout (3 heartbeats = 1.5 s, plus one broker tick); it comes back
    'online' when restarted."""
    op = stack.operator()
    stack.enrol_agent(op, "agent-k")
    op.subscribe(["presence.agent-k"])
    agent = stack.start_agent("agent-k")
    online = next_message(op, lambda e: e.kind is Kind.PRESENCE, timeout_s=15)
    assert online.data()["state"] == "online"

    agent.send_signal(signal.SIGKILL)
    killed_at = time.time()
    agent.wait(10)
    offline = next_message(op, lambda e: e.kind is Kind.PRESENCE, timeout_s=10)
    assert offline.data()["state"] == "offline"
    delay = offline.data()["ts"] - killed_at
    print(f"offline reported {delay:.2f} s after SIGKILL ({offline.data()['reason']})")

    stack.start_agent("agent-k")
    back = next_message(op, lambda e: e.kind is Kind.PRESENCE, timeout_s=15)
    assert back.data()["state"] == "online"
    agents = {a["client_id"]: a for a in op.request("agents")}
    assert agents["agent-k"]["state"] == "online"


def test_expired_command_is_never_run(stack):
    """A command whose time to live runs out while its agent is offline is
    marked expired, the sender is told, and the agent never runs it."""
    op = stack.operator()
    agent_dir = stack.enrol_agent(op, "agent-e")
    cmd = op.send_command("agent-e", "ping", ttl_s=0.5)
    outcome = op.wait_result(cmd["id"], timeout_s=15)
    assert outcome["status"] == "expired"
    stack.start_agent("agent-e")
    wait_for(lambda: any(a["state"] == "online" for a in op.request("agents") if a["client_id"] == "agent-e"), 30, what="agent online (a cold start of a Python process under load)")
    later = op.send_command("agent-e", "ping")
    assert op.wait_result(later["id"], timeout_s=15)["status"] == "done"
    assert executions(agent_dir, cmd["id"]) == 0


def test_ems_up_runs_supervises_and_stops(tmp_path, procs):
    """`ems up` prepares the data dir, runs broker + local agent, accepts the
    local agent, writes the operator profile (so `ems status/send/keys` need
    no flags), names the local operator as a person (the employee reads
    "Jane Doe", not the key id), restarts a SIGKILLed broker, and stops
    everything on SIGTERM."""
    data_dir, access_dir = tmp_path / "var", tmp_path / "access"
    up = procs.ems("up", "up", "--data-dir", str(data_dir), "--bind", "tcp://127.0.0.1:0", "--no-web", "--heartbeat-s", HEARTBEAT,
                   "--operator-name", "Jane Doe", env={"EMS_ADMIN_TOKEN": "", "EMS_ACCESS_DIR": str(access_dir)})

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "broker.cli.main", *args, "--data-dir", str(data_dir)],
                              capture_output=True, text=True, timeout=60)

    def online_agents():
        if not (data_dir / "profile.json").exists():
            return []
        res = cli("status", "--json")
        return [a for a in json.loads(res.stdout)["agents"] if a["state"] == "online"] if res.returncode == 0 else []

    agents = wait_for(online_agents, 30, interval_s=0.3, what="the local agent to come online")
    agent_id = agents[0]["client_id"]

    res = cli("send", agent_id, "ping", "echo=7", "--wait", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["result"]["output"]["echo"] == 7

    def stored_clients():
        res = cli("history", "clients", "--json")
        return res.returncode == 0 and [c for c in json.loads(res.stdout) if c["client_id"] == agent_id and c["hostname"]]

    wait_for(stored_clients, 30, interval_s=0.3, what="the persister to store the local agent's sysinfo")
    res = cli("history", "audit")
    assert res.returncode == 0 and "command" in res.stdout, res.stdout + res.stderr

    res = cli("alerts", "rules", "--json")  # the alerts service runs under its own service key
    assert res.returncode == 0 and "offline" in {r["kind"] for r in json.loads(res.stdout)}, res.stderr

    res = cli("keys", "list", "--json")
    states = {k["client_id"]: (k["role"], k["state"]) for k in json.loads(res.stdout)}
    assert states[agent_id] == ("agent", "accepted")
    assert ("admin", "accepted") in states.values()
    admin = next(k for k in json.loads(res.stdout) if k["role"] == "admin")
    assert admin["name"] == "Jane Doe" and admin["client_id"] != "Jane Doe"
    assert f'ems keys name {admin["client_id"]} "Your Name"' in up.log_path.read_text()  # the banner says how to change it

    res = cli("send", agent_id, "files.list", "path=/", "--reason", "ticket 9", "--wait", "--json")
    assert json.loads(res.stdout)["status"] == "failed"  # no folder is shared: refused, and logged for the employee
    told = subprocess.run([sys.executable, "-m", "broker.cli.main", "agent", "access-log"], capture_output=True, text=True,
                          timeout=30, env={**os.environ, "EMS_ACCESS_DIR": str(access_dir)}).stdout
    assert "Jane Doe tried to list the folder /" in told and "Reason: ticket 9." in told, told
    assert admin["client_id"] not in told, told

    broker_pid = int(subprocess.run(["pgrep", "-f", f"broker --data-dir {data_dir}"], capture_output=True, text=True).stdout.split()[0])
    subprocess.run(["kill", "-9", str(broker_pid)], check=True)
    wait_for(lambda: "restarting" in up.log_path.read_text(), 15, what="the supervisor to restart the broker")
    wait_for(online_agents, 30, interval_s=0.3, what="the agent back online after the broker restart")

    children = subprocess.run(["pgrep", "-P", str(up.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 4  # broker, persister, alerts service, agent
    up.send_signal(signal.SIGTERM)
    assert up.wait(20) == 0
    for pid in children:
        assert subprocess.run(["kill", "-0", pid], capture_output=True).returncode != 0, f"child {pid} still running"
    assert "EMS is running" in up.log_path.read_text()


def test_real_agent_runs_file_power_and_update_commands(stack, tmp_path):
    """A real `ems agent` process with a local policy (one allowed folder,
    power dry run): file commands work inside the root and are refused
    outside it; reboot and update check report what they would run; the
    loop keeps heartbeating while commands run on their lanes."""
    op = stack.operator()
    stack.enrol_agent(op, "agent-p")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "report.txt").write_text("quarterly numbers")
    access_dir = tmp_path / "access"
    stack.start_agent("agent-p", "--allow-root", str(shared), "--power-dry-run", "--access-dir", str(access_dir))
    wait_for(lambda: any(a["state"] == "online" for a in op.request("agents") if a["client_id"] == "agent-p"), 30, what="agent online (a cold start of a Python process under load)")

    def run(name, reason="ticket 4711: the user asked", **args):  # every one of these is an access: it needs a reason
        first = op.send_command("agent-p", name, {**args, "reason": reason})
        return op.wait_result(first["id"], timeout_s=60)

    listing = run("files.list", path=str(shared), reason="ticket 12: the report")
    assert listing["status"] == "done", listing
    assert [e["name"] for e in listing["result"]["output"]["entries"]] == ["report.txt"]
    escape = run("files.download", path=str(shared / ".." / ".." ), reason="ticket 12: the report")
    assert escape["status"] == "failed"
    reboot = run("power.reboot", reason="kernel update")
    assert reboot["status"] == "done", reboot
    assert reboot["result"]["output"]["dry_run"] is True
    check = run("update.check", reason="monthly patch review")
    assert check["status"] == "done", check
    access_log = subprocess.run([sys.executable, "-m", "broker.cli.main", "agent", "access-log"], cwd=str(shared),
                                env={**os.environ, "EMS_ACCESS_DIR": str(access_dir)},
                                capture_output=True, text=True, timeout=30).stdout
    assert "The EMS agent started (version" in access_log and "tried to copy from this computer" in access_log
    assert "You were shown: EMS agent started" not in access_log  # the start notice is that same event


def test_ems_up_with_a_broker_key_that_starts_with_a_dash(tmp_path, procs):
    """Tried: a broker key whose Z85 text starts with '-' (about 1 key in 85):
    `ems up` once handed it to the agent as its own argv item, argparse took
    it for an option, and the local agent (and the chaos bench's simulated
    agents) died at every start. The agent must come online."""
    data_dir = tmp_path / "var"
    pair = next(p for p in iter(keys.generate, None) if p.public.startswith("-"))
    (data_dir / "keys").mkdir(parents=True)
    (data_dir / "keys" / "broker.secret").write_text(pair.secret + "\n")
    (data_dir / "keys" / "broker.public").write_text(pair.public + "\n")
    procs.ems("up", "up", "--data-dir", str(data_dir), "--bind", "tcp://127.0.0.1:0", "--no-web", "--heartbeat-s", HEARTBEAT,
              env={"EMS_ADMIN_TOKEN": "", "EMS_ACCESS_DIR": str(tmp_path / "access")})
    assert (data_dir / "keys" / "broker.public").read_text().strip() == pair.public  # the key was kept, not replaced

    def online_agents():
        if not (data_dir / "profile.json").exists():
            return []
        res = subprocess.run([sys.executable, "-m", "broker.cli.main", "status", "--json", "--data-dir", str(data_dir)],
                             capture_output=True, text=True, timeout=60)
        return [a for a in json.loads(res.stdout)["agents"] if a["state"] == "online"] if res.returncode == 0 else []

    wait_for(online_agents, 30, interval_s=0.3, what="the local agent to come online with a '-' broker key")
