"""activity_logs means something: a real agent on a real X display (Xvfb) reports its start
and stop, the session going idle and active again (the X server's idle time, moved with
xdotool), and what an operator did; a real broker and persister store them in SQLite and
the history query shows them. Never keys: idle time only counts, it never records input."""
from __future__ import annotations

import threading

import pytest
from test_notice_display import _x_tools, needs_x, x_env, xdotool, xserver  # noqa: F401 (fixtures)
from test_persister_bus import RunningPersister

from agent.activity import SessionState, changes
from agent.activity.linux import Logind
from agent.context import LocalPolicy
from agent.runner import Agent, AgentConfig, start_notice_text
from broker.core import keys
from conftest import wait_for

AGENT_ID = "desk-activity"


def test_changes_between_two_snapshots():
    before = SessionState(users=frozenset({"kim"}), locked=False, idle_s=3.0)
    after = SessionState(users=frozenset({"kim", "lee"}), locked=True, idle_s=400.0, application="firefox")
    assert changes(before, after, idle_after_s=300) == [
        ("session.login", {"user": "lee"}), ("session.lock", {}), ("session.idle", {"idle_s": 400.0}),
        ("app.focus", {"application": "firefox"})]
    assert changes(after, before, idle_after_s=300) == [
        ("session.logout", {"user": "lee"}), ("session.unlock", {}), ("session.active", {"idle_s": 400.0})]
    assert changes(SessionState(), after, idle_after_s=300) == [("app.focus", {"application": "firefox"})]  # unknown: no event


def test_the_start_notice_says_when_application_usage_is_recorded():
    assert "application" not in start_notice_text(LocalPolicy())
    assert "Access log button" in start_notice_text(LocalPolicy()) and "ems agent access-log" in start_notice_text(LocalPolicy())
    assert "which application is in front" in start_notice_text(LocalPolicy(window_usage=True))


@pytest.fixture
def persister(bus, tmp_path):
    p = RunningPersister(bus, tmp_path)
    yield p
    p.stop()


def activity(operator, *names: str) -> list[dict]:
    rows = operator.request("store.query", kind="activity", client_id=AGENT_ID, order="asc", limit=500)
    return [r for r in rows if not names or r["name"] in names]


@needs_x
def test_agent_session_and_operator_events_reach_activity_logs(bus, persister, x_env, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    pair = keys.load_or_create(tmp_path / "agent" / "keys", "agent")
    bus.admin.request("keys.add", public_key=pair.public, client_id=AGENT_ID, role="agent")
    policy = LocalPolicy(allowed_roots=[shared], idle_after_s=1.0, session_poll_s=0.1)
    agent = Agent(AgentConfig(data_dir=tmp_path / "agent", client=bus.client_config(), client_id=AGENT_ID,
                              sysinfo_interval_s=3600, policy=policy))
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    operator = bus.peer("op-activity", role="operator")
    try:
        wait_for(lambda: activity(operator, "agent.start"), 30, interval_s=0.2, what="agent.start in activity_logs")
        xdotool("mousemove", "5", "5")  # input: active (the agent may have found the display idle already)
        wait_for(lambda: activity(operator, "session.idle"), 30, interval_s=0.2, what="session.idle after 1 s without input")
        xdotool("mousemove", "50", "60")
        wait_for(lambda: [r for r in activity(operator, "session.active")
                          if r["ts"] > activity(operator, "session.idle")[0]["ts"]], 30, interval_s=0.2,
                 what="session.active after the mouse moved")
        sent = operator.send_command(AGENT_ID, "files.list", {"path": str(shared), "reason": "ticket 88"})
        assert operator.wait_result(sent["id"], 30)["status"] == "done"
        [listed] = wait_for(lambda: activity(operator, "access.file.list"), 30, interval_s=0.2, what="the operator's action")
        assert listed["data"]["operator"] == "op-activity" and listed["data"]["detail"] == str(shared)
    finally:
        agent.stop()
        thread.join(30)
    wait_for(lambda: activity(operator, "agent.stop"), 30, interval_s=0.2, what="agent.stop in activity_logs")
    [start] = activity(operator, "agent.start")
    spots = " ".join(start["data"]["blind_spots"])
    assert ("logind" in spots) == (Logind().read() is None)  # no systemd here: it says so
    assert "idle time" not in spots and start["data"]["window_usage"] is False
    names = [r["name"] for r in activity(operator)]
    assert names[0] == "agent.start" and names[-1] == "agent.stop"
    assert not [n for n in names if n.startswith("app.") or "key" in n]  # window usage is off; keys never
