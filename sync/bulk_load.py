"""Big pages into MySQL with ``LOAD DATA LOCAL INFILE ... REPLACE``: MariaDB's fastest way in.

A page of a few thousand rows is written to a private temporary file
(tab-separated, MySQL's escapes, ``\\N`` for NULL, bytes as they are: the
sensitive ones are already sealed) and loaded with ``REPLACE`` on the
table's primary key ``(server_id, key)``, inside the caller's transaction:
a row already there is replaced, as the upsert does, and the watermark
commits with it. The server must allow it (``--local-infile=1``, which the
private instance sets) and the connection must ask for it
(``local_infile=True``); when the server refuses (error 1148/3948/4166),
:class:`LoadRefused` says so and the caller falls back to multi-row
inserts.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

#: pages with at least this many rows of one table go through LOAD DATA
MIN_ROWS = 500
#: MySQL errors for "LOCAL INFILE is disabled" (client or server side)
REFUSED_CODES = (1148, 2068, 3948, 4166)

#: what MySQL's LOAD DATA escapes (ESCAPED BY '\\'), and how
_SPECIAL = re.compile(rb"[\\\t\n\r\0]")
_ESCAPED = {b"\\": b"\\\\", b"\t": b"\\t", b"\n": b"\\n", b"\r": b"\\r", b"\0": b"\\0"}


def _escape(raw: bytes) -> bytes:
    return _SPECIAL.sub(lambda m: _ESCAPED[m.group()], raw) if _SPECIAL.search(raw) else raw


class LoadRefused(Exception):
    """The server or the connection does not allow LOAD DATA LOCAL INFILE."""


#: value type -> its LOAD DATA field (one lookup per value: this runs for every value of a snapshot)
_FIELD = {
    int: lambda v: b"%d" % v,
    float: lambda v: repr(v).encode(),
    str: lambda v: _escape(v.encode()),
    bytes: _escape,
    type(None): lambda v: b"\\N",
    bool: lambda v: b"1" if v else b"0",
}


def field(value) -> bytes:
    """One value as a LOAD DATA field."""
    return _FIELD[type(value)](value)


def line(row: tuple) -> bytes:
    """One row as a LOAD DATA line."""
    return b"\t".join([_FIELD[type(v)](v) for v in row]) + b"\n"


def load(cur, table: str, columns: list[str], rows: list[tuple]) -> int:
    """``LOAD DATA LOCAL INFILE ... REPLACE`` of ``rows`` into ``table`` on the cursor's transaction."""
    fd, name = tempfile.mkstemp(prefix="ems-sync-", suffix=".tsv")  # 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(b"".join([line(row) for row in rows]))
        names = ", ".join(f"`{c}`" for c in columns)
        try:
            cur.execute(f"LOAD DATA LOCAL INFILE %s REPLACE INTO TABLE `{table}` CHARACTER SET binary"
                        f" FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({names})", (name,))
        except Exception as exc:
            if getattr(exc, "args", None) and exc.args[0] in REFUSED_CODES:
                raise LoadRefused(str(exc)) from exc
            raise
        return cur.rowcount
    finally:
        Path(name).unlink(missing_ok=True)
