"""The admin HTTP API against a real broker and a real HTTP server.

The listener runs in-process on a random loopback port (port 0) with its own
BusClient (operator ``admin-http``); a minimal fake agent (a BusClient loop
in a thread) answers commands with a dry-run result, standing in for the
real agent's power/update executors. One test runs the listener as a
subprocess through its CLI entry point.
"""
from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bridges.admin_http import AdminHttp, AdminHttpConfig
from bridges.admin_http.config import AUDIT_FILE, ENDPOINT_FILE, OPERATOR_HEADER, TOKEN_ENV
from broker.core import keys
from broker.core.profile import Profile, save
from broker.core.client import BusClient
from broker.core.envelope import Kind

from conftest import next_message, wait_for

#: strong enough for the listener's entropy check (a sequential one like "test-token-0123456789-abcdefghij" is refused)
TOKEN = "ems-admin-test-9XqT4vLp2Rw8Zk3N"
REPO = Path(__file__).resolve().parent.parent


class FakeAgent:
    """An agent that answers every COMMAND: delivered, then a dry-run RESULT.

    Its BusClient is created, used and closed on its own thread. With
    ``answer=False`` it receives commands but never answers them.
    """

    def __init__(self, bus, client_id: str, answer: bool = True):
        self.config = bus.client_config()
        self.pair = bus.enrol(client_id, "agent")
        self.client_id = client_id
        self.answer = answer
        self.received: list[tuple[str, dict, str]] = []  # (name, args, sender)
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"fake-agent-{client_id}", daemon=True)

    def start(self) -> FakeAgent:
        self._thread.start()
        assert self._ready.wait(10), "the fake agent did not connect"
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        client = BusClient(self.config, self.pair, hello={"client_id": self.client_id})
        try:
            client.connect()
            client.wait_ready(10)
            self._ready.set()
            while not self._stop.is_set():
                env = client.poll(0.05)
                if env is None or env.kind is not Kind.COMMAND:
                    continue
                data = env.data()
                self.received.append((data["name"], data["args"], env.sender))
                if self.answer:
                    client.send(Kind.COMMAND_STATUS, data={"status": "delivered"}, corr=env.msg_id)
                    argv = {"power.reboot": ["systemctl", "reboot"], "power.shutdown": ["systemctl", "poweroff"]}.get(data["name"], ["true"])
                    client.send(Kind.RESULT, data={"ok": True, "output": {"dry_run": True, "argv": argv}}, corr=env.msg_id)
        finally:
            client.close()


class Http:
    """A tiny JSON client for the listener (http.client, so the Host header can be forged)."""

    def __init__(self, url: str):
        self.host, port = url.removeprefix("http://").rsplit(":", 1)
        self.port = int(port)

    def call(self, method: str, path: str, body=None, *, token: str | None = TOKEN, headers: dict | None = None,
             raw: bytes | None = None, content_type: str = "application/json") -> tuple[int, dict, http.client.HTTPResponse]:
        sent = {"Host": f"127.0.0.1:{self.port}"}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if payload is not None:
            sent["Content-Type"] = content_type
        if method == "POST":  # the person behind an action (required): a test may name another or send none
            sent[OPERATOR_HEADER] = "Jane Doe"
        sent.update(headers or {})
        sent = {k: v for k, v in sent.items() if v is not None}
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=payload, headers=sent)
            resp = conn.getresponse()
            text = resp.read()
        finally:
            conn.close()
        assert resp.getheader("Content-Type", "").startswith("application/json"), text
        return resp.status, json.loads(text), resp


class Admin:
    """The listener under test plus helpers to read its audit log."""

    def __init__(self, bus, **config):
        self.bus = bus
        pair = bus.enrol("admin-http", "service")
        client = BusClient(bus.client_config(), pair, hello={"client_id": "admin-http"})
        self.audit_path = bus.data.logs / AUDIT_FILE
        self.listener = AdminHttp(AdminHttpConfig(token=TOKEN, host="127.0.0.1", port=0, **config), client, self.audit_path)
        self.http = Http(self.listener.start())

    def audit(self) -> list[dict]:
        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]

    def close(self) -> None:
        self.listener.stop()


@pytest.fixture
def admin(bus):
    a = Admin(bus)
    yield a
    a.close()


@pytest.fixture
def agent(bus):
    a = FakeAgent(bus, "pc-1").start()
    yield a
    a.stop()


