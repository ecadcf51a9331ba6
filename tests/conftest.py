"""Shared fixtures: a real broker on a random loopback port, real Curve keys.

Every test gets its own data dir and broker; sockets close with linger 0;
every wait has a timeout so that a broken test fails instead of hanging.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from broker.core import keys
from broker.core.client import BusClient
from broker.core.config import BrokerConfig, ClientConfig, DataDir, Timing
from broker.core.envelope import Envelope
from broker.server.registry import KeyRegistry
from broker.server.loop import Broker, serve_in_thread


def wait_for(predicate: Callable[[], object], timeout_s: float = 10.0, interval_s: float = 0.02, what: str = "condition"):
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


class ManualClock:
    """A clock a test moves by hand (``clock.now += 30``): starts at 1000.0."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def next_message(client: BusClient, match: Callable[[Envelope], bool], timeout_s: float = 5.0) -> Envelope:
    """The next message ``match`` accepts; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        env = client.poll(min(0.1, max(0.0, deadline - time.monotonic())))
        if env is not None and match(env):
            return env
    pytest.fail(f"no matching message within {timeout_s} s")


class Bus:
    """A running broker plus helpers to make enrolled peers."""

    def __init__(self, root: Path, timing: Timing):
        self.root = root
        self.timing = timing
        self.data = DataDir(root / "server").ensure()
        self.admin_keys = keys.load_or_create(self.data.keys, "admin")
        registry = KeyRegistry(self.data.broker_db)
        registry.add(self.admin_keys.public, "admin", "admin")
        registry.close()
        self.config = BrokerConfig(self.data, bind="tcp://127.0.0.1:0", timing=timing)
        self.broker: Broker | None = None
        self.thread = None
        self.clients: list[BusClient] = []
        self.start()
        self.admin = self.client(self.admin_keys)

    def start(self) -> None:
        self.broker, self.thread = serve_in_thread(self.config)
        # restart on the same port, so connected peers find it again
        self.config.bind = self.broker.endpoint

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop()
            self.thread.join(10)
            self.broker = None

    @property
    def endpoint(self) -> str:
        return self.config.bind

    @property
    def server_key(self) -> str:
        return keys.load(self.data.keys, "broker").public

    def client_config(self) -> ClientConfig:
        return ClientConfig(server=self.endpoint, server_key=self.server_key, timing=self.timing)

    def client(self, keypair: keys.KeyPair, hello: dict | None = None, ready: bool = True, pace: bool = True) -> BusClient:
        """A connected client for ``keypair`` (closed at teardown); ``pace=False``:
        an agent that does not keep to its rate limit by itself."""
        c = BusClient(self.client_config(), keypair, hello=hello, pace=pace)
        self.clients.append(c)
        c.connect()
        if ready:
            c.wait_ready(10)
        return c

    def enrol(self, client_id: str, role: str = "agent") -> keys.KeyPair:
        """A new key pair accepted with ``role`` through the admin's bus call."""
        pair = keys.generate()
        self.admin.request("keys.add", public_key=pair.public, client_id=client_id, role=role)
        return pair

    def peer(self, client_id: str, role: str = "agent", **kw) -> BusClient:
        return self.client(self.enrol(client_id, role), hello={"client_id": client_id}, **kw)

    def close(self) -> None:
        for c in self.clients:
            c.close()
        self.stop()


@pytest.fixture
def bus(tmp_path):
    """A broker with fast heartbeats (offline within ~1 s) and an admin client."""
    b = Bus(tmp_path, Timing.fast())
    yield b
    b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a skipped test is a failed test: whatever it needs, the installer must provide."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which is not allowed (install what it needs): {report.longrepr}"


@pytest.fixture(autouse=True, scope="session")
def _access_dir(tmp_path_factory):
    """Agents started through the CLI keep their access log in a temporary dir, never the machine's
    /var/lib/ems/access (tests run as root); a test that reads one passes its own --access-dir."""
    os.environ.setdefault("EMS_ACCESS_DIR", str(tmp_path_factory.mktemp("access")))
    yield


@pytest.fixture(autouse=True)
def _quiet_logs(caplog):
    caplog.set_level(logging.INFO)
    yield


class Processes:
    """Subprocesses a test starts; every one is stopped by pid at teardown."""

    def __init__(self, root: Path):
        self.root = root
        self.procs: list[subprocess.Popen] = []

    def ems(self, name: str, *args: str, env: dict | None = None) -> subprocess.Popen:
        """Run ``ems ARGS`` with output in ROOT/NAME.log."""
        log_path = self.root / f"{name}.log"
        out = log_path.open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "broker.cli.main", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=str(self.root),
        )
        out.close()
        proc.log_path = log_path
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def procs(tmp_path):
    p = Processes(tmp_path)
    yield p
    p.stop_all()


#: a MySQL/MariaDB administrator URL the tests may use instead of starting their own instance
TEST_MYSQL_URL_ENV = "EMS_TEST_MYSQL_URL"


@pytest.fixture(scope="session")
def mysql_admin_url(tmp_path_factory):
    """An administrator's URL to a real MariaDB: $EMS_TEST_MYSQL_URL if set, else one private
    instance for the whole run (``sync.mariadb.PrivateMariaDB``: random port, the account over the
    socket), stopped by its pid at the end. Each test creates and names its own database."""
    configured = os.environ.get(TEST_MYSQL_URL_ENV)
    if configured:
        yield configured
        return
    from sync.mariadb import start

    instance = start(tmp_path_factory.mktemp("mariadb"))
    try:
        yield instance.admin_url()
    finally:
        instance.stop()
