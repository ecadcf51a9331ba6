"""An agent's capabilities in one shape: the runner owns them, ``help`` lists
their commands over a real bus (and ``ems send AGENT help --wait`` prints it
for a person), and every capability's ``close()`` runs when the agent stops,
even when another one fails to close."""
from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from agent.capability import Capability, Commands, command_table, summary
from agent.runner import Agent, AgentConfig
from broker.core import keys
from broker.core.profile import Profile, save
from broker.core.config import Timing

from conftest import Bus, wait_for

AGENT_ID = "desk-1"
#: every command an agent answers today, by capability
EXPECTED = {
    "basics": {"ping", "help"},
    "sysinfo": {"sysinfo"},
    "files": {"files.roots", "files.list", "files.stat", "files.download", "files.upload", "files.move", "files.delete"},
    "power": {"power.reboot", "power.shutdown", "update.check", "update.apply"},
    "control": {"control.open", "control.close", "input"},
    "chat": {"chat.send", "chat.delete"},
    "screen": {"capture", "thumbnail", "live.start", "live.stop"},
    "activity": set(),  # no commands: it reports session events and operators' actions
    "indicator": set(),  # no commands: it shows the accesses going on
}
ALL_COMMANDS = set().union(*EXPECTED.values())


class RunningAgent:
    """A real :class:`Agent` on its own thread, enrolled on ``bus``; records each capability's close()."""

    def __init__(self, bus: Bus, root, failing: str | None = None):
        pair = keys.load_or_create(root / "agent" / "keys", "agent")
        bus.admin.request("keys.add", public_key=pair.public, client_id=AGENT_ID, role="agent")
        config = AgentConfig(data_dir=root / "agent", client=bus.client_config(), client_id=AGENT_ID, sysinfo_interval_s=3600)
        self.agent = Agent(config)
        self.closed: list[str] = []
        for capability in self.agent.capabilities:
            self._record(capability, failing)
        self.thread = threading.Thread(target=self.agent.run, name="agent-under-test", daemon=True)

    def _record(self, capability: Capability, failing: str | None) -> None:
        original = capability.close

        def close(ctx) -> None:
            self.closed.append(capability.name)
            if capability.name == failing:
                raise RuntimeError(f"{capability.name} failed to close (on purpose)")
            original(ctx)

        capability.close = close

    def start(self) -> "RunningAgent":
        self.thread.start()
        try:
            wait_for(lambda: self.agent.bus.ready, 20, what="the agent to be welcomed")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.agent.stop()
        self.thread.join(30)


@pytest.fixture
def steady_bus(tmp_path):
    """A broker with the product's timing: the ``ems send`` CLI uses it too."""
    b = Bus(tmp_path, Timing())
    yield b
    b.close()


@pytest.fixture
def running(steady_bus, tmp_path):
    a = RunningAgent(steady_bus, tmp_path).start()
    yield a
    a.stop()


def test_the_runner_owns_one_capability_per_job_with_the_commands_it_names(running):
    """Tried: each capability's handlers() against the list above; their union is the runner's table."""
    caps = {c.name: set(c.handlers()) for c in running.agent.capabilities}
    assert caps == EXPECTED
    assert set(running.agent.handlers) == ALL_COMMANDS


@pytest.mark.parametrize("name", sorted(ALL_COMMANDS))
def test_every_command_has_a_first_line_of_help(running, name):
    """Tried: each command's docstring; its first line is its help and must say something."""
    line = summary(running.agent.handlers[name])
    assert len(line) > 10 and "\n" not in line


def test_help_over_the_bus_lists_every_command_with_its_first_line(steady_bus, running):
    """An operator sends ``help``; the result names every command the agent answers, each with its line."""
    operator = steady_bus.peer("op-1", role="operator")
    status = operator.send_command(AGENT_ID, "help", {}, ttl_s=60)
    outcome = operator.wait_result(status["id"], 30)
    assert outcome["status"] == "done", outcome
    output = outcome["result"]["output"]
    assert set(output["commands"]) == ALL_COMMANDS
    for name, line in output["commands"].items():
        assert line and line == summary(running.agent.handlers[name]), name
    assert len(output["text"].splitlines()) == len(ALL_COMMANDS)


def test_help_refuses_arguments(steady_bus, running):
    """Tried: ``help`` with an argument (it takes none): a failed result that says so, not a listing."""
    operator = steady_bus.peer("op-2", role="operator")
    status = operator.send_command(AGENT_ID, "help", {"verbose": True}, ttl_s=60)
    outcome = operator.wait_result(status["id"], 30)
    assert outcome["status"] == "failed" and "takes no arguments" in outcome["result"]["error"]


