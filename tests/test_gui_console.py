"""The operator console against a real broker, a real persister and agents
that are real BusClients: the grid follows presence and sysinfo, a selected
client's tabs come from the store and stay live, actions reach the agent
and their status the UI, and closing the window leaves no thread behind."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import argparse
import io
import queue
import sys
import threading
import time

import pytest


from PySide6.QtCore import Qt
from PySide6.QtTest import QSignalSpy
from test_persister_bus import RunningPersister

from gui import cli as gui_cmd
from broker.core.profile import Profile
from broker.core.profile import save as save_profile
from broker.core.client import BusClient
from broker.core.envelope import Kind
from broker.core.errors import ConfigError
from gui.bus_worker import BusWorker, profile_client_factory
from gui.main_window import MainWindow
from gui.models import ClientsModel

WAIT_MS = 10_000


class Agents:
    """Agents as BusClients, all on one thread of their own (a BusClient is
    used from one thread only). They stay connected, answer every command
    (delivered, then an ok result) and run what the test hands them."""

    def __init__(self, bus, hellos: dict[str, dict]):
        self.config = bus.client_config()
        self.pairs = {cid: bus.enrol(cid) for cid in hellos}
        self.hellos = {cid: {"client_id": cid, **extra} for cid, extra in hellos.items()}
        self.commands: list[tuple[str, str, dict]] = []
        self.ready_ids: frozenset[str] = frozenset()
        self._todo: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-agents", daemon=True)
        self._thread.start()

    def publish(self, client_id: str, kind: Kind, name: str, data: dict) -> None:
        self._todo.put(lambda clients: clients[client_id].publish(kind, name, data))

    def publish_body(self, client_id: str, kind: Kind, name: str, body: bytes) -> None:
        self._todo.put(lambda clients: clients[client_id].publish(kind, name, body=body))

    def disconnect(self, client_id: str) -> None:
        self._todo.put(lambda clients: clients.pop(client_id).close())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        clients: dict[str, BusClient] = {}
        for cid, pair in self.pairs.items():
            clients[cid] = BusClient(self.config, pair, hello=self.hellos[cid])
            clients[cid].connect()
        try:
            while not self._stop.is_set():
                while not self._todo.empty():
                    self._todo.get()(clients)
                for client in list(clients.values()):
                    for env in client.drain(100, 0.0):
                        if env.kind is Kind.COMMAND:
                            self._answer(client, env)
                self.ready_ids = frozenset(cid for cid, c in clients.items() if c.ready)
                self._stop.wait(0.005)
        finally:
            for client in clients.values():
                client.close()

    def _answer(self, client: BusClient, env) -> None:
        data = env.data()
        self.commands.append((client.client_id, data["name"], data.get("args") or {}))
        client.send(Kind.COMMAND_STATUS, data={"status": "delivered"}, corr=env.msg_id)
        client.send(Kind.RESULT, data={"ok": True, "output": {"ran": data["name"]}}, corr=env.msg_id)


@pytest.fixture
def persister(bus, tmp_path):
    p = RunningPersister(bus, tmp_path)
    yield p
    p.stop()


@pytest.fixture
def agents(bus):
    made: list[Agents] = []

    def start(hellos: dict[str, dict]) -> Agents:
        made.append(Agents(bus, hellos))
        return made[-1]

    yield start
    for a in made:
        a.stop()


@pytest.fixture
def console(bus, qtbot):
    """A console window whose worker connects with a freshly enrolled operator key."""

    def open_console(role: str = "admin", client_id: str = "op-gui") -> MainWindow:
        pair = bus.enrol(client_id, role=role)
        config = bus.client_config()
        window = MainWindow(BusWorker(lambda: BusClient(config, pair, hello={"client_id": client_id})))
        qtbot.addWidget(window)  # closed (and its worker stopped) at teardown
        window.show()
        qtbot.waitUntil(lambda: window._ready, timeout=WAIT_MS)
        return window

    return open_console


def store_has(bus, kind: str, client_id: str, where=lambda row: True) -> bool:
    return any(where(r) for r in bus.admin.request("store.query", kind=kind, client_id=client_id))


def client_state(window: MainWindow, client_id: str) -> str | None:
    client = window.clients.client(client_id)
    return client.state if client else None


def tab_values(window: MainWindow, kind: str, column: str) -> list:
    return window.history[kind].column_values(column)


def test_grid_shows_agents_appearing_changing_and_going_offline(bus, persister, agents, console, qtbot):
    fleet = agents({"a1": {"label": "Front desk", "user": "kim"}, "a2": {"hostname": "lab-2"}})
    qtbot.waitUntil(lambda: fleet.ready_ids == {"a1", "a2"}, timeout=WAIT_MS)
    # the label said in a1's hello reaches a console opened later through the store's clients row
    qtbot.waitUntil(lambda: store_has(bus, "clients", "a1", lambda r: r.get("label") == "Front desk"), timeout=WAIT_MS)
    window = console()
    model = window.clients
    resets = QSignalSpy(model.modelReset)
    qtbot.waitUntil(lambda: client_state(window, "a1") == "online" and client_state(window, "a2") == "online", timeout=WAIT_MS)
    assert window.clients.client("a1").name == "Front desk"

    # live sysinfo changes the row in place
    changed = QSignalSpy(model.dataChanged)
    fleet.publish("a1", Kind.EVENT, "sysinfo", {"cpu_percent": 42.0, "memory_percent": 61.5, "logged_in_user": "kim"})
    qtbot.waitUntil(lambda: model.client("a1").cpu_percent == 42.0, timeout=WAIT_MS)
    row = model.row_of("a1")
    assert model.index(row, ClientsModel.COLUMNS.index("cpu_percent")).data() == "42"
    assert model.index(row, 0).data(ClientsModel.MemoryRole) == 61.5
    assert changed.count() >= 1

    # the search box filters the grid
    qtbot.keyClicks(window.search, "front")
    qtbot.waitUntil(lambda: window.proxy.rowCount() == 1, timeout=WAIT_MS)  # once typing pauses
    assert window.proxy.index(0, 0).data(ClientsModel.ClientIdRole) == "a1"
    window.search.clear()
    qtbot.waitUntil(lambda: window.proxy.rowCount() == 2, timeout=WAIT_MS)

    # an agent that closes its connection goes offline; one that arrives is added
    inserted = QSignalSpy(model.rowsInserted)
    fleet.disconnect("a2")
    qtbot.waitUntil(lambda: client_state(window, "a2") == "offline", timeout=WAIT_MS)
    later = agents({"a3": {"label": "Late comer"}})
    qtbot.waitUntil(lambda: client_state(window, "a3") == "online", timeout=WAIT_MS)
    assert inserted.count() == 1
    assert window.count_label.text() == "2 of 3 online"
    assert resets.count() == 0  # incremental updates only
    later.stop()


def test_selecting_a_client_fills_its_tabs_from_the_store_then_live(bus, persister, agents, console, qtbot):
    fleet = agents({"a1": {"user": "kim"}})
    qtbot.waitUntil(lambda: fleet.ready_ids == {"a1"}, timeout=WAIT_MS)
    fleet.publish("a1", Kind.SECURITY, "login", {"event": "login_failed", "severity": "warning", "detail": "3 attempts"})
    for cpu in (10.0, 20.0, 30.0):
        fleet.publish("a1", Kind.EVENT, "sysinfo", {"cpu_percent": cpu, "memory_percent": 50.0, "disk_percent": 80.0 + cpu / 10})
    qtbot.waitUntil(lambda: store_has(bus, "security", "a1") and store_has(bus, "sessions", "a1")
                    and len(bus.admin.request("store.query", kind="metrics", client_id="a1")) == 3, timeout=WAIT_MS)

    window = console()  # opened after the facts: what it shows comes from the store
    qtbot.waitUntil(lambda: window.select_client("a1"), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.history["sessions"].rowCount() == 1, timeout=WAIT_MS)  # the open tab
    assert window.history["security"].rowCount() == 0  # a tab loads when it is first shown
    window.tabs.setCurrentWidget(window.tabs_by_kind["security"])
    qtbot.waitUntil(lambda: window.history["security"].rowCount() == 1, timeout=WAIT_MS)
    assert tab_values(window, "security", "event") == ["login_failed"]
    assert tab_values(window, "security", "id")[0] is not None  # a stored row
    assert tab_values(window, "sessions", "ended") == [None]
    assert "1 security events" in window.tabs_by_kind["security"].message.text()
    qtbot.waitUntil(lambda: window.chart.cpu.count() == 3, timeout=WAIT_MS)
    assert [window.chart.disk.at(i).y() for i in range(window.chart.disk.count())] == [81.0, 82.0, 83.0]  # stored

    # live: a new event shows at once, and the store's copy later merges into the same row
    security = window.history["security"]
    resets = QSignalSpy(security.modelReset)
    fleet.publish("a1", Kind.SECURITY, "usb", {"event": "usb_inserted", "severity": "info"})
    fleet.publish("a1", Kind.EVENT, "sysinfo", {"cpu_percent": 40.0, "memory_percent": 55.0})
    qtbot.waitUntil(lambda: security.rowCount() == 2 and window.chart.cpu.count() == 4, timeout=WAIT_MS)
    assert tab_values(window, "security", "event") == ["usb_inserted", "login_failed"]
    qtbot.waitUntil(lambda: len(bus.admin.request("store.query", kind="security", client_id="a1")) == 2, timeout=WAIT_MS)
    window.refresh_action.trigger()  # F5
    qtbot.waitUntil(lambda: None not in tab_values(window, "security", "id"), timeout=WAIT_MS)
    assert security.rowCount() == 2
    assert resets.count() == 0


def test_a_confirmed_action_reaches_the_agent_and_its_status_the_ui(bus, persister, agents, console, qtbot):
    fleet = agents({"a1": {"label": "Front desk"}})
    qtbot.waitUntil(lambda: fleet.ready_ids == {"a1"}, timeout=WAIT_MS)
    window = console()
    qtbot.waitUntil(lambda: window.select_client("a1"), timeout=WAIT_MS)
    window.tabs.setCurrentWidget(window.tabs_by_kind["audit"])
    reboot = window.command_actions["reboot"]
    assert reboot.isEnabled() and reboot.shortcut().toString() == "Ctrl+R"

    reboot.trigger()  # what Ctrl+R does
    dialog = window.dialog
    assert dialog is not None and dialog.isVisible()
    assert not dialog.ok_button.isEnabled()  # no reason, no reboot
    qtbot.keyClicks(dialog.reason_edit, "user asked: frozen desktop")
    assert dialog.ok_button.isEnabled()
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)

    qtbot.waitUntil(lambda: "done" in window.commands.column_values("status"), timeout=WAIT_MS)
    assert fleet.commands == [("a1", "power.reboot", {"reason": "user asked: frozen desktop",
                                                      "operator": {"id": "op-gui", "name": "op-gui", "via": ""}})]
    row = window.commands.row(0)
    assert (row["client_id"], row["name"]) == ("a1", "power.reboot")
    assert window.commands.index(0, window.commands.columns.index("result")).data() == "ran=power.reboot"
    # the audit trail names the operator and the reason, live and then from the store
    def command_audits():
        return [r for r in window.history["audit"].rows() if r["action"] == "command"]

    qtbot.waitUntil(lambda: bool(command_audits()), timeout=WAIT_MS)
    assert [(r["operator"], r["reason"]) for r in command_audits()] == [("op-gui", "user asked: frozen desktop")]
    actions = {r["action"] for r in window.history["audit"].rows()}
    # enrolling a1 too; reading the audit trail is itself audited, and that row may have landed by now
    assert actions - {"history.audit"} == {"command", "keys.add"}, actions
    qtbot.waitUntil(lambda: any(r["action"] == "command" for r in bus.admin.request("store.query", kind="audit")), timeout=WAIT_MS)
    window.refresh_action.trigger()
    qtbot.waitUntil(lambda: command_audits()[0].get("id") is not None, timeout=WAIT_MS)
    assert len(command_audits()) == 1

    # every action is an access: asked for a reason first (a cancelled one sends nothing)
    window.command_actions["update_check"].trigger()
    assert window.dialog is not None and not window.dialog.ok_button.isEnabled()
    qtbot.keyClicks(window.dialog.reason_edit, "monthly patch review")
    qtbot.mouseClick(window.dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.commands.column_values("status").count("done") == 2, timeout=WAIT_MS)
    window.command_actions["shutdown"].trigger()
    window.dialog.reject()
    assert [name for _, name, _ in fleet.commands] == ["power.reboot", "update.check"]


def test_a_viewer_cannot_act_and_sees_why_tabs_are_empty(bus, persister, agents, console, qtbot):
    fleet = agents({"a1": {}})
    qtbot.waitUntil(lambda: fleet.ready_ids == {"a1"}, timeout=WAIT_MS)
    window = console(role="viewer", client_id="view-gui")
    qtbot.waitUntil(lambda: window.select_client("a1"), timeout=WAIT_MS)
    assert not any(a.isEnabled() for a in window.command_actions.values())
    qtbot.waitUntil(lambda: window.history["sessions"].rowCount() == 1, timeout=WAIT_MS)
    for kind in ("audit", "captures"):
        window.tabs.setCurrentWidget(window.tabs_by_kind[kind])
        qtbot.waitUntil(lambda kind=kind: f"may not read {kind}" in window.tabs_by_kind[kind].message.text(), timeout=WAIT_MS)
    with qtbot.waitSignal(window.worker.request_failed, timeout=WAIT_MS) as refused:
        window.worker.watch_frames("a1")  # screens are for operators
    assert "may not read ['frame.a1.']" in refused.args[2]


def test_keyboard_shortcuts_and_theme(bus, console, qtbot):
    window = console()
    window.activateWindow()
    qtbot.waitUntil(lambda: window.isActiveWindow(), timeout=WAIT_MS)
    qtbot.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert window.search.hasFocus()
    qtbot.keyClick(window, Qt.Key.Key_2, Qt.KeyboardModifier.ControlModifier)
    assert window.fleet_stack.currentWidget() is window.table
    dark_window = window.palette().color(window.backgroundRole()).lightness()
    qtbot.keyClick(window, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
    assert not window.theme_action.isChecked()
    qtbot.waitUntil(lambda: window.palette().color(window.backgroundRole()).lightness() > dark_window + 100, timeout=WAIT_MS)


def test_live_view_hook_makes_watched_frames_the_tile_thumbnail(bus, agents, console, qtbot):
    """HOOK(live view): once the console watches a client, its live-view
    updates (broker.core.screen_frames bodies) become the tile's thumbnail."""
    from broker.core import screen_frames as protocol
    from PIL import Image

    fleet = agents({"a1": {}})
    window = console()
    qtbot.waitUntil(lambda: client_state(window, "a1") == "online", timeout=WAIT_MS)
    with qtbot.waitSignal(window.worker.replied, timeout=WAIT_MS):
        window.worker.watch_frames("a1")
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 32), (220, 20, 20)).save(jpeg, "JPEG")
    update = protocol.Update(seq=0, ts=time.time(), width=64, height=32, full=True,
                             tiles=[protocol.Tile(0, 0, 64, 32, jpeg.getvalue())])
    fleet.publish_body("a1", Kind.FRAME, protocol.TOPIC_NAME, protocol.pack_update(update))
    qtbot.waitUntil(lambda: window.clients.client("a1").thumbnail is not None, timeout=WAIT_MS)
    thumbnail = window.clients.index(window.clients.row_of("a1"), 0).data(ClientsModel.ThumbnailRole)
    assert (thumbnail.width(), thumbnail.height()) == (64, 32)
    assert thumbnail.pixelColor(32, 16).red() > 180


