"""Log forwarding: real loggers, a real outbox file, the real store, an injected clock.

What is tried: the policy's level (DEBUG/INFO held back at WARNING, names
and numbers as levels, a bad level in the policy), the outbox class of each
level, the rate limit (a burst, the refill over time, the count of held
back records in the next forwarded one), recursion (a report that logs, the
outbox's own logger, a full outbox whose overflow warning is logged while it
holds its lock, with another thread forwarding at the same time: no
deadlock), failures (a closed outbox, format arguments that do not match)
never reaching the caller, exception text, long messages, and the record
shape the store accepts.
"""
from __future__ import annotations

import logging
import threading

import pytest
from test_store_support import make_store

from agent import log_forward
from agent.context import LocalPolicy
from agent.log_forward import LogForwarder
from agent.outbox import Outbox, Priority
from broker.core.envelope import Kind, pack_body, unpack_body
from broker.persister.store import Record


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(tmp_path / "outbox.db")
    yield box
    box.close()


def outbox_report(box: Outbox):
    """What DurableSender.report does: keep the record in the outbox."""

    def report(kind, name, data, priority=None):
        return box.put(kind, name, pack_body(data), priority)

    return report


@pytest.fixture
def logger(request):
    """A logger named like the agent's own modules, outside the logging tree.

    It is not registered with ``logging.getLogger`` so that pytest's capture
    handler (which re-raises formatting errors) is not attached to it.
    """
    return logging.Logger(f"agent.test_logs.{request.node.name}", logging.DEBUG)  # noqa: LOG001


def forwarded(box: Outbox) -> list[tuple[dict, Priority]]:
    return [(unpack_body(r.body), r.priority) for r in box.due(10_000) if r.kind is Kind.LOG]


def test_records_at_the_policy_level_go_to_the_outbox_with_their_class(outbox, logger):
    fwd = log_forward.install(outbox_report(outbox), LocalPolicy(log_forward_level="INFO"), logger)
    logger.debug("not forwarded")
    logger.info("disk %s is %d%% full", "/", 91)
    logger.warning("outbox is getting full")
    logger.error("could not capture the screen")
    records = forwarded(outbox)
    assert [(d["level"], d["message"], p) for d, p in records] == [
        ("INFO", "disk / is 91% full", Priority.ROUTINE),
        ("WARNING", "outbox is getting full", Priority.IMPORTANT),
        ("ERROR", "could not capture the screen", Priority.IMPORTANT),
    ]
    data = records[0][0]
    assert data["logger"] == logger.name and isinstance(data["ts"], float) and "suppressed" not in data
    assert [r.topic for r in outbox.due(10)] == ["agent"] * 3  # published as log.<agent>.agent
    assert fwd.forwarded == 3
    log_forward.uninstall(fwd, logger)
    logger.error("after uninstall")
    assert len(forwarded(outbox)) == 3


@pytest.mark.parametrize("level, passes", [("WARNING", ["WARNING", "ERROR"]), ("error", ["ERROR"]), (10, ["DEBUG", "INFO", "WARNING", "ERROR"]), ("30", ["WARNING", "ERROR"])])
def test_levels(outbox, logger, level, passes):
    logger.addHandler(LogForwarder(outbox_report(outbox), level=level))
    for lvl in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
        logger.log(lvl, "m")
    assert [d["level"] for d, _p in forwarded(outbox)] == passes


def test_a_bad_level_in_the_policy_falls_back_to_info(outbox, caplog):
    fwd = LogForwarder.from_policy(outbox_report(outbox), LocalPolicy(log_forward_level="LOUD"))
    assert fwd.level == logging.INFO
    assert "not a log level" in caplog.text
    with pytest.raises(ValueError):
        log_forward.parse_level("LOUD")


def test_rate_limit_counts_what_it_holds_back_and_says_so_next_time(outbox, logger):
    clock = Clock()
    fwd = LogForwarder(outbox_report(outbox), per_minute=3, clock=clock)
    logger.addHandler(fwd)
    for i in range(5):
        logger.info("burst %d", i)
    assert [d["message"] for d, _p in forwarded(outbox)] == ["burst 0", "burst 1", "burst 2"]
    assert (fwd.forwarded, fwd.suppressed) == (3, 2)
    clock.now += 19.0  # 19 s at 3/min is not yet one token
    logger.info("still held")
    clock.now += 1.0
    logger.info("after 20 s")
    latest = forwarded(outbox)[-1][0]
    assert latest["suppressed"] == 3
    assert latest["message"] == "after 20 s [3 earlier log records not forwarded: over 3/min, or could not be kept]"
    clock.now += 600.0  # a long quiet spell refills to the burst size, not beyond
    for i in range(5):
        logger.info("second burst %d", i)
    assert len(forwarded(outbox)) == 4 + 3
    assert "suppressed" not in forwarded(outbox)[-3][0]


