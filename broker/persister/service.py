"""The persister: the bus service that owns the SQLite store.

It subscribes to every durable topic, turns messages into store records,
commits them in batches (at most ``max_batch`` records or
``commit_latency_s`` of waiting, whichever comes first), and only *after*
the commit acknowledges agent-originated records back to their agents
(``ACK`` on ``ack.<agent>``), which then delete them from their outboxes.
A record that is never acknowledged is resent by its agent, and the store
deduplicates on (agent, message id): at least once on the wire, exactly
once in the database. Agents' records arrive one per message or many to a
``BATCH`` (the persister says ``batches`` in its HELLO, so the broker hands
it batches whole); either way each record is acknowledged by its own id.

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
from typing import Callable

from broker.core import bounds
from broker.core.client import BusClient
from broker.core.envelope import Envelope, ErrorCode, Kind, decode, error_body, pack_body, unpack_body
from broker.core.batches import decode_batch
from broker.core.errors import EmsError, ProtocolError
from broker.persister import quarantine
from broker.persister.change_feed import ChangeFeed
from broker.persister.history_answers import Forbidden, HistoryAnswers
from broker.persister.store import Record, Store, StoreUnavailable
from broker.core.stats import LogThrottle
from broker.core.vocabulary import EPHEMERAL_RESULTS

log = logging.getLogger(__name__)

DURABLE_PREFIXES = ["event.", "log.", "security.", "audit.", "presence.", "command."]
ACK_CHUNK = 2000
#: bus messages taken at a time while a pass fills its batch
DRAIN_CHUNK = 100
DAY = 86400.0


@dataclass
class PersisterConfig:
    #: records per commit
    max_batch: int = 5000
    commit_latency_s: float = 0.05
    #: at most this many bus messages per pass, and no more once ``max_batch``
    #: records wait (an agent's BATCH holds many): one commit per pass, so
    #: heartbeats and the commit latency keep their pace
    drain_messages: int = 5000
    #: records kept in memory while the store cannot write
    max_backlog: int = 200_000
    retry_s: float = 1.0
    #: how often the broker's journal (its audit/presence/security records) is pulled
    journal_interval_s: float = 1.0
    #: how long one journal pull waits for the broker: short, so a stop (or a broker gone) is never held up
    journal_timeout_s: float = 2.0
    purge_interval_s: float = 3600.0
    retention_s: dict[str, float] = field(
        default_factory=lambda: {
            "captures": 30 * DAY,
            "logs": 30 * DAY,
            "activity": 90 * DAY,
            "metrics": 30 * DAY,
            "security": 365 * DAY,
            "sessions": 365 * DAY,
            "quarantine": 90 * DAY,
        }
    )


def to_record(env: Envelope, own_id: str = "persister") -> tuple[Record, bool] | None:
    """The store record for a bus message, and whether its agent awaits an ACK. ``own_id`` is this
    persister's client id: its own security events are stored as the server's (no client row), like the broker's."""
    return record_for(env.kind, env.topic, env.msg_id, env.header.ts, env.sender, env.data(), own_id)


def record_for(
    kind: Kind, topic: str, msg_id: str, ts: float, sender: str, data, own_id: str = "persister"
) -> tuple[Record, bool] | None:
    """The store record for one message or batched record (``data`` is its
    unpacked body), and whether its agent awaits an ACK; see :func:`to_record`."""
    if not isinstance(data, dict):
        data = {"value": data}
    if kind is Kind.EVENT and topic.startswith("audit."):
        return Record("audit", topic[6:], msg_id, ts, topic, data), False
    if kind is Kind.EVENT and sender:
        return Record("event", sender, msg_id, ts, topic, data), True
    if kind is Kind.LOG and sender:
        return Record("log", sender, msg_id, ts, topic, data), True
    if kind is Kind.SECURITY:
        if sender == own_id:
            return Record("security", "", msg_id, ts, topic, data), False
        origin = sender or "broker"
        return Record("security", origin, msg_id, ts, topic, data), bool(sender)
    if kind is Kind.PRESENCE:
        return Record("presence", topic.split(".", 1)[1], msg_id, ts, topic, data), False
    if kind is Kind.COMMAND_STATUS:
        # only the broker's (they name a command's operator); tile thumbnails: the audit trail keeps each look
        if sender or data.get("name") in EPHEMERAL_RESULTS:
            return None
        return Record("command_status", str(data.get("target", "")), msg_id, ts, topic, data), False
    return None


