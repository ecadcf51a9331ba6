"""Rows for the sync tests and bench: a mix of what agents store most (logs, chat, file operations, metrics)."""
from __future__ import annotations

import time

from broker.persister.store import Record, Store


def records(n: int, clients=("desk-1", "desk-2"), marker: str = "", start: int = 0) -> list[Record]:
    """``n`` agent records: logs, chat messages, file operations and sysinfo (metrics), round robin."""
    out, now = [], time.time()
    for i in range(start, start + n):
        client, ts, kind = clients[i % len(clients)], now - 1000 + i * 0.001, i % 5
        if kind in (0, 1):
            out.append(Record("log", client, f"l{i}", ts, f"log.{client}", {"level": "INFO", "logger": "agent",
                                                                                 "message": f"line {i} {marker}"}))
        elif kind == 2:
            out.append(Record("event", client, f"c{i}", ts, f"event.{client}.chat", {"direction": "in", "body": f"hi {i} {marker}"}))
        elif kind == 3:
            out.append(Record("event", client, f"s{i}", ts, f"event.{client}.sysinfo",
                              {"hostname": client, "cpu_percent": i % 100, "memory_percent": 50.0, "disk_percent": 10.0}))
        else:
            out.append(Record("event", client, f"f{i}", ts, f"event.{client}.fileop", {"op": "list", "path": f"/home/kim/{marker}{i}"}))
    return out


def fill(store: Store, n: int, chunk: int = 5000, **kw) -> None:
    """Write ``n`` records into ``store`` (see :func:`records`), ``chunk`` per transaction."""
    start = kw.pop("start", 0)
    for at in range(0, n, chunk):
        result = store.write_batch(records(min(chunk, n - at), start=start + at, **kw))
        assert not result.rejected, result.rejected[:3]
