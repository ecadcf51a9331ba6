"""The agent's main loop: enrol, heartbeat, report, run commands.

One thread owns the bus client: it polls the bus, gives each capability
its periodic turn (the ``sysinfo`` report among them), pumps the outbox, and hands commands to
:class:`~agent.lanes.CommandLanes` (worker threads) so that a long command
never stops heartbeats. Each command id runs at most once.

What the agent can do is its list of capabilities (:mod:`agent.capability`),
objects the runner owns: their commands make one table (``help`` lists it),
their ``poll`` runs on every pass of the loop and their ``close`` once when
the agent stops.
"""
from __future__ import annotations

import logging
import platform
import socket
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from agent import identity, log_forward, sysinfo
from agent.accesses import LIVE_VIEW, REMOTE_CONTROL, AccessRegistry
from agent.capability import Capability, command_table
from agent.chat import ChatInbox
from agent.commands import Basics
from agent.control import RemoteControl
from agent.files import Files
from agent.indicator import Indicator
from agent.notice import Notifier, announce
from agent.power import Power
from agent.screen.handlers import Screen
from agent.access_log import AccessLog
from agent.activity import ActivityMonitor
from agent.context import AgentContext, CommandError, LocalPolicy, operator_fields
from agent.delivery import DurableSender
from agent.executed import ExecutedCommands
from agent.lanes import CommandLanes
from agent.outbox import Outbox
from broker.core import keys as keyfiles
from broker.core.client import BusClient
from broker.core.config import ClientConfig
from broker.core.envelope import Envelope, Kind
from broker.core.vocabulary import EXPIRED

log = logging.getLogger(__name__)

AGENT_VERSION = "0.1.0"


@dataclass
class AgentConfig:
    """The agent's local configuration (what the server cannot change)."""

    data_dir: Path
    client: ClientConfig
    client_id: str = ""
    label: str = ""
    sysinfo_interval_s: float = 60.0
    enrol_token: str = ""
    policy: LocalPolicy = field(default_factory=LocalPolicy)
    #: keep executed command ids this long (longer than any command TTL)
    executed_retention_s: float = 30 * 24 * 3600.0
    #: where the access log is kept (None: the data dir); ``ems agent`` passes
    #: :func:`agent.access_location.access_dir_for_agent`
    access_dir: Path | None = None


