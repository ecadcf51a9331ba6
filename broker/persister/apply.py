"""The row-level updates of a write batch: each runs inside the batch's
transaction on a record :mod:`~broker.persister.prepare` already checked.

An :class:`_Op` is one such record with the function that applies it (or a
plain ``INSERT OR IGNORE`` the writer batches with its neighbours); each
applier returns True when it stored something new, and may raise
:class:`~broker.persister.tables._NotYet` (the record waits for one it
updates) or :class:`~broker.persister.tables._Reject`.
"""
from __future__ import annotations

import functools
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Callable

from broker.core.envelope import pack_body
from broker.persister.tables import CHAT_UPDATE_WAIT_S, MAX_ID_CHARS, OPERATOR_WAIT_S, Record, _NotYet, _Reject
from broker.core.vocabulary import DELIVERED, DONE, EXPIRED, FAILED, QUEUED, SENT

_COMMAND_RANK = {QUEUED: 0, SENT: 1, DELIVERED: 2, DONE: 3, FAILED: 3, EXPIRED: 3}
_CHAT_RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}


@dataclass(slots=True)
class _Op:
    """A validated record, ready to apply inside the batch transaction."""

    record: Record
    client: str | None  # client row this record needs (None: no clients row)
    apply: Callable[[sqlite3.Cursor], bool] | None  # True if it stored something new; None: the plain INSERT below
    sql: str | None = None  # a plain INSERT OR IGNORE: runs of them are batched
    params: tuple = ()

    def run(self, cur: sqlite3.Cursor) -> bool:
        """Apply this record inside the open transaction; True if it stored something new."""
        if self.apply is None:
            return _insert_new(self.sql, self.params, cur)
        return self.apply(cur)


# -- appliers (run inside the batch transaction) --------------------------------------
def _insert_new(sql: str, params: tuple, cur: sqlite3.Cursor) -> bool:
    cur.execute(sql, params)
    return cur.rowcount == 1


def _insert_preview(row_key: tuple[str, str], preview: tuple[bytes | None, str | None], cur: sqlite3.Cursor) -> None:
    """A capture's (encrypted) preview or why there is none, under the capture's id (just inserted)."""
    cur.execute(
        "INSERT INTO capture_thumbnails (id, client_id, msg_id, thumbnail, error) VALUES (?, ?, ?, ?, ?)",
        (cur.lastrowid, *row_key, *preview),
    )


def _apply_stamped(r: Record, table: str, values: dict, then: Callable[[sqlite3.Cursor], None] | None,
                   cur: sqlite3.Cursor) -> bool:
    """Insert an agent's record about a command with ``operator`` stamped from
    the broker's record of that command (see :func:`_command_operator`),
    then run ``then`` on a new row."""
    operator = _command_operator(r, cur)
    row = {**values, "operator": operator}
    cur.execute(_insert_sql(table, tuple(row)), tuple(row.values()))
    if cur.rowcount != 1:
        return False
    if then is not None:
        then(cur)
    if operator is None:
        _mark_unverified(r, table, cur)
    return True


def _apply_reply(r: Record, values: dict, in_reply_to: str | None, cur: sqlite3.Cursor) -> bool:
    """An employee's reply, addressed to the operator of the stored message
    it answers (``in_reply_to``, this agent's), or to nobody named."""
    row = None
    if in_reply_to is not None:
        row = cur.execute("SELECT operator FROM chat_messages WHERE client_id = ? AND msg_id = ? AND direction = 'out'",
                          (r.client_id, in_reply_to)).fetchone()
    stamped = {**values, "operator": row["operator"] if row is not None else None}
    cur.execute(_insert_sql("chat_messages", tuple(stamped)), tuple(stamped.values()))
    return cur.rowcount == 1


