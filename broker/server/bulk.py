"""One command to many agents, safely: a bulk run.

An operator names the agents with a selector (:mod:`broker.core.selectors`);
the broker resolves it once, when the run starts, and keeps that list (what
was resolved is what runs, and the audit trail says so). Each target gets an
ordinary command (:mod:`broker.server.command_router`): queued durably,
delivered when its agent is online, audited with the operator and the
reason, executed at most once. The run decides *when* each is queued:

* at most ``max_parallel`` of its commands are open at once; online agents
  go first, offline ones last (their commands wait in the queue, within
  ``ttl_s``, as any command does);
* with a ``canary`` of N, the first N run alone and the run waits for all
  their outcomes before going on;
* with ``halt_failure_pct``, the run halts as soon as failed and expired
  commands pass that share of the finished ones (judged once the canary, or
  :data:`MIN_SAMPLE` commands without one, have finished);
* a cancel (its sender or an admin) stops what has not started: targets not
  yet launched are cancelled, and commands still queued for offline agents
  expire unrun. A halt does the same.

A dry run resolves and answers what would run, and changes nothing.
Per-command statuses and results of a run do not stream to its sender (5,000
of them would); the sender follows the run with ``bulk.get``, and anyone
watching ``command.<target>`` still sees each command. Runs survive a broker
restart (:mod:`broker.server.bulk_store`).
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from broker.core import selectors
from broker.core.envelope import new_id
from broker.core.vocabulary import DONE, EXPIRED, FAILED, FINAL, QUEUED
from broker.server.bulk_store import (
    CANCELLED,
    FINISHED,
    HALTED,
    HELD,
    LAUNCHED,
    RUNNING,
    SKIPPED,
    STOPPED,
    WAITING,
    BulkOptions,
    BulkRun,
    BulkStore,
    BulkTarget,
)
from broker.server.peers import Peer

if TYPE_CHECKING:
    from broker.server.command_queue import Command
    from broker.server.loop import Broker

log = logging.getLogger(__name__)

#: finished commands needed before the failure share can halt a run without a canary
MIN_SAMPLE = 5
MAX_TARGETS = 10_000


class BulkRuns:
    """The broker's bulk runs: start, pace, follow, halt, cancel (see the module docstring)."""

    def __init__(self, broker: "Broker", store: BulkStore):
        self.broker, self.store = broker, store
        self.runs: dict[str, BulkRun] = {}  # runs with a target still waiting or running (held ones too), by id
        self._by_command: dict[str, tuple[BulkRun, int]] = {}  # open command id -> its run and target position
        #: the id the next started run takes (a schedule chooses it before the run starts), else a new one
        self.next_id: str | None = None

    # -- start ------------------------------------------------------------------------
    def plan(self, selector_text: str, online: set[str]) -> tuple[str, list[BulkTarget]]:
        """The selector's text and its targets now, online agents first."""
        selector = selectors.parse(selector_text)
        found = self.broker.targets.resolve(selector, self.broker.registry, online)
        if not found:
            raise ValueError(f"no accepted agent matches {selector.text!r} (preview: ems targets {selector.text!r})")
        if len(found) > MAX_TARGETS:
            raise ValueError(f"{selector.text!r} matches {len(found):,} agents; a run takes at most {MAX_TARGETS:,}")
        ordered = sorted(found, key=lambda f: (not f.online, f.client_id))
        return selector.text, [BulkTarget(f.client_id) for f in ordered]

    def start(self, peer: Peer, name: str, args: dict, selector_text: str, options: BulkOptions, hold: bool = False,
              planned: tuple[str, list[BulkTarget]] | None = None, run_id: str = "") -> BulkRun:
        """A new run of ``name`` (``args`` already checked and stamped) on what ``selector_text`` matches (or on
        ``planned``: :meth:`plan`'s answer, command ids given to targets kept; ``run_id``: an id chosen by the caller);
        held for a second operator if ``hold`` or the approval rules say so."""
        text, targets = planned or self.plan(selector_text, set(self.broker.online))
        held = hold or self.broker.approvals.needs(name)
        run_id, self.next_id = run_id or self.next_id or new_id(), None
        run = BulkRun(run_id, peer.client_id, peer.role, peer.key, name, args, text, options, state=HELD if held else RUNNING,
                      targets=targets)
        self.store.add(run)
        self.runs[run.id] = run
        self.broker.records.audit(peer, "bulk.start", {
            "id": run.id, "name": name, "selector": text, "count": len(targets), "reason": args.get("reason", ""),
            "targets": [t.client_id for t in targets[:1000]], "options": options.__dict__, "held": held,
            "operator_name": args["operator"]["name"], "via": args["operator"]["via"]})
        if held:
            run.why = "waiting for a second operator's approval: request " + self.broker.approvals.hold_bulk(peer, run).id
            self.store.set_state(run)
        self.pump(run)
        return run

    def release(self, run_id: str, approval: dict) -> None:
        """An approved run starts."""
        run = self.runs.get(run_id)
        if run is None or run.state != HELD:
            return
        run.args = {**run.args, "approval": approval}
        run.state, run.why = RUNNING, f"approved by {approval['by']}: {approval['reason']}"
        with self.store.transaction():
            self.store.set_args(run)
            self.store.set_state(run)
        self.pump(run)

    def refuse(self, run_id: str, why: str) -> None:
        """A denied or expired held run ends with nothing started."""
        run = self.runs.get(run_id)
        if run is not None:
            self.stop(run, STOPPED, why)

    # -- pacing -------------------------------------------------------------------------
    def pump(self, run: BulkRun) -> None:
        """Queue as many of ``run``'s waiting targets as its options allow now (one commit)."""
        if run.state != RUNNING:
            return
        open_now = run.count(LAUNCHED)
        started = len(run.targets) - run.count(WAITING)
        canary = run.options.canary
        room = run.options.max_parallel - open_now
        if canary and started - open_now < canary:
            room = min(room, canary - started)
        launches = []
        with self.store.transaction():
            for position in run.waiting():
                if room <= 0:
                    break
                run.targets[position].command_id = run.targets[position].command_id or new_id()
                run.mark(position, LAUNCHED)
                self.store.set_target(run, position)
                launches.append(position)
                room -= 1
        for position in launches:
            self._launch(run, position)
        if not run.open:
            self._end(run, FINISHED, "")

    def _launch(self, run: BulkRun, position: int) -> None:
        target = run.targets[position]
        self._by_command[target.command_id] = (run, position)
        args = {**run.args, run.options.id_arg: target.command_id} if run.options.id_arg else run.args
        cmd = self.broker.command_router.launch(self._sender(run), target.command_id, target.client_id, run.name, args,
                                                time.time() + run.options.ttl_s)
        if cmd is None:  # the agent is no longer accepted (revoked since the run began)
            self._by_command.pop(target.command_id, None)
            run.mark(position, SKIPPED)
            self.store.set_target(run, position)

    def _sender(self, run: BulkRun) -> Peer:
        """Who the run's commands come from: the live connection of its sender, or its identity (gone since)."""
        return self.broker.peer_table.as_sender(run.sender, run.sender_role, run.sender_key)

    def owns(self, cmd_id: str) -> bool:
        """Whether ``cmd_id`` is an open command of a run (its statuses go to no one person)."""
        return cmd_id in self._by_command

    def on_final(self, cmd: "Command") -> None:
        """A command reached its final status: if a run's, count it, maybe halt, then pace on."""
        entry = self._by_command.pop(cmd.id, None)
        if entry is None:
            return
        run, position = entry
        if run.targets[position].status == LAUNCHED:
            run.mark(position, cmd.status)
            self.store.set_target(run, position)
        self._judge(run)
        self.pump(run)
        self._end(run, run.state, run.why)

    def _judge(self, run: BulkRun) -> None:
        limit = run.options.halt_failure_pct
        if run.state != RUNNING or limit is None:
            return
        failures = run.count(FAILED) + run.count(EXPIRED)
        finished = failures + run.count(DONE)
        if finished >= (run.options.canary or MIN_SAMPLE) and failures * 100 > limit * finished:
            self.stop(run, HALTED, f"halted: {failures} of {finished} finished commands failed (more than {limit:g} %)")

    # -- stop -----------------------------------------------------------------------------
    def stop(self, run: BulkRun, state: str, why: str) -> None:
        """Halt or cancel ``run`` (running, or held for approval): nothing more starts; commands still queued for
        offline agents expire unrun."""
        if run.state not in (RUNNING, HELD):
            return
        run.state, run.why = state, why
        unstarted = SKIPPED if state == HALTED else CANCELLED
        with self.store.transaction():
            for position in [i for i, target in enumerate(run.targets) if target.status == WAITING]:
                run.mark(position, unstarted)
                self.store.set_target(run, position)
            self.store.set_state(run)
        router = self.broker.command_router
        for position, target in enumerate(run.targets):
            cmd = self.broker.commands.get(target.command_id) if target.status == LAUNCHED else None
            if cmd is not None and cmd.status == QUEUED and cmd.target not in self.broker.online:  # an online one's is on its way
                run.mark(position, unstarted)
                self.store.set_target(run, position)
                router.expire_now(cmd, f"not run: the bulk run was {state} ({why})")
        log.info("bulk run %s %s: %s", run.id, state, why)
        self._end(run, state, why)

    def _end(self, run: BulkRun, state: str, why: str) -> None:
        """Record ``state`` for a run that was running; forget a run nothing of which is open any more."""
        if run.state in (RUNNING, HELD) and state not in (RUNNING, HELD):
            run.state, run.why = state, why
            self.store.set_state(run)
        if not run.open:
            self.runs.pop(run.id, None)

    # -- after a restart ------------------------------------------------------------------
    def restore(self) -> None:
        """Runs left running (or stopping) by the last broker: their open commands indexed, the missing ones queued."""
        for run in self.store.load((RUNNING, HALTED, STOPPED, HELD)):
            if not run.open:
                continue
            self.runs[run.id] = run
            for position, target in enumerate(run.targets):
                if target.status != LAUNCHED:
                    continue
                cmd = self.broker.commands.get(target.command_id)
                if cmd is None:  # marked launched, never queued: the broker stopped in between
                    self._launch(run, position)
                elif cmd.status in FINAL:
                    run.mark(position, cmd.status)
                    self.store.set_target(run, position)
                else:
                    self._by_command[cmd.id] = (run, position)
            self._judge(run)
            self.pump(run)
