"""History reads: queries with paging and text search, stats, capture
previews and images.

Every table and column name in the SQL comes from
:data:`~broker.persister.tables.VIEWS` and
:data:`~broker.persister.tables.STATS`; every argument is checked with
:mod:`broker.core.bounds` before it reaches SQLite. Encrypted fields come back
decrypted; one that does not decrypt raises
:class:`~broker.persister.crypto.TamperedValue` naming the table and row.
"""
from __future__ import annotations

import logging
import sqlite3
from typing import Any

from broker.core import bounds
from broker.core.envelope import unpack_body
from broker.persister.crypto import TamperedValue, aad_for
from broker.persister.tables import MAX_ID_CHARS, MAX_LIMIT, STATS, THUMBNAIL_BACKFILL, VIEWS, StoreError, StorePart, _View, view_of
from broker.persister.thumbnails import thumbnail_or_reason as _thumbnail

log = logging.getLogger(__name__)


class Queries(StorePart):
    """The store's reading side (see the module docstring)."""

    def query(
        self,
        kind: str,
        client_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        before_id: int | str | None = None,
        order: str = "desc",
        text: str | None = None,
        include_deleted: bool = False,
    ) -> list[dict]:
        """History of one ``kind`` (a key of :data:`VIEWS`), as dicts.

        Filters: ``client_id`` (audit: the target; security: reporter or
        subject), ``since <= ts < until`` (epoch seconds), ``text``
        (case-insensitive substring of the kind's text columns, encrypted
        ones included). Rows come in storage order (``id``; ``client_id``
        for clients), newest first for ``order="desc"``. To page, pass the
        last row's ``id`` (clients: ``client_id``) as ``before_id``: the
        next page continues after it in the chosen order. Chat messages
        that were deleted (soft deletes: the row stays, ``deleted`` true)
        are left out unless ``include_deleted``.

        Encrypted fields come back decrypted; one that does not decrypt
        raises :class:`TamperedValue` naming the table and row. Captures
        come without their image: see :meth:`get_capture`.
        """
        view = view_of(kind)
        order_sql = _order(order)
        limit = _limit(limit)
        where, params = self._filters(view, client_id, since, until)
        if before_id is not None:
            before_id = _key(view, before_id)
            where.append(f"{view.key} {'<' if order_sql == 'DESC' else '>'} ?")
            params.append(before_id)
        bounds.boolean(include_deleted, "include_deleted")
        if view.table == "chat_messages" and not include_deleted:
            where.append("deleted = 0")
        needle = _needle(view, text)
        plain_search = needle is not None and not set(view.text) & set(view.encrypted)
        if plain_search:
            where.append("(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in view.text) + ")")
            params += [f"%{_escape_like(needle)}%"] * len(view.text)
        sql = (
            f"SELECT {', '.join(view.columns)} FROM {view.table}"
            f"{' WHERE ' + ' AND '.join(where) if where else ''}"
            f" ORDER BY {view.key} {order_sql} LIMIT ?"
        )
        with self._errors(f"query {kind}"):
            if needle is None or plain_search:
                rows = self._db.execute(sql, (*params, limit)).fetchall()
                return [self._row(view, row) for row in rows]
            return self._search(view, where, params, order_sql, limit, needle)

    def _search(self, view: _View, where: list[str], params: list, order_sql: str, limit: int, needle: str) -> list[dict]:
        """Text search over encrypted columns: decrypt in chunks, filter here."""
        found: list[dict] = []
        chunk = max(limit, 200)
        cursor_sql = f"{view.key} {'<' if order_sql == 'DESC' else '>'} ?"
        base = f"SELECT {', '.join(view.columns)} FROM {view.table}"
        last = None
        while len(found) < limit:
            clauses = where + ([cursor_sql] if last is not None else [])
            page_sql = (
                f"{base}{' WHERE ' + ' AND '.join(clauses) if clauses else ''}"
                f" ORDER BY {view.key} {order_sql} LIMIT ?"
            )
            rows = self._db.execute(page_sql, (*params, *([last] if last is not None else []), chunk)).fetchall()
            for row in rows:
                item = self._row(view, row)
                if any(_contains(item.get(c), needle) for c in view.text):
                    found.append(item)
                    if len(found) == limit:
                        break
            if len(rows) < chunk:
                break
            last = rows[-1][view.key]
        return found

    def with_thumbnails(self, captures: list[dict]) -> list[dict]:
        """``captures`` rows (from :meth:`query`) with ``thumbnail`` (JPEG
        bytes, or None) and ``thumbnail_error`` (why there is none, or None).

        A preview that does not decrypt is reported on its row, not raised:
        one damaged value must not hide every other capture. Captures stored
        before previews existed get one now (at most
        :data:`THUMBNAIL_BACKFILL` per call; it is kept for next time).
        """
        ids = [row["id"] for row in captures if type(row.get("id")) is int]
        found: dict[int, tuple[bytes | None, str | None]] = {}
        with self._errors("read capture previews"):
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                rows = self._db.execute(
                    f"SELECT id, client_id, msg_id, thumbnail, error FROM capture_thumbnails"
                    f" WHERE id IN ({', '.join('?' * len(chunk))})", chunk
                ).fetchall()
                for row in rows:
                    found[row["id"]] = self._open_preview(row)
        missing = [i for i in ids if i not in found]
        found.update(self._backfill_previews(missing[:THUMBNAIL_BACKFILL]))
        later = (None, "no preview yet: refresh to make the next ones")
        out = []
        for row in captures:
            thumbnail, why_not = found.get(row.get("id"), later)
            out.append(dict(row, thumbnail=thumbnail, thumbnail_error=why_not))
        return out

    def _open_preview(self, row: sqlite3.Row) -> tuple[bytes | None, str | None]:
        if row["thumbnail"] is None:
            return None, row["error"] or "no preview"
        try:
            return self._open("capture_thumbnails", "thumbnail", row), None
        except TamperedValue as exc:
            return None, f"the preview cannot be decrypted: {exc}"

    def _backfill_previews(self, ids: list[int]) -> dict[int, tuple[bytes | None, str | None]]:
        """Make (and keep) the previews of captures stored without one."""
        if not ids:
            return {}
        with self._errors("read captures"):
            rows = self._db.execute(
                f"SELECT id, client_id, msg_id, image FROM screen_captures WHERE id IN ({', '.join('?' * len(ids))})", ids
            ).fetchall()
        made: dict[int, tuple[bytes | None, str | None]] = {}
        keep = []
        for row in rows:
            try:
                image = self._open("screen_captures", "image", row)
            except TamperedValue as exc:  # not kept: the right key file may come back
                made[row["id"]] = (None, f"the image cannot be decrypted: {exc}")
                continue
            thumbnail, why_not = _thumbnail(image)
            aad = aad_for("capture_thumbnails", "thumbnail", row["client_id"], row["msg_id"])
            sealed = self.crypto.encrypt(thumbnail, aad) if thumbnail is not None else None
            keep.append((row["id"], row["client_id"], row["msg_id"], sealed, why_not))
            made[row["id"]] = (thumbnail, why_not)
        try:
            with self._errors("keep capture previews"), self._transaction() as cur:
                cur.executemany(
                    "INSERT OR IGNORE INTO capture_thumbnails (id, client_id, msg_id, thumbnail, error) VALUES (?, ?, ?, ?, ?)", keep
                )
        except StoreError as exc:  # shown now, made again next time
            log.warning("capture previews not kept: %s", exc)
        return made

    def get_capture(self, capture_id: int) -> dict | None:
        """One screen capture with its decrypted ``image``, or None."""
        bounds.int64(capture_id, "capture id")
        with self._errors("read a capture"):
            row = self._db.execute("SELECT * FROM screen_captures WHERE id = ?", (capture_id,)).fetchone()
        if row is None:
            return None
        item = dict(row)
        item["image"] = self._open("screen_captures", "image", row)
        return item

    def stats(
        self, group_by: str, client_id: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[dict]:
        """Row counts grouped by ``"kind"`` (rows per history kind) or one of
        :data:`STATS`: ``[{"key", "count"}]``, largest first.
        ``client_id``/``since``/``until`` filter as in :meth:`query`."""
        if group_by == "kind":
            return self._kind_counts(client_id, since, until)
        if type(group_by) is not str or group_by not in STATS:
            raise ValueError(f"cannot group by {bounds.shown(group_by)}; one of kind, {', '.join(STATS)}")
        kind, column = STATS[group_by]
        view = VIEWS[kind]
        where, params = self._filters(view, client_id, since, until)
        sql = (
            f"SELECT {column} AS key, count(*) AS count FROM {view.table}"
            f"{' WHERE ' + ' AND '.join(where) if where else ''}"
            f" GROUP BY {column} ORDER BY count DESC, key"
        )
        with self._errors("compute stats"):
            return [dict(row) for row in self._db.execute(sql, params)]

    def _kind_counts(self, client_id, since, until) -> list[dict]:
        counts = []
        with self._errors("compute stats"):
            for kind, view in VIEWS.items():
                where, params = self._filters(view, client_id, since, until)
                sql = f"SELECT count(*) FROM {view.table}{' WHERE ' + ' AND '.join(where) if where else ''}"
                counts.append({"key": kind, "count": self._db.execute(sql, params).fetchone()[0]})
        return sorted(counts, key=lambda c: (-c["count"], c["key"]))

    @staticmethod
    def _filters(view: _View, client_id, since, until) -> tuple[list[str], list]:
        where: list[str] = []
        params: list = []
        if client_id is not None:
            where.append(view.client)
            params += [bounds.text(client_id, "client_id", MAX_ID_CHARS)] * view.client_params
        for name, value, op in (("since", since, ">="), ("until", until, "<")):
            if value is None:
                continue
            where.append(f"{view.ts} {op} ?")
            params.append(bounds.epoch(value, name))
        return where, params

    def _row(self, view: _View, row: sqlite3.Row) -> dict:
        item = dict(row)
        for column in view.encrypted:
            if item[column] is not None:
                item[column] = self._open(view.table, column, row)
        for column in view.packed:
            if item[column] is not None:
                item[column] = unpack_body(item[column])
        for column in view.flags:
            item[column] = bool(item[column])
        return item

    def _open(self, table: str, column: str, row: sqlite3.Row) -> Any:
        aad = aad_for(table, column, row["client_id"], row["msg_id"])
        try:
            plain = self.crypto.decrypt(row[column], aad)
        except TamperedValue as exc:
            raise TamperedValue(f"{table} row {row['id']} ({column}): {exc}") from exc
        return plain if column in ("image", "data", "thumbnail") else plain.decode()


def _order(order: str) -> str:
    if type(order) is not str or order.lower() not in ("asc", "desc"):
        raise ValueError(f"order must be 'asc' or 'desc', not {bounds.shown(order)}")
    return order.upper()


def _limit(limit: int) -> int:
    """An int64 limit clamped to 1..MAX_LIMIT (so -1 is 1 row, not SQLite's "no limit")."""
    return bounds.limit(limit, "limit", 100, 1, MAX_LIMIT)


def _key(view: _View, before_id: Any) -> int | str:
    """A paging cursor: an int64 row id, or (clients, commands) a plain id string."""
    if view.key_type is int:
        return bounds.int64(before_id, "before_id")
    return bounds.text(before_id, "before_id", MAX_ID_CHARS)


#: longest ``text`` to search for
MAX_NEEDLE_CHARS = 200


def _needle(view: _View, text: str | None) -> str | None:
    """The text to search for, or None. A NUL is refused: SQLite's LIKE
    stops reading its pattern there, so "\\0" would match every row."""
    if text is None or text == "":
        return None
    bounds.text(text, "text", MAX_NEEDLE_CHARS)
    if not view.text:
        raise ValueError(f"{view.table} has no text to search")
    return text


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _contains(value: Any, needle: str) -> bool:
    """Case-insensitive substring search through strings, lists and dicts,
    without recursion and bounded (see :func:`broker.core.bounds.iter_strings`)."""
    folded = needle.casefold()
    return any(folded in s.casefold() for s in bounds.iter_strings(value))
