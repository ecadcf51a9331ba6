"""Auto-sync (the sync worker's periodic full snapshots) changed over the real bus: ``sync.auto`` is for admins
(and services that vouch for one, like the admin API), checked before it is applied, read back in ``sync.status``,
and kept in the data dir so that ``ems sync run`` starts with it again."""
from __future__ import annotations

import json

import pytest

from broker.core.errors import RemoteError
from sync.run_cli import AUTO_FILE, build_worker
from sync.worker import SyncConfig
from conftest import wait_for
from sync_support import RunningSync, new_database, sync_profile


@pytest.fixture
def running(bus, tmp_path, mysql_admin_url):
    sync = RunningSync(bus, new_database(mysql_admin_url), "server-auto", tmp_path, config=SyncConfig(wait_s=0.5, full_every_s=300.0))

    def answers() -> bool:
        try:
            return bool(bus.admin.request("sync.status"))
        except RemoteError:  # UNAVAILABLE until the worker has joined the bus
            return False
    wait_for(answers, 30, interval_s=0.1, what="the sync worker on the bus")
    yield sync
    sync.stop()


def test_only_an_admin_changes_auto_sync_and_the_status_reads_it_back(bus, running):
    viewer, operator, admin = bus.peer("v1", role="viewer"), bus.peer("o1", role="operator"), bus.peer("a1", role="admin")
    assert viewer.request("sync.status")["auto"]["enabled"] is True and viewer.request("sync.status")["auto"]["every_s"] == 300.0
    for peer in (viewer, operator):
        with pytest.raises(RemoteError) as refused:
            peer.request("sync.auto", enabled=False, every_s=600)
        assert refused.value.code.name == "FORBIDDEN"
    answer = admin.request("sync.auto", enabled=False, every_s=600, reason="quiet night")
    assert answer == {"enabled": False, "every_s": 600.0, "next_in_s": None}
    assert viewer.request("sync.status")["auto"] == answer
    assert (running.worker.config.auto, running.worker.config.full_every_s) == (False, 600.0)


@pytest.mark.parametrize("args", [{"enabled": True, "every_s": 59}, {"enabled": True, "every_s": -1},
                                  {"enabled": True, "every_s": 2 ** 63}, {"enabled": True, "every_s": float("nan")},
                                  {"enabled": True, "every_s": "600"}, {"enabled": "yes", "every_s": 600},
                                  {"enabled": True, "every_s": True}, {"every_s": 600}, {"enabled": True}])
def test_a_bad_setting_is_refused_and_changes_nothing(bus, running, args):
    admin = bus.peer("a1", role="admin")
    with pytest.raises(RemoteError) as refused:
        admin.request("sync.auto", **args)
    assert refused.value.code.name == "BAD_REQUEST"
    assert (running.worker.config.auto, running.worker.config.full_every_s) == (True, 300.0)


def test_the_setting_is_saved_and_the_next_worker_starts_with_it(bus, tmp_path, mysql_admin_url):
    root = sync_profile(bus, tmp_path / "data")
    url = new_database(mysql_admin_url)
    worker = build_worker(root, mysql=url)
    assert (worker.config.auto, worker.config.full_every_s) == (True, SyncConfig.full_every_s)
    worker.set_auto({"enabled": False, "every_s": 3600})
    assert json.loads((root / AUTO_FILE).read_text()) == {"enabled": False, "every_s": 3600.0}
    assert (root / AUTO_FILE).stat().st_mode & 0o777 == 0o600
    again = build_worker(root, mysql=url, config=SyncConfig(full_every_s=120.0))
    assert (again.config.auto, again.config.full_every_s) == (False, 3600.0)
    (root / AUTO_FILE).write_text('{"enabled": true, "every_s": 1}')  # not a valid setting: the command line's holds
    third = build_worker(root, mysql=url, config=SyncConfig(full_every_s=120.0))
    assert (third.config.auto, third.config.full_every_s) == (True, 120.0)
