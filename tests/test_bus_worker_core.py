"""The shared bus worker core (broker/core/bus_worker.py) against a real broker.

Jobs run on the one bus thread and come back as futures; errors come back
as exceptions in those futures; live messages reach ``on_envelope`` on the
bus thread; ``stop()`` ends the thread and fails what is left; an idle
worker sleeps in its poll instead of spinning a timer.
"""
from __future__ import annotations

import threading
import time

import pytest

from broker.core.bus_worker import BusUnavailable, BusWorker
from broker.core.client import CLOSED, BusClient
from broker.core.config import ClientConfig, Timing
from broker.core.envelope import Kind
from broker.core.errors import EmsError, RemoteError
from broker.core import keys
from conftest import wait_for

WAIT_S = 10.0


@pytest.fixture
def workers():
    """Workers a test starts; stopped (and checked stopped) at teardown."""
    started: list[BusWorker] = []
    yield started
    for worker in started:
        assert worker.stop(WAIT_S)


def start(workers: list, client, **kw) -> BusWorker:
    worker = BusWorker(client, **kw)
    workers.append(worker)
    worker.start(WAIT_S)
    return worker


def operator_client(bus, client_id: str = "op-1", timing: Timing | None = None) -> BusClient:
    """An operator's BusClient, not connected (the worker connects it on its thread)."""
    pair = bus.enrol(client_id, "operator")
    config = ClientConfig(server=bus.endpoint, server_key=bus.server_key, timing=timing or bus.timing)
    return BusClient(config, pair, hello={"client_id": client_id})


def test_jobs_resolve_their_futures_in_order_on_the_bus_thread(bus, workers):
    """Requests, commands and plain jobs come back as futures, in submission order, run by the bus thread."""
    worker = start(workers, operator_client(bus), hold_jobs_until_ready=True)
    ran_on: list[str] = []
    done_on: list[str] = []
    order: list[int] = []
    futures = [worker.submit(lambda c, n=n: (order.append(n), ran_on.append(threading.current_thread().name), c.client_id)[2],
                             on_done=lambda f: done_on.append(threading.current_thread().name))
               for n in range(5)]
    agents = worker.request("agents", timeout_s=WAIT_S)
    assert [f.result(WAIT_S) for f in futures] == ["op-1"] * 5
    assert isinstance(agents.result(WAIT_S), list)
    assert order == [0, 1, 2, 3, 4]
    wait_for(lambda: len(done_on) == 5, WAIT_S, what="every on_done")
    assert set(ran_on) == set(done_on) == {"bus-worker"}

    bus.peer("desk-1")
    status = worker.send_command("desk-1", "ping", {}, timeout_s=WAIT_S).result(WAIT_S)
    assert status["status"] in ("queued", "sent")


@pytest.mark.parametrize("failure, expected", [
    ("unknown_op", RemoteError),
    ("forbidden_op", RemoteError),
    ("job_raises_value_error", ValueError),
    ("job_raises_ems_error", EmsError),
    ("unpackable_argument", TypeError),
])
def test_errors_come_back_as_exceptions_in_the_future_and_the_thread_lives_on(bus, workers, failure, expected):
    """Tried: an op the broker does not know, an op an operator may not ask
    (keys.add), a job that raises ValueError, one that raises EmsError, and a
    request whose argument msgpack cannot carry. Expected: each future raises
    that exception; the next job still runs."""
    worker = start(workers, operator_client(bus), hold_jobs_until_ready=True)
    jobs = {
        "unknown_op": lambda c: c.request("no.such.op", timeout_s=WAIT_S),
        "forbidden_op": lambda c: c.request("keys.add", timeout_s=WAIT_S, public_key="x" * 40, client_id="x", role="admin"),
        "job_raises_value_error": lambda c: int("not a number"),
        "job_raises_ems_error": lambda c: (_ for _ in ()).throw(EmsError("refused by the job")),
        "unpackable_argument": lambda c: c.request("agents", timeout_s=WAIT_S, filter=object()),
    }
    future = worker.submit(jobs[failure])
    with pytest.raises(expected):
        future.result(WAIT_S)
    assert worker.submit(lambda c: c.client_id).result(WAIT_S) == "op-1"
    assert worker.alive


def test_live_envelopes_reach_the_callback_on_the_bus_thread(bus, workers):
    """Subscribed topics arrive at on_envelope, in order, on the bus thread."""
    seen: list = []
    worker = start(workers, operator_client(bus),
                   on_envelope=lambda env: seen.append((env.topic, env.data(), threading.current_thread().name)),
                   hold_jobs_until_ready=True)
    worker.subscribe(["event."], timeout_s=WAIT_S).result(WAIT_S)
    agent = bus.peer("desk-2")
    for n in range(3):
        agent.publish(Kind.EVENT, "sysinfo", {"n": n})
    wait_for(lambda: len([s for s in seen if s[0] == "event.desk-2.sysinfo"]) == 3, WAIT_S, what="three events")
    events = [s for s in seen if s[0] == "event.desk-2.sysinfo"]
    assert [data["n"] for _, data, _ in events] == [0, 1, 2]
    assert {name for *_, name in events} == {"bus-worker"}


