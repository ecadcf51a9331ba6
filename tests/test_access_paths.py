"""Every access path through every entry point, end to end (issue 12, "Must show").

One stack for the module: a real broker (in a thread, real CurveZMQ
sockets), the real persister writing a real SQLite store, the admin HTTP
listener, and one real ``ems agent`` process on a private Xvfb. Three people
act on it, each through one entry point, each named once at enrolment:

* **Dana Okafor** types ``ems send`` (a subprocess with her own profile; her
  key was enrolled with ``ems keys add --name "Dana Okafor"``);
* **Gus Lindqvist** uses the console: its :class:`~gui.console_controller.ConsoleController`
  is driven without clicking (offscreen Qt), over the console's own bus worker;
* **Ana Ruiz** calls the admin API over real HTTP with ``X-EMS-Operator: Ana Ruiz``
  (the listener vouches for her: she is named "Ana Ruiz via admin-http").

Every case of :data:`CASES` is one access path through one entry point and
tries two things:

1. **without a reason**: refused, and the agent never sees it (the broker
   queues no command, nothing is added to the agent's access log, no audit
   row). The console's controller sends it and the *broker* refuses it
   (``REASON_REQUIRED``); ``ems send`` and the admin API apply the broker's
   own rule before they send, with the same words (the broker's refusal of
   a service that vouches without a reason is ``test_access_reasons.py``'s).
2. **with a reason**: the command is done, the employee was shown a notice
   (the agent's Notifier records each one it shows in the access log) naming
   the person and giving the reason, the access log has an entry of the
   access naming the person with the reason in its own field, and the store
   has the broker's audit row with the person's display name, ``via`` and
   the reason in their own columns.

The agent's ``policy.json`` makes every look a notice of its own (thumbnail
notices every time, a file series ends as soon as it is idle), so that each
case has its own notice to find; power commands run dry (nothing reboots,
nothing is installed). The admin API offers power and update actions only:
its rows are the paths it has. Listing a folder is not announced on screen
by design (the indicator shows transfers, not browsing): its case expects
the access-log entry and the audit row, and no notice.
"""
# ruff: noqa: F811  (pytest fixtures imported from other test modules are test arguments here)
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402

from agent.access_log import NOTICE, AccessEntry, AccessLog  # noqa: E402
from broker.core import keys  # noqa: E402
from broker.core.client import BusClient  # noqa: E402
from broker.core.config import DataDir, Timing  # noqa: E402
from broker.core.profile import Profile, save  # noqa: E402

from conftest import Bus, Processes, wait_for  # noqa: E402
from test_admin_http import Admin  # noqa: E402
from test_notice_display import _x_tools, needs_x, xserver  # noqa: E402,F401
from test_persister_bus import RunningPersister  # noqa: E402

pytestmark = needs_x

AGENT = "desk-7"
UPLOAD = b"printer driver settings\n"
#: the people, as each entry point names them to the employee and the audit trail
PEOPLE = {"cli": ("dana", "Dana Okafor", ""), "gui": ("gus", "Gus Lindqvist", ""), "api": ("", "Ana Ruiz", "admin-http")}


@dataclass(frozen=True)
class AccessPath:
    """One access path: the command, its arguments, the access-log entry kinds it writes, and the undo."""

    command: str
    args: dict = field(default_factory=dict)
    kinds: tuple[str, ...] = ()
    notice: bool = True
    then: str = ""  # a command that ends what this one started (live view, control)


def paths(share: Path) -> dict[str, AccessPath]:
    return {
        "capture": AccessPath("capture", {"max_width": 640}, ("capture",)),
        "thumbnail": AccessPath("thumbnail", {}, ("thumbnail",)),
        "live view": AccessPath("live.start", {"fps": 2, "lease_s": 30}, ("live_view.start",), then="live.stop"),
        "control": AccessPath("control.open", {}, ("control.start",), then="control.close"),
        "files.list": AccessPath("files.list", {"path": str(share)}, ("file.list",), notice=False),
        "files.download": AccessPath("files.download", {"path": str(share / "report.txt")}, ("file.download",)),
        "files.upload": AccessPath("files.upload", {"path": str(share / "upload-{entry}.txt"), "overwrite": True}, ("file.upload",)),
        "reboot": AccessPath("power.reboot", {"delay_s": 120}, ("power.reboot",)),
        "update": AccessPath("update.apply", {}, ("update.apply",)),
    }


#: (path, entry): the admin API's actions are power and updates
CASES = [(p, e) for p in ("capture", "thumbnail", "live view", "control", "files.list", "files.download", "files.upload",
                          "reboot", "update") for e in ("cli", "gui")] + [("reboot", "api"), ("update", "api")]
