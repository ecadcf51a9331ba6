"""The persister's timers run on its injected clocks: the purge schedule and
the store-failure retry move when the test moves time, never on their own.

The persister is driven by hand (``connect`` then ``step``) on a real bus
and a real store; ``clock`` (monotonic) and ``wall_clock`` are
:class:`conftest.ManualClock` s.
"""
from __future__ import annotations

import pytest

from broker.core.envelope import Kind
from broker.persister.crypto import SecurityManager
from broker.persister.service import DAY, Persister, PersisterConfig
from broker.persister.store import Record, Store

from conftest import ManualClock, wait_for
from test_persister_bus import pump_once, sender_for


class Stepped:
    """A persister whose loop the test turns, with both clocks in hand."""

    def __init__(self, bus, tmp_path, config: PersisterConfig):
        self.store = Store(tmp_path / "store.db", SecurityManager(tmp_path / "store-keys.json"))
        client = bus.client(bus.enrol("persister", role="service"), hello={"client_id": "persister", "provides": ["store"]},
                            ready=False)
        self.clock = ManualClock()
        self.wall = ManualClock()
        self.wall.now = 100 * DAY
        self.service = Persister(client, self.store, config, clock=self.clock, wall_clock=self.wall)
        self.service.connect()

    def close(self) -> None:
        self.service.bus.close()
        self.store.close()


@pytest.fixture
def make_stepped(bus, tmp_path):
    made: list[Stepped] = []

    def make(**config) -> Stepped:
        made.append(Stepped(bus, tmp_path, PersisterConfig(**config)))
        return made[-1]

    yield make
    for s in made:
        s.close()


def log_ids(store: Store, client_id: str) -> set[str]:
    return {r["msg_id"] for r in store.query("logs", client_id=client_id, limit=1000)}


def test_purge_runs_when_the_injected_clocks_say_so(make_stepped):
    """The first purge is due 60 s (of ``clock``) after start, then every
    ``purge_interval_s``; what is old is judged by ``wall_clock``. Moving
    neither clock purges nothing; one second short of the schedule purges
    nothing."""
    p = make_stepped(retention_s={"logs": 30 * DAY}, purge_interval_s=3600.0)
    now = p.wall.now
    p.store.write_batch([
        Record("log", "agent-p", "old", now - 31 * DAY, "log.agent-p", {"message": "old"}),
        Record("log", "agent-p", "young", now - 29 * DAY, "log.agent-p", {"message": "young"}),
    ])
    p.service.step()
    p.clock.now += 59.0
    p.service.step()
    assert log_ids(p.store, "agent-p") == {"old", "young"}

    p.clock.now += 1.0
    p.service.step()
    assert log_ids(p.store, "agent-p") == {"young"}

    p.wall.now += 2 * DAY  # "young" is now 31 days old, but the next purge is an hour away
    p.clock.now += 3599.0
    p.service.step()
    assert log_ids(p.store, "agent-p") == {"young"}
    p.clock.now += 1.0
    p.service.step()
    assert log_ids(p.store, "agent-p") == set()


def test_a_failing_store_is_retried_after_retry_s_of_the_injected_clock(bus, make_stepped, tmp_path):
    """SQLITE_FULL (a real one, via max_page_count): the failed commit is
    tried again only once ``retry_s`` of ``clock`` has passed, however many
    passes the loop makes meanwhile; once space is back the next retry
    commits every record and acknowledges it."""
    p = make_stepped(max_batch=50, retry_s=4.0)
    db = p.store.connection
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count={pages}")
    sender = sender_for(bus, tmp_path, "agent-r")
    sender.report_many([(Kind.EVENT, "activity", {"n": i, "pad": "x" * 500}) for i in range(120)])

    def failed_once():
        pump_once(sender)
        p.service.step()
        return p.service.stats["write_failures"] >= 1

    wait_for(failed_once, 15, interval_s=0.0, what="the first write failure")
    for _ in range(3):  # the loop turns, the clock does not: no retry
        p.service.step()
    p.clock.now += 3.5
    p.service.step()
    assert p.service.stats["write_failures"] == 1
    p.clock.now += 0.5
    p.service.step()
    assert p.service.stats["write_failures"] == 2
    assert sender.acked == 0

    db.execute("PRAGMA max_page_count=1073741823")
    p.service.step()  # the next retry is 4 s away
    assert p.service.stats["committed"] == 0 and p.service.failing_since is not None
    p.clock.now += 5.0

    def all_acked():
        pump_once(sender)
        p.service.step()
        p.clock.now += 0.1  # commit latency (0.05 s) on the manual clock
        return sender.outbox.stats()["pending"] == 0

    wait_for(all_acked, 15, interval_s=0.0, what="every record to be acknowledged")
    assert p.service.failing_since is None
    assert sorted(r["data"]["n"] for r in p.store.query("activity", client_id="agent-r", limit=1000)) == list(range(120))
