"""``POST /api/sync``: the web UI's "sync this server now" through the admin HTTP API.

The sync worker is a bus service that provides ``sync``; here a small
stand-in service on a real connection answers ``sync.now`` and records what
the broker forwarded (who asked, the person, the reason), so the route is
tested before and independently of the worker itself.
"""
from __future__ import annotations

import threading

import pytest

from broker.core.client import BusClient
from broker.core.envelope import Kind, pack_body

from conftest import wait_for
from test_admin_http import Admin


class SyncStandIn:
    """A service peer providing ``sync``: answers ``sync.now`` with ``{"started": true}``."""

    def __init__(self, bus):
        self.pair = bus.enrol("sync", "service")
        self.config = bus.client_config()
        self.requests: list[dict] = []
        self._ready, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="sync-stand-in", daemon=True)

    def start(self) -> "SyncStandIn":
        self._thread.start()
        assert self._ready.wait(10), "the sync stand-in did not connect"
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        client = BusClient(self.config, self.pair, hello={"client_id": "sync", "provides": ["sync"]})
        try:
            client.connect()
            client.wait_ready(10)
            self._ready.set()
            while not self._stop.is_set():
                env = client.poll(0.05)
                if env is None or env.kind is not Kind.REQUEST:
                    continue
                data = env.data()
                self.requests.append(data)
                client.send(Kind.REPLY, body=pack_body({"started": True, "full": True}), corr=env.msg_id)
        finally:
            client.close()


@pytest.fixture
def admin(bus):
    a = Admin(bus)
    yield a
    a.close()


def test_sync_now_reaches_the_sync_service_with_the_person_and_reason(bus, admin):
    sync = SyncStandIn(bus).start()
    try:
        status, body, _ = admin.http.call("POST", "/api/sync", {"reason": "new clients added"})
        assert status == 202, body
        assert body == {"started": True, "full": True, "caller": "Jane Doe"}
        [forwarded] = sync.requests
        assert forwarded["op"] == "sync.now"
        assert forwarded["requester"] == {"client_id": "admin-http", "role": "service", "name": "admin-http"}  # the key has no display name
        assert forwarded["args"] == {"reason": "new clients added", "operator": {"id": "Jane Doe", "name": "Jane Doe"}}
    finally:
        sync.stop()
    [record] = [r for r in admin.audit() if r["path"] == "/api/sync"]
    assert (record["caller"], record["action"], record["reason"], record["status"]) == ("Jane Doe", "sync.now", "new clients added", 202)


def test_sync_now_without_a_worker_is_503(admin):
    status, body, _ = admin.http.call("POST", "/api/sync", {"reason": "nightly check"})
    assert status == 503 and body["error"] == "sync worker not running", body


def test_sync_now_needs_a_reason_and_a_person(bus, admin):
    sync = SyncStandIn(bus).start()
    try:
        status, body, _ = admin.http.call("POST", "/api/sync", {})
        assert status == 400 and body["error"] == "a reason is required"
        status, body, _ = admin.http.call("POST", "/api/sync", {"reason": "why"}, headers={"X-EMS-Operator": None})
        assert status == 400 and "X-EMS-Operator is required" in body["error"]
        status, body, _ = admin.http.call("DELETE", "/api/sync")  # GET reads the status (sync.status)
        assert status == 405
        assert sync.requests == []
    finally:
        sync.stop()
    wait_for(lambda: len([r for r in admin.audit() if r["path"] == "/api/sync"]) == 3, 5, what="three audited calls")
