"""Reading the change log: one bounded page of what changed since per-table watermarks.

:func:`read_changes` is what ``store.changes`` answers (see
:mod:`broker.persister.change_feed`): for each table of
:data:`~broker.persister.change_log.SYNCED`, the rows inserted or updated
since that table's watermark (every column, the encrypted ones decrypted:
the page travels inside the Curve-encrypted bus to the sync worker, which
seals them again for the web) and the keys of the rows deleted since. A page
holds at most ``max_rows`` rows and about ``max_bytes`` bytes (always at
least one row, however big); ``more`` says another page is waiting.
"""
from __future__ import annotations

import sqlite3
from typing import Any

from broker.persister import schema
from broker.persister.change_log import SYNCED
from broker.persister.crypto import SecurityManager, aad_for
from broker.persister.tables import ENCRYPTED

#: rows and bytes per page, by default and at most
DEFAULT_ROWS, MAX_ROWS = 5000, 20_000
DEFAULT_BYTES, MAX_BYTES = 2 * 1024 * 1024, 6 * 1024 * 1024
#: columns whose plaintext is bytes (the rest of the encrypted ones are text)
_BINARY = frozenset({"image", "thumbnail", "data"})
_ENCRYPTED_BY_TABLE: dict[str, frozenset[str]] = {
    t: frozenset(c for tt, c in ENCRYPTED if tt == t) for t in SYNCED
}


def read_changes(conn: sqlite3.Connection, crypto: SecurityManager, since: dict[str, int],
                 max_rows: int = DEFAULT_ROWS, max_bytes: int = DEFAULT_BYTES, count: bool = False) -> dict:
    """One page of changes after ``since`` (table -> watermark; absent = 0).

    Returns ``{"tables": {table: {"upto", "columns", "rows", "deleted", "more"}},
    "more": bool, "head": {table: newest seq}}`` (tables with nothing new are left out), plus ``"total"``
    (rows still to send per table) when ``count`` is asked for: the
    progress bar of a full snapshot.
    """
    page: dict[str, Any] = {"tables": {}, "more": False}
    rows_left, bytes_left = max_rows, max_bytes
    for table in SYNCED:
        if rows_left <= 0 or bytes_left <= 0:
            page["more"] = True
            break
        part, used_rows, used_bytes, more = _table_page(conn, crypto, table, since.get(table, 0), rows_left, bytes_left)
        if part is not None:
            page["tables"][table] = part
        rows_left, bytes_left = rows_left - used_rows, bytes_left - used_bytes
        page["more"] = page["more"] or more
    # the newest seq per table: a sync whose watermark is past it holds another store's (a store started over)
    page["head"] = {t: conn.execute("SELECT max(seq) FROM change_log WHERE tbl = ?", (t,)).fetchone()[0] or 0
                    for t in SYNCED}
    if count:
        page["total"] = {
            t: conn.execute("SELECT count(*) FROM change_log WHERE tbl = ? AND seq > ?", (t, since.get(t, 0))).fetchone()[0]
            for t in SYNCED
        }
    return page


def _table_page(conn, crypto, table: str, since: int, max_rows: int, max_bytes: int):
    """(part or None, rows used, bytes used, more) for one table."""
    key, columns = SYNCED[table], schema.columns(table)
    picked = ", ".join(f"t.{c}" for c in columns)
    cursor = conn.execute(
        f"SELECT c.seq, c.deleted, c.row_key, {picked} FROM change_log c LEFT JOIN {table} t ON t.{key} = c.row_key"
        f" WHERE c.tbl = ? AND c.seq > ? ORDER BY c.seq LIMIT ?",
        (table, since, max_rows + 1),
    )
    rows, deleted, upto, size, more = [], [], since, 0, False
    encrypted = _ENCRYPTED_BY_TABLE[table]
    for entry in cursor:
        if len(rows) + len(deleted) >= max_rows or (size >= max_bytes and (rows or deleted)):
            more = True
            break
        upto = entry[0]
        if entry[1]:
            deleted.append(entry[2])
            size += 16
            continue
        values = list(entry[3:])
        if encrypted:
            _open(crypto, table, columns, values, encrypted)
        size += sum(len(v) if isinstance(v, (bytes, str)) else 8 for v in values)
        rows.append(values)
    cursor.close()
    if upto == since:
        return None, 0, 0, more
    part = {"upto": upto, "columns": list(columns), "rows": rows, "deleted": deleted, "more": more}
    return part, len(rows) + len(deleted), size, more


def _open(crypto: SecurityManager, table: str, columns: tuple[str, ...], values: list, encrypted: frozenset[str]) -> None:
    """Decrypt the encrypted columns of one row in place."""
    row = dict(zip(columns, values))
    for i, column in enumerate(columns):
        if column in encrypted and values[i] is not None:
            plain = crypto.decrypt(values[i], aad_for(table, column, row["client_id"], row["msg_id"]))
            values[i] = plain if column in _BINARY else plain.decode()
