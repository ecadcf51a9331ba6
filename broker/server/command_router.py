"""Commands through the broker: accept, deliver, track, report, expire.

:class:`CommandRouter` takes an operator's COMMAND for an accepted agent,
keeps it in the durable :class:`~broker.server.command_queue.CommandQueue`,
delivers it while the agent is online, relays the agent's COMMAND_STATUS
and RESULT (only for commands addressed to it) and tells ``command.<target>``
subscribers of every status change. Its sender gets the answer that makes
the command durable for it (``queued``, or where a retried id stands) and
the RESULT; the statuses in between (``sent``, ``delivered``, the final one
before the RESULT) only if its COMMAND asked for them (``statuses: true``:
tools that show progress). Nothing is packed for a status nobody takes. Its writes are
committed with the broker's pass and what it says waits for that commit
(:mod:`broker.server.group_commit`); delivering and relaying a result, whose
bookkeeping depends on the send, wait as a whole.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from broker.core import bounds, vocabulary
from broker.core.errors import Refused
from broker.server import operators
from broker.server.command_queue import (
    DELIVERED,
    DONE,
    EPHEMERAL_RESULTS,
    EXPIRED,
    FAILED,
    FINAL,
    SENT,
    TRANSIENT_ARGS,
    TRANSIENT_TTL_S,
    Command,
)
from broker.core.envelope import ErrorCode, Header, Kind, pack_body, pack_header

if TYPE_CHECKING:
    from broker.server.peers import Peer
    from broker.server.loop import Broker

_EMPTY = b""
#: what an agent's RESULT may hold to be relayed and kept: the store's depth and
#: integer rules; sizes are bounded by the message size already
RESULT_LIMITS = bounds.TreeLimits(max_items=1_000_000, max_total_bytes=1 << 30, max_str_chars=1 << 30, max_bytes_len=1 << 30)


class CommandRouter:
    """Operators' commands to agents, and their outcomes back."""

    def __init__(self, broker: "Broker"):
        self.broker = broker
        self.commands = broker.commands
        self.counters = broker.counters
        table = broker.peer_table
        self.conns, self.subscribers, self.online = table.conns, table.subscribers, table.online

    def on_command(self, peer: "Peer", header: Header, frames) -> None:
        """COMMAND from an operator: checked, queued (a retried id answers
        its status again), journaled, audited, delivered if the agent is on."""
        broker = self.broker
        data = broker.read_body(peer, header, frames)
        if data is None:
            return
        target, name, args, statuses = data.get("target"), data.get("name"), data.get("args", {}), data.get("statuses", False)
        if not isinstance(target, str) or not isinstance(name, str) or not 0 < len(name) <= 64 or not isinstance(args, dict) \
                or type(statuses) is not bool:
            broker.refuse(peer, header, ErrorCode.BAD_REQUEST,
                          "command needs target, name (strings), args (map) and, if given, statuses (true or false)")
            return
        problem = bounds.tree_problem(args)  # else its audit record would be quarantined by the store, not kept
        if problem is not None:
            broker.refuse(peer, header, ErrorCode.BAD_REQUEST, f"command args: {problem}")
            return
        try:
            args = self.stamped(peer, name, args)
        except Refused as refusal:
            broker.send_error(peer.rid, header, refusal.code, refusal.message)
            return
        if not self.accepted_agent(target):
            broker.send_error(peer.rid, header, ErrorCode.UNKNOWN_TARGET, f"no accepted agent {target!r}")
            return
        now = time.time()
        expires = self._expiry(header, name, now)
        if expires <= now:
            broker.send_error(peer.rid, header, ErrorCode.EXPIRED, "expiry is in the past")
            return
        if self.broker.approvals.needs(name) and self.commands.get(header.msg_id) is None:
            if self.broker.approvals.book.get(header.msg_id) is None:  # a retry of a held command is held already
                self.broker.approvals.hold_command(peer, header.msg_id, target, name, args, expires, statuses)
            return
        if self.launch(peer, header.msg_id, target, name, args, expires, statuses) is None:  # a retry after a reconnect, or a clash
            existing = self.commands.get(header.msg_id)
            if existing is None or existing.sender != peer.client_id:
                broker.send_error(peer.rid, header, ErrorCode.BAD_REQUEST, "command id already used")
            else:
                existing.statuses_wanted = existing.statuses_wanted or statuses
                self.notify_status(existing, answer=True)

    def accepted_agent(self, target: str) -> bool:
        record = self.broker.registry.accepted_by_client(target)
        return record is not None and record.role == "agent"

    def launch(self, peer: "Peer", cmd_id: str, target: str, name: str, args: dict, expires: float,
               statuses: bool = False) -> Command | None:
        """Queue a checked command (``args`` stamped) from ``peer``: kept, journaled, audited, its status told,
        delivered if the agent is on. ``statuses``: its sender is told every status change, not only the
        answer and the result. None if ``cmd_id`` exists already or ``target`` is no accepted agent."""
        if not self.accepted_agent(target):
            return None
        cmd = self.commands.add(cmd_id, target, peer.client_id, name, args, expires)
        if cmd is None:
            return None
        cmd.statuses_wanted = statuses
        broker = self.broker
        self.counters["commands"] += 1
        self._journal_command(cmd)
        if name not in TRANSIENT_ARGS:  # remote input is audited as its session (control.open/close), not per event
            operator = args["operator"]
            broker.records.audit(peer, "command", {"id": cmd.id, "target": target, "name": name, "reason": args.get("reason", ""),
                                                   "operator_name": operator["name"], "operator_id": operator["id"],
                                                   "via": operator["via"], **({"approved_by": args["approval"]} if "approval" in args else {})})
        self.notify_status(cmd, answer=True)
        if target in self.online:
            self.deliver(cmd)
        return cmd

    def stamped(self, peer: "Peer", name: str, args: dict) -> dict:
        """``args`` with a kept reason and the broker's operator stamp (:mod:`broker.server.operators`).

        Raises :class:`Refused`: REASON_REQUIRED for an access command without a usable reason, FORBIDDEN
        (a security event) for a bridge that names no person."""
        broker = self.broker
        problem = vocabulary.reason_problem(name, args)
        if problem is not None:
            raise Refused(ErrorCode.REASON_REQUIRED, problem)
        record = broker.registry.get(peer.key)
        operator, problem = operators.stamp(peer.role, peer.client_id, record.name if record else "", args)
        if not operator:
            broker.records.security(peer, "malformed", f"FORBIDDEN: {problem}")
            raise Refused(ErrorCode.FORBIDDEN, problem)
        if problem:
            broker.records.security(peer, "impersonation", problem)
        args = {**args, "operator": operator}
        if isinstance(args.get("reason"), str):
            args["reason"] = vocabulary.clean_reason(args["reason"])
        return args

    def _expiry(self, header: Header, name: str, now: float) -> float:
        """When a new command expires: as asked, else the configured TTL;
        remote input is for now or never."""
        expires = header.expires if header.expires is not None else now + self.broker.config.command_ttl_s
        if name in TRANSIENT_ARGS:
            expires = min(expires, now + TRANSIENT_TTL_S)
        return expires

    def _journal_command(self, cmd: Command) -> None:
        """Tell the store durably who sent a new command to whom (no args): the
        store names the operator of what the agent reports about it from
        this, never from the agent's word. Remote input and tile thumbnails
        lead to no such report and are left out."""
        if cmd.name in TRANSIENT_ARGS or cmd.name in EPHEMERAL_RESULTS:
            return
        topic = f"command.{cmd.target}"
        body = {"id": cmd.id, "target": cmd.target, "name": cmd.name, "status": cmd.status, "operator": cmd.sender,
                "created": cmd.created}
        self.broker.journal.append(int(Kind.COMMAND_STATUS), topic, pack_header(Kind.COMMAND_STATUS, topic, corr=cmd.id),
                                   pack_body(body))

    def deliver(self, cmd: Command) -> None:
        """Send a command to its agent's connection, if any; SENT when it went (after the pass's commit)."""
        self.broker.group.after_commit(self._deliver_now, cmd)

    def _deliver_now(self, cmd: Command) -> None:
        if cmd.status in FINAL:  # ended while it waited for the commit
            return
        rids = self.conns.get(cmd.target)
        if not rids:
            return
        header = pack_header(Kind.COMMAND, f"command.{cmd.target}", msg_id=cmd.id, expires=cmd.expires)
        if self.broker.send(rids[0], cmd.sender.encode(), header, pack_body({"name": cmd.name, "args": cmd.args})):
            if self.commands.advance(cmd, SENT):
                self.notify_status(cmd)

    def _agent_report(self, peer: "Peer", header: Header, frames) -> tuple[dict, Command] | None:
        """The body of an agent's status or result and the command it is about,
        if that command is addressed to this agent; else refused (None)."""
        data = self.broker.read_body(peer, header, frames)
        if data is None:
            return None
        cmd = self.commands.get(header.corr or "")
        if cmd is None or cmd.target != peer.client_id:
            self.broker.records.security(peer, "foreign_command", f"{header.kind.name} for command {header.corr!r} not addressed to it")
            self.broker.send_error(peer.rid, header, ErrorCode.FORBIDDEN, "not your command")
            return None
        return data, cmd

    def on_command_status(self, peer: "Peer", header: Header, frames) -> None:
        """COMMAND_STATUS from the agent: delivered or expired."""
        report = self._agent_report(peer, header, frames)
        if report is None:
            return
        data, cmd = report
        status = data.get("status")
        if status not in (DELIVERED, EXPIRED):
            self.broker.refuse(peer, header, ErrorCode.BAD_REQUEST, "agents report delivered or expired")
            return
        if self.commands.advance(cmd, status, {"error": data.get("error", "")} if status == EXPIRED else None):
            self.notify_status(cmd)
            if status in FINAL:
                self.send_result(cmd)
                self.broker.operations.on_final(cmd)

    def on_result(self, peer: "Peer", header: Header, frames) -> None:
        """RESULT from the agent: final status, relayed to the sender, kept."""
        report = self._agent_report(peer, header, frames)
        if report is None:
            return
        data, cmd = report
        if cmd.status in FINAL:  # a repeated result (re-delivery after a restart)
            if not cmd.result_sent:
                self.send_result(cmd)
            return
        # forward first, then commit status + result + "forwarded" at once: if the
        # broker dies in between, the command is re-delivered and the agent
        # answers again from its record of executed commands
        problem = bounds.tree_problem(data, RESULT_LIMITS)
        if problem:  # nothing the operator's tools would choke on is relayed or kept
            self.broker.records.security(peer, "malformed", f"result of command {cmd.id} refused: {problem}")
            data = {"ok": False, "error": f"the agent's result was refused by the broker: {problem}"}
        status = DONE if data.get("ok") else FAILED
        self.notify_status(cmd, status)  # the final status first, then the result it ends with
        # the agent has run it and keeps its answer: this write promises nothing (group_commit.py)
        if self.broker.group.holding:  # messages wait for this pass's commit: the result follows them
            self.commands.advance(cmd, status, data, promise=False)
            self.send_result(cmd)
        else:
            forwarded = self._forward_result(cmd, status, data)
            self.commands.advance(cmd, status, data, result_sent=forwarded, promise=False)
        self.broker.operations.on_final(cmd)

    def notify_status(self, cmd: Command, status: str | None = None, answer: bool = False) -> None:
        """Tell ``command.<target>`` subscribers of a status (the one given, or the recorded one), and
        its sender if this is the ``answer`` to its COMMAND or it asked for every status."""
        topic = f"command.{cmd.target}"
        own = () if not (answer or cmd.statuses_wanted) or self.broker.operations.owns(cmd.id) \
            else self.conns.get(cmd.sender, ())  # a run's: bulk.get
        fanout = self.broker.fanout
        if not own and not fanout.subscribed(topic):
            return
        body = pack_body({"id": cmd.id, "target": cmd.target, "name": cmd.name, "status": status or cmd.status,
                          "operator": cmd.sender, "updated": time.time() if status else cmd.updated})
        header = pack_header(Kind.COMMAND_STATUS, topic, corr=cmd.id)
        fits, subscribers = self.broker.flow.fits, self.subscribers
        for rid in list(own):
            if rid not in subscribers or not topic.startswith(subscribers[rid].prefixes) \
                    or not fits(rid, len(header) + len(body)):  # its own copy, even when its live feed is dropped
                self.broker.send(rid, _EMPTY, header, body)
        fanout.publish(topic, _EMPTY, header, body)

    def send_result(self, cmd: Command) -> None:
        """Send a final outcome to its sender and remember that it went (after the pass's commit)."""
        if self.broker.operations.owns(cmd.id):  # decided now: the run lets go of its commands once final
            self.commands.mark_result_sent(cmd)
        else:
            self.broker.group.after_commit(self._send_result_now, cmd)

    def _send_result_now(self, cmd: Command) -> None:
        if cmd.result_sent:
            return
        if self._forward_result(cmd):
            self.commands.mark_result_sent(cmd)

    def _forward_result(self, cmd: Command, status: str | None = None, result=None) -> bool:
        """RESULT to every live connection of the command's sender (the
        outcome given, or the one recorded)."""
        if self.broker.operations.owns(cmd.id):
            return True  # a bulk run's outcome is read with bulk.get, not streamed to its sender
        rids = self.conns.get(cmd.sender)
        if not rids:
            return False
        outcome = {"status": status or cmd.status, "result": cmd.result if result is None else result}
        body = pack_body({"id": cmd.id, "target": cmd.target, "name": cmd.name, **outcome})
        header = pack_header(Kind.RESULT, f"command.{cmd.target}", corr=cmd.id)
        sent = [self.broker.send(rid, cmd.target.encode(), header, body) for rid in list(rids)]
        return any(sent)

    def expire_due(self, wall: float) -> None:
        """Expire commands past their time: final status and result to the sender."""
        for cmd in self.commands.due_to_expire(wall):
            self.expire_now(cmd, "expired before the agent ran it")

    def expire_now(self, cmd: Command, why: str) -> None:
        """End an open command unrun (its time is up, or its bulk run stopped): status and result to the sender."""
        if self.commands.advance(cmd, EXPIRED, {"error": why}):
            self.counters["commands_expired"] += 1
            self.notify_status(cmd)
            self.send_result(cmd)
            self.broker.operations.on_final(cmd)
