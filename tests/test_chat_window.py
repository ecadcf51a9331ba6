"""Chat on a real X display: the window appears, receipts and replies come back through poll().

The user's side is played with ``xdotool`` (real pointer and keyboard
events into the real Tk chat window). Receipts and replies are then written
into the real persister store to prove they fit its ``chat_messages`` rules.
"""
# ruff: noqa: F811  (pytest fixtures imported from test_notice_display are test arguments here)
from __future__ import annotations

from dataclasses import replace

import pytest

from agent.chat import ChatInbox
from agent.lanes import CommandLanes
from broker.core.envelope import new_id
from broker.persister.store import Record

from conftest import wait_for
from test_notice_display import _x_tools, agent, geometry, needs_x, windows_named, x_env, xdotool, xserver  # noqa: F401
from test_store_support import make_store

pytestmark = needs_x

CHAT_WINDOW = "^EMS message from alice$"


@pytest.fixture
def inbox():
    box = ChatInbox()
    yield box
    box.close()


def receipts(agent, status: str) -> list[str]:
    return [d["message_id"] for d in agent.reported("chat") if d.get("status") == status and d.get("direction") == "out"]


def wait_receipts(inbox, agent, status: str, ids: list[str], timeout_s: float = 10.0, ordered: bool = True) -> None:
    """Poll the inbox (as the runner does) until exactly ``ids`` have a ``status`` receipt."""
    def arrived():
        inbox.poll(agent.ctx)
        have = receipts(agent, status)
        return have == ids if ordered else sorted(have) == sorted(ids)
    wait_for(arrived, timeout_s, what=f"{status} receipts for {ids}")


def click(window_id: str, dx_from_right: int, dy_from_bottom: int) -> None:
    x, y, width, height = geometry(window_id)
    xdotool("mousemove", str(x + width - dx_from_right), str(y + height - dy_from_bottom), "click", "1")


def test_handlers_table_is_ready_to_wire():
    handlers = ChatInbox().handlers()
    assert set(handlers) == {"chat.send", "chat.delete"}
    assert all(callable(fn) and fn.__doc__ for fn in handlers.values())


def test_message_shows_is_delivered_and_read_on_click(inbox, agent):
    result = inbox.send({"message_id": "m1", "text": "Please save your work, we restart at 12:00."}, agent.as_operator("alice"))
    assert result == {"message_id": "m1", "status": "pending", "via": "window"}
    [window] = wait_for(lambda: windows_named(CHAT_WINDOW), what="the chat window")
    wait_receipts(inbox, agent, "delivered", ["m1"])
    assert receipts(agent, "read") == []
    click(window, 60, 20)  # the Read button, bottom right
    wait_receipts(inbox, agent, "read", ["m1"])
    wait_for(lambda: not windows_named(CHAT_WINDOW), what="Read to close the window")
    [delivered, read] = agent.reported("chat")
    assert delivered["ref"] == "m1" and delivered["operator"] == "alice" and delivered["ts"] <= read["ts"]


def test_the_user_replies_by_typing(inbox, agent):
    inbox.send({"message_id": "m1", "text": "Is the printer working again?"}, agent.as_operator("alice"))
    [window] = wait_for(lambda: windows_named(CHAT_WINDOW), what="the chat window")
    wait_receipts(inbox, agent, "delivered", ["m1"])
    x, y, _width, height = geometry(window)
    xdotool("mousemove", str(x + 100), str(y + height - 58), "click", "1")  # the reply line
    xdotool("type", "--delay", "5", "Yes, thanks!")
    xdotool("key", "Return")

    def replied():
        inbox.poll(agent.ctx)
        return [d for d in agent.reported("chat") if d["direction"] == "in"]
    [reply] = wait_for(replied, what="the reply report")
    assert reply["text"] == reply["body"] == "Yes, thanks!"
    assert reply["operator"] == "alice" and reply["in_reply_to"] == "m1" and reply["status"] == "delivered"
    assert receipts(agent, "read") == ["m1"], "replying means it was read"
    assert windows_named(CHAT_WINDOW), "the window stays open after a reply"


def test_a_backlog_arrives_in_order_in_one_window(inbox, agent):
    ids = [f"m{i}" for i in range(1, 6)]
    for i in ids:
        inbox.send({"message_id": i, "text": f"message {i}"}, agent.as_operator("alice"))
    inbox.send({"message_id": "m3", "text": "message m3"}, agent.as_operator("alice"))  # re-delivered: shown once
    wait_receipts(inbox, agent, "delivered", ids)
    assert len(windows_named(CHAT_WINDOW)) == 1
    click(windows_named(CHAT_WINDOW)[0], 60, 20)
    wait_receipts(inbox, agent, "read", ids)


