"""The agent's durable outbox: real SQLite files, an injected clock, no mocks."""
from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agent.outbox import (
    RECORD_OVERHEAD_BYTES,
    Outbox,
    OutboxCorrupt,
    OutboxError,
    OutboxFull,
    Priority,
    log_priority,
)
from broker.core.envelope import Kind

REPO = Path(__file__).resolve().parents[1]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def open_outbox(tmp_path, clock):
    """Factory for outboxes in tmp_path; every one is closed afterwards."""
    opened: list[Outbox] = []

    def make(name: str = "outbox.db", **kwargs) -> Outbox:
        kwargs.setdefault("clock", clock)
        box = Outbox(tmp_path / name, **kwargs)
        opened.append(box)
        return box

    yield make
    for box in opened:
        box.close()


def ids(records) -> list[str]:
    return [record.msg_id for record in records]


def routine(box: Outbox, n: int = 1) -> list[str]:
    return box.put_many([(Kind.EVENT, "event.a1.sysinfo", b"r" * 10) for _ in range(n)])


def important(box: Outbox, n: int = 1) -> list[str]:
    return box.put_many([(Kind.LOG, "log.a1", b"i" * 10, Priority.IMPORTANT) for _ in range(n)])


def security(box: Outbox, n: int = 1) -> list[str]:
    return box.put_many([(Kind.SECURITY, "security.a1", b"s" * 10) for _ in range(n)])


def stored_ids(box: Outbox) -> set[str]:
    box.requeue_all()
    return set(ids(box.due(limit=1_000_000)))


# -- put / due / mark_sent / ack ------------------------------------------


def test_round_trip(open_outbox, clock):
    box = open_outbox()
    first = box.put(Kind.EVENT, "event.a1.sysinfo", b"\x81\xa1x\x01")
    second = box.put(Kind.LOG, "log.a1", b"log body", log_priority(logging.ERROR))
    third = box.put(Kind.SECURITY, "security.a1", b"sec")
    records = box.due(10)
    assert ids(records) == [first, second, third]
    assert [r.kind for r in records] == [Kind.EVENT, Kind.LOG, Kind.SECURITY]
    assert [r.priority for r in records] == [Priority.ROUTINE, Priority.IMPORTANT, Priority.SECURITY]
    assert records[0].topic == "event.a1.sysinfo" and records[0].body == b"\x81\xa1x\x01"
    assert records[0].created == clock.now and records[0].sent_at is None and records[0].attempts == 0

    box.mark_sent([first, second, third])
    assert box.due(10) == []
    assert box.stats()["inflight"] == 3
    assert box.ack([first, second, third]) == 3
    stats = box.stats()
    assert stats["pending"] == 0 and stats["bytes"] == 0 and stats["oldest_age_s"] is None


def test_default_classes_and_validation(open_outbox):
    box = open_outbox()
    box.put(Kind.LOG, "log.a1", b"x")
    box.put(Kind.EVENT, "event.a1.x", b"x")
    box.put(Kind.EVENT, "event.a1.command", b"x", "important")
    assert [r.priority for r in box.due(10)] == [Priority.ROUTINE, Priority.ROUTINE, Priority.IMPORTANT]
    assert log_priority(logging.INFO) is Priority.ROUTINE and log_priority(logging.WARNING) is Priority.IMPORTANT
    with pytest.raises(ValueError, match="EVENT, LOG and SECURITY"):
        box.put(Kind.COMMAND, "x", b"x")
    with pytest.raises(ValueError, match="security class"):
        box.put(Kind.EVENT, "event.a1.x", b"x", Priority.SECURITY)
    with pytest.raises(ValueError, match="security class"):
        box.put(Kind.SECURITY, "security.a1", b"x", Priority.ROUTINE)
    with pytest.raises(ValueError, match="priority class"):
        box.put(Kind.LOG, "log.a1", b"x", "urgent")
    assert box.stats()["pending"] == 3


def test_resend_after_timeout(open_outbox, clock):
    box = open_outbox(resend_after_s=10.0)
    msg_id = box.put(Kind.EVENT, "event.a1.x", b"x")
    box.mark_sent([msg_id])
    clock.advance(9.9)
    assert box.due(10) == []
    clock.advance(0.1)
    [again] = box.due(10)
    assert again.msg_id == msg_id and again.attempts == 1 and again.sent_at == clock.now - 10.0
    box.mark_sent([msg_id])
    assert box.due(10) == []
    clock.advance(10.0)
    assert box.due(10)[0].attempts == 2


