"""The MySQL side of the sync: one server's rows and watermarks in ``ems_web``.

:class:`SnapshotDB` writes each page of the store's change feed in **one**
MySQL transaction together with the per-table watermarks it reaches
(``sync_state``): killed at any moment, the worker finds in MySQL exactly
the rows of the watermarks it finds there, and asks the store from them
again. Rows are upserted on ``(server_id, row key)`` and tombstones
deleted on the same key, so a page applied twice changes nothing.

A *full snapshot* (first run, ``sync.now``, every few minutes) starts a new
generation: every table's watermark goes back to 0 and its ``full_gen`` to
the new generation, in one transaction; pages then rewrite every row of
the store with ``sync_gen`` = that generation; the page after which the
store has nothing more deletes, in the same transaction, this server's rows
of older generations (rows the store no longer has, whose tombstones were
already forgotten). A kill in the middle resumes the same generation.

In-memory state changes only after a commit; after any failure the
connection is dropped and the state read again from MySQL on reconnect.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sync import bulk_load, schema
from sync.mysql_url import MysqlError, MysqlUrl, connect, explain
from sync.shared_db import key_conflict
from sync.tables import TABLES, converter
from sync.web_crypto import WebKey

log = logging.getLogger(__name__)

#: PyMySQL's codes for a connection lost under a query (server gone, killed, timed out)
LOST_CONNECTION = (2006, 2013, 2014)
#: tombstones deleted per statement
DELETE_CHUNK = 1000


@dataclass
class TableState:
    """One table's progress as committed in ``sync_state``."""

    watermark: int = 0
    full_gen: int = 0
    full_done: bool = True
    rows_synced: int = 0
    last_full_sync: float | None = None


