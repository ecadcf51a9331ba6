"""The agent's main loop: enrol, heartbeat, report, run commands.

One thread owns the bus client: it polls the bus, publishes ``sysinfo``
periodically, pumps the outbox, and hands commands to
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

from agent import files, identity, log_forward, power, sysinfo
from agent.capability import Capability, Commands, command_table
from agent.chat import ChatInbox
from agent.commands import Basics
from agent.control import RemoteControl
from agent.notice import Notifier, announce
from agent.screen.handlers import Screen
from agent.access_log import AccessLog
from agent.context import AgentContext, CommandError, LocalPolicy, operator_fields
from agent.delivery import DurableSender
from agent.executed import ExecutedCommands
from agent.lanes import CommandLanes
from agent.outbox import Outbox, OutboxError
from broker import keys as keyfiles
from broker.client import BusClient
from broker.config import ClientConfig
from broker.envelope import Envelope, Kind
from broker.vocabulary import EXPIRED

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


class Agent:
    def __init__(self, config: AgentConfig):
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.keypair = keyfiles.load_or_create(config.data_dir / "keys", "agent")
        self.client_id = config.client_id or identity.client_id()
        self.access_log = AccessLog(config.data_dir / "access.log")
        self.executed = ExecutedCommands(config.data_dir / "agent.db")
        hello = {
            "client_id": self.client_id,
            "label": config.label,
            "hostname": socket.gethostname(),
            "version": AGENT_VERSION,
            "os": platform.system(),
            "user": sysinfo.logged_in_user(),
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
        )
        self.chat = ChatInbox()
        self.control = RemoteControl()
        self.screen = Screen.on_bus(self.context, self.bus)
        self.capabilities: list[Capability] = [
            Basics(lambda: self.handlers),
            Commands("sysinfo", sysinfo.HANDLERS),
            Commands("files", files.HANDLERS),
            Commands("power", power.HANDLERS),
            self.control,
            self.chat,
            self.screen,
        ]
        self.handlers = command_table(self.capabilities)
        self._stopping = False
        self._next_sysinfo = 0.0
        self._generation = 0

    def stop(self) -> None:
        self._stopping = True

    def run(self) -> None:
        announce(self.context, "start", "EMS agent started",
                 f"EMS agent {AGENT_VERSION} is running; this computer can be monitored by your IT team "
                 f"(what was done: ems agent access-log)")
        self.executed.purge_older_than(self.config.executed_retention_s)
        self.bus.connect()
        try:
            while not self._stopping:
                env = self.bus.poll(self._poll_timeout(0.25))
                if self.bus.generation != self._generation:
                    self._generation = self.bus.generation
                    self._next_sysinfo = 0.0  # report right after (re)connecting
                if env is not None:
                    self._dispatch(env)
                for cmd_id, name, sender, result in self.lanes.finished():
                    self._finish(cmd_id, name, sender, result)
                for capability in self.capabilities:
                    capability.poll(self.context)  # idle control sessions end, chat receipts, live-view frames
                if self.bus.ready and time.monotonic() >= self._next_sysinfo:
                    self._publish_sysinfo()
                self.sender.pump()
        finally:
            self._close_capabilities()
            self.notifier.close()
            self.access_log.record("agent stopped")
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

    def _publish_sysinfo(self) -> None:
        self._next_sysinfo = time.monotonic() + self.config.sysinfo_interval_s
        try:
            self.sender.report(Kind.EVENT, "sysinfo", sysinfo.collect(AGENT_VERSION))
        except OutboxError as exc:  # reporting must never stop the agent
            log.warning("could not keep a sysinfo report: %s", exc)
        self._report_drops()

    def _report_drops(self) -> None:
        """One security event for whatever the full-outbox policy dropped."""
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


def run_handler(handler, args: dict, context: AgentContext, cmd_id: str, name: str) -> dict:
    """Run one handler (on a lane thread); any failure becomes a ``failed`` result."""
    try:
        return {"ok": True, "output": handler(args, context)}
    except CommandError as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:
        log.exception("command %s (%s) failed", cmd_id, name)
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
