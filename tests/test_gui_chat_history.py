"""The console's chat view keeps the conversation: history from the store,
soft delete, and messages queued for an offline agent. Against a real
broker, a real persister and a REAL `ems agent` process on a private Xvfb,
whose Tk chat window the user plays with xdotool."""
# ruff: noqa: F811  (fixtures imported from other test modules are test arguments here)
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from PySide6.QtCore import Qt
from test_agent_e2e import xdotool
from test_gui_console import console, persister  # noqa: F401  (fixtures)
from test_gui_live_chat import _x_tools, display, start_agent  # noqa: F401  (fixtures)

from broker.core.client import BusClient
from broker.core.errors import RemoteError
from gui.bus_worker import BusWorker
from gui.chat_model import ChatModel, command_update, live_update, stored_update
from gui.chat_view import ChatView

WAIT_MS = 20_000
TK_WINDOW = "^EMS message from op-gui$"  # the console fixture's operator


def tk_windows(display: str) -> list[str]:
    return xdotool(display, "search", "--onlyvisible", "--name", TK_WINDOW).split()


def tk_geometry(display: str, window: str) -> tuple[int, int, int, int]:
    fields = dict(line.split("=", 1) for line in xdotool(display, "getwindowgeometry", "--shell", window).split())
    return tuple(int(fields[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))


def user_replies(display: str, qtbot, text: str) -> None:
    """The user types a reply into the agent's chat window and presses Enter."""
    windows: list[str] = []
    qtbot.waitUntil(lambda: bool(windows.extend(tk_windows(display)) or windows), timeout=WAIT_MS)
    x, y, _width, height = tk_geometry(display, windows[0])
    xdotool(display, "mousemove", str(x + 100), str(y + height - 58), "click", "1")  # the reply line
    xdotool(display, "type", "--delay", "5", text)
    xdotool(display, "key", "Return")


def user_presses_read(display: str, qtbot) -> None:
    windows: list[str] = []
    qtbot.waitUntil(lambda: bool(windows.extend(tk_windows(display)) or windows), timeout=WAIT_MS)
    x, y, width, height = tk_geometry(display, windows[0])
    xdotool(display, "mousemove", str(x + width - 60), str(y + height - 20), "click", "1")  # the Read button


def send(chat: ChatView, text: str) -> str:
    chat.text.setText(text)
    message_id = chat.send()
    assert message_id is not None
    return message_id


def texts(chat: ChatView) -> list[str]:
    return [row["text"] for row in chat.model.rows()]


def stored(bus, client_id: str, **filters) -> list[dict]:
    return bus.admin.request("store.query", kind="messages", client_id=client_id, **filters)


def reopen(window, chat: ChatView, qtbot) -> ChatView:
    """Close the chat window (it is destroyed) and open it again from the console."""
    chat.close()
    qtbot.waitUntil(lambda: "desk-1" not in window._chat_windows, timeout=WAIT_MS)
    again = window.open_chat("desk-1")
    qtbot.addWidget(again)
    assert again is not chat
    return again


@pytest.fixture
def fresh_worker(bus):
    """A second console's bus worker (operator op-2), stopped at teardown."""
    workers: list[BusWorker] = []

    def start() -> BusWorker:
        pair = bus.enrol("op-2", role="operator")
        config = bus.client_config()
        worker = BusWorker(lambda: BusClient(config, pair, hello={"client_id": "op-2"}))
        worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        assert worker.stop()


def test_history_comes_back_after_reopening_and_in_a_fresh_console(bus, persister, console, procs, tmp_path, display,
                                                                 fresh_worker, qtbot):
    """Two operator messages and the user's reply (typed into the real Tk window)
    reach the store. The reopened chat and a fresh ChatView on a new worker
    (another operator) show each once, in order, with its latest status; a
    reload over what is shown adds nothing; a page size of 2 shows the newest
    two and "Load older" the rest. Tried: deleting the user's reply (refused
    with a message, nothing sent)."""
    start_agent(bus, procs, tmp_path, display)()
    window = console()
    qtbot.waitUntil(lambda: window.clients.client("desk-1") is not None and window.clients.client("desk-1").online,
                    timeout=WAIT_MS)
    chat = window.open_chat("desk-1")
    qtbot.addWidget(chat)
    qtbot.waitUntil(lambda: chat.loading == 0, timeout=WAIT_MS)
    assert chat.model.rowCount() == 0 and chat.notice.text() == "No messages yet."

    first = send(chat, "Your new laptop is ready at the front desk")
    qtbot.waitUntil(lambda: chat.model.status(first) == "delivered", timeout=WAIT_MS)
    user_replies(display, qtbot, "thanks, coming")
    qtbot.waitUntil(lambda: "thanks, coming" in texts(chat) and chat.model.status(first) == "read", timeout=WAIT_MS)
    second = send(chat, "Bring the old one with you")
    qtbot.waitUntil(lambda: chat.model.status(second) == "delivered", timeout=WAIT_MS)
    reply_id = next(r["message_id"] for r in chat.model.rows() if r["direction"] == "in")
    assert chat.delete_message(reply_id, confirm=False) is None
    assert "user's replies" in chat.last_error and not chat.model.row(reply_id)["deleting"]

    def store_caught_up() -> bool:
        rows = {r["msg_id"]: r for r in stored(bus, "desk-1")}
        return (len(rows) == 3 and rows.get(first, {}).get("status") == "read"
                and rows.get(second, {}).get("status") == "delivered")

    qtbot.waitUntil(store_caught_up, timeout=WAIT_MS)

    chat = reopen(window, chat, qtbot)
    qtbot.waitUntil(lambda: chat.loading == 0 and chat.model.rowCount() == 3, timeout=WAIT_MS)
    assert texts(chat) == ["Your new laptop is ready at the front desk", "thanks, coming", "Bring the old one with you"]
    assert [(r["direction"], r["status"]) for r in chat.model.rows()] == [("out", "read"), ("in", "delivered"),
                                                                          ("out", "delivered")]
    assert chat.model.row(first)["status_ts"] is not None  # the read receipt's time
    assert "read" in chat.model.index(0, 0).data() and "you:" in chat.model.index(0, 0).data()
    chat.reload()  # history over rows already shown (and live ones): merged by message id
    qtbot.waitUntil(lambda: chat.loading == 0, timeout=WAIT_MS)
    assert chat.model.rowCount() == 3 and not chat.has_older

    fresh = ChatView(fresh_worker(), "desk-1", "Front desk", page_size=2)
    qtbot.addWidget(fresh)
    qtbot.waitUntil(lambda: fresh.loading == 0 and fresh.model.rowCount() == 2, timeout=WAIT_MS)
    assert texts(fresh) == ["thanks, coming", "Bring the old one with you"]
    assert fresh.has_older and fresh.older_button.isEnabled()
    qtbot.mouseClick(fresh.older_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: fresh.loading == 0 and fresh.model.rowCount() == 3, timeout=WAIT_MS)
    assert texts(fresh)[0] == "Your new laptop is ready at the front desk"
    assert not fresh.has_older and not fresh.older_button.isEnabled()
    assert "op-gui:" in fresh.model.index(0, 0).data()  # another operator's message carries their name
    assert fresh.model.row(first)["status"] == "read"


def test_soft_delete_hides_it_from_the_user_and_the_store_keeps_it_flagged(bus, persister, console, procs, tmp_path,
                                                                           display, qtbot):
    """The operator deletes a delivered message with the Delete key: the
    agent's chat window hides it (it held nothing else, so it closes), the
    view strikes it out, the store keeps the row flagged deleted (left out of
    plain history queries), the audit trail names the operator, and a
    reopened chat shows it deleted. Tried: an unknown message id, declining
    the confirmation, deleting twice, ``include_deleted="yes"`` (each a clear
    message, nothing sent, nothing crashes)."""
    start_agent(bus, procs, tmp_path, display)()
    window = console()
    chat = window.open_chat("desk-1")
    qtbot.addWidget(chat)
    message_id = send(chat, "Sent to the wrong desk, please ignore")
    qtbot.waitUntil(lambda: chat.model.status(message_id) == "delivered", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: bool(tk_windows(display)), timeout=WAIT_MS)

    assert chat.delete_message("no-such-message") is None
    assert "No message 'no-such-message'" in chat.last_error and chat.notice.text() == chat.last_error
    asked: list[str] = []
    chat._confirm_delete = lambda row: asked.append(row["text"]) or False  # the operator says No
    chat.list.setCurrentIndex(chat.model.index(chat.model.row_of(message_id), 0))
    qtbot.keyClick(chat.list, Qt.Key.Key_Delete)
    assert asked == ["Sent to the wrong desk, please ignore"] and not chat.model.row(message_id)["deleting"]

    chat._confirm_delete = lambda row: asked.append(row["text"]) or True
    qtbot.keyClick(chat.list, Qt.Key.Key_Delete)
    assert len(asked) == 2
    qtbot.waitUntil(lambda: chat.model.row(message_id)["deleted"], timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not tk_windows(display), timeout=WAIT_MS)  # the user's window hid it (and closed)
    index = chat.model.index(chat.model.row_of(message_id), 0)
    assert index.data(ChatModel.DeletedRole) and index.data(Qt.ItemDataRole.FontRole).strikeOut()
    assert "deleted" in index.data()
    assert chat.delete_message(message_id) is None and "deleted already" in chat.last_error

    qtbot.waitUntil(lambda: any(r["msg_id"] == message_id and r["deleted"] for r in stored(bus, "desk-1", include_deleted=True)),
                    timeout=WAIT_MS)
    assert [r for r in stored(bus, "desk-1") if r["msg_id"] == message_id] == []  # hidden from plain history, not erased
    with pytest.raises(RemoteError, match="include_deleted must be true or false"):
        stored(bus, "desk-1", include_deleted="yes")

    def audited() -> list[dict]:
        return [r for r in bus.admin.request("store.query", kind="audit", client_id="desk-1")
                if r["action"] == "command" and (r.get("detail") or {}).get("name") == "chat.delete"]

    qtbot.waitUntil(lambda: bool(audited()), timeout=WAIT_MS)
    [audit] = audited()
    assert audit["operator"] == "op-gui" and message_id in audit["reason"]

    chat = reopen(window, chat, qtbot)
    qtbot.waitUntil(lambda: chat.loading == 0 and chat.model.rowCount() == 1, timeout=WAIT_MS)
    assert chat.model.row(message_id)["deleted"] and "deleted" in chat.model.index(0, 0).data()


def test_messages_to_an_offline_agent_stay_queued_across_reopening_then_arrive(bus, persister, console, procs, tmp_path,
                                                                               display, qtbot):
    """Two messages to an agent that is not running show ``queued``, and one of
    them is deleted while still queued (``deleting…``). The chat is closed and
    reopened: both are back from the broker's queue with their text, still
    queued, the delete still pending. The agent starts: the kept message goes
    sent → delivered → read (the user presses Read), the deleted one ends
    deleted; reopened once more, the store's copy says the same."""
    run_agent = start_agent(bus, procs, tmp_path, display)
    window = console()
    chat = window.open_chat("desk-1")
    qtbot.addWidget(chat)
    qtbot.waitUntil(lambda: chat.loading == 0, timeout=WAIT_MS)
    kept = send(chat, "Please call IT when you are back")
    dropped = send(chat, "Wrong desk, ignore this")
    qtbot.waitUntil(lambda: chat.model.status(kept) == "queued" and chat.model.status(dropped) == "queued", timeout=WAIT_MS)
    assert chat.delete_message(dropped, confirm=False) is not None
    assert "deleting" in chat.model.index(chat.model.row_of(dropped), 0).data()

    chat = reopen(window, chat, qtbot)
    qtbot.waitUntil(lambda: chat.loading == 0 and chat.model.rowCount() == 2, timeout=WAIT_MS)
    assert texts(chat) == ["Please call IT when you are back", "Wrong desk, ignore this"]
    assert chat.model.status(kept) == "queued" and "queued" in chat.model.index(0, 0).data()
    assert chat.model.row(dropped)["deleting"] and not chat.model.row(dropped)["deleted"]

    seen: list[str] = []
    chat.model.dataChanged.connect(lambda *_: seen.append(chat.model.status(kept)))
    run_agent()
    qtbot.waitUntil(lambda: chat.model.status(kept) == "delivered" and chat.model.row(dropped)["deleted"], timeout=WAIT_MS)
    assert "sent" in seen and seen.index("sent") < seen.index("delivered")
    user_presses_read(display, qtbot)
    qtbot.waitUntil(lambda: chat.model.status(kept) == "read", timeout=WAIT_MS)
    assert [s for s in dict.fromkeys(seen) if s != "queued"] == ["sent", "delivered", "read"]  # forward, none skipped

    qtbot.waitUntil(lambda: any(r["msg_id"] == kept and r["status"] == "read" for r in stored(bus, "desk-1")), timeout=WAIT_MS)
    chat = reopen(window, chat, qtbot)
    qtbot.waitUntil(lambda: chat.loading == 0 and chat.model.rowCount() == 2, timeout=WAIT_MS)
    assert chat.model.status(kept) == "read" and chat.model.row(dropped)["deleted"]


def test_the_model_merges_the_three_sources_by_message_id(qtbot):
    """The broker's queued record, the agent's live copy and receipts, and the
    stored row of one message make one row whose status only moves forward;
    rows sort by time, a delete sticks. Tried: records of another client or
    command, rows without an id or direction, a reply without text, an
    unknown field (ignored, or a TypeError for the programmer)."""
    model = ChatModel(me="op-gui")
    queued = {"id": "c1", "name": "chat.send", "target": "desk-1", "status": "queued", "sender": "op-gui", "created": 100.0,
              "updated": 100.0, "args": {"message_id": "m1", "text": "hi"}}
    assert model.merge(command_update(queued, "desk-1"))
    assert model.merge(stored_update({"id": 7, "msg_id": "m0", "direction": "out", "body": "earlier", "operator": "op-2",
                                      "status": "read", "ts": 50.0, "status_ts": 60.0, "deleted": True}))
    live = {"client_id": "desk-1", "msg_id": "e1", "ts": 130.0, "direction": "out", "ref": "m1", "message_id": "m1",
            "operator": "op-gui"}
    assert model.merge(live_update({**live, "status": "read"}))
    assert not model.merge(live_update({**live, "status": "delivered"}))  # a late receipt: no step back
    model.merge(stored_update({"id": 8, "msg_id": "m1", "direction": "out", "body": "hi", "status": "delivered", "ts": 110.0}))
    assert model.merge(live_update({"client_id": "desk-1", "msg_id": "r1", "ts": 120.0, "direction": "in", "body": "ok"}))
    assert [r["message_id"] for r in model.rows()] == ["m0", "m1", "r1"] and model.status("m1") == "read"
    assert model.row("m1")["stored_id"] == 8 and model.row("m0")["deleted"]
    assert "op-2:" in model.index(0, 0).data() and "you:" in model.index(model.row_of("m1"), 0).data()
    assert not model.merge(live_update({**live, "status": "read"}))
    assert model.merge(live_update({"client_id": "desk-1", "ref": "m1", "message_id": "m1", "deleted": True}))
    assert not model.merge(live_update({"client_id": "desk-1", "ref": "m1", "message_id": "m1", "deleted": True}))
    assert model.row("m1")["deleted"] and not model.upsert("m1", deleting=True)  # a deleted message is not un-deleted

    assert command_update(queued, "desk-2") is None and command_update({**queued, "name": "power.reboot"}, "desk-1") is None
    assert stored_update({"msg_id": "x"}) is None and stored_update("not a row") is None
    assert live_update({"client_id": "desk-1", "msg_id": "r2", "direction": "in"}) is None
    assert live_update({"client_id": "desk-1", "message_id": "m1", "status": "lost"}) is None
    assert not model.upsert("nobody-knows", status="read")  # a receipt alone does not make a row
    with pytest.raises(TypeError, match="colour"):
        model.upsert("m1", colour="red")
    assert model.rowCount() == 3