API_ACTIONS = {"power.reboot": "reboot", "update.apply": "update-apply"}


class Stack:
    """Broker, persister, admin API, a real agent on Xvfb, and the three people's ways in."""

    def __init__(self, root: Path, xvfb, qapp):
        self.root = root
        self.bus = Bus(root, Timing())
        self.persister = RunningPersister(self.bus, root)
        self.admin_api = Admin(self.bus)
        self.procs = Processes(root)
        self.share = root / "share"
        self.share.mkdir()
        (self.share / "report.txt").write_text("quarterly numbers\n")
        self.paths = paths(self.share)
        save(self.bus.data, Profile(server=self.bus.endpoint, server_key=self.bus.server_key, key_name="admin", client_id="admin"))
        self.cli_dir = self._person_profile("dana", "Dana Okafor")
        self.gus = self._enrol_by_cli("gus", "Gus Lindqvist")
        self.agent_dir = root / AGENT
        self.access_log = AccessLog(self.agent_dir / "access" / "access.log")
        self._start_agent(xvfb)
        self.qapp, self.windows = qapp, []
        self.window = self._open_console(self.gus, "gus")

    # -- set-up -------------------------------------------------------------------------------
    def ems(self, *argv: str, data_dir: Path | None = None, last: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        """``ems ARGV --data-dir D [-- LAST...]`` (a Z85 key may start with "-": it goes after "--")."""
        return subprocess.run([sys.executable, "-m", "broker.cli.main", *argv, "--data-dir", str(data_dir or self.bus.data.root),
                               *(("--", *last) if last else ())], capture_output=True, text=True, timeout=120)

    def _enrol_by_cli(self, client_id: str, name: str) -> keys.KeyPair:
        """A person's operator key, enrolled by the admin with ``ems keys add --name``."""
        pair = keys.load_or_create(self.root / client_id / "keys", client_id)
        done = self.ems("keys", "add", "--id", client_id, "--role", "operator", "--name", name, last=(pair.public,))
        assert done.returncode == 0 and f"named '{name}'" in done.stdout, done.stdout + done.stderr
        return pair

    def _person_profile(self, client_id: str, name: str) -> Path:
        """A data dir whose profile is that person's (their own ``ems send``)."""
        self._enrol_by_cli(client_id, name)
        data = DataDir(self.root / client_id).ensure()
        save(data, Profile(server=self.bus.endpoint, server_key=self.bus.server_key, key_name=client_id, client_id=client_id))
        return data.root

    def _start_agent(self, xvfb) -> None:
        pair = keys.load_or_create(self.agent_dir / "keys", "agent")
        self.bus.admin.request("keys.add", public_key=pair.public, client_id=AGENT, role="agent")
        policy = {"power_dry_run": True, "allowed_roots": [str(self.share)], "thumbnail_notice_every_s": 0,
                  "series_idle_s": 0, "captures_per_minute": 12, "indicator": "bar"}
        (self.agent_dir / "policy.json").write_text(json.dumps(policy))
        self.agent = self.procs.ems(AGENT, "agent", "--data-dir", str(self.agent_dir), "--server", self.bus.endpoint,
                                    f"--server-key={self.bus.server_key}", "--id", AGENT,
                                    "--access-dir", str(self.agent_dir / "access"), env=xvfb.env())
        wait_for(lambda: AGENT in self.bus.broker.online, 60, interval_s=0.1,
                 what=f"the agent to come online (log: {self.agent.log_path})")

    def _open_console(self, pair: keys.KeyPair, client_id: str):
        from gui.bus_worker import BusWorker
        from gui.main_window import MainWindow
        from gui.thumbnails import ThumbnailConfig

        config = self.bus.client_config()
        # no tile pictures of its own (they would be looks of their own, with their own reason: test_gui_thumbnails.py)
        window = MainWindow(BusWorker(lambda: BusClient(config, pair, hello={"client_id": client_id})),
                            thumbnails=ThumbnailConfig(interval_s=0))
        window.show()
        self.until(lambda: window._ready, "the console to be welcomed")
        self.windows.append(window)
        return window

    def until(self, predicate, what: str, timeout_s: float = 60.0):
        """Wait while Qt runs (the console's answers arrive as queued signals)."""
        def pumped():
            self.qapp.processEvents()
            return predicate()
        return wait_for(pumped, timeout_s, interval_s=0.02, what=what)

    def close(self) -> None:
        for window in self.windows:
            window.close()
        self.qapp.processEvents()
        self.procs.stop_all()
        self.admin_api.close()
        self.persister.stop()
        self.bus.close()

    # -- what happened ------------------------------------------------------------------------
    def commands_for_agent(self) -> int:
        return len(self.bus.admin.request("command.list", target=AGENT, limit=1000))

    def entries(self) -> list[AccessEntry]:
        return self.access_log.entries()

    def audit_rows(self, reason: str) -> list[dict]:
        return [r for r in self.bus.admin.request("store.query", kind="audit", text=reason, limit=100)
                if r["action"] == "command" and r["reason"] == reason]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, xserver, qapp):
    s = Stack(tmp_path_factory.mktemp("paths"), xserver, qapp)
    yield s
    s.close()


