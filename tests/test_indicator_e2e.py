"""Consent and End as the operator meets them: a real `ems agent` on Xvfb, a real broker, the employee played with xdotool.

The agent's local policy asks before remote control. The operator's first
``control.open`` is declined on screen and fails with "declined by the
user"; the second is allowed, the privacy bar names the operator, the
employee presses End, and the operator's next input fails saying the user
ended the session.
"""
# ruff: noqa: F811  (pytest fixtures imported from other test modules are test arguments here)
from __future__ import annotations

import json

import pytest

from agent.access_log import AccessLog
from broker.core.envelope import new_id

from conftest import wait_for
from test_indicator import BAR, PROMPT, REASON, click_centre, prompt_buttons, window_boxes
from test_notice_display import _x_tools, geometry, needs_x, windows_named, x_env, xserver  # noqa: F401
from test_processes import Stack

pytestmark = needs_x


@pytest.fixture
def stack(tmp_path, procs):
    s = Stack(tmp_path, procs)
    yield s
    s.close()


def command(op, name: str, args: dict, timeout_s: float = 60.0) -> dict:
    cmd_id = new_id()
    op.send_command("desk-5", name, args, cmd_id=cmd_id)
    return op.wait_result(cmd_id, timeout_s)


def bar_buttons(window: str) -> list[tuple[int, int, int, int]]:
    """The bar's buttons, left to right (End buttons, then Access log): its tallest innermost windows."""
    boxes = window_boxes(window)

    def inside(inner, outer):
        return inner != outer and outer[0] <= inner[0] and outer[1] <= inner[1] and \
            inner[0] + inner[2] <= outer[0] + outer[2] and inner[1] + inner[3] <= outer[1] + outer[3]

    leaves = [b for b in boxes if not any(inside(o, b) for o in boxes)]
    tallest = max(h for *_, h in leaves)
    return sorted(b for b in leaves if b[3] == tallest)


def test_operator_sees_declined_then_allowed_then_ended_by_the_user(stack, procs, x_env):
    op = stack.operator()
    agent_dir = stack.enrol_agent(op, "desk-5")
    (agent_dir / "policy.json").write_text(json.dumps({"ask_before": ["remote_control"], "consent_timeout_s": 60}))
    procs.ems("desk-5", "agent", "--data-dir", str(agent_dir), "--server", stack.bind, f"--server-key={stack.server_key}",
              "--id", "desk-5", "--heartbeat-s", "0.5", "--access-dir", str(agent_dir / "access"), env=x_env.env())
    assert command(op, "ping", {})["status"] == "done"

    cmd_id = new_id()
    op.send_command("desk-5", "control.open", {"reason": REASON}, cmd_id=cmd_id)
    [prompt] = wait_for(lambda: windows_named(PROMPT), timeout_s=20, what="the consent prompt")
    click_centre(prompt_buttons(prompt)[1])
    declined = op.wait_result(cmd_id, 30)
    assert declined["status"] == "failed" and declined["result"]["error"] == "declined by the user"

    op.send_command("desk-5", "control.open", {"reason": REASON}, cmd_id=(cmd_id := new_id()))
    [prompt] = wait_for(lambda: windows_named(PROMPT), timeout_s=20, what="the consent prompt again")
    click_centre(prompt_buttons(prompt)[0])
    allowed = op.wait_result(cmd_id, 30)
    assert allowed["status"] == "done" and allowed["result"]["output"]["new"], allowed
    [bar] = wait_for(lambda: windows_named(BAR), timeout_s=20, what="the privacy bar")
    assert geometry(bar)[2] == x_env.width
    end, _access_log = wait_for(lambda: len(bar_buttons(bar)) == 2 and bar_buttons(bar), what="End and Access log on the bar")
    click_centre(end)
    wait_for(lambda: not windows_named(BAR), timeout_s=20, what="the bar to go after End")
    refused = command(op, "input", {"events": [{"type": "move", "x": 1, "y": 1}], "frame_w": 10, "frame_h": 10})
    assert refused["status"] == "failed" and "the user ended your session" in refused["result"]["error"]
    log = AccessLog(agent_dir / "access" / "access.log").read()
    assert "You declined: alice cannot control this computer" in log
    assert "remote control allowed  you allowed alice" in log and "You ended alice's remote control" in log
