"""Notices on a real X display, and the X harness the control and chat tests share.

:class:`XServer` is the project's :class:`~bench.harness.xvfb.Xvfb` (a
private server that picks a free display number itself and is stopped by
pid) with an X authority file.
The ``xserver`` fixture is module-scoped (one Xvfb per test module that
imports it); ``x_env`` points DISPLAY and XAUTHORITY at it for one test.
:func:`make_agent` builds a real :class:`AgentContext` over a real access
log and notifier. Other test modules import these names from here.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.access_log import AccessLog
from agent.context import AgentContext, LocalPolicy
from agent.notice import Notifier, TkWindowBackend, select_backend
from agent.notice.display import tk_installed
from bench.harness.xvfb import Xvfb, XvfbError
from broker.core.envelope import new_id

from conftest import wait_for

SCREEN_W, SCREEN_H = 1280, 720
NOTICE_S = 3.0

def _require_x() -> None:
    """These tests need Xvfb, xdotool and Tk; the installer provides them, so their absence fails."""
    missing = [name for name, ok in (("Xvfb", shutil.which("Xvfb")), ("xdotool", shutil.which("xdotool")),
                                     ("Tk (python3-tk)", tk_installed())) if not ok]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run installer/install.sh --dev")


#: applied to every X test: fails (never skips) when the X tools are missing
needs_x = pytest.mark.usefixtures("_x_tools")


@pytest.fixture(scope="session")
def _x_tools():
    _require_x()


class XServer(Xvfb):
    """The shared :class:`~bench.harness.xvfb.Xvfb` plus an (empty) X authority file.

    pyautogui's Xlib wants an authority file, even an empty one; ``env()``
    gives DISPLAY and XAUTHORITY for a test or a child process.
    """

    def __init__(self, root: Path, width: int = SCREEN_W, height: int = SCREEN_H):
        super().__init__(width, height, timeout_s=15.0)
        self.xauthority = root / "Xauthority"

    def start(self) -> XServer:
        self.xauthority.parent.mkdir(parents=True, exist_ok=True)
        self.xauthority.touch()
        try:
            return super().start()
        except XvfbError as exc:
            pytest.fail(str(exc))

    def env(self) -> dict[str, str]:
        return {"DISPLAY": self.display, "XAUTHORITY": str(self.xauthority)}


@pytest.fixture(scope="module")
def xserver(tmp_path_factory):
    """One private Xvfb for the module that uses it."""
    server = XServer(tmp_path_factory.mktemp("xvfb")).start()
    yield server
    server.stop()


@pytest.fixture
def x_env(xserver, monkeypatch):
    """DISPLAY and XAUTHORITY of the module's Xvfb, for this test only."""
    for name, value in xserver.env().items():
        monkeypatch.setenv(name, value)
    return xserver


def xdotool(*args: str, check: bool = True) -> str:
    """Run xdotool on the current DISPLAY; its stdout."""
    done = subprocess.run(["xdotool", *args], check=False, capture_output=True, text=True, timeout=10)
    if check and done.returncode != 0:
        raise AssertionError(f"xdotool {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def windows_named(pattern: str) -> list[str]:
    """Ids of mapped windows whose name matches ``pattern`` (a regex)."""
    return xdotool("search", "--onlyvisible", "--name", pattern, check=False).split()


def geometry(window_id: str) -> tuple[int, int, int, int]:
    """x, y, width, height of a window."""
    values = dict(line.split("=", 1) for line in xdotool("getwindowgeometry", "--shell", window_id).split())
    return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])


def pointer() -> tuple[int, int]:
    values = dict(line.split("=", 1) for line in xdotool("getmouselocation", "--shell").split())
    return int(values["X"]), int(values["Y"])


@dataclass
class AgentUnderTest:
    """A real context: access log file, notifier, and the reports it kept."""

    ctx: AgentContext
    access: AccessLog
    notifier: Notifier
    reports: list[tuple] = field(default_factory=list)

    def as_operator(self, operator: str) -> AgentContext:
        return AgentContext(**{**self.ctx.__dict__, "operator": operator})

    def lines(self) -> list[str]:
        return self.access.read().splitlines()

    def reported(self, name: str = "chat") -> list[dict]:
        """Receipts and replies (not the stored copy of the operator's message itself)."""
        return [data for _kind, n, data in self.reports if n == name and not _stored_message(data)]

    def stored_messages(self) -> list[dict]:
        """The operator's messages as the agent reported them for the store."""
        return [data for _kind, n, data in self.reports if n == "chat" and _stored_message(data)]


def _stored_message(data: dict) -> bool:
    return data.get("direction") == "out" and "ref" not in data


def make_agent(tmp_path: Path, operator: str = "alice", policy: LocalPolicy | None = None, notice_s: float = NOTICE_S) -> AgentUnderTest:
    access = AccessLog(tmp_path / "access.log")
    notifier = Notifier(access.record, select_backend(seconds=notice_s))
    reports: list[tuple] = []

    def report(kind, name, data, priority=None, msg_id=None) -> str:
        reports.append((kind, name, data))
        return msg_id or new_id()

    ctx = AgentContext("agent-1", tmp_path, policy or LocalPolicy(), access.record, notifier.notify, report, operator)
    return AgentUnderTest(ctx, access, notifier, reports)


@pytest.fixture
def agent(x_env, tmp_path):
    """An agent context on the module's Xvfb: notices are real windows there."""
    under_test = make_agent(tmp_path)
    yield under_test
    under_test.notifier.close(dismiss=True)


# -- notices on a real display ---------------------------------------------------------------

pytestmark = needs_x


def test_xvfb_harness_gives_a_screen_of_the_asked_size(x_env):
    assert xdotool("getdisplaygeometry").split() == [str(SCREEN_W), str(SCREEN_H)]


def test_a_notice_opens_a_window_logs_it_and_closes_by_itself(x_env, tmp_path):
    under_test = make_agent(tmp_path, notice_s=1.0)
    assert isinstance(under_test.notifier.backend, TkWindowBackend)
    under_test.notifier.notify("Screen shared", "bob is viewing your screen: inventory check")
    [window] = wait_for(lambda: windows_named("^EMS notice: Screen shared$"), what="the notice window")
    x, y, width, _ = geometry(window)
    assert x + width <= SCREEN_W and y < 100, "top-right corner"
    assert "Screen shared  bob is viewing your screen: inventory check" in under_test.access.read()
    wait_for(lambda: not windows_named("^EMS notice: Screen shared$"), timeout_s=10, what="the notice to close itself")
    under_test.notifier.close(dismiss=True)


def test_two_notices_stack_instead_of_covering_each_other(agent, x_env):
    agent.notifier.notify("First", "one")
    agent.notifier.notify("Second", "two")
    [first] = wait_for(lambda: windows_named("^EMS notice: First$"), what="the first notice")
    [second] = wait_for(lambda: windows_named("^EMS notice: Second$"), what="the second notice")
    assert geometry(second)[1] > geometry(first)[1] + geometry(first)[3] - 1


def test_dismiss_takes_notices_off_the_screen(agent, x_env):
    agent.notifier.notify("Going away", "soon")
    wait_for(lambda: windows_named("^EMS notice: Going away$"), what="the notice window")
    agent.notifier.close(dismiss=True)
    wait_for(lambda: not windows_named("^EMS notice: Going away$"), timeout_s=5, what="the dismissed notice to go")
