"""The console's table models on their own: incremental updates (inserts and
dataChanged with roles, never a reset), live rows merging with stored ones,
and Qt's own model checker finding nothing wrong."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import sys

import pytest


from PySide6.QtCore import QObject, Qt, Signal, qInstallMessageHandler
from PySide6.QtTest import QAbstractItemModelTester, QSignalSpy

from gui import qtcompat
from gui.models import (
    ClientsModel,
    HistoryModel,
    RawRole,
    audit_concerns,
    audit_row,
    command_row,
    format_value,
    rich_tooltip,
    security_concerns,
    security_row,
)


@pytest.fixture
def checked(qapp):
    """Attach Qt's QAbstractItemModelTester; fail on anything it reports."""
    testers, messages = [], []
    previous = qInstallMessageHandler(lambda mode, context, text: messages.append(text))

    def check(model):
        testers.append(QAbstractItemModelTester(model, QAbstractItemModelTester.FailureReportingMode.Warning))
        return model

    try:
        yield check
    finally:
        qInstallMessageHandler(previous)
    assert [m for m in messages if "FAIL" in m] == []


def roles_of(spy: QSignalSpy, number: int) -> set[int]:
    return set(spy.at(number)[2])


def test_clients_model_inserts_once_and_updates_rows_in_place(checked):
    model = checked(ClientsModel())
    inserted, changed, resets = QSignalSpy(model.rowsInserted), QSignalSpy(model.dataChanged), QSignalSpy(model.modelReset)

    model.load_agents([
        {"client_id": "a1", "label": "Front desk", "state": "online", "last_seen": 100.0, "user": "kim"},
        {"client_id": "a2", "hostname": "lab-2", "state": "offline", "last_seen": 50.0},
        {"client_id": "a3", "state": "online", "last_seen": 90.0},
    ])
    assert inserted.count() == 1 and (inserted.at(0)[1], inserted.at(0)[2]) == (0, 2)
    assert [model.index(r, 1).data() for r in range(3)] == ["Front desk", "lab-2", "a3"]

    model.apply_sysinfo([
        {"client_id": "a1", "ts": 101.0, "cpu_percent": 12.5, "memory_percent": 40.0},
        {"client_id": "a3", "ts": 101.0, "cpu_percent": 99.0, "memory_percent": 10.0},
        {"client_id": "nobody", "ts": 101.0, "cpu_percent": 1.0},  # not an agent we know: ignored
    ])
    # rows 0 and 2 changed, each announced for column 0 (the tiles draw from
    # it) and columns 4-6 (last seen, CPU, memory), naming the roles that
    # changed; no range spans the label column a sorting proxy sorts on
    spans = {(changed.at(i)[0].row(), changed.at(i)[1].row(), changed.at(i)[0].column(), changed.at(i)[1].column())
             for i in range(changed.count())}
    assert spans == {(0, 0, 0, 0), (0, 0, 4, 6), (2, 2, 0, 0), (2, 2, 4, 6)}
    assert {ClientsModel.CpuRole, ClientsModel.MemoryRole, ClientsModel.LastSeenRole} <= roles_of(changed, 0)
    assert ClientsModel.SearchRole not in roles_of(changed, 0)  # nothing the search box matches changed
    assert model.index(0, 5).data() == "12" and model.index(0, 0).data(ClientsModel.CpuRole) == 12.5

    model.apply_presence([{"client_id": "a2", "state": "online", "ts": 102.0, "info": {"user": "lee", "label": "claimed"}},
                          {"client_id": "a4", "state": "online", "ts": 102.0, "info": {"label": "New one"}}])
    assert inserted.count() == 2 and (inserted.at(1)[1], inserted.at(1)[2]) == (3, 3)
    assert model.client("a2").online and model.client("a2").user == "lee"
    assert model.client("a2").label == "claimed"  # no label yet: the hello's is taken
    model.apply_presence([{"client_id": "a1", "state": "offline", "ts": 103.0, "info": {"label": "spoofed"}}])
    assert model.client("a1").label == "Front desk"  # a label once known is not replaced by a hello
    assert model.index(model.row_of("a1"), 3).data(Qt.ItemDataRole.ForegroundRole) == ClientsModel.OFFLINE_COLOUR
    # an older report never moves "last seen" back
    model.apply_sysinfo([{"client_id": "a1", "ts": 10.0, "cpu_percent": 1.0}])
    assert model.client("a1").last_seen == 103.0
    assert model.online_count() == 3
    assert resets.count() == 0


def test_clients_model_takes_stored_facts_without_overwriting_live_ones(checked):
    model = checked(ClientsModel())
    model.load_agents([{"client_id": "a1", "state": "offline", "last_seen": 10.0}, {"client_id": "a2", "state": "online"}])
    model.apply_sysinfo([{"client_id": "a2", "ts": 20.0, "cpu_percent": 70.0, "memory_percent": 30.0}])
    model.load_store_clients([
        {"client_id": "a1", "label": "Desk", "hostname": "desk", "logged_in_user": "kim", "last_seen": 15.0,
         "last_sysinfo": {"cpu_percent": 5.0, "memory_percent": 25.0}},
        {"client_id": "a2", "last_sysinfo": {"cpu_percent": 1.0, "memory_percent": 1.0}},
        {"client_id": "gone", "label": "deleted key"},
    ])
    a1, a2 = model.client("a1"), model.client("a2")
    assert (a1.name, a1.user, a1.cpu_percent, a1.last_seen) == ("Desk", "kim", 5.0, 15.0)
    assert a2.cpu_percent == 70.0  # live beats stored
    assert model.client("gone") is None