def test_token_and_loopback_host_are_required(admin):
    api = admin.http
    status, body, resp = api.call("GET", "/api/clients", token=None)
    assert status == 401 and body["error"] == "missing Authorization header" and TOKEN_ENV in body["hint"]
    assert resp.getheader("WWW-Authenticate").startswith("Bearer")
    assert api.call("GET", "/api/clients", token="not-the-token")[0] == 401
    assert api.call("GET", "/api/clients", token=TOKEN + "x")[0] == 401
    assert api.call("GET", "/api/clients", token=None, headers={"Authorization": f"Basic {TOKEN}"})[0] == 401

    for host in ("evil.example", "evil.example:9090", "127.0.0.1.evil.example", "localhost.evil.example", "10.0.0.5:9090", "localhost:x"):
        status, body, _ = api.call("GET", "/api/clients", headers={"Host": host})
        assert status == 403, host
        assert "loopback" in body["error"] and "DNS-rebinding" in body["hint"]
    for hosts in ([], ["127.0.0.1", "127.0.0.1"]):  # none, or two
        conn = http.client.HTTPConnection(api.host, api.port, timeout=30)
        conn.putrequest("GET", "/api/clients", skip_host=True)
        for host in hosts:
            conn.putheader("Host", host)
        conn.putheader("Authorization", f"Bearer {TOKEN}")
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.status == 403 and json.loads(resp.read())["error"] == "exactly one Host header is required"
        conn.close()
    for host in ("127.0.0.1", f"127.0.0.1:{api.port}", "localhost", f"LOCALHOST:{api.port}", "[::1]", f"[::1]:{api.port}"):
        assert api.call("GET", "/api/clients", headers={"Host": host})[0] == 200, host

    refused = [r for r in admin.audit() if r["status"] in (401, 403)]
    assert len(refused) == 12
    assert all(r["caller"] is None and r["remote"] == "127.0.0.1" and r["path"] == "/api/clients" for r in refused)


def test_bad_requests_get_clear_json_errors(admin, agent):
    http = admin.http
    path = "/api/clients/pc-1/reboot"

    status, body, _ = http.call("POST", path, raw=b'{"reason": "oops"', content_type="application/json")
    assert status == 400 and "not valid JSON" in body["error"] and "reason" in body["hint"]
    status, body, _ = http.call("POST", path, {})
    assert status == 400 and body["error"] == "a reason is required"
    assert http.call("POST", path, {"reason": "   "})[0] == 400
    assert http.call("POST", path, ["reason"])[0] == 400
    status, body, _ = http.call("POST", path, {"reason": "x", "force": True})
    assert status == 400 and "force" in body["error"]
    assert http.call("POST", path, {"reason": "x", "ttl_s": -1})[0] == 400
    assert http.call("POST", path, {"reason": "x", "args": [1]})[0] == 400
    assert http.call("POST", path + "?wait=maybe", {"reason": "x"})[0] == 400
    assert http.call("POST", path + "?wait=1&timeout_s=nan", {"reason": "x"})[0] == 400

    status, body, _ = http.call("POST", path, raw=b'{"reason": "x"}', content_type="text/plain")
    assert status == 415 and "application/json" in body["hint"]
    status, body, _ = http.call("POST", path, raw=b"{}" + b" " * 20_000)
    assert status == 413 and "allowed" in body["error"]
    status, body, _ = http.call("POST", path, {"reason": "x"}, headers={"X-EMS-Operator": "alice\u00e9<script>"})
    assert status == 400 and "X-EMS-Operator" in body["error"]

    status, body, resp = http.call("GET", path)
    assert status == 405 and resp.getheader("Allow") == "POST"
    assert http.call("DELETE", "/api/clients")[0] == 405
    status, body, _ = http.call("POST", "/api/clients/pc-1/format-disk", {"reason": "x"})
    assert status == 404 and "reboot" in body["hint"]
    status, body, _ = http.call("GET", "/api/nothing")
    assert status == 404 and "/api/clients" in body["hint"]

    assert agent.received == []  # nothing invalid reached the agent
    assert {r["status"] for r in admin.audit()} == {400, 404, 405, 413, 415}


