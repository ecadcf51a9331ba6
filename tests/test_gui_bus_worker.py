"""The console's Qt adapter on the bus worker core (gui/bus_worker.py), offscreen.

Futures come back as Qt signals handled on the GUI thread; a request made
before the broker's WELCOME is held, then answered; a request the broker
refuses, or whose ``prepare`` step refuses the answer, is a
``request_failed`` with the reason; ``stop()`` ends the thread.
"""
from __future__ import annotations

import threading

import pytest

from broker.core.client import BusClient
from gui.bus_worker import BusWorker

WAIT_MS = 10_000


@pytest.fixture
def worker(bus, qtbot):
    """A console worker for a fresh operator key (stopped at teardown)."""
    pair = bus.enrol("op-qt", "operator")
    w = BusWorker(lambda: BusClient(bus.client_config(), pair, hello={"client_id": "op-qt"}))
    yield w
    assert w.stop()
    assert w.isFinished()


def answers(worker: BusWorker) -> list[tuple]:
    """Every reply and failure, with the thread its slot ran on."""
    seen: list[tuple] = []
    worker.replied.connect(lambda req_id, op, result: seen.append(("ok", req_id, result, threading.current_thread())))
    worker.request_failed.connect(lambda req_id, op, error: seen.append(("failed", req_id, error, threading.current_thread())))
    return seen


def test_a_request_made_before_welcome_is_held_then_answered_on_the_gui_thread(worker, qtbot):
    """submit() before start(): the job waits for WELCOME, and its answer reaches a slot on the GUI thread."""
    seen = answers(worker)
    req_id = worker.submit("agents")
    worker.start()
    qtbot.waitUntil(lambda: any(s[1] == req_id for s in seen), timeout=WAIT_MS)
    (kind, _, result, thread), = [s for s in seen if s[1] == req_id]
    assert kind == "ok" and isinstance(result, list)
    assert thread is threading.main_thread()
    assert worker.isRunning() and worker.identity["client_id"] == "op-qt"


@pytest.mark.parametrize("case, expected", [
    ("unknown_op", "no.such.op"),
    ("forbidden_op", "keys.add"),
    ("prepare_refuses", "not this answer"),
])
def test_refused_requests_come_back_as_request_failed_with_the_reason(worker, qtbot, case, expected):
    """Tried: an op the broker does not know, an op an operator may not ask,
    and a prepare step that raises ValueError. Expected: request_failed with
    a reason naming it, on the GUI thread; the worker keeps running."""
    seen = answers(worker)
    worker.start()

    def refuse(answer):
        raise ValueError("not this answer")
    req_id = {
        "unknown_op": lambda: worker.submit("no.such.op"),
        "forbidden_op": lambda: worker.submit("keys.add", public_key="x" * 40, client_id="x", role="admin"),
        "prepare_refuses": lambda: worker.submit("agents", prepare=refuse),
    }[case]()
    qtbot.waitUntil(lambda: any(s[1] == req_id for s in seen), timeout=WAIT_MS)
    (kind, _, error, thread), = [s for s in seen if s[1] == req_id]
    assert kind == "failed" and expected in error, error
    assert thread is threading.main_thread()
    assert worker.isRunning()
