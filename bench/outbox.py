"""Outbox benchmark: ``Outbox.put_many`` against a raw SQLite ceiling, in one run.

Each trial writes the same rows (default 100,000 records of 200-byte bodies,
batches of 500, one transaction per batch) three ways, each into a fresh
file opened by ``broker.core.sqlite_db.connect`` (WAL, synchronous=NORMAL), in
the same temporary directory:

* **outbox**: ``Outbox.put_many`` (id generation, checks, AES-GCM sealing of each body, class and size
  bookkeeping, the outbox's indexes);
* **raw, outbox schema**: ``executemany`` of prepared rows into the
  outbox's own table and indexes (what SQLite alone costs for that schema);
* **raw, bare table**: ``executemany`` of the same prepared rows into a
  table with the same columns and no index: the ceiling.

Trials rotate the order; the median is reported, with the ratio of the
outbox to the bare table. Also measured once: ``put`` one record per
transaction, and draining (``due`` / ``mark_sent`` / ``ack`` by 500).
Prints a table; asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # `python bench/outbox.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.outbox import storage as outbox_storage  # noqa: E402
from agent.outbox import RECORD_OVERHEAD_BYTES, Outbox  # noqa: E402
from broker.core import sqlite_db  # noqa: E402
from broker.core.envelope import Kind, new_id  # noqa: E402

TOPIC = "event.0123456789abcdef.sysinfo"
_BARE = """CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY, msg_id TEXT, kind INTEGER, topic TEXT, body BLOB,
    priority INTEGER, created REAL, size INTEGER, sent_at REAL, attempts INTEGER DEFAULT 0)"""


def bench_outbox(path: Path, items: list[tuple], batch: int) -> float:
    box = Outbox(path, max_records=len(items) + 1, max_bytes=1 << 40)
    try:
        start = time.perf_counter()
        for i in range(0, len(items), batch):
            box.put_many(items[i : i + batch])
        return time.perf_counter() - start
    finally:
        box.close()


def bench_raw(path: Path, schema: list[str], rows: list[tuple], batch: int) -> float:
    db = sqlite_db.connect(path)
    try:
        for statement in schema:
            db.execute(statement)
        start = time.perf_counter()
        for i in range(0, len(rows), batch):
            db.execute("BEGIN")
            db.executemany(outbox_storage.INSERT, rows[i : i + batch])
            db.execute("COMMIT")
        return time.perf_counter() - start
    finally:
        db.close()


def bench_single_puts(path: Path, body: bytes, count: int) -> float:
    with Outbox(path) as box:
        start = time.perf_counter()
        for _ in range(count):
            box.put(Kind.EVENT, TOPIC, body)
        return time.perf_counter() - start


def bench_drain(path: Path, items: list[tuple], batch: int) -> float:
    with Outbox(path, max_records=len(items) + 1, max_bytes=1 << 40, window=batch) as box:
        for i in range(0, len(items), batch):
            box.put_many(items[i : i + batch])
        start = time.perf_counter()
        while True:
            records = box.due(batch)
            if not records:
                break
            ids = [r.msg_id for r in records]
            box.mark_sent(ids)
            box.ack(ids)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=100_000, help="records per trial (default 100,000)")
    p.add_argument("--batch", type=int, default=500, help="records per put_many (default 500)")
    p.add_argument("--body-bytes", type=int, default=200, help="body size (default 200)")
    p.add_argument("--trials", type=int, default=3, help="trials, median reported (default 3)")
    p.add_argument("--dir", type=Path, help="where to write the files (default: a temporary directory)")
    args = p.parse_args(argv)

    body = os.urandom(args.body_bytes)
    items = [(Kind.EVENT, TOPIC, body)] * args.records
    now = time.time()
    size = len(body) + len(TOPIC) + RECORD_OVERHEAD_BYTES
    rows = [(new_id(), int(Kind.EVENT), TOPIC, body, 0, now, size) for _ in range(args.records)]
    outbox_schema = list(outbox_storage.SCHEMA)  # the outbox's own DDL and insert, for a like-for-like raw run

    runs = {
        "outbox put_many": lambda path: bench_outbox(path, items, args.batch),
        "raw executemany, outbox schema": lambda path: bench_raw(path, outbox_schema, rows, args.batch),
        "raw executemany, bare table": lambda path: bench_raw(path, [_BARE], rows, args.batch),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="ems-outbox-bench-") as tmp:
        names = list(runs)
        for trial in range(args.trials):
            for k in range(len(names)):
                name = names[(trial + k) % len(names)]
                path = Path(tmp) / f"{trial}-{k}.db"
                seconds[name].append(runs[name](path))
                print(f"trial {trial + 1}: {name}: {args.records / seconds[name][-1]:,.0f} records/s", file=sys.stderr)
        single_n = min(args.records, 10_000)
        single = bench_single_puts(Path(tmp) / "single.db", body, single_n)
        drain = bench_drain(Path(tmp) / "drain.db", items, args.batch)

    rate = {name: args.records / statistics.median(values) for name, values in seconds.items()}
    bare = rate["raw executemany, bare table"]
    print(f"\n{args.records:,} records of {args.body_bytes} bytes, batches of {args.batch}, "
          f"median of {args.trials} trials, SQLite {sqlite3.sqlite_version}")
    print(f"{'':34s} {'records/s':>12s} {'MB/s':>7s} {'vs bare':>8s}")
    for name, value in rate.items():
        print(f"{name:34s} {value:12,.0f} {value * args.body_bytes / 1e6:7.1f} {value / bare:8.2f}")
    print(f"{'put, one record per transaction':34s} {single_n / single:12,.0f}")
    print(f"{'drain: due + mark_sent + ack':34s} {args.records / drain:12,.0f}")


if __name__ == "__main__":
    main()
