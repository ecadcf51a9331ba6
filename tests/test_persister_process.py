"""The persister as `ems up` runs it (a supervised `ems persist` process) under
hostile queries from a viewer key and a deep event from an agent key: the
same process answers throughout, nothing is restarted."""
from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from broker.core import keys
from broker.core.profile import load as load_profile
from broker.core.client import BusClient
from broker.core.config import ClientConfig, DataDir, Timing
from broker.core.envelope import ErrorCode, Kind
from broker.core.errors import EmsError, RemoteError

from conftest import wait_for

#: (args of store.query) a viewer may send; each is a BAD_REQUEST
HOSTILE_QUERIES = [
    {"kind": "metrics", "before_id": 2**63},
    {"kind": "metrics", "before_id": 2**64 - 1},
    {"kind": "metrics", "since": 2**63},
    {"kind": "metrics", "until": float("nan")},
    {"kind": "metrics", "limit": float("inf")},
    {"kind": "metrics", "limit": "1"},
    {"kind": "metrics", "text": "\x00"},
    {"kind": [[[[["metrics"]]]]]},
]


class UpStack:
    """`ems up --no-agent` in a temp data dir, and clients made from its operator profile."""

    def __init__(self, root, procs):
        self.data = DataDir(root / "data")
        self.up = procs.ems("up", "up", "--data-dir", str(self.data.root), "--no-agent", "--no-web", "--bind", "tcp://127.0.0.1:0",
                            "--heartbeat-s", "0.5", env={"EMS_ADMIN_TOKEN": ""})
        self.clients: list[BusClient] = []
        wait_for(self.data.profile.exists, 30, what="ems up to write its profile")
        profile = load_profile(self.data)
        self.config = ClientConfig(server=profile.server, server_key=profile.server_key, timing=Timing.fast())
        self.admin = self.client(keys.load(self.data.keys, "operator"))
        wait_for(lambda: "store" in self._services(), 30, what="the persister to register")

    def _services(self) -> list[str]:
        try:
            return self.admin.request("status", timeout_s=2)["broker"]["services"]
        except EmsError:
            return []

    def client(self, pair: keys.KeyPair, hello: dict | None = None) -> BusClient:
        c = BusClient(self.config, pair, hello=hello)
        self.clients.append(c)
        c.connect()
        c.wait_ready(15)
        return c

    def peer(self, client_id: str, role: str) -> BusClient:
        pair = keys.generate()
        self.admin.request("keys.add", public_key=pair.public, client_id=client_id, role=role)
        return self.client(pair, hello={"client_id": client_id})

    def persister_pid(self) -> int:
        """The pid of the supervised `ems persist` child of `ems up`."""
        found = [p.pid for p in psutil.Process(self.up.pid).children()
                 if "persist" in p.cmdline() and p.status() != psutil.STATUS_ZOMBIE]
        assert len(found) == 1, found
        return found[0]

    def ems(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "broker.cli.main", *args, "--data-dir", str(self.data.root)],
                              capture_output=True, text=True, timeout=60)

    def close(self):
        for c in self.clients:
            c.close()


@pytest.fixture
def up(tmp_path, procs):
    stack = UpStack(tmp_path, procs)
    yield stack
    stack.close()


def test_the_supervised_persister_survives_a_hostile_viewer_and_a_deep_event(up):
    """Tried, against `ems up`'s own persister process: a viewer key sending before_id
    2^63 and 2^64-1, since 2^63, until nan, limit inf and "1", a NUL text and a nested
    kind (each once killed the process or matched every row); then an agent key
    publishing an event nested 1,001 deep followed by a text search of activity (the
    RecursionError restart loop). Each query is BAD_REQUEST, the event is quarantined
    and acknowledged, the search answers, and the persister keeps its pid throughout:
    the supervisor never restarted it."""
    pid = up.persister_pid()
    viewer = up.peer("viewer-x", "viewer")
    for args in HOSTILE_QUERIES:
        with pytest.raises(RemoteError) as err:
            viewer.request("store.query", **args)
        assert err.value.code == ErrorCode.BAD_REQUEST, (args, err.value)
        assert viewer.request("store.query", kind="metrics") == []
        assert up.persister_pid() == pid

    agent = up.peer("agent-deep", "agent")
    body = b"\x81\xa1a" * 1001 + b"\xa1x"
    msg_id = agent.publish(Kind.EVENT, "deep", body=body)
    wait_for(lambda: any(msg_id in env.data()["ids"] for env in agent.drain(100, 0.1) if env.kind is Kind.ACK),
             20, interval_s=0.0, what="the deep event's ACK")
    for _ in range(3):
        assert up.admin.request("store.query", kind="activity", text="x") == []
    [held] = up.admin.request("store.query", kind="quarantine", client_id="agent-deep")
    assert (held["msg_id"], held["reason"]) == (msg_id, "nested deeper than 32 levels")
    assert up.persister_pid() == pid
    assert "persister exited" not in up.up.log_path.read_text()


def test_ems_history_says_what_to_do_with_an_id_past_int64(up):
    """Tried: `ems history logs --before-id 9223372036854775808` (it raised OverflowError in
    the persister) and `--limit 0`: the CLI refuses before sending, says which ids are
    valid and where to find one; `ems history quarantine` lists refused records for the admin."""
    res = up.ems("history", "logs", "--before-id", "9223372036854775808")
    assert res.returncode == 2
    assert "--before-id" in res.stderr and "not a row id" in res.stderr and "previous page" in res.stderr
    res = up.ems("history", "logs", "--limit", "0")
    assert res.returncode == 2 and "from 1 to 1000" in res.stderr
    res = up.ems("history", "logs", "--before-id", "9223372036854775807")
    assert res.returncode == 0, res.stderr
    res = up.ems("history", "quarantine")
    assert res.returncode == 0 and "no quarantine rows match" in res.stdout