def test_unknown_client_is_404(admin):
    status, body, _ = admin.http.call("POST", "/api/clients/no-such-pc/shutdown", {"reason": "test"})
    assert status == 404
    assert "no-such-pc" in body["error"] and "GET /api/clients" in body["hint"]
    status, body, _ = admin.http.call("GET", "/api/commands/0123456789abcdef01234567")
    assert status == 404 and "no command" in body["error"]


def test_reboot_reaches_the_agent_and_is_audited(bus, admin, agent):
    http = admin.http
    bus.admin.subscribe(["audit.admin-http"])
    status, first, _ = http.call("POST", "/api/clients/pc-1/reboot", {"reason": "frozen desktop", "args": {"delay_s": 5}},
                                 headers={"X-EMS-Operator": "alice@example.org"})
    assert status == 202
    assert first["status"] == "queued" and first["target"] == "pc-1" and first["name"] == "power.reboot"
    assert first["caller"] == "alice@example.org"
    cmd_id = first["id"]

    wait_for(lambda: agent.received, 10, what="the agent to receive the reboot")
    name, args, sender = agent.received[0]
    assert name == "power.reboot" and sender == "admin-http"
    assert args == {"delay_s": 5, "reason": "frozen desktop",
                    "operator": {"id": "alice@example.org", "name": "alice@example.org", "via": "admin-http"}}

    def done():
        status, record, _ = http.call("GET", f"/api/commands/{cmd_id}")
        return status == 200 and record["status"] == "done" and record

    record = wait_for(done, 10, interval_s=0.05, what="the command to be done")
    assert record["result"] == {"ok": True, "output": {"dry_run": True, "argv": ["systemctl", "reboot"]}}
    assert record["args"]["operator"]["name"] == "alice@example.org"

    # the bus audit trail names the listener and carries the reason
    event = next_message(bus.admin, lambda e: e.topic == "audit.admin-http" and e.data()["action"] == "command")
    assert event.data()["operator"] == "admin-http"
    assert event.data()["detail"]["id"] == cmd_id and event.data()["detail"]["reason"] == "frozen desktop"

    # and the listener's own audit log has each HTTP call, with who asked
    calls = admin.audit()
    post = [c for c in calls if c["method"] == "POST"]
    assert post == [{**post[0], "caller": "alice@example.org", "action": "power.reboot", "target": "pc-1",
                     "reason": "frozen desktop", "command_id": cmd_id, "command_status": "queued", "status": 202, "outcome": "ok"}]
    gets = [c for c in calls if c["method"] == "GET"]
    assert gets and all(c["path"] == f"/api/commands/{cmd_id}" and c["caller"] == "admin-http" and c["status"] == 200 for c in gets)
    assert gets[-1]["command_status"] == "done"


def test_wait_returns_the_result_for_every_action(admin, agent):
    for action, name in [("reboot", "power.reboot"), ("shutdown", "power.shutdown"),
                         ("update-check", "update.check"), ("update-apply", "update.apply")]:
        status, outcome, _ = admin.http.call("POST", f"/api/clients/pc-1/{action}?wait=1&timeout_s=10", {"reason": f"test {action}"})
        assert status == 200, outcome
        assert outcome["status"] == "done" and outcome["name"] == name and outcome["target"] == "pc-1"
        assert outcome["result"]["ok"] is True and outcome["result"]["output"]["dry_run"] is True
    assert [r[0] for r in agent.received] == ["power.reboot", "power.shutdown", "update.check", "update.apply"]
    waited = [r for r in admin.audit() if r["method"] == "POST"]
    assert [r["command_status"] for r in waited] == ["done"] * 4


def test_wait_gives_up_with_504_and_the_command_id(bus, admin):
    silent = FakeAgent(bus, "pc-silent", answer=False).start()
    try:
        status, body, _ = admin.http.call("POST", "/api/clients/pc-silent/update-apply?wait=1&timeout_s=0.5", {"reason": "patch day"})
    finally:
        silent.stop()
    assert status == 504
    assert "within 0.5 s" in body["error"] and body["id"] in body["hint"]
    assert body["status"] in ("sent", "queued")
    status, record, _ = admin.http.call("GET", f"/api/commands/{body['id']}")
    assert status == 200 and record["status"] in ("queued", "sent") and record["args"]["reason"] == "patch day"


