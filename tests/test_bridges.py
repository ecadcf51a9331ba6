"""The web UI's bridges against a live stack: ``ems up`` (broker, persister, local agent on Xvfb).

``python -m bridges.server_info`` and ``python -m bridges.get_latest_frame``
run as the PHP web UI runs them: subprocesses reading the data dir, with the
service keys ``ems up`` made for them. Besides the local agent (a real
screen) the stack has an agent with no display and one that is enrolled but
never runs. The failures each get their exit code and one line on stderr.
"""
from __future__ import annotations

import base64
import io
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from bench.harness.pattern import Pattern
from bench.harness.xvfb import Xvfb
from bridges.bridge_call import CAPTURE, LATEST_FRAME, SERVER_INFO, Exit
from broker.core import keys
from broker.core.config import DataDir
from broker.core.errors import TimeoutError as BusTimeout
from broker.core.profile import Profile, load, operator_client, save

from conftest import Processes, wait_for

W, H = 1280, 720
PERSON, REASON = "Jane Doe", "the user reported a frozen window"


class LiveStack:
    """``ems up`` on Xvfb, plus a display-less agent and an offline one; stopped by pid."""

    def __init__(self, root: Path, *up_args: str):
        self.root = root
        self.procs = Processes(root)
        self.data = DataDir(root / "var")
        self.access_dir = root / "access"
        self.admin = self.pattern = None
        self.xvfb = Xvfb(W, H).start()
        try:
            self._start(up_args)
        except BaseException:
            self.close()  # a failed start leaves nothing running
            raise

    def _start(self, up_args: tuple[str, ...]) -> None:
        self.pattern = Pattern(self.xvfb.display, W, H).__enter__()
        self.pattern.rect("box", 100, 100, 200, 150, "#ff0000")
        self.up = self.procs.ems("up", "up", "--data-dir", str(self.data.root), "--bind", "tcp://127.0.0.1:0", "--heartbeat-s", "0.5",
                                 *up_args, env={"DISPLAY": self.xvfb.display, "EMS_ADMIN_TOKEN": "", "EMS_ACCESS_DIR": str(self.access_dir)})
        wait_for(self.data.profile.exists, 30, what="ems up to write the profile")
        self.admin = operator_client(str(self.data.root))
        self.local_agent = wait_for(lambda: self.online() and self.online()[0], 30, interval_s=0.2, what="the local agent online")
        self.start_headless_agent("headless-1")
        self.enrol("gone-1")
        wait_for(lambda: "headless-1" in self.online(), 30, interval_s=0.2, what="the headless agent online")

    def online(self) -> list[str]:
        try:
            agents = self.admin.request("agents")
        except BusTimeout:  # the broker may still be starting: ems up writes the profile first
            return []
        return [a["client_id"] for a in agents if a["state"] == "online"]

    def enrol(self, client_id: str) -> Path:
        agent_dir = self.root / client_id
        pair = keys.load_or_create(agent_dir / "keys", "agent")
        self.admin.request("keys.add", public_key=pair.public, client_id=client_id, role="agent")
        return agent_dir

    def start_headless_agent(self, client_id: str) -> subprocess.Popen:
        profile = load(self.data)
        return self.procs.ems(client_id, "agent", "--data-dir", str(self.enrol(client_id)), "--server", profile.server,
                       f"--server-key={profile.server_key}", "--id", client_id, "--heartbeat-s", "0.5",
                       env={"DISPLAY": "", "WAYLAND_DISPLAY": "", "EMS_ACCESS_DIR": str(self.root / "access-headless")})

    def close(self) -> None:
        if self.admin is not None:
            self.admin.close()
        self.procs.stop_all()
        if self.pattern is not None:
            self.pattern.__exit__(None, None, None)
        self.xvfb.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not Xvfb.installed():
        pytest.fail("Xvfb is not installed: run installer/install.sh --dev")
    s = LiveStack(tmp_path_factory.mktemp("bridges"))
    yield s
    s.close()


def bridge(module: str, *args: str, data_dir: Path, timeout_s: float = 10) -> subprocess.CompletedProcess:
    """Run a bridge as the web UI does; the test fails (rather than hangs) if it outlives its own limit."""
    return subprocess.run([sys.executable, "-m", f"bridges.{module}", *args, "--data-dir", str(data_dir), "--timeout-s", str(timeout_s)],
                          capture_output=True, timeout=timeout_s + 30, stdin=subprocess.DEVNULL)


def frame(stack: LiveStack, client: str, *extra: str, data_dir: Path | None = None, timeout_s: float = 10) -> subprocess.CompletedProcess:
    return bridge("get_latest_frame", client, "--operator", PERSON, "--reason", REASON, *extra,
                  data_dir=data_dir or stack.data.root, timeout_s=timeout_s)