class Persister:
    """Run the store as a bus service (one thread).

    ``clock`` is monotonic time for the commit latency, retries, the journal
    pull and the purge schedule; ``wall_clock`` stamps the records the
    persister makes itself (its security events and audit rows). Both are
    injectable, like the broker's, so tests move time by hand.
    """

    def __init__(self, client: BusClient, store: Store, config: PersisterConfig | None = None,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time):
        self.bus = client
        self.store = store
        self.config = config or PersisterConfig()
        self.clock = clock
        self.wall_clock = wall_clock
        self.batch: list[tuple[Record, bool]] = []
        self.batch_started = 0.0
        self.failing_since: float | None = None
        self.stats = defaultdict(int)
        self._next_purge = self.clock() + 60.0
        self._next_retry = 0.0
        self._next_journal = 0.0
        #: highest broker-journal sequence number in the current batch (acked after the commit)
        self._journal_upto = 0
        self._stopping = False
        self._throttle = LogThrottle()
        #: one quarantine security event per sender per minute (the rest counted)
        self._quarantine_notice = LogThrottle(burst=1, window_s=60.0)
        self.feed = ChangeFeed(client, store, clock)  # store.changes: the sync worker's long poll
        self.answers = HistoryAnswers(store, self._audit)  # store.query, store.capture, store.stats

    def stop(self) -> None:
        self._stopping = True

    def connect(self) -> None:
        """Join the bus: say we take BATCHes whole, wait until ready, subscribe."""
        self.bus.hello_info["batches"] = True  # agents' BATCH messages come to us whole
        self.bus.connect()
        self.bus.wait_ready(60)
        self.bus.subscribe(DURABLE_PREFIXES)
        log.info("persister subscribed to %s", " ".join(DURABLE_PREFIXES))

    def run(self) -> None:
        """Connect, then :meth:`step` until :meth:`stop`; commit what is left and close."""
        self.connect()
        try:
            while not self._stopping:
                self.step()
        finally:
            if self.batch and self.failing_since is None:
                self.flush()
            self.bus.close(flush_s=self.bus.config.timing.close_flush_s)  # the last ACKs leave first
            self.store.close()

    def step(self) -> None:
        """One pass: take messages (about one commit's worth), commit when due, run timers."""
        wait = self.config.commit_latency_s if self.batch else 0.5
        taken = 0
        # while the store fails, keep taking: requests are answered, records past max_backlog deferred
        while taken < self.config.drain_messages and (
            len(self.batch) < self.config.max_batch or self.failing_since is not None
        ):
            envs = self.bus.drain(DRAIN_CHUNK, 0.0 if taken else wait)
            for env in envs:
                self._take_safely(env)
            if not envs:
                break
            taken += len(envs)
        now = self.clock()
        self.feed.tick(now)
        if self.batch and (len(self.batch) >= self.config.max_batch or now - self.batch_started >= self.config.commit_latency_s):
            if self.failing_since is None or now >= self._next_retry:
                self.flush()
        if self._stopping:
            return  # timers wait for the next run: a stop is prompt
        if now >= self._next_journal and not self._journal_upto and self.failing_since is None:
            self._next_journal = now + self.config.journal_interval_s
            self._pull_journal()
        if now >= self._next_purge:
            self._next_purge = now + self.config.purge_interval_s
            self._purge()

    def _take_safely(self, env: Envelope) -> None:
        """:meth:`_take`, where a bug is counted and logged (throttled), never fatal."""
        try:
            self._take(env)
        except Exception:  # a bug must not stop the store: the agent resends what is not acked
            self._internal_error(f"taking a {env.kind.name} from {env.sender or 'broker'}")

    def _internal_error(self, what: str) -> None:
        self.stats["internal_errors"] += 1
        if self._throttle.allow(("internal", what.split(" ", 1)[0])):
            log.exception("internal error %s", what)

    def _take(self, env: Envelope) -> None:
        if env.kind is Kind.REQUEST:
            self.feed.takes(env) or self._answer(env)  # store.changes, or the other store.* ops
            return
        if env.kind is Kind.BATCH:
            self._take_batch(env)
            return
        try:
            item = self._checked(env.kind, env.topic, env.msg_id, env.header.ts, env.sender, env.body)
        except ProtocolError as exc:
            self.stats["undecodable"] += 1
            log.warning("dropped an undecodable %s from %s: %s", env.kind.name, env.sender or "broker", exc)
            return
        if item is not None:
            self._keep(item)

    def _take_batch(self, env: Envelope) -> None:
        """The records of an agent's BATCH. A malformed record (kind, id,
        time) is refused on its own (counted, never acknowledged, so its
        agent keeps it); one whose body does not decode or breaks the ingest
        limits is quarantined and acknowledged; the rest of the batch is taken."""
        try:
            records, refused = decode_batch(env.body, env.sender)
        except ProtocolError as exc:
            self.stats["undecodable"] += 1
            log.warning("dropped an undecodable batch from %s: %s", env.sender or "broker", exc)
            return
        total = len(records) + len(refused)
        for r in records:
            try:
                item = self._checked(r.kind, r.topic, r.msg_id, r.ts, env.sender, r.body)
            except ProtocolError as exc:
                refused.append(f"message {r.msg_id}: {exc}")
                continue
            if item is not None:
                self._keep(item)
        if refused:
            self.stats["batch_records_refused"] += len(refused)
            if self._throttle.allow(("refused", env.sender)):
                log.warning("refused %d of the %d records of a batch from %s (not acknowledged: the agent keeps them); "
                            "first: %s", len(refused), total, env.sender, refused[0])

    def _checked(self, kind: Kind, topic: str, msg_id: str, ts: float, sender: str, body) -> tuple[Record, bool] | None:
        """The record for one message or batched record, or its quarantine
        record if its body does not decode or breaks the ingest limits (see
        :mod:`~broker.persister.quarantine`); either way with whether its
        agent awaits an ACK."""
        body = bytes(body)
        try:
            data = unpack_body(body)
            reason = quarantine.problem(data)
        except ProtocolError as exc:  # e.g. nested past msgpack's 1,024: resending it would never help
            data, reason = None, f"the body does not decode: {exc.detail}"
        item = record_for(kind, topic, msg_id, ts, sender, {} if reason else data, self.bus.client_id)
        if item is None or reason is None:
            return item
        record, wants_ack = item
        self.stats["quarantined"] += 1
        self._report_quarantine(record.client_id or sender or "broker", kind.name, msg_id, reason)
        data = quarantine.quarantine_data(kind.name, topic, body, reason)
        return Record(quarantine.QUARANTINE, record.client_id, msg_id, data["received"], topic, data), wants_ack

    def _report_quarantine(self, who: str, kind: str, msg_id: str, reason: str) -> None:
        """Log and publish a security event naming ``who``, at most once a minute per sender."""
        if not self._quarantine_notice.allow(who):
            return
        held = self._quarantine_notice.suppressed(who)
        log.warning("quarantined %s %s from %s: %s%s", kind, msg_id, who, reason, f" (+{held} more before)" if held else "")
        try:
            self.bus.publish(Kind.SECURITY, "quarantine", {
                "event": "quarantined", "severity": "warning", "origin": self.bus.client_id, "client_id": who,
                "detail": f"{kind} {msg_id}: {reason}", "suppressed_before": held, "ts": self.wall_clock(),
            })
        except EmsError as exc:  # the row and the counter still say it
            log.debug("quarantine event not published: %s", exc)

    def _keep(self, item: tuple[Record, bool]) -> None:
        """Add a record to the batch being gathered for the next commit."""
        if self.failing_since is not None and len(self.batch) >= self.config.max_backlog:
            # the store is down and memory is full: the agent still holds it (no ACK)
            self.stats["deferred"] += 1
            return
        if not self.batch:
            self.batch_started = self.clock()
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
            log.warning("store writable again after %.1f s; %d records committed", self.clock() - self.failing_since, len(records))
            self.failing_since = None
        self.stats["committed"] += result.new
        self.stats["duplicates"] += result.duplicates
        self.stats["rejected"] += len(result.rejected)
        self.stats["waiting"] += len(result.waiting)
        for record, reason in result.rejected:
            log.warning("store rejected %s %s from %s: %s", record.kind, record.msg_id, record.client_id, reason)
        for record, reason in result.waiting:  # not acknowledged: the agent sends it again later
            log.info("store keeps %s %s from %s for later: %s", record.kind, record.msg_id, record.client_id, reason)
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
        self.feed.committed()  # after the ACKs: agents' outboxes first

    def _pull_journal(self) -> None:
        """Take the broker's own records that the store does not have yet."""
        try:
            entries = self.bus.request("journal.read", timeout_s=self.config.journal_timeout_s, limit=self.config.max_batch)
        except EmsError as exc:
            log.debug("journal not read now: %s", exc)
            return
        for entry in entries:
            try:
                env = decode([b"", entry["header"], entry["body"]])
                item = self._checked(env.kind, env.topic, env.msg_id, env.header.ts, env.sender, env.body)
            except (ProtocolError, KeyError, TypeError) as exc:
                self.stats["journal_undecodable"] += 1
                log.warning("skipped an undecodable journal record %s: %s", entry.get("seq"), exc)
                item = None
            if item is not None:
                if not self.batch:
                    self.batch_started = self.clock()
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
        now = self.clock()
        if self.failing_since is None:
            self.failing_since = now
            log.error("store unavailable, not acknowledging anything until it recovers: %s", exc)
            try:
                self.bus.publish(Kind.SECURITY, "store", {"event": "store_unavailable", "detail": str(exc), "ts": self.wall_clock()})
            except EmsError:
                pass
        self.stats["write_failures"] += 1
        self._next_retry = now + self.config.retry_s

    def _purge(self) -> None:
        try:
            purged = self.store.purge(self.config.retention_s, now=self.wall_clock())
        except (StoreUnavailable, EmsError) as exc:
            log.warning("retention purge failed: %s", exc)
            return
        if any(purged.values()):
            log.info("retention purge: %s", ", ".join(f"{k}={v}" for k, v in purged.items() if v))

    # -- history queries -----------------------------------------------------
    def _answer(self, env: Envelope) -> None:
        """Answer a forwarded request: a REPLY, or an ERROR with the code
        that fits. Never raises: a bug becomes INTERNAL (counted, logged)."""
        try:
            request = env.data()
            if type(request) is not dict or type(request.get("args") or {}) is not dict:
                raise bounds.BoundsError("a request is a map with op and args (a map)")
            op, args, requester = request.get("op"), request.get("args") or {}, request.get("requester")
            if type(requester) is not dict:
                raise bounds.BoundsError("the broker names the requester")
            body, kind = pack_body(self.answers.answer(op, args, requester)), Kind.REPLY
        except Forbidden as exc:  # the broker checks first; this is the second line
            self._security(requester, "forbidden", str(exc))
            body, kind = error_body(ErrorCode.FORBIDDEN, str(exc)), Kind.ERROR
        except StoreUnavailable as exc:
            body, kind = error_body(ErrorCode.UNAVAILABLE, str(exc)), Kind.ERROR
        except (KeyError, TypeError, ValueError, OverflowError, ProtocolError, EmsError) as exc:
            body, kind = error_body(ErrorCode.BAD_REQUEST, str(exc)[:500]), Kind.ERROR
        except Exception:
            self._internal_error(f"answering {env.msg_id}")
            body, kind = error_body(ErrorCode.INTERNAL, "the store failed to answer; see the persister's log"), Kind.ERROR
        try:
            self.bus.send(kind, body=body, corr=env.msg_id)
        except EmsError as exc:  # the requester times out and may ask again
            self.stats["reply_send_failed"] += 1
            log.debug("answer to %s not sent: %s", env.msg_id, exc)

    def _security(self, requester: dict, event: str, detail: str) -> None:
        """A security event the persister itself saw, stored with the next commit."""
        data = {"event": event, "detail": detail, "origin": "persister", "client_id": requester.get("client_id", "?"),
                "role": requester.get("role", ""), "ts": self.wall_clock()}
        self.stats[f"security_{event}"] += 1
        log.warning("security: %s from %s (%s): %s", event, data["client_id"], data["role"], detail)
        self._keep((Record("security", "", f"persister-{time.time_ns()}", self.wall_clock(), "security.persister", data), False))

    def _audit(self, requester: dict, action: str, detail: dict) -> None:
        """Audit rows written by the persister itself (viewing stored data); the person is the requester's,
        or the one a vouching service read for (``detail``'s ``operator_name`` with the service as ``via``)."""
        vouched = bool(detail.get("via"))
        name = detail.get("operator_name") if vouched else requester.get("name")
        record = Record(
            "audit",
            requester.get("client_id", "?"),
            f"persister-{time.time_ns()}",
            self.wall_clock(),
            f"audit.{requester.get('client_id', '?')}",
            {"operator": requester.get("client_id", "?"), "role": requester.get("role", ""), "action": action, "detail": detail,
             "operator_name": name if type(name) is str else "", "via": detail["via"] if vouched else ""},
        )
        if not self.batch:
            self.batch_started = self.clock()
        self.batch.append((record, False))