def _os_threads() -> list[str]:
    """Names of this process's threads, without Qt's own image-conversion pool
    (QtGui's "Thread (pooled)" workers, which idle 30 s after painting)."""
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as comm:
                names.append(comm.read().strip())
        except FileNotFoundError:  # ended while we looked
            continue
    return sorted(n for n in names if n != "Thread (pooled)")



def test_closing_the_window_leaves_no_thread_running(bus, qtbot, tmp_path):
    """`ems gui`'s way in (the operator profile), and out: nothing left running."""
    save_profile(bus.data, Profile(server=bus.endpoint, server_key=bus.server_key, key_name="admin", client_id="admin"))
    factory = profile_client_factory(str(bus.data.root))
    with pytest.raises(ConfigError, match="no operator profile"):
        profile_client_factory(str(tmp_path / "nowhere"))

    python_threads = set(threading.enumerate())
    os_threads = _os_threads()
    switch_interval = sys.getswitchinterval()
    window = MainWindow(BusWorker(factory))
    window.show()
    qtbot.waitUntil(lambda: window._ready, timeout=WAIT_MS)
    assert window.worker.isRunning()
    assert "ems-bus-worker" in _os_threads()  # with its ZeroMQ context's I/O and reaper threads
    assert len(_os_threads()) == len(os_threads) + 3

    window.close()
    assert window.worker.isFinished()
    qtbot.waitUntil(lambda: _os_threads() == os_threads, timeout=WAIT_MS)  # wait() returns as the OS thread unwinds
    # Python keeps a "dummy" entry for the QThread (logging looked at it); its OS thread is gone
    tasks = {int(t) for t in os.listdir("/proc/self/task")}
    assert [t.name for t in set(threading.enumerate()) - python_threads if t.native_id in tasks] == []
    qtbot.waitUntil(lambda: "Disconnected" in window.connection_label.text(), timeout=WAIT_MS)
    assert sys.getswitchinterval() == switch_interval  # the worker's shorter GIL interval ends with it


def test_ems_gui_command_line(tmp_path, monkeypatch):
    parser = argparse.ArgumentParser(prog="ems")
    gui_cmd.configure(parser.add_subparsers().add_parser("gui"))
    args = parser.parse_args(["gui", "--data-dir", str(tmp_path), "--theme", "light"])
    assert args.theme == "light" and args.run is gui_cmd.run
    with pytest.raises(ConfigError, match="no operator profile"):  # before any window opens
        args.run(args)
