"""Store write benchmark: ``Store.write_batch`` against a raw SQLite ceiling.

One run, same machine, same directory, same pragmas (WAL, the chosen
``synchronous``), same batch size, one transaction per batch:

* **store**: N small event records (``event.<client>.window`` with a
  two-field payload, from ``--clients`` agents) through
  ``Store.write_batch``: validation, routing, msgpack, AES-GCM of the
  payload, ``INSERT OR IGNORE`` per record, client rows;
* **store replay**: the same records again (all duplicates, as after an
  agent resends its outbox);
* **raw ceiling**: the same rows (msgpack payload, not encrypted) with one
  ``executemany(INSERT OR IGNORE ...)`` per batch into a bare table with
  the same unique key and index as ``activity_logs``;
* **crypto only**: the AES-GCM sealing the store does, alone, for scale.

Timings are printed, never asserted. ``python bench/store_write.py --help``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # `python bench/store_write.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from broker.core import sqlite_db  # noqa: E402
from broker.core.envelope import new_id, pack_body  # noqa: E402
from broker.persister.crypto import SecurityManager, aad_for  # noqa: E402
from broker.persister.store import Record, Store  # noqa: E402

RAW_DDL = """
CREATE TABLE raw_events (
    id INTEGER PRIMARY KEY, client_id TEXT NOT NULL, msg_id TEXT NOT NULL, ts REAL NOT NULL,
    name TEXT NOT NULL, data BLOB NOT NULL, UNIQUE (client_id, msg_id)
);
CREATE INDEX raw_events_client_ts ON raw_events (client_id, ts);
CREATE INDEX raw_events_ts ON raw_events (ts);
"""


def make_records(n: int, clients: int) -> list[Record]:
    now = time.time()
    records = []
    for i in range(n):
        client = f"agent-{i % clients:04d}"
        records.append(
            Record("event", client, new_id(), now + i * 1e-3, f"event.{client}.window", {"app": "editor", "title": f"doc {i}"})
        )
    return records


def batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Timer:
    """Wall and CPU seconds of a block (CPU shows the cost when I/O is noisy)."""

    def __enter__(self) -> "Timer":
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def bench_store(path: Path, crypto: SecurityManager, records: list[Record], batch: int, sync: str) -> tuple[Timer, Timer]:
    store = Store(path, crypto, synchronous=sync)
    with Timer() as first:
        new = sum(store.write_batch(chunk).new for chunk in batches(records, batch))
    with Timer() as replay:
        dups = sum(store.write_batch(chunk).duplicates for chunk in batches(records, batch))
    store.close()
    if new != len(records) or dups != len(records):
        raise SystemExit(f"store wrote {new} new / {dups} duplicates of {len(records)}")
    return first, replay


def bench_raw(path: Path, records: list[Record], batch: int, sync: str) -> Timer:
    conn = sqlite_db.connect(path, sync)
    conn.executescript(RAW_DDL)
    rows = [(r.client_id, r.msg_id, r.ts, "window", pack_body(r.data)) for r in records]
    with Timer() as timer:
        for chunk in batches(rows, batch):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT OR IGNORE INTO raw_events (client_id, msg_id, ts, name, data) VALUES (?, ?, ?, ?, ?)", chunk)
            conn.execute("COMMIT")
    (count,) = conn.execute("SELECT count(*) FROM raw_events").fetchone()
    conn.close()
    if count != len(records):
        raise SystemExit(f"raw wrote {count} of {len(records)}")
    return timer


def bench_crypto(crypto: SecurityManager, records: list[Record]) -> Timer:
    with Timer() as timer:
        for r in records:
            crypto.encrypt(pack_body(r.data), aad_for("activity_logs", "data", r.client_id, r.msg_id))
    return timer


def median_trial(trials: list[dict[str, Timer]]) -> dict[str, Timer]:
    """The trial whose store run is the median by wall time."""
    return sorted(trials, key=lambda t: t["store"].wall)[len(trials) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000, help="records per write_batch / transaction")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--sync", default="NORMAL", choices=("NORMAL", "FULL"))
    parser.add_argument("--trials", type=int, default=3, help="fresh databases each; the median is reported")
    parser.add_argument("--dir", type=Path, help="where the databases go (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    records = make_records(args.records, args.clients)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="ems-store-bench-") as tmp:
        root = Path(tmp)
        crypto = SecurityManager(root / "keys" / "store-keys.json")
        print(f"{args.records} records, batches of {args.batch}, {args.clients} clients, synchronous={args.sync}, in {root}", file=sys.stderr)
        trials = []
        for trial in range(args.trials):
            raw = bench_raw(root / f"raw{trial}.db", records, args.batch, args.sync)
            store, replay = bench_store(root / f"store{trial}.db", crypto, records, args.batch, args.sync)
            trials.append({"raw": raw, "store": store, "replay": replay, "crypto": bench_crypto(crypto, records)})
            print(f"trial {trial + 1}: raw {raw.wall:.2f} s, store {store.wall:.2f} s", file=sys.stderr)
        sizes = {name: sum(p.stat().st_size for p in root.glob(f"{name}0.db*")) for name in ("raw", "store")}

    n = args.records
    best = median_trial(trials)
    rows = [
        ("raw executemany (ceiling)", best["raw"]),
        ("store write_batch", best["store"]),
        ("store replay (duplicates)", best["replay"]),
        ("crypto only (seal payload)", best["crypto"]),
    ]
    figures = {
        "records": n,
        "batch": args.batch,
        "clients": args.clients,
        "synchronous": args.sync,
        "trials": args.trials,
        **{f"{key}_records_per_s": n / t.wall for key, t in best.items()},
        **{f"{key}_cpu_s": t.cpu for key, t in best.items()},
        "store_vs_raw_wall": best["raw"].wall / best["store"].wall,
        "store_vs_raw_cpu": best["raw"].cpu / best["store"].cpu,
        "db_bytes": sizes,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
    }
    print(f"median of {args.trials} trials, {n} records")
    print(f"{'':28} {'records/s':>10} {'wall s':>7} {'cpu s':>7}")
    for label, t in rows:
        print(f"{label:28} {n / t.wall:10,.0f} {t.wall:7.2f} {t.cpu:7.2f}")
    print(
        f"store is {figures['store_vs_raw_wall']:.0%} of the raw ceiling by wall time,"
        f" {figures['store_vs_raw_cpu']:.0%} by CPU time"
    )
    print(f"database size: raw {sizes['raw'] / 1e6:.1f} MB, store {sizes['store'] / 1e6:.1f} MB")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
