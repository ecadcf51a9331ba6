"""The persister: the bus service that owns the SQLite store.

It subscribes to every durable topic, turns messages into store records,
commits them in batches (at most ``max_batch`` records or
``commit_latency_s`` of waiting, whichever comes first), and only *after*
the commit acknowledges agent-originated records back to their agents
(``ACK`` on ``ack.<agent>``), which then delete them from their outboxes.
A record that is never acknowledged is resent by its agent, and the store
deduplicates on (agent, message id): at least once on the wire, exactly
once in the database.

If the store cannot write (disk full, read-only file), the persister keeps
the batch, stops acknowledging, reports the problem (log + a security
event) and retries; nothing an agent still holds is lost.

It also answers the history queries the broker forwards to it
(``store.query``, ``store.capture``, ``store.stats``), subject to the
requester's role, and purges old rows on a schedule.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

from broker.client import BusClient
from broker.envelope import Envelope, ErrorCode, Kind, decode, error_body, pack_body
from broker.errors import EmsError, ProtocolError
from broker.persister.store import Record, Store, StoreUnavailable

log = logging.getLogger(__name__)

DURABLE_PREFIXES = ["event.", "log.", "security.", "audit.", "presence.", "command."]
ACK_CHUNK = 2000
DAY = 86400.0

#: which history kinds each role may read (services read everything)
READABLE: dict[str, frozenset[str]] = {
    "viewer": frozenset({"clients", "sessions", "metrics", "activity", "security", "logs", "commands"}),
}
READABLE["operator"] = READABLE["viewer"] | {"captures", "messages", "fileops"}
READABLE["admin"] = READABLE["operator"] | {"audit"}


@dataclass
class PersisterConfig:
    max_batch: int = 5000
    commit_latency_s: float = 0.05
    #: records kept in memory while the store cannot write
    max_backlog: int = 200_000
    retry_s: float = 1.0
    #: how often the broker's journal (its audit/presence/security records) is pulled
    journal_interval_s: float = 1.0
    purge_interval_s: float = 3600.0
    retention_s: dict[str, float] = field(
        default_factory=lambda: {
            "captures": 30 * DAY,
            "logs": 30 * DAY,
            "activity": 90 * DAY,
            "metrics": 30 * DAY,
            "security": 365 * DAY,
            "sessions": 365 * DAY,
        }
    )


def to_record(env: Envelope, own_id: str = "persister") -> tuple[Record, bool] | None:
    """The store record for a bus message, and whether its agent awaits an ACK.

    ``own_id`` is this persister's client id: its own security events are
    stored as the server's (no client row), like the broker's.
    """
    data = env.data()
    if not isinstance(data, dict):
        data = {"value": data}
    topic, kind, sender = env.topic, env.kind, env.sender
    if kind is Kind.EVENT and topic.startswith("audit."):
        return Record("audit", topic[6:], env.msg_id, env.header.ts, topic, data), False
    if kind is Kind.EVENT and sender:
        return Record("event", sender, env.msg_id, env.header.ts, topic, data), True
    if kind is Kind.LOG and sender:
        return Record("log", sender, env.msg_id, env.header.ts, topic, data), True
    if kind is Kind.SECURITY:
        if sender == own_id:
            return Record("security", "", env.msg_id, env.header.ts, topic, data), False
        origin = sender or "broker"
        return Record("security", origin, env.msg_id, env.header.ts, topic, data), bool(sender)
    if kind is Kind.PRESENCE:
        return Record("presence", topic.split(".", 1)[1], env.msg_id, env.header.ts, topic, data), False
    if kind is Kind.COMMAND_STATUS:
        return Record("command_status", str(data.get("target", "")), env.msg_id, env.header.ts, topic, data), False
    return None


class Persister:
    """Run the store as a bus service (one thread)."""

    def __init__(self, client: BusClient, store: Store, config: PersisterConfig | None = None):
        self.bus = client
        self.store = store
        self.config = config or PersisterConfig()
        self.batch: list[tuple[Record, bool]] = []
        self.batch_started = 0.0
        self.failing_since: float | None = None
        self.stats = defaultdict(int)
        self._next_purge = time.monotonic() + 60.0
        self._next_retry = 0.0
        self._next_journal = 0.0
        #: highest broker-journal sequence number in the current batch (acked after the commit)
        self._journal_upto = 0
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True

    def run(self) -> None:
        self.bus.connect()
        self.bus.wait_ready(60)
        self.bus.subscribe(DURABLE_PREFIXES)
        log.info("persister subscribed to %s", " ".join(DURABLE_PREFIXES))
        try:
            while not self._stopping:
                self.step()
        finally:
            if self.batch and self.failing_since is None:
                self.flush()
            self.bus.close()
            self.store.close()

    def step(self) -> None:
        """One pass: take messages, commit when due, run timers."""
        wait = self.config.commit_latency_s if self.batch else 0.5
        for env in self.bus.drain(self.config.max_batch, wait):
            self._take(env)
        now = time.monotonic()
        if self.batch and (len(self.batch) >= self.config.max_batch or now - self.batch_started >= self.config.commit_latency_s):
            if self.failing_since is None or now >= self._next_retry:
                self.flush()
        if now >= self._next_journal and not self._journal_upto and self.failing_since is None:
            self._next_journal = now + self.config.journal_interval_s
            self._pull_journal()
        if now >= self._next_purge:
            self._next_purge = now + self.config.purge_interval_s
            self._purge()

    def _take(self, env: Envelope) -> None:
        if env.kind is Kind.REQUEST:
            self._answer(env)
            return
        try:
            item = to_record(env, self.bus.client_id)
        except ProtocolError as exc:
            self.stats["undecodable"] += 1
            log.warning("dropped an undecodable %s from %s: %s", env.kind.name, env.sender or "broker", exc)
            return
        if item is None:
            return
        if self.failing_since is not None and len(self.batch) >= self.config.max_backlog:
            # the store is down and memory is full: the agent still holds it (no ACK)
            self.stats["deferred"] += 1
            return
        if not self.batch:
            self.batch_started = time.monotonic()
        self.batch.append(item)

    def flush(self) -> None:
        """Commit the batch; then, and only then, acknowledge it."""
        records = [r for r, _ in self.batch]
        try:
            result = self.store.write_batch(records)
        except StoreUnavailable as exc:
            self._store_failed(exc)
            return
        if self.failing_since is not None:
            log.warning("store writable again after %.1f s; %d records committed", time.monotonic() - self.failing_since, len(records))
            self.failing_since = None
        self.stats["committed"] += result.new
        self.stats["duplicates"] += result.duplicates
        self.stats["rejected"] += len(result.rejected)
        for record, reason in result.rejected:
            log.warning("store rejected %s %s from %s: %s", record.kind, record.msg_id, record.client_id, reason)
        durable = set(result.durable)
        rejected = {(r.client_id, r.msg_id) for r, _ in result.rejected}
        acks: dict[str, list[str]] = defaultdict(list)
        for record, wants_ack in self.batch:
            key = (record.client_id, record.msg_id)
            if wants_ack and (key in durable or key in rejected):  # a rejected record will never fit: ack so it is not resent forever
                acks[record.client_id].append(record.msg_id)
        self.batch = []
        if self._journal_upto:
            self._ack_journal()
        for client_id, ids in acks.items():
            for start in range(0, len(ids), ACK_CHUNK):
                try:
                    self.bus.send(Kind.ACK, f"ack.{client_id}", {"ids": ids[start:start + ACK_CHUNK]})
                except EmsError as exc:  # the agent resends; the store deduplicates
                    self.stats["ack_send_failed"] += 1
                    log.debug("ack to %s not sent: %s", client_id, exc)

    def _pull_journal(self) -> None:
        """Take the broker's own records that the store does not have yet."""
        try:
            entries = self.bus.request("journal.read", limit=self.config.max_batch)
        except EmsError as exc:
            log.debug("journal not read now: %s", exc)
            return
        for entry in entries:
            try:
                item = to_record(decode([b"", entry["header"], entry["body"]]), self.bus.client_id)
            except (ProtocolError, KeyError, TypeError) as exc:
                self.stats["journal_undecodable"] += 1
                log.warning("skipped an undecodable journal record %s: %s", entry.get("seq"), exc)
                item = None
            if item is not None:
                if not self.batch:
                    self.batch_started = time.monotonic()
                self.batch.append(item)
            self._journal_upto = max(self._journal_upto, int(entry["seq"]))
        if entries and not self.batch:  # nothing storable: still let the broker forget them
            self._ack_journal()

    def _ack_journal(self) -> None:
        try:
            self.bus.request("journal.ack", upto=self._journal_upto)
            self.stats["journal_acked_upto"] = self._journal_upto
        except EmsError as exc:  # read again next time; the store deduplicates
            log.debug("journal ack not sent: %s", exc)
        self._journal_upto = 0

    def _store_failed(self, exc: StoreUnavailable) -> None:
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
            log.error("store unavailable, not acknowledging anything until it recovers: %s", exc)
            try:
                self.bus.publish(Kind.SECURITY, "store", {"event": "store_unavailable", "detail": str(exc), "ts": time.time()})
            except EmsError:
                pass
        self.stats["write_failures"] += 1
        self._next_retry = now + self.config.retry_s

    def _purge(self) -> None:
        try:
            purged = self.store.purge(self.config.retention_s)
        except (StoreUnavailable, EmsError) as exc:
            log.warning("retention purge failed: %s", exc)
            return
        if any(purged.values()):
            log.info("retention purge: %s", ", ".join(f"{k}={v}" for k, v in purged.items() if v))

    # -- history queries -----------------------------------------------------
    def _answer(self, env: Envelope) -> None:
        try:
            request = env.data()
            op, args, requester = request["op"], request.get("args") or {}, request.get("requester") or {}
            result = self._query(op, args, requester)
        except (KeyError, TypeError, ValueError, ProtocolError, EmsError) as exc:
            self.bus.send(Kind.ERROR, body=error_body(ErrorCode.BAD_REQUEST, str(exc)), corr=env.msg_id)
            return
        self.bus.send(Kind.REPLY, body=pack_body(result), corr=env.msg_id)

    def _query(self, op: str, args: dict, requester: dict):
        role = requester.get("role", "")
        if op == "store.query":
            kind = str(args.get("kind", ""))
            self._check_readable(role, kind)
            params = {k: args[k] for k in ("client_id", "since", "until", "limit", "before_id", "order", "text") if k in args}
            return self.store.query(kind, **params)
        if op == "store.capture":
            self._check_readable(role, "captures")
            capture = self.store.get_capture(int(args["id"]))
            self._audit(requester, "capture.view", {"capture_id": args["id"], "client_id": capture.get("client_id") if capture else None})
            return capture
        if op == "store.stats":
            return self.store.stats(str(args.get("group_by", "kind")))
        raise ValueError(f"unknown store operation {op!r}")

    @staticmethod
    def _check_readable(role: str, kind: str) -> None:
        if role != "service" and kind not in READABLE.get(role, frozenset()):
            raise ValueError(f"role {role or '?'} may not read {kind or 'that'} history")

    def _audit(self, requester: dict, action: str, detail: dict) -> None:
        """Audit rows written by the persister itself (viewing stored data)."""
        record = Record(
            "audit",
            requester.get("client_id", "?"),
            f"persister-{time.time_ns()}",
            time.time(),
            f"audit.{requester.get('client_id', '?')}",
            {"operator": requester.get("client_id", "?"), "role": requester.get("role", ""), "action": action, "detail": detail},
        )
        if not self.batch:
            self.batch_started = time.monotonic()
        self.batch.append((record, False))