def test_clock_set_back_makes_sent_records_due(open_outbox, clock):
    box = open_outbox()
    msg_id = box.put(Kind.EVENT, "event.a1.x", b"x")
    box.mark_sent([msg_id])
    clock.advance(-3600.0)
    assert ids(box.due(10)) == [msg_id]


def test_stale_and_never_sent_records_come_due_together_oldest_first(open_outbox, clock):
    """Records waiting for a resend and records never sent are two lookups;
    what due() returns is still the oldest of both, within the limit, and
    thousands in flight (marked in several chunks) are skipped, not read."""
    box = open_outbox(resend_after_s=10.0)
    early = routine(box, 1200)
    box.mark_sent(early)  # more ids than one IN (...) list
    assert box.stats()["inflight"] == 1200 and box.due(10) == []
    clock.advance(5.0)
    late = routine(box, 3)
    box.mark_sent(late[:1])
    assert ids(box.due(10)) == late[1:]
    clock.advance(5.0)  # the first 1200 are stale now, the late ones not yet
    assert ids(box.due(4)) == early[:4]
    assert ids(box.due(2000))[-2:] == late[1:] and len(box.due(2000)) == 1202
    assert box.pending == 1203 == box.stats()["pending"]
    assert box.ack(early + late) == 1203 and box.pending == 0


def test_window_bounds_records_in_flight(open_outbox, clock):
    box = open_outbox(window=5, resend_after_s=10.0)
    put = routine(box, 8)
    assert ids(box.due(3)) == put[:3]  # limit below the credit
    first = box.due(100)
    assert ids(first) == put[:5]
    box.mark_sent(ids(first))
    assert box.due(100) == []  # five in flight: no credit
    assert box.ack(put[:2]) == 2
    assert ids(box.due(100)) == put[5:7]  # credit 5 - 3 in flight
    box.mark_sent(put[5:7])
    clock.advance(10.0)  # the unacked ones stop counting as in flight and are due again, oldest first
    assert ids(box.due(100)) == put[2:7]
    assert box.stats()["inflight"] == 0


def test_requeue_all_makes_everything_due(open_outbox):
    box = open_outbox(window=100)
    put = routine(box, 4)
    box.mark_sent(put[:3])
    assert ids(box.due(10)) == put[3:]
    assert box.requeue_all() == 3
    assert ids(box.due(10)) == put
    assert [r.attempts for r in box.due(10)] == [1, 1, 1, 0]


def test_duplicate_and_unknown_acks(open_outbox):
    box = open_outbox()
    a, b = routine(box, 2)
    assert box.ack([a, a, a]) == 1
    assert box.ack([a]) == 0
    assert box.ack(["nosuchid", a]) == 0
    assert box.ack([]) == 0
    assert box.stats()["pending"] == 1
    assert box.ack([b, b]) == 1
    assert box.stats()["pending"] == 0 and box.stats()["bytes"] == 0


def test_ack_many_ids_in_chunks(open_outbox):
    box = open_outbox()
    put = routine(box, 1_234)
    assert box.ack(put + ["unknown"] * 10) == 1_234
    assert box.stats()["pending"] == 0


def test_stats(open_outbox, clock):
    box = open_outbox()
    a = box.put(Kind.EVENT, "event.a1.x", b"12345")
    clock.advance(5.0)
    box.put(Kind.SECURITY, "security.a1", b"1")
    box.mark_sent([a])
    stats = box.stats()
    assert stats["pending"] == 2 and stats["inflight"] == 1
    assert stats["bytes"] == (5 + 10 + RECORD_OVERHEAD_BYTES) + (1 + 11 + RECORD_OVERHEAD_BYTES)
    assert stats["by_class"] == {"routine": 1, "important": 0, "security": 1}
    assert stats["dropped"] == {"routine": 0, "important": 0, "security": 0}
    assert stats["oldest_age_s"] == 5.0


# -- durability -------------------------------------------------------------


