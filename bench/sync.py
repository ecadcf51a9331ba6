"""MySQL sync: a full snapshot of 100k rows beside MariaDB's own ceiling, and the change latency, in one run.

A real stack: ``ems broker`` and ``ems persist`` processes over a store
filled with N rows (logs, chat, file operations, metrics), a private
MariaDB started for the run, and the sync worker (:class:`sync.worker.SyncWorker`,
in this process, on its own thread) with its service key. Measured:

* **full snapshot**: from the worker's start (schema already made) until
  the snapshot's last page is committed in MySQL: every row read from the
  store by ``store.changes``, carried over the bus, sensitive fields sealed
  for the web, upserted with its watermark;
* **re-snapshot**: the same over a database that already holds every row
  (the periodic full sync);
* **ceiling**: ``LOAD DATA LOCAL INFILE`` of the very rows MySQL then holds
  (sealed) into empty copies of the tables in a second database, plus the
  time to write its files: the fastest MariaDB takes these rows in here;
* **changes**: an agent publishes 1,000 log records through the broker; from
  the persister's commit (the agent's last ACK) to the sync worker's MySQL
  commit of the last of them (wall clock), over several rounds.

    python -m bench.sync                 # 100,000 rows
    python -m bench.sync --rows 20000    # quicker

Targets (issue #13): full snapshot of 100k rows <= 1 s and >= 50 % of the
ceiling; 1,000 changed rows from store commit to MySQL commit <= 100 ms.
Figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.stack import ServerStack
from bench.sync_rows import fill
from broker.cli.web_stack import register_sync_key
from broker.core import keys
from broker.core.client import BusClient
from broker.core.config import ClientConfig
from broker.core.envelope import Kind
from broker.persister.crypto import SecurityManager
from broker.persister.store import Store
from sync import bulk_load, mariadb
from sync.mysql_url import MysqlUrl, connect
from sync.snapshot_db import SnapshotDB
from sync.tables import TABLES
from sync.web_crypto import WebKey, key_path
from sync.worker import SyncConfig, SyncWorker

CHANGED_ROWS = 1000
ROUNDS = 5


def say(msg: str) -> None:
    print(f"[sync bench] {msg}", file=sys.stderr, flush=True)


def _client(stack: ServerStack, name: str, hello: dict | None = None) -> BusClient:
    config = ClientConfig(server=stack.bind, server_key=stack.broker_key)
    client = BusClient(config, keys.load(stack.data.keys, name), hello=hello)
    client.connect()
    client.wait_ready(30)
    return client


def _database(instance, name: str):
    url = MysqlUrl.parse(instance.admin_url())
    conn = connect(url)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    conn.commit()
    conn.close()
    return url.with_database(name)


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.001)


def full_snapshot(worker: SyncWorker, thread: threading.Thread | None = None) -> float:
    """Ask for a full snapshot (starting the worker's ``thread`` if given) and time it until its last page is committed."""
    t0 = time.perf_counter()
    worker.full_wanted = True
    if thread is not None:
        thread.start()
    _wait(lambda: not worker.full_wanted and not worker.db.full_running, 600, "the full snapshot")
    return time.perf_counter() - t0


def ceiling(url, target) -> dict:
    """LOAD DATA LOCAL INFILE of the rows ``url`` holds into empty copies of the tables in ``target``."""
    from sync import schema

    src, dst = connect(url), connect(target, local_infile=True)
    schema.create_tables(dst, schema.SNAPSHOT_TABLES)
    write_s = load_s = 0.0
    rows = 0
    with tempfile.TemporaryDirectory() as tmp, src.cursor() as read, dst.cursor() as cur:
        for spec in TABLES.values():
            read.execute(f"SELECT * FROM `{spec.mysql}`")
            data = read.fetchall()
            rows += len(data)
            path = Path(tmp) / f"{spec.mysql}.tsv"
            t0 = time.perf_counter()
            with path.open("wb") as out:  # the sync's own fastest formatting, so the two compare loading alone
                out.write(b"".join([bulk_load.line(row) for row in data]))
            t1 = time.perf_counter()
            cur.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE `{spec.mysql}`")
            dst.commit()
            write_s += t1 - t0
            load_s += time.perf_counter() - t1
    src.close()
    dst.close()
    return {"rows": rows, "write_files_s": write_s, "load_s": load_s, "seconds": write_s + load_s}


def change_latency(stack: ServerStack, worker: SyncWorker, agent: BusClient, url) -> list[float]:
    """Per round: ms from the persister's commit of 1,000 new log rows (the last ACK) to their MySQL commit."""
    out = []
    for round_ in range(ROUNDS):
        ids = {agent.publish(Kind.LOG, "", {"level": "INFO", "logger": "bench", "message": f"change {round_} {i}"})
               for i in range(CHANGED_ROWS)}
        acked_at = 0.0
        while ids:
            env = agent.poll(5.0)
            if env is not None and env.kind is Kind.ACK:
                ids -= set(env.data().get("ids", []))
                acked_at = time.time()
        _wait(lambda: _agent_rows(url, agent.client_id) >= CHANGED_ROWS * (round_ + 1), 30, "the changes in MySQL")
        out.append((worker.status["last_page"] - acked_at) * 1000)
        time.sleep(0.2)
    return out


def _agent_rows(url, client_id: str) -> int:
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM snapshot_client_logs WHERE client_id = %s", (client_id,))
            return cur.fetchone()[0]
    finally:
        conn.close()


def run(rows: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="ems-sync-bench-") as tmp:
        root = Path(tmp)
        stack = ServerStack(root)
        register_sync_key(stack.data)
        say(f"filling the store with {rows:,} rows")
        with Store(stack.store_db, SecurityManager(stack.data.keys / "store-keys.json")) as store:
            fill(store, rows)
        instance = mariadb.start(root / "mariadb")
        stack.start()
        try:
            return _measure(stack, instance, rows)
        finally:
            stack.stop()
            instance.stop()


def _measure(stack: ServerStack, instance, rows: int) -> dict:
    url = _database(instance, "ems_web")
    _wait(lambda: "subscribed" in (stack.logs / "persister.log").read_text(), 30, "the persister")
    bus = BusClient(ClientConfig(server=stack.bind, server_key=stack.broker_key), keys.load(stack.data.keys, "sync"),
                    hello={"client_id": "sync"})
    db = SnapshotDB(url, stack.broker_key, WebKey.load_or_create(key_path(stack.data.root)))
    db.open()
    worker = SyncWorker(bus, db, SyncConfig(full_every_s=1e9))
    thread = threading.Thread(target=worker.run, daemon=True)
    say("full snapshot into an empty database (the worker joins the bus first)")
    first = full_snapshot(worker, thread)
    say("full snapshot over the same rows")
    again = full_snapshot(worker)
    say("LOAD DATA LOCAL INFILE ceiling")
    ceil = ceiling(url, _database(instance, "ems_ceiling"))
    agent_pair = keys.generate()
    operator = _client(stack, "operator")
    operator.request("keys.add", public_key=agent_pair.public, client_id="bench-agent", role="agent")
    operator.close()
    agent = BusClient(ClientConfig(server=stack.bind, server_key=stack.broker_key), agent_pair, hello={"client_id": "bench-agent"})
    agent.connect()
    agent.wait_ready(30)
    say(f"{ROUNDS} rounds of {CHANGED_ROWS:,} changed rows")
    latency = change_latency(stack, worker, agent, url)
    agent.close()
    worker.stop()
    thread.join(10)
    return {
        "rows_in_store": rows, "rows_synced": ceil["rows"], "full_snapshot_s": first, "resnapshot_s": again,
        "ceiling": ceil, "ratio": ceil["seconds"] / first if first else None,
        "change_ms": latency, "change_ms_median": statistics.median(latency), "change_ms_max": max(latency),
        "targets_met": {"full_le_1s": first <= 1.0, "ratio_ge_50pct": ceil["seconds"] / first >= 0.5,
                        "change_le_100ms": statistics.median(latency) <= 100.0},
    }


def print_table(r: dict) -> None:
    c = r["ceiling"]
    print(f"rows synced (every store table)              {r['rows_synced']:>10,}")
    print(f"full snapshot into empty MySQL               {r['full_snapshot_s']:>10.3f} s  "
          f"({r['rows_synced'] / r['full_snapshot_s']:,.0f} rows/s)")
    print(f"full snapshot over the same rows             {r['resnapshot_s']:>10.3f} s")
    print(f"ceiling: LOAD DATA LOCAL INFILE ({c['rows']:,} rows) {c['seconds']:>7.3f} s  "
          f"(files {c['write_files_s']:.3f} s + load {c['load_s']:.3f} s)")
    print(f"snapshot ÷ ceiling speed                     {r['ratio'] * 100:>9.0f} %")
    print(f"1,000 changed rows, store commit -> MySQL commit: median {r['change_ms_median']:.1f} ms, "
          f"max {r['change_ms_max']:.1f} ms ({', '.join(f'{x:.0f}' for x in r['change_ms'])})")
    for name, met in r["targets_met"].items():
        print(f"target {name}: {'met' if met else 'MISSED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the store (default %(default)s)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    result = run(args.rows)
    result["when"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    print_table(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
