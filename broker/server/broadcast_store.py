"""Broadcasts at rest: one chat message to many agents (:mod:`broker.server.broadcasts`), kept in ``broker.db``.

``broadcasts`` holds a broadcast: who sent it (key and person), why, its
text (sealed like the command queue's arguments, :mod:`broker.core.sealing`),
the selector, the bulk run that carries it and its state.
``broadcast_recipients`` holds each agent it went to: the message id the
agent shows it under (the id of the ``chat.send`` command that carries it),
its status and when it was delivered and read.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from broker.core.sealing import aad
from broker.core.vocabulary import DELIVERED, FAILED
from broker.server.broker_tables import BrokerTables
from broker.server.bulk_store import CANCELLED

#: a recipient's statuses: ``pending`` (not sent yet), ``queued`` (its command waits or runs), ``sent`` (the agent took
#: it, not shown yet), ``delivered`` (on screen, or in the access log), ``read`` (the user pressed Read),
#: ``failed`` (its command failed or expired), ``cancelled`` (the broadcast was cancelled before it went). The
#: command statuses' words are broker.core.vocabulary's, "cancelled" a bulk target's; these two are new:
PENDING, READ = "pending", "read"
#: statuses that only a receipt from the agent sets, in order
RECEIPTS = (DELIVERED, READ)
#: a broadcast's states (the run's are finer: ``bulk.get``)
OPEN, ENDED = "open", "cancelled"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS broadcasts (
    id          TEXT PRIMARY KEY,
    run_id      TEXT NOT NULL,
    sender      TEXT NOT NULL,
    person      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    text        BLOB NOT NULL,
    selector    TEXT NOT NULL,
    state       TEXT NOT NULL,
    created     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS broadcast_recipients (
    broadcast_id TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    command_id   TEXT NOT NULL,
    status       TEXT NOT NULL,
    delivered_ts REAL,
    read_ts      REAL,
    PRIMARY KEY (broadcast_id, client_id)
);
CREATE INDEX IF NOT EXISTS broadcasts_created ON broadcasts (created);
CREATE INDEX IF NOT EXISTS broadcast_recipients_open ON broadcast_recipients (status);
"""


@dataclass
class Recipient:
    client_id: str
    message_id: str
    command_id: str
    status: str = PENDING
    delivered_ts: float | None = None
    read_ts: float | None = None


@dataclass
class Broadcast:
    id: str
    run_id: str
    sender: str
    person: str
    reason: str
    text: str
    selector: str
    state: str = OPEN
    created: float = field(default_factory=time.time)
    recipients: list[Recipient] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.recipients:
            out[r.status] = out.get(r.status, 0) + 1
        return out


class BroadcastStore(BrokerTables):
    """Broadcasts and their recipients in ``broker.db`` (the broker's only writer of them)."""

    SCHEMA = _SCHEMA

    def add(self, b: Broadcast) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO broadcasts (id, run_id, sender, person, reason, text, selector, state, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (b.id, b.run_id, b.sender, b.person, b.reason, self._keyring.encrypt(b.text.encode(), aad("broadcasts", "text", b.id)),
                 b.selector, b.state, b.created))
            self._db.executemany(
                "INSERT INTO broadcast_recipients (broadcast_id, client_id, message_id, command_id, status) VALUES (?, ?, ?, ?, ?)",
                [(b.id, r.client_id, r.message_id, r.command_id, r.status) for r in b.recipients])

    def set_state(self, b: Broadcast) -> None:
        with self._db:
            self._db.execute("UPDATE broadcasts SET state = ? WHERE id = ?", (b.state, b.id))

    def set_statuses(self, broadcast_id: str, recipients: list[Recipient]) -> None:
        """Keep the statuses (and times) of ``recipients`` of one broadcast, in one commit."""
        with self._db:
            self._db.executemany(
                "UPDATE broadcast_recipients SET status = ?, delivered_ts = ?, read_ts = ? WHERE broadcast_id = ? AND client_id = ?",
                [(r.status, r.delivered_ts, r.read_ts, broadcast_id, r.client_id) for r in recipients])

    def get(self, broadcast_id: str) -> Broadcast | None:
        row = self._db.execute("SELECT * FROM broadcasts WHERE id = ?", (broadcast_id,)).fetchone()
        return self._broadcast(row) if row else None

    def recent(self, limit: int) -> list[Broadcast]:
        """The newest ``limit`` broadcasts (recipients included)."""
        return [self._broadcast(row) for row in self._db.execute("SELECT * FROM broadcasts ORDER BY created DESC LIMIT ?", (limit,))]

    def receipt(self, broadcast_id: str, client_id: str, status: str, ts: float) -> None:
        """The agent says the message is ``delivered`` or ``read`` (at ``ts``); a status never goes back, and a read
        message was delivered too. A receipt outranks what the command said (failed, cancelled): it was shown."""
        with self._db:
            if status == READ:
                self._db.execute("UPDATE broadcast_recipients SET status = ?, delivered_ts = COALESCE(delivered_ts, ?), read_ts = ?"
                                 " WHERE broadcast_id = ? AND client_id = ? AND status != ?", (READ, ts, ts, broadcast_id, client_id, READ))
            else:
                self._db.execute("UPDATE broadcast_recipients SET status = ?, delivered_ts = COALESCE(delivered_ts, ?)"
                                 " WHERE broadcast_id = ? AND client_id = ? AND status NOT IN (?, ?)",
                                 (DELIVERED, ts, broadcast_id, client_id, DELIVERED, READ))

    def unread_since(self, since: float) -> list[tuple[str, str, str]]:
        """(client id, message id, broadcast id) of every recipient not read yet (nor failed, nor
        cancelled) of a broadcast made after ``since``: the receipts still awaited."""
        return [tuple(r) for r in self._db.execute(
            "SELECT r.client_id, r.message_id, r.broadcast_id FROM broadcast_recipients r"
            " JOIN broadcasts b ON b.id = r.broadcast_id WHERE b.created > ? AND r.status NOT IN (?, ?, ?)",
            (since, READ, FAILED, CANCELLED))]

    def _broadcast(self, row) -> Broadcast:
        text = self._keyring.decrypt(row["text"], aad("broadcasts", "text", row["id"])).decode()
        b = Broadcast(row["id"], row["run_id"], row["sender"], row["person"], row["reason"], text, row["selector"], row["state"],
                      row["created"])
        b.recipients = [Recipient(r["client_id"], r["message_id"], r["command_id"], r["status"], r["delivered_ts"], r["read_ts"])
                        for r in self._db.execute("SELECT * FROM broadcast_recipients WHERE broadcast_id = ? ORDER BY rowid",
                                                  (row["id"],))]
        return b