def test_ems_send_help_prints_one_readable_line_per_command(steady_bus, running):
    """``ems send AGENT help --wait``: one line a command, its name then its help line, no JSON."""
    save(steady_bus.data, Profile(server=steady_bus.endpoint, server_key=steady_bus.server_key, key_name="admin", client_id="admin"))
    done = subprocess.run([sys.executable, "-m", "broker.cli.main", "send", AGENT_ID, "help", "--wait",
                           "--data-dir", str(steady_bus.data.root)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert not done.stdout.lstrip().startswith("{")
    by_name = {line.split()[0]: line.split(None, 1)[1] for line in lines}
    assert set(by_name) == ALL_COMMANDS
    for name, line in by_name.items():
        assert line == summary(running.agent.handlers[name]), name


def test_every_capability_is_closed_when_the_agent_stops(running):
    """Stop the agent: each capability's close() ran once, last registered first, then the bus closed."""
    running.stop()
    assert not running.thread.is_alive()
    assert running.closed == [c.name for c in reversed(running.agent.capabilities)]
    assert sorted(running.closed) == sorted(EXPECTED)


@pytest.mark.parametrize("failing", sorted(EXPECTED))
def test_one_capability_failing_to_close_does_not_keep_the_others_open(steady_bus, tmp_path, failing):
    """Tried: each capability in turn raising from close(); every other one is still closed and the agent stops."""
    a = RunningAgent(steady_bus, tmp_path, failing=failing).start()
    a.stop()
    assert not a.thread.is_alive()
    assert sorted(a.closed) == sorted(EXPECTED)


def test_two_capabilities_cannot_claim_one_command():
    """Tried: two capabilities that both answer ``ping``: the table refuses, naming both."""
    with pytest.raises(ValueError, match="'ping' is claimed by both first and second"):
        command_table([Commands("first", {"ping": len}), Commands("second", {"ping": len})])


def test_no_agent_module_keeps_a_command_table_or_a_capability_at_module_level():
    """Tried: every module of the agent package, imported; none has a ``HANDLERS`` table or a Capability object
    of its own (capabilities are made and owned by the runner)."""
    import importlib
    import pkgutil

    import agent

    found = []
    for info in pkgutil.walk_packages(agent.__path__, "agent."):
        module = importlib.import_module(info.name)
        for attr, value in vars(module).items():
            if attr == "HANDLERS" or isinstance(value, Capability):
                found.append(f"{info.name}.{attr}")
    assert found == []


def test_no_agent_module_rebinds_its_own_globals():
    """Tried: every agent source file for a ``global`` statement (state kept at module level, not on an object)."""
    import ast
    from pathlib import Path

    import agent

    root = Path(agent.__file__).parent
    found = [f"{path.relative_to(root)}:{node.lineno}"
             for path in sorted(root.rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.Global)]
    assert found == []


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_sysinfo_report_is_the_capabilitys_periodic_work(tmp_path):
    """Tried: SystemInfo.poll on a hand-driven clock: nothing while disconnected, a report at once when
    connected, none again before the interval, one after it, and at once after a reconnection."""
    from agent.context import AgentContext, LocalPolicy
    from agent.sysinfo import SystemInfo
    from broker.core.envelope import Kind

    reports, drops, clock = [], [], Clock()
    state = {"ready": False, "generation": 0}
    info = SystemInfo("7.7.7", 60.0, ready=lambda: state["ready"], generation=lambda: state["generation"],
                       after_report=lambda: drops.append(clock.now), clock=clock)
    ctx = AgentContext(client_id=AGENT_ID, data_dir=tmp_path, policy=LocalPolicy(), access_log=lambda *a: None,
                       notify=lambda *a: None, report=lambda kind, name, data, **kw: reports.append((kind, name, data)) or "m")
    info.poll(ctx)
    assert reports == []
    state.update(ready=True, generation=1)
    info.poll(ctx)
    clock.now += 59
    info.poll(ctx)
    assert [(kind, name, data["version"]) for kind, name, data in reports] == [(Kind.EVENT, "sysinfo", "7.7.7")]
    clock.now += 1
    info.poll(ctx)
    assert len(reports) == 2
    state["generation"] = 2
    info.poll(ctx)
    assert len(reports) == 3 and drops == [1000.0, 1060.0, 1060.0]