def _command_operator(r: Record, cur: sqlite3.Cursor) -> str | None:
    """Who sent the command ``r`` reports on (``data["command"]``, addressed to
    ``r``'s agent), as the broker recorded it. Not known yet: :class:`_NotYet`
    (resent later) until :data:`OPERATOR_WAIT_S`, then None. What the body
    says about the operator is never used."""
    command = r.data.get("command")
    if type(command) is not str or not 0 < len(command) <= MAX_ID_CHARS:
        return None
    row = cur.execute("SELECT operator FROM commands WHERE id = ? AND client_id = ?", (command, r.client_id)).fetchone()
    if row is not None and row["operator"]:
        return row["operator"]
    if time.time() - r.ts < OPERATOR_WAIT_S:
        raise _NotYet(f"command {command!r} to {r.client_id!r} not known yet: its operator cannot be named")
    return None


def _mark_unverified(r: Record, table: str, cur: sqlite3.Cursor) -> None:
    """A security event beside a row stored with no operator: nobody vouches for who did it."""
    detail = {"table": table, "msg_id": r.msg_id, "command": r.data.get("command") if type(r.data.get("command")) is str else None,
              "detail": "no command of this agent's names the operator: stored with operator NULL"}
    cur.execute(
        "INSERT OR IGNORE INTO security_events (origin, client_id, subject, msg_id, ts, event, severity, detail)"
        " VALUES ('persister', NULL, ?, ?, ?, 'unverified_operator', 'warning', ?)",
        (r.client_id, f"unverified:{r.client_id}:{r.msg_id}", r.ts, _pack(detail)),
    )


def _apply_online(r: Record, facts: dict, label: str | None, cur: sqlite3.Cursor) -> bool:
    cur.execute(
        "INSERT OR IGNORE INTO sessions (client_id, msg_id, started, logged_in_user) VALUES (?, ?, ?, ?)",
        (r.client_id, r.msg_id, r.ts, facts["logged_in_user"]),
    )
    if cur.rowcount == 0:
        return False
    session = cur.lastrowid
    # an earlier session whose offline never arrived ends where this one starts
    cur.execute(
        "UPDATE sessions SET ended = ?, end_reason = 'superseded'"
        " WHERE client_id = ? AND ended IS NULL AND started <= ? AND id != ?",
        (r.ts, r.client_id, r.ts, session),
    )
    # a late (replayed) online: a newer session already exists
    newer = cur.execute(
        "SELECT min(started) FROM sessions WHERE client_id = ? AND started > ?", (r.client_id, r.ts)
    ).fetchone()[0]
    if newer is not None:
        cur.execute("UPDATE sessions SET ended = ?, end_reason = 'superseded' WHERE id = ?", (newer, session))
    cur.execute(
        "UPDATE clients SET online = 1, presence_ts = ?, logged_in_user = coalesce(?, logged_in_user),"
        " hostname = coalesce(?, hostname), os = coalesce(?, os), version = coalesce(?, version),"
        " label = CASE WHEN label = '' THEN coalesce(?, '') ELSE label END"
        " WHERE client_id = ? AND (presence_ts IS NULL OR presence_ts <= ?)",
        (r.ts, facts["logged_in_user"], facts["hostname"], facts["os"], facts["version"], label, r.client_id, r.ts),
    )
    return True


def _apply_offline(r: Record, reason: str | None, cur: sqlite3.Cursor) -> bool:
    if cur.execute(
        "SELECT 1 FROM sessions WHERE client_id = ? AND end_msg_id = ?", (r.client_id, r.msg_id)
    ).fetchone():
        return False
    latest = cur.execute(
        "SELECT id, end_msg_id FROM sessions WHERE client_id = ? AND started <= ? ORDER BY started DESC, id DESC LIMIT 1",
        (r.client_id, r.ts),
    ).fetchone()
    if latest is not None and latest["end_msg_id"] is None:
        cur.execute(
            "UPDATE sessions SET ended = ?, end_reason = ?, end_msg_id = ? WHERE id = ?",
            (r.ts, reason or "offline", r.msg_id, latest["id"]),
        )
    cur.execute(
        "UPDATE clients SET online = 0, presence_ts = ? WHERE client_id = ? AND (presence_ts IS NULL OR presence_ts <= ?)",
        (r.ts, r.client_id, r.ts),
    )
    return True


