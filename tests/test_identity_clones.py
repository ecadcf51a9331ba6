"""Identity that survives cloning: a per-install salt makes two installs on one image
differ, an older install keeps its id, and two live machines behind one id are flagged
by the broker (two real agents on a real broker)."""
from __future__ import annotations

import os
import shutil
import stat
import threading

import pytest

from agent import identity
from agent.runner import Agent, AgentConfig
from broker.core import keys
from broker.core.envelope import Kind
from conftest import next_message, wait_for


def test_two_installs_on_one_machine_get_different_ids_and_keep_them(tmp_path):
    first, second = identity.client_id(tmp_path / "a"), identity.client_id(tmp_path / "b")
    assert first != second and len(first) == len(second) == 16
    assert identity.client_id(tmp_path / "a") == first  # kept across restarts
    assert first != identity.hardware_fingerprint()
    assert stat.S_IMODE(os.stat(tmp_path / "a" / identity.IDENTITY_FILE).st_mode) == 0o600
    prints = identity.fingerprints(tmp_path / "a")
    assert prints["hardware"] == identity.hardware_fingerprint() and prints["install"] != identity.fingerprints(tmp_path / "b")["install"]


def test_an_install_from_before_the_salt_keeps_its_id(tmp_path):
    keys.load_or_create(tmp_path / "old" / "keys", "agent")  # enrolled under the hardware-derived id
    assert identity.client_id(tmp_path / "old") == identity.hardware_fingerprint()
    assert identity.client_id(tmp_path / "old") == identity.hardware_fingerprint()  # and keeps it


def test_a_damaged_identity_file_is_not_replaced_silently(tmp_path):
    (tmp_path / identity.IDENTITY_FILE).write_text("{}")
    with pytest.raises(identity.EmsError, match="damaged"):
        identity.client_id(tmp_path)


class Running:
    """A real agent on its own thread."""

    def __init__(self, bus, data_dir):
        self.agent = Agent(AgentConfig(data_dir=data_dir, client=bus.client_config(), sysinfo_interval_s=3600))
        self.thread = threading.Thread(target=self.agent.run, daemon=True)
        self.thread.start()

    def stop(self):
        self.agent.stop()
        self.thread.join(30)


@pytest.fixture
def watcher(bus):
    w = bus.peer("sec-watch", role="viewer")
    w.subscribe(["security."])
    return w


def flagged(watcher, event: str) -> dict:
    return next_message(watcher, lambda e: e.kind is Kind.SECURITY and e.data()["event"] == event, 30).data()


def enrol_as_hardware_id(bus, data_dir) -> str:
    """An agent enrolled before the install salt existed: its key is registered under the hardware id."""
    pair = keys.load_or_create(data_dir / "keys", "agent")
    cid = identity.hardware_fingerprint()
    bus.admin.request("keys.add", public_key=pair.public, client_id=cid, role="agent")
    return cid


def test_a_cloned_image_upgraded_on_each_clone_is_flagged(bus, watcher, tmp_path, monkeypatch):
    """An image with an enrolled older agent, cloned, then upgraded on each clone: one id,
    two install salts. The second connection is flagged as a clone."""
    monkeypatch.delenv("DISPLAY", raising=False)
    cid = enrol_as_hardware_id(bus, tmp_path / "vm-a")
    shutil.copytree(tmp_path / "vm-a", tmp_path / "vm-b")
    a = Running(bus, tmp_path / "vm-a")
    try:
        wait_for(lambda: a.agent.bus.ready, 20, what="the first clone welcomed")
        b = Running(bus, tmp_path / "vm-b")
        try:
            event = flagged(watcher, "agent_id_clone")
        finally:
            b.stop()
    finally:
        a.stop()
    assert event["client_id"] == cid and "install fingerprint" in event["detail"] and "two machines" in event["detail"]
    assert a.agent.client_id == b.agent.client_id == cid


def test_a_vm_copied_whole_is_flagged_when_both_run(bus, watcher, tmp_path, monkeypatch):
    """Keys and identity file copied too (same fingerprints): the replaced connection keeps
    sending, so one key is in use at two places at once."""
    monkeypatch.delenv("DISPLAY", raising=False)
    original = tmp_path / "vm-a"
    cid = identity.client_id(original)  # a current install: salted id, made before its keys
    pair = keys.load_or_create(original / "keys", "agent")
    bus.admin.request("keys.add", public_key=pair.public, client_id=cid, role="agent")
    shutil.copytree(original, tmp_path / "vm-b")
    a = Running(bus, original)
    try:
        wait_for(lambda: a.agent.bus.ready, 20, what="the original welcomed")
        b = Running(bus, tmp_path / "vm-b")
        try:
            event = flagged(watcher, "agent_id_twin")
        finally:
            b.stop()
    finally:
        a.stop()
    assert event["client_id"] == cid and "two places at once" in event["detail"]
    assert bus.broker.counters["security_agent_id_clone"] == 0  # same fingerprints: not told as another install


def test_a_restarted_agent_is_not_flagged(bus, tmp_path, monkeypatch):
    """The same install reconnecting (its old connection not yet timed out) is no clone."""
    monkeypatch.delenv("DISPLAY", raising=False)
    data = tmp_path / "desk"
    cid = identity.client_id(data)
    bus.admin.request("keys.add", public_key=keys.load_or_create(data / "keys", "agent").public, client_id=cid, role="agent")
    for _ in range(2):
        run = Running(bus, data)
        try:
            wait_for(lambda: run.agent.bus.ready, 20, what="the agent welcomed")
        finally:
            run.stop()
    wait_for(lambda: cid not in bus.broker.online, 20, what="the agent offline")
    assert bus.broker.counters["security_agent_id_clone"] == bus.broker.counters["security_agent_id_twin"] == 0