def test_tooltips_show_agent_text_verbatim():
    assert rich_tooltip("<img src=x> & co") == "<p style='white-space:pre-wrap'>&lt;img src=x&gt; &amp; co</p>"
    model = ClientsModel()
    model.load_agents([{"client_id": "a1", "label": "<b>boss</b>"}])
    assert "&lt;b&gt;boss&lt;/b&gt;" in model.index(0, 0).data(Qt.ItemDataRole.ToolTipRole)


def test_history_model_merges_live_rows_with_stored_ones(checked):
    model = checked(HistoryModel("security"))
    inserted, resets = QSignalSpy(model.rowsInserted), QSignalSpy(model.modelReset)
    model.set_rows([{"id": 1, "msg_id": "m1", "ts": 10.0, "event": "login_failed"}])
    assert resets.count() == 1  # a new data set

    live = security_row({"msg_id": "m2", "ts": 20.0, "sender": "a1", "topic": "security.a1.usb", "event": "usb", "port": 3})
    assert model.merge([live]) == 1
    assert model.column_values("event") == ["usb", "login_failed"]  # newest first
    changed = QSignalSpy(model.dataChanged)
    model.merge([{"id": 2, "msg_id": "m2", "ts": 20.0, "event": "usb", "severity": None}])  # the store's copy
    assert model.rowCount() == 2 and model.column_values("id") == [2, 1]
    assert changed.count() == 1 and RawRole in roles_of(changed, 0)
    assert model.merge([{"msg_id": "m0", "ts": 5.0, "event": "old"}]) == 1
    assert model.column_values("event") == ["usb", "login_failed", "old"]
    assert inserted.count() == 2 and resets.count() == 1
    assert model.index(0, model.columns.index("detail")).data() == "port=3"


def test_history_model_keeps_commands_moving_forward_and_stays_bounded(checked):
    model = checked(HistoryModel("commands", max_rows=3))
    model.merge([command_row({"id": "c1", "target": "a1", "name": "reboot", "status": "done", "updated": 5.0,
                              "result": {"ok": True, "output": {"ran": "reboot"}}})])
    model.merge([{"id": "c1", "client_id": "a1", "status": "sent", "created": 1.0}])  # an older stored state
    assert model.row(0)["status"] == "done"
    assert model.index(0, model.columns.index("result")).data() == "ran=reboot"
    assert model.index(0, model.columns.index("status")).data(Qt.ItemDataRole.ForegroundRole) is not None
    for n in range(2, 6):
        model.merge([{"id": f"c{n}", "client_id": "a1", "status": "queued", "created": float(n)}])
    assert model.rowCount() == 3 and model.column_values("id") == ["c5", "c4", "c3"]


def test_live_security_and_audit_rows_find_their_client():
    from_agent = security_row({"msg_id": "m", "ts": 1.0, "sender": "a1", "topic": "security.a1.login", "event": "x"})
    assert (from_agent["origin"], from_agent["client_id"], from_agent["subject"]) == ("agent", "a1", None)
    from_broker = security_row({"msg_id": "m", "ts": 1.0, "sender": "", "topic": "security.broker", "event": "spoofed_topic",
                                "client_id": "a2", "detail": "published on event.a3"})
    assert (from_broker["origin"], from_broker["client_id"], from_broker["subject"]) == ("broker", None, "a2")
    assert security_concerns(from_broker, "a2") and not security_concerns(from_broker, "a1")

    audit = audit_row({"msg_id": "m", "ts": 1.0, "operator": "op", "role": "admin", "action": "command",
                       "detail": {"id": "c", "target": "a1", "name": "reboot", "reason": "frozen"}})
    assert (audit["target"], audit["reason"]) == ("a1", "frozen")
    stored = {"target": None, "detail": {"id": "c", "target": "a1"}}  # how the store keeps a command's audit
    assert audit_concerns(audit, "a1") and audit_concerns(stored, "a1") and not audit_concerns(stored, "a2")


def test_cells_are_readable():
    assert format_value("ok", False) == "no"
    assert format_value("size", b"\x00" * 10) == "<10 bytes>"
    assert format_value("detail", {"a": 1, "b": {"c": 2.5}}) == "a=1, b={c=2.5}"
    assert format_value("message", "x" * 500).endswith("…")
    assert format_value("ts", None) == ""


class _Emitter(QObject):
    fired = Signal(object)


def test_the_binding_cannot_crash_the_console(qapp):
    """PySide6 6.12.0 on CPython 3.11 loses a reference to None on every void
    call and to True on every emit; gui.qtcompat makes them immortal when it
    measures that, so tens of thousands of calls do not abort the process."""
    emitter = _Emitter()
    got = []
    emitter.fired.connect(got.append)
    for n in range(20_000):
        emitter.setObjectName("x")
        emitter.fired.emit(n)
    assert len(got) == 20_000
    if any(qtcompat.REFERENCE_LOSSES.values()):
        assert sys.getrefcount(None) > qtcompat.IMMORTAL_MARGIN // 2 and sys.getrefcount(True) > qtcompat.IMMORTAL_MARGIN // 2