# -- the entry points ---------------------------------------------------------------------------
def send_cli(stack: Stack, command: str, args: dict, reason: str | None) -> tuple[bool, str]:
    """``ems send AGENT COMMAND key=value... [--reason R] --wait`` as Dana: (done?, what it said)."""
    argv = ["send", AGENT, command]
    argv += [f"{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in args.items() if key != "data"]
    argv += ["--wait", "--timeout-s", "60"]
    if "data" in args:
        source = stack.root / "upload.bin"
        source.write_bytes(args["data"])
        argv += ["--data-from", str(source)]
    if reason is not None:
        argv += ["--reason", reason]
    done = stack.ems(*argv, data_dir=stack.cli_dir)
    return done.returncode == 0, done.stdout + done.stderr


def send_gui(stack: Stack, command: str, args: dict, reason: str | None) -> tuple[bool, str]:
    """The console's controller sends it (as the window's actions do), and its command log shows the outcome.
    A thumbnail goes the way the console's tiles ask for one (``request_thumbnail``), answered as a picture."""
    if command == "thumbnail":
        return tile_thumbnail(stack, args, reason)
    controller = stack.window.controller
    cmd_id = controller.send_command(AGENT, command, {**args, **({} if reason is None else {"reason": reason})})

    def outcome():
        rows = [r for r in stack.window.commands.rows() if r.get("id") == cmd_id]
        return rows and rows[0]["status"] in ("done", "failed", "refused", "expired") and rows[0]

    row = stack.until(outcome, f"the console's row of {command}")
    return row["status"] == "done", f"{row['status']}: {json.dumps(row.get('result'), default=str)}"


def tile_thumbnail(stack: Stack, args: dict, reason: str | None) -> tuple[bool, str]:
    worker, answers = stack.window.worker, {}

    def pictured(cmd_id, client_id, image, why_not):
        answers[cmd_id] = (not image.isNull(), f"done: {image.width()}x{image.height()}" if not image.isNull() else why_not)

    def failed(req_id, op, error):
        answers[req_id] = (False, f"refused: {{\"ok\": false, \"error\": \"{error}")

    worker.thumbnail_received.connect(pictured)
    worker.request_failed.connect(failed)
    try:
        cmd_id = worker.request_thumbnail(AGENT, {**args, **({} if reason is None else {"reason": reason})}, 60)
        return stack.until(lambda: answers.get(cmd_id), "the console's thumbnail answer")
    finally:
        worker.thumbnail_received.disconnect(pictured)
        worker.request_failed.disconnect(failed)


def send_api(stack: Stack, command: str, args: dict, reason: str | None) -> tuple[bool, str]:
    """``POST /api/clients/AGENT/<action>?wait=1`` with ``X-EMS-Operator: Ana Ruiz``."""
    body = {"args": args, **({} if reason is None else {"reason": reason})}
    status, answer, _ = stack.admin_api.http.call("POST", f"/api/clients/{AGENT}/{API_ACTIONS[command]}?wait=1&timeout_s=60",
                                                  body, headers={"X-EMS-Operator": "Ana Ruiz"})
    return status == 200 and answer.get("status") == "done", json.dumps(answer, default=str)


SEND = {"cli": send_cli, "gui": send_gui, "api": send_api}
#: what each entry point says when the reason is missing: through the console, the broker's
#: REASON_REQUIRED refusal ("refused", never queued); ems send says the broker's words before sending
REFUSAL = {"cli": "needs a reason", "gui": "refused: {\"ok\": false, \"error\": \"", "api": "a reason is required"}


def case_args(path: AccessPath, entry: str) -> dict:
    args = {k: (v.format(entry=entry) if isinstance(v, str) else v) for k, v in path.args.items()}
    if path.command == "files.upload":
        args["data"] = UPLOAD
    return args


def label(entry: str) -> str:
    _, name, via = PEOPLE[entry]
    return f"{name} via {via}" if via else name


# -- the walk ------------------------------------------------------------------------------------
@pytest.mark.parametrize("path_name,entry", CASES, ids=[f"{p}-{e}" for p, e in CASES])
def test_access_path(stack, path_name, entry):
    """Without a reason: refused, the agent never sees it. With one: a notice,
    an access-log entry and an audit row, each naming the person and the reason."""
    path = stack.paths[path_name]
    send, who = SEND[entry], label(entry)
    args = case_args(path, entry)
    reason = f"ticket {4700 + CASES.index((path_name, entry))}: {path_name} through {entry}"

    # 1. no reason: refused before any agent sees it
    queued, logged = stack.commands_for_agent(), len(stack.entries())
    ok, said = send(stack, path.command, args, None)
    assert not ok and REFUSAL[entry] in said and ("needs a reason" in said or entry == "api"), said
    assert stack.commands_for_agent() == queued, "a refused command was queued for the agent"
    assert len(stack.entries()) == logged, "the agent acted on a command without a reason"

    # 2. with a reason: done, shown, logged, audited, each naming the person
    ok, said = send(stack, path.command, args, reason)
    assert ok, f"{path.command} through {entry} failed: {said}"
    try:
        new = wait_for(lambda: [e for e in stack.entries()[logged:] if e.kind in path.kinds] and stack.entries()[logged:],
                       20, what=f"the access-log entry of {path.command}")
        [entry_] = [e for e in new if e.kind in path.kinds]
        assert (entry_.operator, entry_.reason) == (who, reason), entry_
        notices = [e for e in new if e.kind == NOTICE and who in e.detail and reason in e.detail]
        assert len(notices) == (1 if path.notice else 0), [e.to_json() for e in new]
        [row] = wait_for(lambda: stack.audit_rows(reason), 20, what=f"the audit row of {path.command}")
        _, name, via = PEOPLE[entry]
        assert (row["operator_name"], row["via"], row["target"]) == (name, via, AGENT), row
        assert row["detail"]["name"] == path.command
    finally:
        undo(stack, path, entry)


def undo(stack: Stack, path: AccessPath, entry: str) -> None:
    """End what the case started, so the next one starts from nothing going on."""
    if path.then:
        ok, said = SEND[entry](stack, path.then, {}, None)
        assert ok, said
    if path.command.startswith("files.") and path.notice:  # the series ends when idle (series_idle_s 0)
        wait_for(lambda: stack.entries()[-1].event == "file transfer ended", 20, what="the file transfer to end")
    if path.command == "files.upload":
        assert (stack.share / f"upload-{entry}.txt").read_bytes() == UPLOAD


def test_the_trail_names_each_person_in_ems_history_and_in_the_console(stack):
    """One reboot (dry run) through each entry point; then ``ems history audit``
    prints each person (a vouched one "via admin-http") beside the reason, and
    an admin's console has Person and Via in its Activity tab, filled from the store."""
    reasons = {entry: f"history check through {entry}" for entry in SEND}
    for entry, reason in reasons.items():
        ok, said = SEND[entry](stack, "power.reboot", {"delay_s": 120}, reason)
        assert ok, said
    wait_for(lambda: all(stack.audit_rows(r) for r in reasons.values()), 20, what="the three audit rows")

    done = stack.ems("history", "audit", "--agent", AGENT, "--limit", "200")
    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.splitlines()
    assert header.split()[:5] == ["ID", "TS", "PERSON", "OPERATOR", "ACTION"], header
    for entry, reason in reasons.items():
        [line] = [line for line in lines if reason in line]
        assert label(entry) in line, line
    assert any("Ana Ruiz via admin-http" in line and "admin-http" in line.split("via admin-http", 1)[1] for line in lines)

    window = stack._open_console(stack.bus.admin_keys, "admin")  # the audit trail is for admins
    window.controller.select(AGENT)
    window.controller.show_kind("audit")
    model = window.history["audit"]
    people = stack.until(lambda: {(r.get("operator_name"), r.get("via")) for r in model.rows() if r.get("reason") in reasons.values()}
                         if len([r for r in model.rows() if r.get("reason") in reasons.values()]) == 3 else None,
                         "the console's Activity tab")
    assert people == {("Dana Okafor", ""), ("Gus Lindqvist", ""), ("Ana Ruiz", "admin-http")}
    titles = [model.headerData(i, Qt.Orientation.Horizontal) for i in range(model.columnCount())]
    assert titles[:4] == ["Time", "Person", "Via", "Operator"], titles