class SnapshotDB:
    """One EMS server's snapshot in MySQL (see the module docstring)."""

    def __init__(self, url: MysqlUrl, server_id: str, web_key: WebKey, server_name: str = "", version: str = ""):
        self.url, self.server_id, self.web_key = url, server_id, web_key
        self.server_name, self.version = server_name, version
        self.conn = None
        self.state: dict[str, TableState] = {}
        #: big pages go through LOAD DATA LOCAL INFILE until the server refuses it
        self.bulk = True

    # -- connection ----------------------------------------------------------------
    def open(self) -> None:
        """Connect, create or migrate the schema, and read this server's state."""
        self.conn = connect(self.url, local_infile=True)
        try:
            schema.create_tables(self.conn, schema.SNAPSHOT_TABLES)
            with self.conn.cursor() as cur:
                conflict = key_conflict(cur, self.server_id, self.web_key.key_id)
                if conflict:
                    raise MysqlError(conflict)
                cur.execute("INSERT INTO servers (server_id, name, version, updated, web_key_id) VALUES (%s, %s, %s, %s, %s)"
                            " ON DUPLICATE KEY UPDATE name = VALUES(name), version = VALUES(version), updated = VALUES(updated),"
                            " web_key_id = VALUES(web_key_id)",
                            (self.server_id, self.server_name, self.version, time.time(), self.web_key.key_id))
                cur.execute("SELECT table_name, watermark, full_gen, full_done, rows_synced, last_full_sync"
                            " FROM sync_state WHERE server_id = %s", (self.server_id,))
                found = {r[0]: TableState(int(r[1]), int(r[2]), bool(r[3]), int(r[4]), r[5]) for r in cur.fetchall()}
            self.conn.commit()
        except Exception as exc:
            self.close()
            raise self._error(exc) from exc
        self.state = {t: found.get(TABLES[t].mysql, TableState()) for t in TABLES}

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # already gone
                pass
            self.conn = None

    @property
    def connected(self) -> bool:
        return self.conn is not None

    def _error(self, exc: Exception) -> MysqlError:
        return exc if isinstance(exc, MysqlError) else explain(exc, self.url)

    # -- what the worker asks ----------------------------------------------------------
    def watermarks(self) -> dict[str, int]:
        return {t: s.watermark for t, s in self.state.items()}

    @property
    def full_running(self) -> bool:
        """A full snapshot was started and has tables still to finish."""
        return any(not s.full_done for s in self.state.values())

    @property
    def never_synced(self) -> bool:
        return all(s.full_gen == 0 for s in self.state.values())

    def start_full(self) -> int:
        """Begin a new full snapshot generation (committed); return it."""
        gen = max(s.full_gen for s in self.state.values()) + 1
        now = time.time()
        rows = [(self.server_id, TABLES[t].mysql, gen, now) for t in TABLES]
        self._transaction(lambda cur: cur.executemany(
            "INSERT INTO sync_state (server_id, table_name, watermark, full_gen, full_done, updated)"
            " VALUES (%s, %s, 0, %s, 0, %s) ON DUPLICATE KEY UPDATE watermark = 0,"
            " full_gen = VALUES(full_gen), full_done = 0, updated = VALUES(updated)", rows))
        for s in self.state.values():
            s.watermark, s.full_gen, s.full_done = 0, gen, False
        return gen

    def apply(self, page: dict) -> int:
        """Write one ``store.changes`` page and its watermarks in one transaction; return rows written.

        The page that leaves nothing more (``more`` false) also finishes a
        full snapshot under way: older generations' rows are deleted.
        """
        now = time.time()
        parts = {t: p for t, p in page["tables"].items() if t in TABLES}
        finishing = self.full_running and not page.get("more")
        counts = {t: len(p["rows"]) + len(p["deleted"]) for t, p in parts.items()}

        def write(cur) -> None:
            for table, part in parts.items():
                self._write_part(cur, table, part)
                cur.execute("UPDATE sync_state SET watermark = %s, rows_synced = rows_synced + %s, updated = %s"
                            " WHERE server_id = %s AND table_name = %s",
                            (part["upto"], counts[table], now, self.server_id, TABLES[table].mysql))
                if cur.rowcount == 0:  # first sight of this table (a worker from before its state row)
                    cur.execute("INSERT INTO sync_state (server_id, table_name, watermark, rows_synced, full_gen, updated)"
                                " VALUES (%s, %s, %s, %s, %s, %s)", (self.server_id, TABLES[table].mysql, part["upto"],
                                                                     counts[table], self.state[table].full_gen, now))
            if finishing:
                self._sweep(cur, now)
            cur.execute("UPDATE servers SET last_sync = %s, updated = %s" + (", last_full_sync = %s" if finishing else "")
                        + " WHERE server_id = %s", (now, now, *((now,) if finishing else ()), self.server_id))

        self._transaction(write)
        for table, part in parts.items():
            state = self.state[table]
            state.watermark, state.rows_synced = part["upto"], state.rows_synced + counts[table]
        if finishing:
            for state in self.state.values():
                state.full_done, state.last_full_sync = True, now
        return sum(counts.values())

    # -- writing ---------------------------------------------------------------------
    def _write_part(self, cur, table: str, part: dict) -> None:
        spec = TABLES[table]
        if part["rows"]:
            convert = converter(table, part["columns"], self.web_key, self.server_id, self.state[table].full_gen)
            rows, columns = [convert(r) for r in part["rows"]], spec.mysql_columns()
            if self.bulk and len(rows) >= bulk_load.MIN_ROWS:
                try:
                    bulk_load.load(cur, spec.mysql, columns, rows)
                    rows = []
                except bulk_load.LoadRefused as exc:
                    log.warning("LOAD DATA LOCAL INFILE refused (%s): multi-row inserts from now on", exc)
                    self.bulk = False
            if rows:
                names = ", ".join(f"`{c}`" for c in columns)
                updates = ", ".join(f"`{c}` = VALUES(`{c}`)" for c in columns[1:] if c != spec.mysql_key)
                cur.executemany(f"INSERT INTO `{spec.mysql}` ({names}) VALUES ({', '.join(['%s'] * len(columns))})"
                                f" ON DUPLICATE KEY UPDATE {updates}", rows)
        deleted = part["deleted"]
        for start in range(0, len(deleted), DELETE_CHUNK):
            chunk = deleted[start:start + DELETE_CHUNK]
            cur.execute(f"DELETE FROM `{spec.mysql}` WHERE server_id = %s AND `{spec.mysql_key}` IN"
                        f" ({', '.join(['%s'] * len(chunk))})", (self.server_id, *chunk))

    def _sweep(self, cur, now: float) -> None:
        """Delete this server's rows of generations before the finishing full snapshot's."""
        for table, state in self.state.items():
            if state.full_done:
                continue
            cur.execute(f"DELETE FROM `{TABLES[table].mysql}` WHERE server_id = %s AND sync_gen <> %s",
                        (self.server_id, state.full_gen))
            if cur.rowcount:
                log.info("full snapshot removed %d %s rows the store no longer has", cur.rowcount, TABLES[table].mysql)
            cur.execute("UPDATE sync_state SET full_done = 1, last_full_sync = %s WHERE server_id = %s AND table_name = %s",
                        (now, self.server_id, TABLES[table].mysql))

    def _transaction(self, work) -> None:
        """Run ``work(cursor)`` and commit; on any failure roll back, drop the connection, raise MysqlError."""
        if self.conn is None:
            raise MysqlError(f"not connected to MySQL at {self.url.where()}")
        try:
            with self.conn.cursor() as cur:
                work(cur)
            self.conn.commit()
        except Exception as exc:
            try:
                self.conn.rollback()
            except Exception:  # the connection is gone: the server rolled back
                pass
            self.close()
            if getattr(exc, "args", None) and exc.args[0] in LOST_CONNECTION:
                raise MysqlError(f"lost the connection to MySQL at {self.url.where()} in the middle of a page "
                                 f"(rolled back, nothing half-written; retrying): {exc.args[-1]}") from exc
            raise self._error(exc) from exc
