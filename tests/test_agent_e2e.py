"""The whole agent as a user and an operator meet it: a real `ems agent`
process on a real X display (Xvfb), a real broker and a real persister,
the operator on the bus and the employee played with xdotool."""
# ruff: noqa: F811  (pytest fixtures imported from test_processes are test arguments here)
from __future__ import annotations

import os
import subprocess
import time

import pytest

from bench.harness.xvfb import Xvfb
from broker.core.envelope import Kind

from conftest import next_message, wait_for
from test_processes import Stack


@pytest.fixture
def display():
    with Xvfb(1280, 720) as x:
        yield x.display


@pytest.fixture
def stack(tmp_path, procs):
    s = Stack(tmp_path, procs)
    yield s
    s.close()


def xdotool(display: str, *args: str) -> str:
    done = subprocess.run(["xdotool", *args], capture_output=True, text=True, timeout=10, env={**os.environ, "DISPLAY": display})
    return done.stdout


def test_chat_queued_while_offline_arrives_in_order_with_receipts(stack, display, procs):
    """Three messages sent while the agent is offline are queued by the
    broker; when the agent starts they are shown in order in one chat window,
    the operator sees `delivered` for each (live, from the agent's durable
    reports), and `read` once the user presses Read."""
    op = stack.operator()
    stack.enrol_agent(op, "desk-9")
    op.subscribe(["event.desk-9.chat"])
    for n in (1, 2, 3):
        op.send_command("desk-9", "chat.send", {"message_id": f"m{n}", "text": f"message {n} from IT"})
    procs.ems("desk-9", "agent", "--data-dir", str(stack.root / "desk-9"), "--server", stack.bind, "--server-key",
              stack.server_key, "--id", "desk-9", "--heartbeat-s", "0.5", env={"DISPLAY": display})

    delivered = []
    deadline = time.monotonic() + 40
    while len(delivered) < 3 and time.monotonic() < deadline:
        env = next_message(op, lambda e: e.kind is Kind.EVENT, timeout_s=30)
        data = env.data()
        if data.get("status") == "delivered" and data.get("direction") == "out":
            delivered.append(data["message_id"])
    assert delivered == ["m1", "m2", "m3"]

    windows = wait_for(lambda: xdotool(display, "search", "--onlyvisible", "--name", "^EMS message from alice$").split(),
                       15, what="the chat window")
    assert len(windows) == 1  # one window per operator, the backlog in it
    geometry = dict(line.split("=", 1) for line in xdotool(display, "getwindowgeometry", "--shell", windows[0]).split())
    x, y, width, height = (int(geometry[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
    xdotool(display, "mousemove", str(x + width - 60), str(y + height - 20), "click", "1")  # the Read button

    read = set()
    deadline = time.monotonic() + 20
    while read != {"m1", "m2", "m3"} and time.monotonic() < deadline:
        data = next_message(op, lambda e: e.kind is Kind.EVENT, timeout_s=15).data()
        if data.get("status") == "read":
            read.add(data["message_id"])
    assert read == {"m1", "m2", "m3"}