def test_survives_close_and_reopen(open_outbox, clock):
    box = open_outbox(max_records=3)
    put = routine(box, 4)  # drops one
    box.mark_sent(put[1:2])
    box.close()
    box = open_outbox(max_records=3)
    records = box.due(10)
    assert ids(records) == [put[2], put[3]]  # put[1] is in flight
    stats = box.stats()
    assert stats["pending"] == 3 and stats["inflight"] == 1 and stats["bytes"] == 3 * (10 + 16 + RECORD_OVERHEAD_BYTES)
    assert box.take_drop_report()["routine"] == 1  # the report survives a restart too


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from agent.outbox import Outbox
    from broker.core.envelope import Kind

    box = Outbox(Path(sys.argv[1]))
    i = 0
    while True:
        if i % 2:
            ids = [box.put(Kind.EVENT, "event.a1.x", b"x" * 200)]
        else:
            ids = box.put_many([(Kind.LOG, "log.a1", b"y" * 200)] * 50)
        sys.stdout.write("\\n".join(ids) + "\\n")
        sys.stdout.flush()
        i += 1
    """
)


def test_every_returned_put_survives_kill_9(tmp_path):
    path = tmp_path / "outbox.db"
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    acknowledged: list[str] = []
    try:
        deadline = time.monotonic() + 30.0
        while len(acknowledged) < 5_000:
            line = child.stdout.readline()
            if not line:
                pytest.fail(f"writer exited early: {child.stderr.read()}")
            acknowledged.append(line.strip())
            assert time.monotonic() < deadline, "writer too slow"
        os.kill(child.pid, signal.SIGKILL)  # while it is still writing
    finally:
        child.kill()
        child.wait(timeout=10)
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    with Outbox(path, window=1_000_000) as box:
        present = stored_ids(box)
        assert box.stats()["pending"] == len(present)
    missing = set(acknowledged) - present
    assert not missing, f"{len(missing)} records lost after kill -9"


# -- the full-outbox policy -------------------------------------------------


def test_overflow_drops_routine_then_important_never_security(open_outbox):
    box = open_outbox(max_records=5)
    r1, r2 = routine(box, 2)
    i1, i2 = important(box, 2)
    [s1] = security(box)
    [r3] = routine(box)  # drops r1
    [i3] = important(box)  # drops r2: oldest routine first, whatever the new record's class
    assert stored_ids(box) == {i1, i2, s1, r3, i3}
    [s2] = security(box)  # drops r3, the last routine record
    [s3] = security(box)  # then the oldest important one
    assert stored_ids(box) == {i2, s1, i3, s2, s3}
    assert box.take_drop_report() == {"routine": 3, "important": 1, "security": 0}
    assert box.take_drop_report() == {"routine": 0, "important": 0, "security": 0}
    assert box.stats()["dropped"] == {"routine": 3, "important": 1, "security": 0}


def test_new_routine_record_goes_before_older_important_ones(open_outbox):
    box = open_outbox(max_records=3)
    keep = important(box, 2) + security(box)
    routine(box)  # it is the oldest (only) routine record, so it is the one dropped
    assert stored_ids(box) == set(keep)
    assert box.take_drop_report() == {"routine": 1, "important": 0, "security": 0}


def test_only_security_left_refuses_others_and_keeps_security_over_limit(open_outbox, caplog):
    box = open_outbox(max_records=3)
    routine(box)
    secure = security(box, 3)  # the routine record goes
    with pytest.raises(OutboxFull, match="only security records") as refused:
        box.put(Kind.LOG, "log.a1", b"x", Priority.IMPORTANT)
    assert refused.value.refused == 1 and refused.value.stored == []
    with caplog.at_level(logging.ERROR, logger="agent.outbox"):
        [extra] = security(box)
    assert "over the limit" in caplog.text
    assert stored_ids(box) == set(secure) | {extra}
    assert box.stats()["pending"] == 4
    # one routine record dropped, one important record refused
    assert box.take_drop_report() == {"routine": 1, "important": 1, "security": 0}


def test_drop_report_counts_refusals(open_outbox):
    box = open_outbox(max_records=2)
    routine(box)
    security(box, 2)
    with pytest.raises(OutboxFull):
        routine(box)
    assert box.take_drop_report() == {"routine": 2, "important": 0, "security": 0}


def test_mixed_batch_into_full_outbox_keeps_its_security_records(open_outbox):
    box = open_outbox(max_records=2)
    security(box, 2)
    with pytest.raises(OutboxFull) as full:
        box.put_many(
            [
                (Kind.EVENT, "event.a1.x", b"x"),
                (Kind.SECURITY, "security.a1", b"s"),
                (Kind.LOG, "log.a1", b"w", Priority.IMPORTANT),
            ]
        )
    assert full.value.refused == 2 and len(full.value.stored) == 1
    assert full.value.stored[0] in stored_ids(box)
    assert box.stats()["by_class"] == {"routine": 0, "important": 0, "security": 3}


def test_batch_larger_than_the_outbox_keeps_its_newest(open_outbox):
    box = open_outbox(max_records=4)
    old = important(box, 2)
    batch = box.put_many([(Kind.EVENT, "event.a1.x", b"x")] * 5 + [(Kind.SECURITY, "security.a1", b"s")])
    # the policy sees the outbox with the batch in it: 8 records, 4 to go, routine first
    assert stored_ids(box) == set(old) | {batch[4], batch[5]}
    assert box.take_drop_report() == {"routine": 4, "important": 0, "security": 0}


def test_byte_limit_drops_enough_records(open_outbox):
    size = 10 + 16 + RECORD_OVERHEAD_BYTES  # a routine() record
    box = open_outbox(max_bytes=4 * size)
    small = routine(box, 4)
    big = box.put(Kind.EVENT, "event.a1.sysinfo", b"b" * (10 + 2 * size))  # needs three records' room
    assert stored_ids(box) == {small[3], big}
    assert box.stats()["bytes"] <= 4 * size
    assert box.take_drop_report()["routine"] == 3


# -- damaged files and full disks ---------------------------------------------


def test_garbage_file_gives_a_helpful_error(tmp_path):
    path = tmp_path / "outbox.db"
    path.write_bytes(os.urandom(64) + b"this is not an SQLite database" * 200)
    with pytest.raises(OutboxCorrupt) as err:
        Outbox(path)
    text = str(err.value)
    assert str(path) in text and "move the file aside" in text and "empty outbox" in text
    assert isinstance(err.value, OutboxError) and err.value.path == path


def test_damaged_pages_give_a_helpful_error(tmp_path):
    path = tmp_path / "outbox.db"
    with Outbox(path) as box:
        box.put_many([(Kind.EVENT, "event.a1.x", os.urandom(300))] * 2_000)
    raw = bytearray(path.read_bytes())
    raw[4096:] = b"\xff" * (len(raw) - 4096)  # keep the header, ruin every later page
    path.write_bytes(bytes(raw))
    with pytest.raises(OutboxCorrupt, match="not a readable SQLite database"):
        Outbox(path)  # opening counts the records, which reads every table page


def test_file_with_foreign_tables_is_refused(tmp_path):
    path = tmp_path / "agent.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE executed (id TEXT PRIMARY KEY)")
    conn.close()
    with pytest.raises(OutboxError, match="file of its own"):
        Outbox(path)


def test_the_file_is_locked_while_open(open_outbox, tmp_path):
    """A second agent on the same file fails (after sqlite_db.connect's 10 s busy wait)."""
    open_outbox()
    other = sqlite3.connect(tmp_path / "outbox.db", timeout=0)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("SELECT count(*) FROM outbox").fetchone()
    finally:
        other.close()


def test_disk_full_on_put_loses_nothing(open_outbox):
    box = open_outbox()
    kept = box.put_many([(Kind.EVENT, "event.a1.x", b"k" * 200)] * 50)
    before = box.stats()
    # SQLite's own page limit produces the same SQLITE_FULL error a full disk does
    pages = box._db.execute("PRAGMA page_count").fetchone()[0]
    box._db.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(OutboxError, match="disk is full") as err:
        box.put_many([(Kind.LOG, "log.a1", os.urandom(1000))] * 200)
    assert not isinstance(err.value, OutboxFull)
    assert box.stats() == before
    assert stored_ids(box) == set(kept)
    box._db.execute("PRAGMA max_page_count=1073741823")
    box.put(Kind.LOG, "log.a1", b"after")
    assert box.stats()["pending"] == 51


def test_closed_outbox_raises_outbox_error(open_outbox):
    box = open_outbox()
    box.close()
    with pytest.raises(OutboxError, match="closed"):
        box.put(Kind.LOG, "log.a1", b"x")


def test_caller_chosen_ids_are_stored_once(open_outbox):
    """A generator that re-creates records after its own restart gives them
    the same ids: ids already in the outbox (or twice in one batch) are
    skipped, and the counts stay right."""
    box = open_outbox()
    first = box.put_many([(Kind.EVENT, "chaos", b"a", None, "sim-1-0"), (Kind.EVENT, "chaos", b"b", None, "sim-1-1")])
    assert first == ["sim-1-0", "sim-1-1"]
    again = box.put_many([(Kind.EVENT, "chaos", b"b", None, "sim-1-1"), (Kind.EVENT, "chaos", b"c", None, "sim-1-2"),
                          (Kind.EVENT, "chaos", b"c", None, "sim-1-2")])
    assert again == ["sim-1-2"]
    assert box.stats()["pending"] == 3
    assert sorted(ids(box.due(10))) == ["sim-1-0", "sim-1-1", "sim-1-2"]
    with pytest.raises(ValueError):
        box.put_many([(Kind.EVENT, "chaos", b"x", None, "")])