def test_zero_per_minute_turns_forwarding_off(outbox, logger):
    logger.addHandler(LogForwarder(outbox_report(outbox), per_minute=0))
    logger.error("x")
    assert forwarded(outbox) == []


def test_a_record_logged_while_forwarding_is_not_forwarded(outbox, logger):
    inner = logging.Logger("agent.test_logs.inner")  # noqa: LOG001 - see the logger fixture
    report = outbox_report(outbox)
    calls = []

    def noisy_report(kind, name, data, priority=None):
        calls.append(data["message"])
        logger.warning("logged from inside report")  # same logger: would recurse forever
        inner.addHandler(fwd)
        inner.warning("another logger, same thread")
        inner.removeHandler(fwd)
        return report(kind, name, data, priority)

    fwd = LogForwarder(noisy_report)
    logger.addHandler(fwd)
    logger.warning("outer")
    assert calls == ["outer"]
    assert [d["message"] for d, _p in forwarded(outbox)] == ["outer"]


def test_the_outbox_and_bus_loggers_are_never_forwarded(outbox):
    fwd = LogForwarder(outbox_report(outbox))
    for name in ("agent.outbox", "agent.delivery", "broker.core.client", "agent.log_forward", "agent.outbox.sub"):
        record = logging.LogRecord(name, logging.ERROR, __file__, 1, "from %s", (name,), None)
        fwd.handle(record)
    fwd.handle(logging.LogRecord("agent.outboxes", logging.ERROR, __file__, 1, "similar name", (), None))
    assert [d["message"] for d, _p in forwarded(outbox)] == ["similar name"]


def test_a_full_outbox_logging_under_its_lock_does_not_deadlock_with_forwarding(tmp_path, logger):
    """Thread B holds the lock the report needs and logs (as the outbox does when full);
    thread A is inside the forwarder waiting for that lock. With the handler lock held
    during emit, B would wait for A forever."""
    lock = threading.Lock()
    a_reporting = threading.Event()
    box = Outbox(tmp_path / "o.db")

    def report(kind, name, data, priority=None):
        a_reporting.set()
        with lock:
            return box.put(kind, name, pack_body(data), priority)

    fwd = LogForwarder(report)
    logger.addHandler(fwd)
    outbox_logger = logging.getLogger("agent.outbox")
    outbox_logger.addHandler(fwd)
    b_done = threading.Event()

    def b():
        with lock:
            a_thread.start()
            assert a_reporting.wait(5)
            outbox_logger.warning("outbox is full")  # must return at once
            b_done.set()

    a_thread = threading.Thread(target=lambda: logger.warning("from A"), daemon=True)
    b_thread = threading.Thread(target=b, daemon=True)
    try:
        b_thread.start()
        b_thread.join(5)
        a_thread.join(5)
        assert b_done.is_set() and not a_thread.is_alive(), "deadlock between forwarding and a logging lock holder"
        assert [d["message"] for d, _p in forwarded(box)] == ["from A"]
    finally:
        outbox_logger.removeHandler(fwd)
        box.close()


def test_failures_never_reach_the_caller_and_are_reported_later(tmp_path, logger):
    box = Outbox(tmp_path / "o.db")
    fwd = LogForwarder(outbox_report(box))
    logger.addHandler(fwd)
    box.close()
    logger.error("while the outbox is closed")  # OutboxError inside: swallowed
    logger.info("bad %d format", "not a number")  # TypeError inside: swallowed
    assert fwd.failed == 2
    box = Outbox(tmp_path / "o.db")
    fwd.report = outbox_report(box)
    logger.info("back")
    [(data, _p)] = forwarded(box)
    assert data["suppressed"] == 2 and data["message"].startswith("back [2 earlier log records not forwarded")
    box.close()


def test_exceptions_and_long_messages(outbox, logger):
    logger.addHandler(LogForwarder(outbox_report(outbox)))
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("capture failed")
    logger.warning("x" * 100_000)
    (exc_data, _), (long_data, _) = forwarded(outbox)
    assert exc_data["message"].startswith("capture failed\nTraceback") and "RuntimeError: boom" in exc_data["message"]
    assert len(long_data["message"]) <= log_forward.MAX_MESSAGE_CHARS and long_data["message"].endswith("...[truncated]")


def test_forwarded_records_are_what_the_store_keeps_in_client_logs(tmp_path, outbox, logger):
    logger.addHandler(LogForwarder(outbox_report(outbox)))
    logger.warning("disk almost full")
    [record] = outbox.due(10)
    store = make_store(tmp_path)
    try:
        result = store.write_batch([Record("log", "a1", record.msg_id, 1000.0, "log.a1.agent", unpack_body(record.body))])
        assert (result.new, result.rejected) == (1, [])
        [row] = store.query("logs")
    finally:
        store.close()
    assert (row["level"], row["logger"], row["message"]) == ("WARNING", logger.name, "disk almost full")
