"""Chat without a usable display: the access log carries the message, reported delivered."""
from __future__ import annotations

import pytest

from agent.chat import ChatInbox
from agent.chat.inbox import MAX_WINDOW_FAILURES
from agent.context import CommandError

from conftest import wait_for
from test_notice_display import make_agent

@pytest.fixture
def inbox():
    box = ChatInbox()
    yield box
    box.close()


def test_no_display_writes_the_access_log_and_reports_delivered(inbox, tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    agent = make_agent(tmp_path)
    result = inbox.send({"message_id": "m1", "text": "Your laptop is due\nfor replacement."}, agent.as_operator("alice"))
    assert result == {"message_id": "m1", "status": "delivered", "via": "log"}
    assert agent.lines()[-1].endswith("message from alice  Your laptop is due for replacement.")
    [receipt] = agent.reported("chat")
    assert {k: receipt[k] for k in ("ref", "message_id", "direction", "status", "operator")} == {
        "ref": "m1", "message_id": "m1", "direction": "out", "status": "delivered", "operator": "alice"}
    assert inbox.windows == {} and inbox.poll(agent.ctx) == []


def test_a_display_that_cannot_be_opened_falls_back_to_the_log(inbox, tmp_path, monkeypatch):
    monkeypatch.setenv("DISPLAY", ":65000")  # nothing listens there: Tk exits at once
    agent = make_agent(tmp_path)
    inbox.send({"message_id": "m1", "text": "still reaches you"}, agent.as_operator("alice"))

    def delivered():
        inbox.poll(agent.ctx)
        return agent.reported("chat")
    [receipt] = wait_for(delivered, timeout_s=20, what="the fallback delivery")
    assert receipt["status"] == "delivered" and inbox.failures["alice"] == MAX_WINDOW_FAILURES
    assert "message from alice  still reaches you" in agent.access.read()
    inbox.send({"message_id": "m2", "text": "next one"}, agent.as_operator("alice"))
    assert [d["message_id"] for d in agent.reported("chat")] == ["m1", "m2"], "no more windows are tried"


@pytest.mark.parametrize("args, message", [
    ({"text": "hi"}, "message_id"),
    ({"message_id": "", "text": "hi"}, "message_id"),
    ({"message_id": "x" * 65, "text": "hi"}, "message_id"),
    ({"message_id": "m1"}, "text"),
    ({"message_id": "m1", "text": "   "}, "text"),
    ({"message_id": "m1", "text": "x" * 10_001}, "text"),
])
def test_chat_send_checks_its_arguments(inbox, tmp_path, args, message):
    with pytest.raises(CommandError, match=message):
        inbox.send(args, make_agent(tmp_path).as_operator("alice"))


def test_a_repeated_message_id_is_shown_once(inbox, tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    agent = make_agent(tmp_path)
    inbox.send({"message_id": "m1", "text": "once"}, agent.as_operator("alice"))
    again = inbox.send({"message_id": "m1", "text": "once"}, agent.as_operator("alice"))
    assert again["duplicate"] is True and len(agent.reported("chat")) == 1
    assert inbox.delete({"message_id": "m1"}, agent.as_operator("alice"))["hidden"] is True
    assert inbox.send({"message_id": "m1", "text": "once"}, agent.as_operator("alice"))["deleted"] is True