class Agent:
    def __init__(self, config: AgentConfig):
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.client_id = config.client_id or identity.client_id(config.data_dir)  # before the keys: see identity
        self.keypair = keyfiles.load_or_create(config.data_dir / "keys", "agent")
        self.access_log = AccessLog((config.access_dir or config.data_dir) / "access.log")
        self.access_log.take_over(config.data_dir / "access.log")  # an older agent's lines: no history lost
        self.executed = ExecutedCommands(config.data_dir / "agent.db")
        hello = {
            "client_id": self.client_id,
            "label": config.label,
            "hostname": socket.gethostname(),
            "version": AGENT_VERSION,
            "os": platform.system(),
            "user": sysinfo.logged_in_user(),
            **identity.fingerprints(config.data_dir),
        }
        if config.enrol_token:
            hello["token"] = config.enrol_token
        self.bus = BusClient(config.client, self.keypair, hello=hello)
        self.outbox = Outbox(config.data_dir / "outbox.db")
        self.sender = DurableSender(self.bus, self.outbox)
        self.log_forwarder = log_forward.install(self.sender.report, config.policy)
        self.lanes = CommandLanes()
        self.notifier = Notifier(self.access_log.record)
        self.context = AgentContext(
            client_id=self.client_id,
            data_dir=config.data_dir,
            policy=config.policy,
            access_log=self.access_log.record,
            notify=self.notifier.notify,
            report=self.sender.report,
            accesses=AccessRegistry(config.policy.series_idle_s),
        )
        self.activity = ActivityMonitor(config.policy, self.sender.report)
        self.access_log.on_entry = self.activity.access
        self.chat = ChatInbox()
        self.control = RemoteControl()
        self.screen = Screen.on_bus(self.context, self.bus)
        self.indicator = Indicator(self.context.accesses, config.policy, log_path=self.access_log.path)
        self.indicator.on_end(REMOTE_CONTROL, self.control.end_by_user)
        self.indicator.on_end(LIVE_VIEW, self.screen.end_live_by_user)
        self.capabilities: list[Capability] = [
            Basics(lambda: self.handlers),
            self.indicator,  # closes last: the others end their accesses first
            sysinfo.SystemInfo(AGENT_VERSION, config.sysinfo_interval_s, ready=lambda: self.bus.ready,
                               generation=lambda: self.bus.generation, after_report=self._report_drops),
            Files(),
            Power(),
            self.control,
            self.chat,
            self.screen,
            self.activity,
        ]
        self.handlers = command_table(self.capabilities)
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True

    def run(self) -> None:
        self.access_log.record("agent started", f"version {AGENT_VERSION}")
        announce(self.context, "start", "EMS agent started", start_notice_text(self.config.policy))
        self.activity.started(AGENT_VERSION)
        self.executed.purge_older_than(self.config.executed_retention_s)
        self.bus.connect()
        try:
            while not self._stopping:
                env = self.bus.poll(self._poll_timeout(0.25))
                if env is not None:
                    self._dispatch(env)
                for cmd_id, name, sender, result in self.lanes.finished():
                    self._finish(cmd_id, name, sender, result)
                for capability in self.capabilities:
                    capability.poll(self.context)  # sysinfo reports, idle control sessions end, chat receipts, live-view frames
                self.sender.pump()
        finally:
            self._close_capabilities()
            self.notifier.close()
            self.access_log.record("agent stopped")
            self.sender.pump()  # agent.stop leaves now if it can (else with the outbox at the next start)
            self.lanes.shutdown()
            log_forward.uninstall(self.log_forwarder)
            self.bus.close(flush_s=self.bus.config.timing.close_flush_s)  # last results and statuses leave first
            self.executed.close()
            self.outbox.close()

    def _poll_timeout(self, idle_s: float) -> float:
        """How long the loop may block in ``bus.poll`` without delaying any capability's periodic work."""
        waits = [w for w in (c.wait_s() for c in self.capabilities) if w is not None]
        return min([idle_s, *waits])

    def _close_capabilities(self) -> None:
        """Close every capability, last first; one that fails to close does not keep the others open."""
        for capability in reversed(self.capabilities):
            try:
                capability.close(self.context)
            except Exception:
                log.exception("closing the %s capability failed", capability.name)

    def _report_drops(self) -> None:
        """One security event for whatever the full-outbox policy dropped (after each sysinfo report)."""
        dropped = {k: v for k, v in self.outbox.take_drop_report().items() if v}
        if dropped:
            self.sender.report(Kind.SECURITY, "outbox_overflow", {"event": "outbox_overflow", "dropped": dropped})

    def _dispatch(self, env: Envelope) -> None:
        if env.kind is Kind.COMMAND:
            self._run_command(env)
        else:
            self.sender.handle(env)

    def _run_command(self, env: Envelope) -> None:
        cmd_id = env.msg_id
        try:
            data = env.data()
            name, args = data["name"], dict(data.get("args") or {})
        except Exception as exc:
            self._answer(cmd_id, {"ok": False, "error": f"malformed command: {exc}"})
            return
        expires = env.header.expires
        if expires is not None and expires < time.time():
            self.bus.send(Kind.COMMAND_STATUS, data={"status": EXPIRED, "error": "arrived after its expiry"}, corr=cmd_id)
            return
        if not self.executed.claim(cmd_id, name):
            previous = self.executed.result_of(cmd_id)
            log.info("command %s (%s) was run before: resending its result", cmd_id, name)
            self._answer(cmd_id, previous)
            return
        self.bus.send(Kind.COMMAND_STATUS, data={"status": "delivered"}, corr=cmd_id)
        handler = self.handlers.get(name)
        if handler is None:
            error = f"unknown command {name!r}; this agent knows: {', '.join(sorted(self.handlers))}"
            self._finish(cmd_id, name, env.sender, {"ok": False, "error": error})
            return
        stamp = args.pop("operator", None)  # set by the broker: the person behind the command, for notices and the log
        context = replace(self.context, operator=env.sender, command_id=cmd_id, **operator_fields(stamp))
        self.lanes.submit(cmd_id, name, env.sender, lambda: run_handler(handler, args, context, cmd_id, name))

    def _finish(self, cmd_id: str, name: str, sender: str, result: dict) -> None:
        self.executed.finish(cmd_id, result)
        log.info("command %s (%s) by %s: %s", cmd_id, name, sender, "ok" if result["ok"] else result["error"])
        self._answer(cmd_id, result)

    def _answer(self, cmd_id: str, result: dict) -> None:
        try:
            self.bus.send(Kind.RESULT, data=result, corr=cmd_id)
        except Exception as exc:
            log.warning("could not send the result of %s now (%s); the broker will re-deliver", cmd_id, exc)


#: the start notice: what EMS is here, what the employee is told, and where to read what IT did
START_NOTICE = ("Your IT team can support this computer remotely. Each time someone views your screen, takes control "
                "or copies files, you are told who and why, and an EMS bar (or tray icon) stays on screen while it lasts. "
                "Everything IT did: the bar's Access log button, or the command ems agent access-log.")


def start_notice_text(policy: LocalPolicy) -> str:
    """What the employee is told when the agent starts (and whether application usage is recorded)."""
    text = START_NOTICE
    if policy.window_usage:
        text += " This computer's policy also records which application is in front (its name, never what you type)."
    return text


def run_handler(handler, args: dict, context: AgentContext, cmd_id: str, name: str) -> dict:
    """Run one handler (on a lane thread); any failure becomes a ``failed`` result."""
    try:
        return {"ok": True, "output": handler(args, context)}
    except CommandError as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:
        log.exception("command %s (%s) failed", cmd_id, name)
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