def failure(res: subprocess.CompletedProcess, code: Exit) -> str:
    """The one stderr line of a failed bridge, after checking its exit code and empty stdout."""
    assert res.returncode == code, (res.returncode, res.stderr)
    assert res.stdout == b""
    lines = res.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def other_data_dir(stack: LiveStack, root: Path, server: str | None = None, fresh_key: str | None = None) -> Path:
    """A data dir beside the stack's: its profile (``server`` replaced) and the bridges' keys (``fresh_key``: a new pair)."""
    data = DataDir(root).ensure()
    profile = load(stack.data)
    save(data, Profile(**{**profile.__dict__, "server": server or profile.server}))
    for name in (SERVER_INFO.key_name, LATEST_FRAME.key_name, CAPTURE.key_name):
        for path in stack.data.keys.glob(f"{name}.*"):
            shutil.copy2(path, data.keys / path.name)
    if fresh_key:
        for path in data.keys.glob(f"{fresh_key}.*"):
            path.unlink()
        keys.load_or_create(data.keys, fresh_key)
    return data.root


def test_server_info_reports_identity_status_live_clients_and_sync(stack):
    res = bridge("server_info", data_dir=stack.data.root)
    assert res.returncode == 0, res.stderr
    assert res.stderr == b""
    info = json.loads(res.stdout)
    assert set(info) == {"server", "broker", "counters", "commands", "clients", "sync", "generated_at"}
    broker_key = keys.load(stack.data.keys, "broker").public
    server = info["server"]
    assert server["server_id"] == server["public_key"] == broker_key
    assert server["host"] == socket.gethostname() and server["version"] and server["endpoint"] == load(stack.data).server
    assert server["uptime_s"] > 0 and server["boot_id"]
    assert "store" in info["broker"]["services"] and info["broker"]["online_agents"] == 2
    assert info["counters"]["zap_accepted"] >= 1
    states = {c["client_id"]: c["state"] for c in info["clients"]}
    assert states == {stack.local_agent: "online", "headless-1": "online", "gone-1": "offline"}
    # ems up runs the sync worker: its sync.status, once it has joined the bus
    sync = wait_for(lambda: (i := json.loads(bridge("server_info", data_dir=stack.data.root).stdout))["sync"]["running"]
                    and i["sync"], 30, interval_s=0.5, what="the sync worker's status")
    assert sync["status"]["server_id"] == broker_key and sync["status"]["database"] == "ems_web"


def test_latest_frame_is_the_real_screen_and_names_the_person(stack):
    res = frame(stack, stack.local_agent)
    assert res.returncode == 0, res.stderr
    image = Image.open(io.BytesIO(res.stdout))
    assert image.format == "JPEG" and image.size == (W, H)
    red = image.convert("RGB").getpixel((200, 175))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60, red

    seen_by = f"{PERSON} via {LATEST_FRAME.client_id}"
    log = [json.loads(line) for line in (stack.access_dir / "access.log").read_text().splitlines()]
    assert {"kind": "capture", "operator": seen_by, "reason": REASON} in [{k: e.get(k) for k in ("kind", "operator", "reason")} for e in log]
    assert any(e["kind"] == "notice" and e["event"] == "Screen captured" and seen_by in e["detail"] and REASON in e["detail"] for e in log)

    def audited() -> dict | None:
        rows = stack.admin.request("store.query", kind="audit", client_id=stack.local_agent)
        by_action = {r["action"]: r for r in rows if r["operator"] == LATEST_FRAME.client_id}
        return by_action if {"command", "capture.view"} <= set(by_action) else None

    rows = wait_for(audited, 15, interval_s=0.2, what="the command and the capture read in the audit trail")
    command, read = rows["command"], rows["capture.view"]
    assert command["reason"] == REASON and command["detail"]["name"] == "capture"
    assert (command["detail"]["operator_name"], command["detail"]["via"]) == (PERSON, LATEST_FRAME.client_id)
    assert (read["reason"], read["detail"]["operator_name"], read["detail"]["via"]) == (REASON, PERSON, LATEST_FRAME.client_id)


def test_agent_failures_have_their_own_exit_codes(stack):
    assert "no accepted agent 'nobody-9'" in failure(frame(stack, "nobody-9"), Exit.UNKNOWN_AGENT)
    assert "agent gone-1 is offline (last seen never)" in failure(frame(stack, "gone-1"), Exit.AGENT_OFFLINE)
    line = failure(frame(stack, "headless-1"), Exit.NO_DISPLAY)
    assert "headless-1 has no screen to capture" in line and "no X display (DISPLAY is not set)" in line
    res = bridge("get_latest_frame", stack.local_agent, "--operator", PERSON, data_dir=stack.data.root)
    assert res.returncode == Exit.USAGE and b"--reason" in res.stderr
    res = bridge("get_latest_frame", stack.local_agent, "--operator", " ", "--reason", REASON, data_dir=stack.data.root)
    assert res.returncode == Exit.USAGE and b"name the person" in res.stderr