def test_clients_status_and_concurrent_calls(admin, agent, caplog):
    status, body, _ = admin.http.call("GET", "/api/clients")
    assert status == 200
    assert [(c["client_id"], c["state"]) for c in body["clients"]] == [("pc-1", "online")]
    status, body, _ = admin.http.call("GET", "/api/status")
    assert status == 200
    assert body["listener"]["client_id"] == "admin-http" and body["listener"]["role"] == "service"
    assert body["listener"]["state"] == "ready" and body["broker"]["online_agents"] == 1

    # many HTTP threads, one bus thread
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda _: admin.http.call("GET", "/api/clients")[0], range(40)))
    assert statuses == [200] * 40
    assert len(admin.audit()) == 42
    logged = [r.getMessage() for r in caplog.records if r.name == "bridges.admin_http.server"]
    assert any(m.startswith("GET /api/status from 127.0.0.1 by admin-http -> 200 ok") for m in logged)
    assert len(logged) == 42


def test_broker_down_is_502_and_recovers(bus):
    admin = Admin(bus, bus_timeout_s=1.0, bus_startup_grace_s=0.5)
    try:
        assert admin.http.call("GET", "/api/clients")[0] == 200
        bus.stop()

        def refused():
            status, body, _ = admin.http.call("GET", "/api/clients")
            return status == 502 and body

        body = wait_for(refused, 15, interval_s=0.1, what="a 502 while the broker is down")
        assert "not connected to the broker" in body["error"] and "broker running" in body["hint"]
        bus.start()
        wait_for(lambda: admin.http.call("GET", "/api/clients")[0] == 200, 15, interval_s=0.1, what="recovery")
    finally:
        admin.close()


def _env_without_token() -> dict:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    env["PYTHONPATH"] = str(REPO)
    return env


def test_cli_refuses_to_start_without_a_token(tmp_path):
    res = subprocess.run([sys.executable, "-m", "broker.cli.main", "admin-http", "--data-dir", str(tmp_path)],
                         check=False, capture_output=True, text=True, timeout=60, env=_env_without_token(), cwd=str(tmp_path))
    assert res.returncode == 2
    assert f"{TOKEN_ENV} is not set" in res.stderr and f"export {TOKEN_ENV}=" in res.stderr
    res = subprocess.run([sys.executable, "-m", "broker.cli.main", "admin-http", "--data-dir", str(tmp_path)],
                         check=False, capture_output=True, text=True, timeout=60, env={**_env_without_token(), TOKEN_ENV: "short"}, cwd=str(tmp_path))
    assert res.returncode == 2 and "too short" in res.stderr


def test_cli_serves_and_stops_on_sigterm(bus, agent, tmp_path):
    """`ems admin-http` with a profile and a registered
    admin-http key: serves on the port it picked, stops cleanly on SIGTERM."""
    data = bus.data
    save(data, Profile(server=bus.endpoint, server_key=bus.server_key, key_name="admin", client_id="admin"))
    pair = keys.load_or_create(data.keys, "admin-http")
    bus.admin.request("keys.add", public_key=pair.public, client_id="admin-http", role="service")
    endpoint = data.root / ENDPOINT_FILE
    with (tmp_path / "admin-http.out").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "broker.cli.main", "admin-http", "--data-dir", str(data.root), "--listen", "127.0.0.1:0", "--heartbeat-s", "0.2"],
            stdout=out, stderr=subprocess.STDOUT, env={**_env_without_token(), TOKEN_ENV: TOKEN}, cwd=str(tmp_path),
        )
    try:
        wait_for(endpoint.exists, 20, what="the listener to bind")
        http = Http(endpoint.read_text().strip())
        status, outcome, _ = http.call("POST", "/api/clients/pc-1/reboot?wait=1", {"reason": "cli test"}, headers={"X-EMS-Operator": "bob"})
        assert status == 200 and outcome["status"] == "done", outcome
        assert agent.received[-1][1]["operator"] == {"id": "bob", "name": "bob", "via": "admin-http"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert not endpoint.exists()
    lines = [json.loads(line) for line in (data.logs / AUDIT_FILE).read_text().splitlines()]
    assert [(r["caller"], r["status"], r["command_status"]) for r in lines] == [("bob", 200, "done")]
    output = (tmp_path / "admin-http.out").read_text()
    assert "admin HTTP API listening on http://127.0.0.1:" in output
    assert "POST /api/clients/pc-1/reboot?wait=1 from 127.0.0.1 by bob -> 200 ok" in output