def test_handlers_on_a_command_lane_while_the_loop_polls(inbox, agent):
    """As the runner does it: chat.send on the lane thread, poll() on the loop thread."""
    lanes = CommandLanes()
    ids = [f"m{i}" for i in range(1, 9)]
    try:
        for i in ids:
            lanes.submit(i, "chat.send", "alice", lambda i=i: inbox.send({"message_id": i, "text": f"lane {i}"}, agent.as_operator("alice")))
        done: list = []

        def loop_pass():
            inbox.poll(agent.ctx)  # never blocks, even while a handler holds the inbox
            done.extend(lanes.finished())
            return len(done) == len(ids) and receipts(agent, "delivered") == ids
        wait_for(loop_pass, what="all lane commands finished and delivered in order")
        assert all(result["status"] == "pending" for *_, result in done)
    finally:
        lanes.shutdown()


def test_a_message_after_read_opens_a_new_window(inbox, agent):
    inbox.send({"message_id": "m1", "text": "first"}, agent.as_operator("alice"))
    [first] = wait_for(lambda: windows_named(CHAT_WINDOW), what="the chat window")
    wait_receipts(inbox, agent, "delivered", ["m1"])
    click(first, 60, 20)
    wait_for(lambda: not windows_named(CHAT_WINDOW), what="the window to close")
    inbox.send({"message_id": "m2", "text": "second"}, agent.as_operator("alice"))
    wait_receipts(inbox, agent, "delivered", ["m1", "m2"])
    assert windows_named(CHAT_WINDOW)


def test_delete_hides_the_message_and_closes_its_window(inbox, agent):
    inbox.send({"message_id": "m1", "text": "sent to the wrong person"}, agent.as_operator("alice"))
    wait_for(lambda: windows_named(CHAT_WINDOW), what="the chat window")
    wait_receipts(inbox, agent, "delivered", ["m1"])
    assert inbox.delete({"message_id": "m1"}, agent.as_operator("alice")) == {"message_id": "m1", "hidden": True, "known": True, "status": "delivered"}
    wait_for(lambda: not windows_named(CHAT_WINDOW), what="the emptied window to close")
    assert {"ref": "m1", "deleted": True}.items() <= agent.reported("chat")[-1].items()  # hidden on the server too
    assert inbox.delete({"message_id": "nope"}, agent.as_operator("alice"))["known"] is False
    # not known here (the agent restarted since it came): the stored copy is still flagged
    assert {"ref": "nope", "deleted": True}.items() <= agent.reported("chat")[-1].items()


def test_windows_are_per_operator(inbox, agent):
    inbox.send({"message_id": "a1", "text": "from alice"}, agent.as_operator("alice"))
    inbox.send({"message_id": "b1", "text": "from bob"}, agent.as_operator("bob"))
    wait_for(lambda: windows_named(CHAT_WINDOW) and windows_named("^EMS message from bob$"), what="two chat windows")
    wait_receipts(inbox, agent, "delivered", ["a1", "b1"], ordered=False)
    assert {d["message_id"]: d["operator"] for d in agent.reported("chat")} == {"a1": "alice", "b1": "bob"}


def test_a_window_killed_before_showing_is_replaced(inbox, agent):
    inbox.send({"message_id": "m1", "text": "survives a crash"}, agent.as_operator("alice"))
    window = inbox.windows["alice"]
    window.proc.kill()  # dies (most likely before it could show anything)
    wait_receipts(inbox, agent, "delivered", ["m1"])
    assert inbox.windows["alice"] is not window, "a new window showed it"
    assert [d["message_id"] for d in agent.reported("chat")] == ["m1"]


def test_receipts_and_replies_fit_the_persister(inbox, agent, tmp_path):
    """The agent reports the operator's message for the store under its id (written here
    directly, as the outbox would), then its receipts and the reply update it."""
    inbox.send({"message_id": "m1", "text": "hello from IT"}, replace(agent.as_operator("alice"), command_id="cmd-1"))
    [window] = wait_for(lambda: windows_named(CHAT_WINDOW), what="the chat window")
    wait_receipts(inbox, agent, "delivered", ["m1"])
    x, y, _width, height = geometry(window)
    xdotool("mousemove", str(x + 100), str(y + height - 58), "click", "1")
    xdotool("type", "--delay", "5", "got it")
    xdotool("key", "Return")
    wait_receipts(inbox, agent, "read", ["m1"])

    store = make_store(tmp_path)
    try:
        topic = "event.agent-1.chat"
        # the broker's record of the chat.send command: the store names the message's operator from it
        sent = Record("command_status", "agent-1", "c1", 1.0, "command.agent-1",
                      {"id": "cmd-1", "target": "agent-1", "name": "chat.send", "status": "queued", "operator": "alice"})
        [message] = agent.stored_messages()
        assert message == {"direction": "out", "body": "hello from IT", "operator": "alice", "status": "sent", "command": "cmd-1"}
        stored = store.write_batch([sent, Record("event", "agent-1", "m1", 1.0, topic, message)])
        assert not stored.rejected and not stored.waiting
        batch = [Record("event", "agent-1", new_id(), data["ts"], topic, data) for data in agent.reported("chat")]
        result = store.write_batch(batch)
        assert not result.rejected, result.rejected
        rows = {(r["direction"], r["body"]): r for r in store.query("messages", client_id="agent-1")}
        assert rows[("out", "hello from IT")]["status"] == "read"
        assert rows[("in", "got it")]["operator"] == "alice"
    finally:
        store.close()