def _apply_command_status(values: dict, cur: sqlite3.Cursor) -> bool:
    row = cur.execute("SELECT client_id, status, result FROM commands WHERE id = ?", (values["id"],)).fetchone()
    if row is None:
        names = ", ".join(values)
        cur.execute(f"INSERT INTO commands ({names}) VALUES ({', '.join('?' * len(values))})", tuple(values.values()))
        return True
    if row["client_id"] != values["client_id"]:
        raise _Reject(f"command {values['id']} belongs to {row['client_id']}, not {values['client_id']}")
    if values["operator"] is not None:  # the broker's record of its sender, whenever it arrives
        cur.execute("UPDATE commands SET operator = ? WHERE id = ? AND operator IS NULL", (values["operator"], values["id"]))
    old, new = _COMMAND_RANK[row["status"]], _COMMAND_RANK[values["status"]]
    if new <= old:
        # same stage (or a second final status): only a missing result is news
        if values["result"] is None or row["result"] is not None:
            return False
        cur.execute(
            "UPDATE commands SET result = ?, updated = ? WHERE id = ?",
            (values["result"], values["updated"], values["id"]),
        )
        return True
    cur.execute(
        "UPDATE commands SET status = ?, updated = ?, result = coalesce(?, result),"
        " name = CASE WHEN name = '' THEN ? ELSE name END, operator = coalesce(operator, ?),"
        " args = coalesce(args, ?) WHERE id = ?",
        (
            values["status"],
            values["updated"],
            values["result"],
            values["name"],
            values["operator"],
            values["args"],
            values["id"],
        ),
    )
    return True


def _apply_sysinfo(r: Record, facts: dict, metrics: dict, packed: bytes, cur: sqlite3.Cursor) -> bool:
    cur.execute(
        "INSERT OR IGNORE INTO metrics (client_id, msg_id, ts, cpu_percent, memory_percent, disk_percent)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (r.client_id, r.msg_id, r.ts, metrics["cpu_percent"], metrics["memory_percent"], metrics["disk_percent"]),
    )
    if cur.rowcount == 0:
        return False
    cur.execute(
        "UPDATE clients SET hostname = coalesce(?, hostname), os = coalesce(?, os),"
        " os_version = coalesce(?, os_version), logged_in_user = coalesce(?, logged_in_user),"
        " version = coalesce(?, version), last_sysinfo = ?, sysinfo_ts = ?"
        " WHERE client_id = ? AND (sysinfo_ts IS NULL OR sysinfo_ts <= ?)",
        (
            facts["hostname"],
            facts["os"],
            facts["os_version"],
            facts["logged_in_user"],
            facts["version"],
            packed,
            r.ts,
            r.client_id,
            r.ts,
        ),
    )
    return True


def _apply_chat_update(r: Record, ref: str, status: str | None, deleted: bool, cur: sqlite3.Cursor) -> bool:
    row = cur.execute(
        "SELECT id, status, deleted FROM chat_messages WHERE client_id = ? AND msg_id = ?", (r.client_id, ref)
    ).fetchone()
    if row is None:
        why = f"no chat message {ref!r} from {r.client_id!r} to update"
        if time.time() - r.ts < CHAT_UPDATE_WAIT_S:  # it may still be on its way (resent later)
            raise _NotYet(why + " yet")
        raise _Reject(why)
    changed = False
    if status is not None and _CHAT_RANK[status] > _CHAT_RANK[row["status"]]:
        cur.execute("UPDATE chat_messages SET status = ?, status_ts = ? WHERE id = ?", (status, r.ts, row["id"]))
        changed = True
    if deleted and not row["deleted"]:
        cur.execute("UPDATE chat_messages SET deleted = 1 WHERE id = ?", (row["id"],))
        changed = True
    return changed


@functools.lru_cache(maxsize=64)
def _insert_sql(table: str, names: tuple[str, ...]) -> str:
    return f"INSERT OR IGNORE INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"


def _pack(value: Any) -> bytes:
    try:
        return pack_body(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _Reject(f"data cannot be stored as msgpack: {exc}") from None