def test_stop_ends_the_thread_closes_the_client_and_fails_what_is_left(bus, workers):
    """Tried: a worker whose key the broker has never seen (it stays pending)
    with a job held until ready; then stop(), then another submit.
    Expected: stop() returns True within its timeout, the thread is gone,
    the client is closed, the held job and the late submit fail with
    BusUnavailable."""
    config = ClientConfig(server=bus.endpoint, server_key=bus.server_key, timing=bus.timing)
    client = BusClient(config, keys.generate(), hello={"client_id": "stranger"})
    stopped: list[bool] = []
    worker = BusWorker(client, hold_jobs_until_ready=True, on_stopped=lambda: stopped.append(True), name="bus-stop-test")
    worker.start(WAIT_S)
    assert worker.alive
    held = worker.submit(lambda c: "ran")
    wait_for(lambda: client.state == "pending", WAIT_S, what="the key to be pending")
    assert not held.done()

    assert worker.stop(WAIT_S)
    assert not worker.alive
    assert "bus-stop-test" not in {t.name for t in threading.enumerate()}
    assert client.state == CLOSED and stopped == [True]
    with pytest.raises(BusUnavailable):
        held.result(0)
    with pytest.raises(BusUnavailable):
        worker.submit(lambda c: "late")
    assert worker.stop(WAIT_S)  # a second stop is harmless


def test_a_revoked_key_is_reported_and_later_jobs_fail(bus, workers):
    """Tried: an admin revokes the worker's key while it runs, then a job is
    submitted. Expected: on_failed hears "revoked", the job fails with
    BusUnavailable saying so, the thread still answers stop()."""
    failures: list[str] = []
    worker = start(workers, operator_client(bus, "op-revoked"), on_failed=failures.append, hold_jobs_until_ready=True)
    assert worker.submit(lambda c: c.client_id).result(WAIT_S) == "op-revoked"
    bus.admin.request("keys.revoke", id="op-revoked", reason="laptop stolen")
    wait_for(lambda: failures, WAIT_S, what="on_failed")
    assert "revoked" in failures[0]
    with pytest.raises(BusUnavailable, match="revoked"):
        worker.submit(lambda c: c.client_id).result(WAIT_S)


def test_a_client_that_cannot_be_built_is_reported_not_raised(workers):
    """Tried: a client factory that raises (a missing key file, say).
    Expected: start() returns, on_failed says why, jobs fail with BusUnavailable naming it."""
    def factory() -> BusClient:
        raise EmsError("no key file at /nowhere")
    failures: list[str] = []
    worker = start(workers, factory, on_failed=failures.append)
    with pytest.raises(BusUnavailable, match="no key file"):
        worker.submit(lambda c: None).result(WAIT_S)
    assert failures and "no key file" in failures[0]


def test_stop_before_start_fails_what_was_queued(bus):
    """Tried: jobs submitted to a worker that is never started, then stop().
    Expected: stop() returns at once, the jobs fail with BusUnavailable, no thread was made."""
    worker = BusWorker(operator_client(bus, "op-never"))
    queued = worker.submit(lambda c: "never")
    assert worker.stop(WAIT_S)
    with pytest.raises(BusUnavailable):
        queued.result(0)
    assert not worker.alive


def test_start_waits_and_a_second_start_is_refused(bus, workers):
    """start() returns with the thread running; starting it again is an error, not a second thread."""
    worker = start(workers, operator_client(bus))
    assert worker.alive
    with pytest.raises(EmsError, match="already started"):
        worker.start(WAIT_S)


def _thread_cpu_s(thread: threading.Thread) -> float:
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def test_an_idle_worker_spends_far_less_cpu_than_a_20_ms_poll(bus, workers):
    """Behaviour, not speed: over the same seconds, with the same broker and
    timing, the idle core (asleep in one poll on its socket and wake pipe)
    uses a small fraction of the CPU of a thread that polls every 20 ms (the
    console's old loop). Both threads' CPU clocks are read from outside."""
    timing = Timing()  # production heartbeats: what an idle console lives with
    worker = start(workers, operator_client(bus, "op-idle", timing), hold_jobs_until_ready=True)
    assert worker.submit(lambda c: c.client_id).result(WAIT_S) == "op-idle"  # connected and welcomed

    polling = operator_client(bus, "op-poll", timing)
    passes = [0]
    stop = threading.Event()

    def poll_every_20_ms() -> None:
        polling.connect()
        while not stop.is_set():
            polling.drain(200, 0.02)
            passes[0] += 1
        polling.close()
    reference = threading.Thread(target=poll_every_20_ms, name="poll-20ms")
    reference.start()
    try:
        wait_for(lambda: passes[0] >= 10, WAIT_S, what="the reference to run")
        core_before, ref_before, first = _thread_cpu_s(worker._thread), _thread_cpu_s(reference), passes[0]
        wait_for(lambda: passes[0] >= first + 150, 60, what="150 passes (about 3 s) of the 20 ms poll")
        core_cpu, ref_cpu = _thread_cpu_s(worker._thread) - core_before, _thread_cpu_s(reference) - ref_before
    finally:
        stop.set()
        reference.join(WAIT_S)
    assert ref_cpu > 0
    assert core_cpu < ref_cpu / 4, f"idle core {core_cpu * 1000:.2f} ms of CPU, 20 ms poll {ref_cpu * 1000:.2f} ms"
