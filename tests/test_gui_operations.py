"""The console's Operations window against a real broker with real Curve clients: a reboot Jane asked for
waits in the Approvals tab of Omar's console (counted in the tab's title); Omar approves it there with a
reason and the agent receives it; the same window refuses to let Jane approve her own (the broker's words
are shown, nothing changes); a running bulk run is cancelled from the Bulk runs tab; templates are listed.

Tried: no row selected (buttons off), a decided request (Approve/Deny off), an empty reason (OK stays off),
a refusal from the broker (shown under the table, the request still pending).
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtWidgets import QLabel

from broker.core import keys
from broker.core.client import BusClient
from broker.core.envelope import Kind
from conftest import wait_for
from gui.bus_worker import BusWorker
from gui.operations_view import OperationsWindow

WAIT_MS = 10_000
REASON = {"reason": "kernel patch"}


def _operator_key(bus, client_id: str, name: str) -> keys.KeyPair:
    pair = keys.generate()
    bus.admin.request("keys.add", public_key=pair.public, client_id=client_id, role="operator", name=name)
    return pair


@pytest.fixture
def world(bus):
    agent = bus.peer("desk-7")
    jane_pair = _operator_key(bus, "jane", "Jane Doe")
    omar_pair = _operator_key(bus, "omar", "Omar Khan")
    bus.admin.request("approvals.require", names=["reboot"])
    jane = bus.client(jane_pair, hello={"client_id": "jane"})
    return bus, agent, jane, {"jane": jane_pair, "omar": omar_pair}


@pytest.fixture
def operations(world, qtbot):
    bus = world[0]
    config = bus.client_config()
    opened = []

    def open_as(client_id: str) -> OperationsWindow:
        pair = world[3][client_id]
        worker = BusWorker(lambda: BusClient(config, pair, hello={"client_id": client_id}))
        worker.start()
        window = OperationsWindow(worker, refresh_s=0.5)
        qtbot.addWidget(window)
        window.show()
        opened.append((window, worker))
        return window

    yield open_as
    for window, worker in opened:
        window.close()
        worker.stop()


def _screenshot(widget, name: str) -> None:
    """``make screenshots`` keeps a picture of what the test saw (EMS_SCREENSHOT_DIR)."""
    folder = os.environ.get("EMS_SCREENSHOT_DIR")
    if folder:
        assert widget.grab().save(os.path.join(folder, name))


def _select(table, column: str, value) -> None:
    rows = table.model.column_values(column)
    assert value in rows, f"{value!r} not in the {table.tab.key} tab: {rows}"
    index = table.model.index(rows.index(value), 0)
    table.table.selectionModel().select(index, QItemSelectionModel.SelectionFlag.ClearAndSelect
                                        | QItemSelectionModel.SelectionFlag.Rows)


def _confirm(qtbot, dialog, reason: str) -> None:
    assert dialog is not None and dialog.isVisible()
    assert not dialog.ok_button.isEnabled()  # no reason, no decision
    qtbot.keyClicks(dialog.reason_edit, reason)
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)


def test_a_held_reboot_is_approved_in_another_operators_window(world, operations, qtbot):
    bus, agent, jane, _ = world
    held = jane.send_command("desk-7", "reboot", REASON)
    window = operations("omar")
    approvals = window.tables["approvals"]
    qtbot.waitUntil(lambda: held["id"] in approvals.model.column_values("id"), timeout=WAIT_MS)
    assert window.tabs.tabText(window.tabs.indexOf(approvals)) == "Approvals (1)"
    assert not approvals.buttons["Approve"].isEnabled()  # nothing selected yet
    _select(approvals, "id", held["id"])
    assert approvals.buttons["Approve"].isEnabled() and approvals.buttons["Deny"].isEnabled()
    _screenshot(window, "operations-approvals.png")
    dialog = approvals.ask(approvals.tab.actions[0])
    said = " ".join(label.text() for label in dialog.findChildren(QLabel))
    assert "reboot on desk-7" in said and "Jane Doe" in said and "kernel patch" in said  # what, who asked, why
    _confirm(qtbot, dialog, "change ticket 81 checked")
    qtbot.waitUntil(lambda: "approved" in approvals.model.column_values("state"), timeout=WAIT_MS)
    commands = wait_for(lambda: [e.data() for e in agent.drain(100, 0.1) if e.kind is Kind.COMMAND], 10,
                        what="the approved reboot at the agent")
    assert commands[0]["args"]["approval"] == {"id": held["id"], "by": "Omar Khan", "reason": "change ticket 81 checked"}
    qtbot.waitUntil(lambda: window.tabs.tabText(window.tabs.indexOf(approvals)) == "Approvals", timeout=WAIT_MS)
    _select(approvals, "id", held["id"])
    assert not approvals.buttons["Approve"].isEnabled()  # decided: nothing more to decide


def test_the_requesters_own_window_shows_the_refusal_and_changes_nothing(world, operations, qtbot):
    bus, agent, jane, _ = world
    held = jane.send_command("desk-7", "reboot", REASON)
    window = operations("jane")
    approvals = window.tables["approvals"]
    qtbot.waitUntil(lambda: held["id"] in approvals.model.column_values("id"), timeout=WAIT_MS)
    _select(approvals, "id", held["id"])
    _confirm(qtbot, approvals.ask(approvals.tab.actions[0]), "I am sure")
    qtbot.waitUntil(lambda: "refused" in approvals.status.text(), timeout=WAIT_MS)
    assert "another person" in approvals.status.text()
    assert jane.request("command.get", id=held["id"])["status"] == "held"


def test_a_running_bulk_run_is_cancelled_from_its_tab(world, operations, qtbot):
    bus, agent, jane, _ = world
    bus.admin.request("approvals.require", names=["reboot"], remove=True)
    for client_id in ("lab-1", "lab-2", "lab-3"):
        bus.admin.request("keys.add", public_key=keys.generate().public, client_id=client_id, role="agent")
    run = jane.request("bulk.start", selector="lab-1,lab-2,lab-3", name="reboot", args=REASON, max_parallel=1)
    window = operations("jane")
    runs = window.tables["bulk"]
    qtbot.waitUntil(lambda: run["id"] in runs.model.column_values("id"), timeout=WAIT_MS)
    assert window.tabs.tabText(window.tabs.indexOf(runs)) == "Bulk runs (1)"
    _select(runs, "id", run["id"])
    window.tabs.setCurrentWidget(runs)
    _screenshot(window, "operations-bulk-runs.png")
    _confirm(qtbot, runs.ask(runs.tab.actions[0]), "wrong group picked")
    qtbot.waitUntil(lambda: runs.model.column_values("state") == ["cancelled"], timeout=WAIT_MS)
    assert jane.request("bulk.get", id=run["id"])["state"] == "cancelled"


def test_templates_are_listed(world, operations, qtbot):
    bus = world[0]
    bus.admin.request("templates.put", name="restart-spooler", command="service.restart", args={"service": "spooler"},
                      description="Restarts the print spooler")
    window = operations("omar")
    templates = window.tables["templates"]
    qtbot.waitUntil(lambda: templates.model.column_values("name") == ["restart-spooler"], timeout=WAIT_MS)
    assert templates.model.column_values("description") == ["Restarts the print spooler"]


def test_the_console_opens_one_operations_window_on_its_own_connection(world, qtbot):
    from gui.main_window import MainWindow

    bus, _, jane, pairs = world
    held = jane.send_command("desk-7", "reboot", REASON)
    config = bus.client_config()
    console = MainWindow(BusWorker(lambda: BusClient(config, pairs["omar"], hello={"client_id": "omar"})))
    qtbot.addWidget(console)  # closed (its worker and the Operations window with it) at teardown
    console.show()
    console.operations_action.trigger()
    window = console.operations_window
    assert window is not None and window.isVisible() and window.tables["approvals"].worker is console.worker
    qtbot.waitUntil(lambda: held["id"] in window.tables["approvals"].model.column_values("id"), timeout=WAIT_MS)
    assert console.open_operations() is window  # the same window again, not a second one
    console.close()
    assert not window.isVisible()


@pytest.fixture
def alerts_service(world, tmp_path):
    from test_alerts import RunningAlerts

    running = RunningAlerts(world[0], tmp_path / "alerts.db")
    yield running
    running.stop()


def test_the_inbox_tab_counts_unread_notices_and_marks_them_read(world, alerts_service, operations, qtbot):
    bus, agent, jane, _ = world
    held = jane.send_command("desk-7", "reboot", REASON)  # an approval request: a notice in Omar's inbox
    window = operations("omar")
    inbox = window.tables["inbox"]
    qtbot.waitUntil(lambda: f"approval:{held['id']}" in inbox.model.column_values("key") or
                    any("reboot on desk-7" in (t or "") for t in inbox.model.column_values("text")), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.tabs.tabText(window.tabs.indexOf(inbox)) == "Inbox (1)", timeout=WAIT_MS)
    assert inbox.model.column_values("read") == [False]
    _select(inbox, "kind", "approval")
    assert inbox.ask(inbox.tab.actions[0]) is None and inbox.dialog is None  # your own inbox: no reason asked
    qtbot.waitUntil(lambda: inbox.model.column_values("read") == [True], timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.tabs.tabText(window.tabs.indexOf(inbox)) == "Inbox", timeout=WAIT_MS)
    _screenshot(window, "operations-inbox.png")


def test_an_alert_is_acknowledged_from_the_alerts_tab_with_a_reason(world, alerts_service, operations, qtbot):
    bus, agent, jane, _ = world
    agent.publish(Kind.EVENT, "sysinfo", {"hostname": "desk-7", "cpu_percent": 5.0, "disk_percent": 97.0,
                                          "disk_percent_mount": "/"})
    window = operations("omar")
    alerts = window.tables["alerts"]
    qtbot.waitUntil(lambda: "disk-full" in alerts.model.column_values("rule"), timeout=WAIT_MS)
    assert window.tabs.tabText(window.tabs.indexOf(alerts)) == "Alerts (1)"
    _select(alerts, "rule", "disk-full")
    window.tabs.setCurrentWidget(alerts)
    _screenshot(window, "operations-alerts.png")
    _confirm(qtbot, alerts.ask(alerts.tab.actions[0]), "disk cleanup booked for tonight")
    qtbot.waitUntil(lambda: alerts.model.column_values("acked_name") == ["Omar Khan"], timeout=WAIT_MS)
    assert alerts.model.column_values("ack_reason") == ["disk cleanup booked for tonight"]
    _select(alerts, "rule", "disk-full")
    assert not alerts.buttons["Acknowledge"].isEnabled()  # acknowledged once, by a named person


def test_without_an_alerts_service_the_tabs_say_what_to_do(world, operations, qtbot):
    window = operations("omar")
    for key in ("inbox", "alerts"):
        table = window.tables[key]
        qtbot.waitUntil(lambda t=table: "ems up starts it" in t.status.text(), timeout=WAIT_MS)
        assert table.model.rows() == []


def test_a_schedule_is_paused_resumed_and_removed_from_its_tab(world, operations, qtbot):
    bus, agent, jane, _ = world
    bus.admin.request("templates.put", name="desk-ping", command="ping", args={})
    made = jane.request("schedules.add", name="nightly", request_op="templates.run", reason="nightly check",
                        args={"name": "desk-ping", "selector": "desk-7"}, cron="30 2 * * *")
    window = operations("jane")
    schedules = window.tables["schedules"]
    window.tabs.setCurrentWidget(schedules)
    qtbot.waitUntil(lambda: schedules.model.column_values("name") == ["nightly"], timeout=WAIT_MS)
    assert schedules.model.column_values("next_due_text")[0]  # when it runs next, in words
    _select(schedules, "name", "nightly")
    assert not schedules.buttons["Resume"].isEnabled()  # it runs: nothing to resume
    _confirm(qtbot, schedules.ask(schedules.tab.actions[0]), "lab closed this week")
    qtbot.waitUntil(lambda: schedules.model.column_values("state") == ["paused"], timeout=WAIT_MS)
    assert window.tabs.tabText(window.tabs.indexOf(schedules)) == "Schedules (1)"  # a paused one is counted
    _screenshot(window, "operations-schedules.png")
    _select(schedules, "name", "nightly")
    _confirm(qtbot, schedules.ask(schedules.tab.actions[1]), "lab open again")
    qtbot.waitUntil(lambda: schedules.model.column_values("state") == ["enabled"], timeout=WAIT_MS)
    _select(schedules, "name", "nightly")
    _confirm(qtbot, schedules.ask(schedules.tab.actions[2]), "replaced by a playbook")
    qtbot.waitUntil(lambda: schedules.model.rows() == [], timeout=WAIT_MS)
    assert jane.request("schedules.list") == [] and made["name"] == "nightly"


def test_a_broadcast_is_listed_with_its_receipts_and_cancelled(world, operations, qtbot):
    bus, agent, jane, _ = world
    bus.admin.request("keys.add", public_key=keys.generate().public, client_id="desk-9", role="agent")  # offline
    sent = jane.request("broadcast.send", selector="desk-7,desk-9", text="Lunch is served", reason="canteen notice")
    window = operations("jane")
    broadcasts = window.tables["broadcasts"]
    window.tabs.setCurrentWidget(broadcasts)
    qtbot.waitUntil(lambda: broadcasts.model.column_values("id") == [sent["id"]], timeout=WAIT_MS)
    assert broadcasts.model.column_values("text") == ["Lunch is served"]
    _select(broadcasts, "id", sent["id"])
    _screenshot(window, "operations-broadcasts.png")
    _confirm(qtbot, broadcasts.ask(broadcasts.tab.actions[0]), "sent to the wrong floor")
    qtbot.waitUntil(lambda: broadcasts.model.column_values("state") == ["cancelled"], timeout=WAIT_MS)
    assert jane.request("broadcast.get", id=sent["id"])["state"] == "cancelled"
