"""Playbook runs: each target goes through the steps in order, each step an ordinary command.

A run (``playbooks.run``) resolves its selector once, when it starts, and
keeps that list. Each target then goes on by itself: its next step's
condition (:mod:`broker.core.playbooks`) is judged on the last step that ran
*on that target*; a step that runs is an ordinary command
(:mod:`broker.server.command_router`: queued durably, delivered when the
agent is online, audited with the person and the reason), and its final
status and a short copy of its result are kept with the target. A false
condition skips the step; after a failed step it ends the target
(``stopped at step N``).

At most ``max_parallel`` targets are in the middle of their steps at once
(online ones first, as a bulk run); a target leaves its place when it ends.
If any step's template needs approval (or its command does, by the approval
rules), the whole run waits for a second operator first. A cancel stops
what has not started: waiting targets end cancelled, commands still queued
for offline agents expire unrun, a step already running finishes and
nothing follows it. Runs survive a broker restart
(:mod:`broker.server.playbook_runs`).
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from broker.core.envelope import new_id
from broker.core.playbooks import parse_when, short_result
from broker.core.vocabulary import DONE, FINAL, QUEUED
from broker.server.playbook_runs import (
    ACTIVE,
    CANCELLED,
    ENDED,
    FINISHED,
    HELD,
    LAUNCHED,
    NOT_RUN,
    PENDING,
    RUNNING,
    SKIPPED,
    STOPPED,
    WAITING,
    PlaybookRun,
    RunOptions,
    RunStore,
    RunTarget,
    StepState,
)

if TYPE_CHECKING:
    from broker.server.command_queue import Command
    from broker.server.loop import Broker
    from broker.server.peers import Peer

log = logging.getLogger(__name__)


class PlaybookRunner:
    """The broker's playbook runs: start, pace, judge each step per target, cancel (see the module docstring)."""

    def __init__(self, broker: "Broker", store: RunStore):
        self.broker, self.store = broker, store
        self.runs: dict[str, PlaybookRun] = {}  # runs with a target still waiting or active (held ones too), by id
        self._by_command: dict[str, tuple[PlaybookRun, int]] = {}  # open step command id -> its run and target

    # -- start ------------------------------------------------------------------------
    def start(self, peer: "Peer", playbook: str, steps: list[dict], selector_text: str, options: RunOptions,
              hold: bool) -> PlaybookRun:
        """A new run of ``steps`` (each {template, command, args stamped, when}) on what ``selector_text`` matches;
        held for a second operator if ``hold`` or the approval rules name one of its commands."""
        text, found = self.broker.bulk.plan(selector_text, set(self.broker.online))
        held = hold or any(self.broker.approvals.needs(step["command"]) for step in steps)
        first = steps[0]["args"]
        run = PlaybookRun(new_id(), playbook, peer.client_id, peer.role, peer.key, first["operator"]["name"],
                          first.get("reason", ""), text, steps, options, state=HELD if held else RUNNING,
                          targets=[RunTarget(t.client_id, steps=[StepState() for _ in steps]) for t in found])
        self.store.add(run)
        self.runs[run.id] = run
        self.broker.records.audit(peer, "playbooks.run", {
            "id": run.id, "playbook": playbook, "selector": text, "count": len(found), "reason": run.reason,
            "steps": [step["template"] for step in steps], "targets": [t.client_id for t in found[:1000]],
            "options": options.__dict__, "held": held, "operator_name": run.person, "via": first["operator"]["via"]})
        if held:
            run.why = f"held until another operator approves it (request {self.broker.approvals.hold_playbook(peer, run).id})"
            self.store.set_state(run)
        self.pump(run)
        return run

    def release(self, run_id: str, approval: dict) -> None:
        """An approved run starts; each step's command carries the approval."""
        run = self.runs.get(run_id)
        if run is None or run.state != HELD:
            return
        run.steps = [{**step, "args": {**step["args"], "approval": approval}} for step in run.steps]
        run.state, run.why = RUNNING, f"approved by {approval['by']}: {approval['reason']}"
        self.store.set_steps(run)
        self.store.set_state(run)
        self.pump(run)

    def refuse(self, run_id: str, why: str) -> None:
        """A denied or expired held run ends with nothing started."""
        run = self.runs.get(run_id)
        if run is not None:
            self.stop(run, why)

    # -- pacing and steps -----------------------------------------------------------------
    def pump(self, run: PlaybookRun) -> None:
        """Start as many waiting targets as ``max_parallel`` allows now (again while some end at once)."""
        while run.state == RUNNING and run.count(ACTIVE) < run.options.max_parallel:
            position = run.next_waiting()
            if position is None:
                break
            run.mark(position, ACTIVE)
            self._advance(run, position)
        self._end(run)

    def _advance(self, run: PlaybookRun, position: int) -> None:
        """Take an active target to its next step that runs (skipping those whose condition is false), or end it."""
        target = run.targets[position]
        while target.step < len(run.steps):
            ran = [i for i in range(target.step) if target.steps[i].status in FINAL]
            last = target.steps[ran[-1]] if ran else None
            condition = parse_when(run.steps[target.step]["when"])
            if condition.holds(True, {}) if last is None else condition.holds(last.status == DONE, last.result):
                self._launch(run, position)
                return
            if last is not None and last.status != DONE:
                self._finish(run, position, STOPPED, f"stopped at step {ran[-1] + 1} ({last.status})")
                return
            target.steps[target.step].status = SKIPPED
            target.step += 1
        self._finish(run, position, ENDED, "")

    def _launch(self, run: PlaybookRun, position: int) -> None:
        """Mark the target's step launched (kept first, see :mod:`broker.server.playbook_runs`), then queue it."""
        step = run.targets[position].steps[run.targets[position].step]
        step.status, step.command_id = LAUNCHED, new_id()
        self.store.set_target(run, position)
        self._queue(run, position)

    def _queue(self, run: PlaybookRun, position: int) -> None:
        target = run.targets[position]
        number, step = target.step + 1, target.steps[target.step]
        spec, sender = run.steps[target.step], self._sender(run)
        self._by_command[step.command_id] = (run, position)
        cmd = self.broker.command_router.launch(sender, step.command_id, target.client_id, spec["command"], spec["args"],
                                                time.time() + run.options.ttl_s)
        if cmd is None:  # the agent is no longer accepted (revoked since the run began)
            self._by_command.pop(step.command_id, None)
            step.status = NOT_RUN
            self._finish(run, position, SKIPPED, "no longer an accepted agent")
            return
        self.broker.records.audit(sender, "playbooks.step", {
            "id": run.id, "playbook": run.playbook, "step": number, "template": spec["template"], "target": target.client_id,
            "command_id": cmd.id, "reason": run.reason, "operator_name": run.person, "via": spec["args"]["operator"]["via"]})

    def _finish(self, run: PlaybookRun, position: int, state: str, why: str) -> None:
        target = run.targets[position]
        run.mark(position, state)
        target.why = why
        for step in target.steps:
            if step.status == PENDING:
                step.status = NOT_RUN
        self.store.set_target(run, position)

    def _sender(self, run: PlaybookRun) -> "Peer":
        return self.broker.peer_table.as_sender(run.sender, run.sender_role, run.sender_key)

    def owns(self, cmd_id: str) -> bool:
        """Whether ``cmd_id`` is an open step of a run (its outcome is read with ``playbooks.get``)."""
        return cmd_id in self._by_command

    def on_final(self, cmd: "Command") -> None:
        """A command reached its final status: if a run's step, keep it and take its target on."""
        entry = self._by_command.pop(cmd.id, None)
        if entry is None:
            return
        run, position = entry
        target = run.targets[position]
        step = target.steps[target.step]
        if step.status != LAUNCHED:
            return
        step.status, step.result = cmd.status, short_result(cmd.result)
        target.step += 1
        if run.state == RUNNING:
            self._advance(run, position)
        else:
            self._finish(run, position, CANCELLED, run.why)
        self.pump(run)

    # -- stop -----------------------------------------------------------------------------
    def stop(self, run: PlaybookRun, why: str) -> None:
        """Cancel ``run`` (running or held): nothing more starts; steps still queued for offline agents expire unrun."""
        if run.state not in (RUNNING, HELD):
            return
        run.state, run.why = CANCELLED, why
        for position, target in enumerate(run.targets):
            if target.state == WAITING or (target.state == ACTIVE and target.steps[target.step].status != LAUNCHED):
                self._finish(run, position, CANCELLED, why)
        self.store.set_state(run)
        for target in run.targets:
            step = target.steps[target.step] if target.state == ACTIVE else None
            cmd = self.broker.commands.get(step.command_id) if step is not None else None
            if cmd is not None and cmd.status == QUEUED:
                self.broker.command_router.expire_now(cmd, f"not run: the playbook run was cancelled ({why})")
        log.info("playbook run %s cancelled: %s", run.id, why)
        self._end(run)

    def _end(self, run: PlaybookRun) -> None:
        """A running run nothing of which is open is finished; a run nothing of which is open is forgotten."""
        if run.open:
            return
        if run.state == RUNNING:
            run.state, run.why = FINISHED, ", ".join(f"{n} {state}" for state, n in sorted(run.counts().items()))
            self.store.set_state(run)
        self.runs.pop(run.id, None)

    # -- after a restart ------------------------------------------------------------------
    def restore(self) -> None:
        """Runs the last broker left open: their open steps indexed, steps marked launched but never queued queued."""
        for run in self.store.load((RUNNING, CANCELLED, HELD)):
            if not run.open:
                continue
            self.runs[run.id] = run
            for position, target in enumerate(run.targets):
                if target.state == ACTIVE:
                    self._restore_target(run, position)
            self.pump(run)

    def _restore_target(self, run: PlaybookRun, position: int) -> None:
        step = run.targets[position].steps[run.targets[position].step]
        cmd = self.broker.commands.get(step.command_id) if step.status == LAUNCHED else None
        if run.state != RUNNING and cmd is None:  # cancelled (or held) before this step was queued
            self._finish(run, position, CANCELLED, run.why)
        elif step.status != LAUNCHED:  # made active, its step not launched yet: the broker stopped in between
            self._advance(run, position)
        elif cmd is None:  # marked launched, never queued: the broker stopped in between
            self._queue(run, position)
        else:
            self._by_command[cmd.id] = (run, position)
            if cmd.status in FINAL:
                self.on_final(cmd)