def test_an_unregistered_or_revoked_bridge_key_is_not_allowed(stack, tmp_path):
    unregistered = other_data_dir(stack, tmp_path / "unregistered", fresh_key=LATEST_FRAME.key_name)
    line = failure(frame(stack, stack.local_agent, data_dir=unregistered), Exit.NOT_ALLOWED)
    assert f"the key of {LATEST_FRAME.client_id} is not registered at the broker (pending)" in line

    revoked = other_data_dir(stack, tmp_path / "revoked", fresh_key=SERVER_INFO.key_name)
    pair = keys.load(Path(revoked) / "keys", SERVER_INFO.key_name)
    stack.admin.request("keys.add", public_key=pair.public, client_id="web-info-spare", role="service")
    assert bridge("server_info", data_dir=revoked).returncode == 0  # registered: it works
    stack.admin.request("keys.revoke", id="web-info-spare", reason="retired web server")
    line = failure(bridge("server_info", data_dir=revoked), Exit.NOT_ALLOWED)
    assert f"the broker refused the key of {SERVER_INFO.client_id} (revoked or rejected)" in line


def test_no_bridge_key_is_a_setup_error(stack, tmp_path):
    bare = other_data_dir(stack, tmp_path / "bare")
    for path in (bare / "keys").glob(f"{SERVER_INFO.key_name}.*"):
        path.unlink()
    line = failure(bridge("server_info", data_dir=bare), Exit.SETUP)
    assert "`ems up` creates it" in line


def test_broker_down_is_unreachable(stack, tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = other_data_dir(stack, tmp_path / "down", server=f"tcp://127.0.0.1:{port}")
    line = failure(bridge("server_info", data_dir=down), Exit.UNREACHABLE)
    assert f"the broker is unreachable at tcp://127.0.0.1:{port}" in line
    assert failure(frame(stack, stack.local_agent, data_dir=down), Exit.UNREACHABLE)


def test_a_broker_that_never_answers_is_a_timeout(stack, tmp_path):
    with socket.socket() as silent:  # accepts TCP connections (the kernel's backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        mute = other_data_dir(stack, tmp_path / "mute", server=f"tcp://127.0.0.1:{silent.getsockname()[1]}")
        line = failure(bridge("server_info", data_dir=mute, timeout_s=1.5), Exit.TIMEOUT)
        assert "timed out after 1.5 s waiting for the broker" in line
        assert failure(frame(stack, stack.local_agent, data_dir=mute, timeout_s=1.5), Exit.TIMEOUT)


def capture(stack: LiveStack, *args: str) -> subprocess.CompletedProcess:
    return bridge("get_capture", *args, "--operator", PERSON, "--operator-id", "web:jane", "--reason", REASON,
                  data_dir=stack.data.root)


def test_get_capture_reads_a_stored_capture_and_previews_for_the_person_audited(stack):
    assert frame(stack, stack.local_agent).returncode == 0  # a capture in the store
    (row,) = stack.admin.request("store.query", kind="captures", client_id=stack.local_agent, limit=1)
    res = capture(stack, str(row["id"]))
    assert res.returncode == 0, res.stderr
    image = Image.open(io.BytesIO(res.stdout))
    assert image.format == "JPEG" and image.size == (W, H)

    res = capture(stack, "--preview", str(row["id"]), "987654321")
    assert res.returncode == 0, res.stderr
    answer = json.loads(res.stdout)
    preview = Image.open(io.BytesIO(base64.b64decode(answer["previews"][str(row["id"])])))
    assert preview.format == "JPEG" and preview.size[0] < W
    assert "no capture 987654321" in answer["missing"]["987654321"] and set(answer["previews"]) == {str(row["id"])}
    assert "no capture 987654321" in failure(capture(stack, "987654321"), Exit.UNKNOWN_CAPTURE)

    def audited() -> dict | None:
        rows = {r["action"]: r for r in stack.admin.request("store.query", kind="audit", limit=200)
                if r["operator"] == CAPTURE.client_id}
        return rows if {"capture.view", "capture.thumbnails"} <= set(rows) else None

    for read in wait_for(audited, 15, interval_s=0.2, what="the capture bridge's reads in the audit trail").values():
        assert (read["reason"], read["operator_name"], read["via"]) == (REASON, PERSON, CAPTURE.client_id)
        assert (read["detail"]["operator_name"], read["detail"]["operator_id"], read["detail"]["via"]) == \
            (PERSON, "web:jane", CAPTURE.client_id)


def test_get_capture_needs_a_person_a_reason_and_one_id_for_a_full_picture(stack):
    for args in (["1", "--reason", REASON], ["1", "--operator", PERSON], ["1", "2", "--operator", PERSON, "--reason", REASON],
                 ["-5", "--operator", PERSON, "--reason", REASON]):
        res = bridge("get_capture", *args, data_dir=stack.data.root)
        assert res.returncode == Exit.USAGE and res.stdout == b"", (args, res.stderr)
