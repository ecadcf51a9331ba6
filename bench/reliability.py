"""Fault scenarios on loopback, each bounded in time; writes ``docs/reliability.md``.

1. kill -9 loop (``bench.chaos_store.run_chaos``): broker and persister
   SIGKILLed and restarted while 50 simulated agents stream numbered events;
   the store must hold every event exactly once.
2. stopped consumer: a viewer subscribed to ``event.`` is SIGSTOPped while
   20 simulated agents stream; broker RSS is sampled every second, the
   broker's drop counters read, the viewer SIGCONTed and checked to receive
   again, and the durable path (persister) checked to have stored every event.
3. hostile connections: 1,000 raw TCP connections that never handshake, and
   one enrolled agent flooding events (hostile, then well-behaved, under the
   default per-agent rate limit; then hostile with the limit off), while
   another agent's command round trip is measured (with and without).
4. fuzz (``bench.fuzz``): four targets under atheris (libFuzzer; hypothesis
   if atheris is missing), ``--fuzz-s`` seconds shared between them
   (``--fuzz-target-s NAME=S`` sets one): ``decode_header`` / ``unpack_body``
   on raw bytes; the broker's dispatch (every role and kind, valid headers,
   hostile bodies, with a persister); the persister's ingest; its queries.
   Peak RSS per target; each distinct finding kept as a crash file with the
   command that replays it.
5. network cut (``bench.netcut.run_netcut``): a real agent and an agent
   streaming numbered events, in a network namespace, have their link
   black-holed for 60 s (10 s with ``--quick``); offline in time, back after
   the heal, every event stored once, a command queued during the cut run once.

    python -m bench.reliability            # full size (about 17 min, 10 of them fuzzing)
    python -m bench.reliability --quick    # about 2.5 min
    python -m bench.reliability --quick --only netcut --doc /tmp/netcut.md   # one scenario, docs/ untouched

Everything runs on 127.0.0.1 (scenario 5: a network namespace made for the
run, as root); every process started here is stopped by pid.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil

from bench.chaos_store import run_chaos
from bench.fuzz.scenario import fuzz_rows, run_fuzz, split
from bench.netcut import run_netcut
from bench.stack import ServerStack, stop_child
from broker.core import keys as keyfiles
from broker.core.client import BusClient, RateLimited
from broker.core.config import ClientConfig
from broker.core.envelope import Kind
from broker.core.errors import EmsError, SendError
from broker.cli.local_stack import operator_id
from broker.server.registry import KeyRegistry

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
OUT = ROOT / "bench" / "out"

AGENT_ID = "rel-agent"
FLOOD_ID = "rel-flood"
VIEWER_ID = "rel-viewer"

_T0 = time.monotonic()


def progress(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def percentiles(values_ms: list[float]) -> dict:
    if not values_ms:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    s = sorted(values_ms)

    def pick(p: float) -> float:
        return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s))) - 1))]

    return {"n": len(s), "p50_ms": round(pick(50), 3), "p99_ms": round(pick(99), 3), "max_ms": round(s[-1], 3),
            "mean_ms": round(statistics.fmean(s), 3)}


def register(stack: ServerStack, roles: dict[str, str]) -> dict[str, keyfiles.KeyPair]:
    pairs = {name: keyfiles.generate() for name in roles}
    registry = KeyRegistry(stack.data.broker_db)
    try:
        for name, pair in pairs.items():
            registry.add(pair.public, name, roles[name])
    finally:
        registry.close()
    return pairs


def client_for(stack: ServerStack, pair: keyfiles.KeyPair, client_id: str, hb: float = 0.5) -> BusClient:
    from broker.core.config import timing_for
    client = BusClient(ClientConfig(server=stack.bind, server_key=stack.broker_key, timing=timing_for(hb)), pair,
                       hello={"client_id": client_id})
    client.connect()
    client.wait_ready(15)
    return client


def operator(stack: ServerStack) -> BusClient:
    return client_for(stack, keyfiles.load(stack.data.keys, "operator"), operator_id())


def wait_broker(stack: ServerStack, timeout_s: float = 20.0) -> None:
    """Until the broker answers ``status`` (it is started by ServerStack)."""
    client = operator(stack)
    try:
        client.request("status", timeout_s=timeout_s)
    finally:
        client.close()


def status_counters(stack: ServerStack) -> dict:
    client = operator(stack)
    try:
        return client.request("status", timeout_s=10)["counters"]
    finally:
        client.close()


def count_rows(store_db: Path, prefix: str, name: str = "chaos") -> tuple[int, int]:
    """(rows, distinct msg ids) stored for agents ``prefix-*``."""
    with sqlite3.connect(f"file:{store_db}?mode=ro", uri=True) as db:
        rows, distinct = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT msg_id) FROM activity_logs WHERE name=? AND client_id LIKE ?",
            (name, f"{prefix}-%")).fetchone()
    return rows, distinct


# ---------------------------------------------------------------------------
# children (spawned)
# ---------------------------------------------------------------------------
def _term_flag() -> dict:
    flag = {"stop": False}
    signal.signal(signal.SIGTERM, lambda *_: flag.__setitem__("stop", True))
    return flag


def viewer_main(bind: str, server_key: str, pair: keyfiles.KeyPair, received: Any, ready: Any, max_s: float) -> None:
    """A viewer subscribed to ``event.``; counts what it receives into ``received``."""
    flag = _term_flag()
    from broker.core.config import timing_for
    client = BusClient(ClientConfig(server=bind, server_key=server_key, timing=timing_for(5.0)), pair,
                       hello={"client_id": VIEWER_ID})
    client.connect()
    client.wait_ready(15)
    client.subscribe(["event."])
    ready.set()
    end = time.monotonic() + max_s
    while not flag["stop"] and time.monotonic() < end:
        got = client.drain(1000, 0.1)
        n = sum(1 for env in got if env.kind is Kind.EVENT)
        if n:
            with received.get_lock():
                received.value += n
    client.close()


def responder_main(bind: str, server_key: str, pair: keyfiles.KeyPair, ready: Any, max_s: float) -> None:
    """A minimal agent: COMMAND -> COMMAND_STATUS delivered + RESULT ok."""
    flag = _term_flag()
    client = BusClient(ClientConfig(server=bind, server_key=server_key), pair, hello={"client_id": AGENT_ID})
    client.connect()
    client.wait_ready(15)
    ready.set()
    end = time.monotonic() + max_s
    while not flag["stop"] and time.monotonic() < end:
        env = client.poll(0.1)
        if env is None or env.kind is not Kind.COMMAND:
            continue
        client.send(Kind.COMMAND_STATUS, data={"status": "delivered"}, corr=env.msg_id)
        client.send(Kind.RESULT, data={"ok": True, "output": {"pong": True}}, corr=env.msg_id)
    client.close()


def idle_conns_main(port: int, n: int, hold_s: float, opened: Any, ready: Any) -> None:
    """``n`` plain TCP connections to the broker that never say anything, held ``hold_s``."""
    flag = _term_flag()
    socks = []
    try:
        for _ in range(n):
            try:
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                break
        opened.value = len(socks)
        ready.set()
        end = time.monotonic() + hold_s
        while not flag["stop"] and time.monotonic() < end:
            time.sleep(0.1)
    finally:
        for s in socks:
            s.close()


def flood_main(bind: str, server_key: str, pair: keyfiles.KeyPair, duration_s: float, max_events: int, honour: bool,
               sent: Any, refused: Any, told: Any, ready: Any, go: Any) -> None:
    """One enrolled agent publishing events as fast as its socket takes them.

    ``honour``: a well-behaved BusClient (it keeps to the limit its WELCOME
    states, and ``publish`` pauses while a RATE_LIMITED retry-after runs);
    otherwise hostile: a client that does not pace itself, ``send`` on its own
    topic, ignoring every RATE_LIMITED. ``told`` counts the notices received.
    """
    flag = _term_flag()
    client = BusClient(ClientConfig(server=bind, server_key=server_key), pair, hello={"client_id": FLOOD_ID}, pace=honour)
    client.connect()
    client.wait_ready(15)
    ready.set()
    go.wait(30)
    body = b"\x81\xa1x\xc4\xc8" + b"\0" * 200  # msgpack {"x": <200 bytes>}
    topic = f"event.{FLOOD_ID}.flood"
    n = bad = 0
    end = time.monotonic() + duration_s
    while not flag["stop"] and n < max_events and time.monotonic() < end:
        try:
            if honour:
                client.publish(Kind.EVENT, "flood", body=body)
            else:
                client.send(Kind.EVENT, topic, body=body)
            n += 1
        except RateLimited:  # honoured: wait for a token / the retry-after, answering heartbeats meanwhile
            client.drain(1000, max(0.001, min(0.1, client.throttled_until - client.clock(), end - time.monotonic())))
        except SendError:
            bad += 1
            client.drain(1000, 0.0)  # keep heartbeats/timers going
        if n % 1000 == 0:
            client.drain(1000, 0.0)
    sent.value, refused.value, told.value = n, bad, client.rate_limited
    client.close()


# ---------------------------------------------------------------------------
# scenarios
# ---------------------------------------------------------------------------
def scenario_chaos(work: Path, quick: bool, seed: int | None) -> dict:
    size = dict(agents=50, events=200, broker_kills=3, persister_kills=3, agent_kills=1, rate=5000.0, timeout_s=300.0) if quick \
        else dict(agents=50, events=2000, broker_kills=20, persister_kills=20, agent_kills=3, rate=5000.0, timeout_s=900.0)
    progress(f"1. kill -9 loop: {size['agents'] * size['events']:,} events, {size['broker_kills']}+{size['persister_kills']} kills")
    report = run_chaos(work / "chaos", seed=seed, progress=lambda m: progress("   " + m), **size)
    return asdict(report) | {"ok": report.ok}


def scenario_stopped_consumer(work: Path, ctx, quick: bool) -> dict:
    agents, stream_s, stop_s, rate = 20, 24.0, 20.0, 2000.0
    events = int(rate * stream_s / agents)
    progress(f"2. stopped consumer: {agents} agents x {events:,} events at {rate:.0f}/s, viewer SIGSTOPped {stop_s:.0f} s")
    # broker heartbeat 5 s (peer timeout 15 s, the product default): the stopped viewer stays a peer long enough
    stack = ServerStack(work / "stopped", heartbeat_s=5.0)
    pairs = register(stack, {VIEWER_ID: "viewer"})
    fleet = stack.fleet("agents", agents, events, rate, timeout_s=stream_s + 90, prefix="stop")
    received, ready = ctx.Value("q", 0), ctx.Event()
    viewer = ctx.Process(target=viewer_main, args=(stack.bind, stack.broker_key, pairs[VIEWER_ID], received, ready, 180.0),
                         name="viewer", daemon=True)
    out: dict[str, Any] = {"agents": agents, "events_sent": agents * events, "rate": rate, "stopped_s": stop_s}
    try:
        stack.start()
        wait_broker(stack)
        viewer.start()
        if not ready.wait(30):
            raise RuntimeError("viewer did not subscribe")
        broker_ps = psutil.Process(stack.broker.popen.pid)
        before = status_counters(stack)
        rss0 = broker_ps.memory_info().rss
        fleet.start()
        time.sleep(1.0)
        got_before_stop = received.value
        os.kill(viewer.pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        samples = []
        while time.monotonic() - stopped_at < stop_s:
            samples.append(broker_ps.memory_info().rss)
            time.sleep(1.0)
        during = status_counters(stack)
        got_at_stop = received.value
        os.kill(viewer.pid, signal.SIGCONT)
        cont_at = time.monotonic()
        resumed_after = None
        base = received.value
        while time.monotonic() - cont_at < 20:
            samples.append(broker_ps.memory_info().rss)
            time.sleep(0.25)
            if resumed_after is None and received.value > base:
                resumed_after = time.monotonic() - cont_at
            if resumed_after is not None and fleet.popen.poll() is not None:
                break
        # and events published after the resume reach it too (not only a queued backlog)
        tail_base = received.value
        tail = stack.fleet("tail", 1, 50, 500.0, timeout_s=30, prefix="tail")
        tail.start()
        try:
            tail.popen.wait(40)
        except subprocess.TimeoutExpired:
            pass
        finally:
            tail.stop()
        time.sleep(1.0)
        got_tail = received.value - tail_base
        try:
            code = fleet.popen.wait(max(1.0, stream_s + 90 - (time.monotonic() - stopped_at)))
        except subprocess.TimeoutExpired:
            code = None
        after = status_counters(stack)
        stored, distinct = count_rows(stack.store_db, "stop")
        out.update({
            "fleet_finished": code == 0,
            "rss_start_mb": round(rss0 / 2**20, 1),
            "rss_max_mb": round(max(samples) / 2**20, 1),
            "rss_growth_mb": round((max(samples) - rss0) / 2**20, 1),
            "rss_samples_mb": [round(s / 2**20, 1) for s in samples],
            "dropped_hwm_while_stopped": during.get("dropped_hwm", 0) - before.get("dropped_hwm", 0),
            "dropped_fanout_while_stopped": during.get("dropped_fanout", 0) - before.get("dropped_fanout", 0),
            "dropped_hwm": after.get("dropped_hwm", 0) - before.get("dropped_hwm", 0),
            "dropped_fanout": after.get("dropped_fanout", 0) - before.get("dropped_fanout", 0),
            "dropped_unroutable": after.get("dropped_unroutable", 0) - before.get("dropped_unroutable", 0),
            "viewer_received_before_stop": got_before_stop,
            "viewer_received_at_stop_end": got_at_stop,
            "viewer_received_total": received.value,
            "viewer_resumed_after_s": None if resumed_after is None else round(resumed_after, 2),
            "viewer_got_new_events_after_resume": got_tail,
            "stored": stored, "stored_distinct": distinct,
            "durable_ok": code == 0 and distinct == agents * events,
        })
    finally:
        stop_child(viewer)
        fleet.stop()
        stack.stop()
    return out


def round_trips(op: BusClient, n: int, max_s: float) -> dict:
    lat: list[float] = []
    failures = 0
    end = time.monotonic() + max_s
    for i in range(n):
        if time.monotonic() > end:
            break
        t0 = time.perf_counter()
        try:
            status = op.send_command(AGENT_ID, "ping", {"echo": i}, timeout_s=5)
            ok = op.wait_result(status["id"], 5).get("status") == "done"
        except EmsError:
            ok = False
        lat.append((time.perf_counter() - t0) * 1000)
        failures += not ok
    return percentiles(lat) | {"failures": failures}


def wait_online(op: BusClient, client_id: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if {a["client_id"]: a["state"] for a in op.request("agents")}.get(client_id) == "online":
                return
        except EmsError:
            pass  # the broker is (re)starting
        time.sleep(0.05)


def flood_phase(ctx, stack: ServerStack, op: BusClient, pair: keyfiles.KeyPair, procs: list, flood_s: float, n_rtt: int,
                honour: bool, label: str) -> dict:
    """Command round trips while one agent floods events for ``flood_s``; what the broker routed and dropped."""
    sent, refused, told, ready, go = ctx.Value("q", 0), ctx.Value("q", 0), ctx.Value("q", 0), ctx.Event(), ctx.Event()
    flood = ctx.Process(target=flood_main, args=(stack.bind, stack.broker_key, pair, flood_s, 5_000_000, honour,
                                                 sent, refused, told, ready, go), name="flood", daemon=True)
    procs.append(flood)
    flood.start()
    if not ready.wait(30):
        raise RuntimeError("flooding agent did not connect")
    before = op.request("status", timeout_s=10)
    go.set()
    time.sleep(0.5)
    rtt = round_trips(op, n_rtt, flood_s - 1.0)
    flood.join(flood_s + 15)
    stop_child(flood)
    time.sleep(1.0)
    after = op.request("status", timeout_s=10)
    c2, c3 = before["counters"], after["counters"]
    keys = ("routed", "dropped_rate_limited", "rate_limit_notices", "security_rate_limited", "dropped_hwm", "dropped_fanout")
    out = {"label": label, "honour": honour, "rtt": rtt, "sent": sent.value, "send_refused": refused.value,
           "told": told.value, "rate": round(sent.value / flood_s), "rate_limit": after["broker"].get("rate_limit"),
           "counters": {k: c3.get(k, 0) - c2.get(k, 0) for k in keys}}
    progress(f"   {label}: {sent.value:,} events sent, routed {out['counters']['routed']:,}, "
             f"dropped over the limit {out['counters']['dropped_rate_limited']:,}; p50 {rtt['p50_ms']} ms p99 {rtt['p99_ms']} ms")
    return out


def scenario_hostile(work: Path, ctx, quick: bool) -> dict:
    n_rtt, idle_n, hold_s, flood_s = (200, 1000, 10.0, 10.0)
    progress(f"3. hostile peers: {idle_n} idle TCP connections for {hold_s:.0f} s; one agent flooding for {flood_s:.0f} s, "
             "three times (hostile and well-behaved under the rate limit, hostile without)")
    stack = ServerStack(work / "hostile")
    pairs = register(stack, {AGENT_ID: "agent", FLOOD_ID: "agent"})
    port = int(stack.bind.rsplit(":", 1)[1])
    out: dict[str, Any] = {"round_trips": n_rtt, "idle_connections": idle_n, "hold_s": hold_s, "flood_s": flood_s}
    procs: list[mp.Process] = []
    op = None
    try:
        stack.start()
        wait_broker(stack)
        ready = ctx.Event()
        responder = ctx.Process(target=responder_main, args=(stack.bind, stack.broker_key, pairs[AGENT_ID], ready, 300.0),
                                name="responder", daemon=True)
        procs.append(responder)
        responder.start()
        if not ready.wait(30):
            raise RuntimeError("responder agent did not connect")
        op = operator(stack)
        wait_online(op, AGENT_ID, 10)
        round_trips(op, 20, 5)  # warm-up
        out["baseline"] = round_trips(op, n_rtt, 15)
        progress(f"   baseline p50 {out['baseline']['p50_ms']} ms p99 {out['baseline']['p99_ms']} ms")

        c0 = status_counters(stack)
        opened, ready = ctx.Value("i", 0), ctx.Event()
        idle = ctx.Process(target=idle_conns_main, args=(port, idle_n, hold_s, opened, ready), name="idle", daemon=True)
        procs.append(idle)
        idle.start()
        if not ready.wait(30):
            raise RuntimeError("idle connections helper did not report")
        time.sleep(0.5)
        out["idle_opened"] = opened.value
        out["with_idle"] = round_trips(op, n_rtt, hold_s - 1.5)
        out["idle_still_open_at_end"] = idle.is_alive()
        idle.join(hold_s + 10)
        stop_child(idle)
        c1 = status_counters(stack)
        out["idle_conn_counters"] = {k: c1.get(k, 0) - c0.get(k, 0) for k in set(c1) | set(c0)
                                     if k.startswith(("conn_", "zap_", "dropped_")) and c1.get(k, 0) != c0.get(k, 0)}
        progress(f"   with {opened.value} idle connections p50 {out['with_idle']['p50_ms']} ms p99 {out['with_idle']['p99_ms']} ms")

        run = dict(ctx=ctx, stack=stack, op=op, pair=pairs[FLOOD_ID], procs=procs, flood_s=flood_s, n_rtt=n_rtt)
        out["flood"] = flood_phase(**run, honour=False, label="hostile flood, default per-agent limit")
        out["flood_polite"] = flood_phase(**run, honour=True, label="well-behaved flood (honours RATE_LIMITED), default limit")
        progress("   restarting the broker without a per-agent rate limit, for the same flood without a quota")
        stack.broker.stop()
        stack.broker.argv += ["--no-agent-rate-limit"]
        stack.broker.start()
        wait_online(op, AGENT_ID, 30)
        round_trips(op, 20, 5)  # warm-up on the new broker
        out["flood_unlimited"] = flood_phase(**run, honour=False, label="hostile flood, no rate limit")
    finally:
        if op is not None:
            op.close()
        for p in procs:
            stop_child(p)
        stack.stop()
    return out


def scenario_fuzz(work: Path, seconds: dict[str, float]) -> dict:
    progress(f"4. fuzz {', '.join(seconds)} for {sum(seconds.values()):.0f} s in all")
    return run_fuzz(work, seconds, progress)


def scenario_netcut(work: Path, quick: bool) -> dict:
    # full size: the product heartbeat (5 s, offline after 15 s); quick: 1 s (offline after 3 s)
    cut_s, heartbeat_s = (10.0, 1.0) if quick else (60.0, 5.0)
    progress(f"5. network cut: the agents' link black-holed for {cut_s:.0f} s (heartbeat {heartbeat_s:g} s)")
    report = run_netcut(work / "netcut", cut_s=cut_s, heartbeat_s=heartbeat_s, progress=lambda m: progress("   " + m))
    return asdict(report) | {"ok": report.ok}


# ---------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------
def fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def verdict(ok: bool) -> str:
    """A scenario's result as the page shows it."""
    return f"**{'OK' if ok else 'FAILED'}**"


def loss_row(r: dict) -> str:
    """The row every at-least-once scenario ends with: what the store holds against what was sent."""
    return f"| | stored / missing / duplicated | {fmt(r['stored'])} / {fmt(r['missing'])} / {fmt(r['duplicated'])} |"


def render(results: dict) -> str:
    q = results["quick"]
    lines = [
        "# Reliability: fault scenarios",
        "",
        f"Generated by `python -m bench.reliability{' --quick' if q else ''}` on {results['when']} "
        f"({results['machine']}). Everything on 127.0.0.1 (scenario 5: a network namespace on this machine), "
        "real processes (`ems broker`, `ems persist`, "
        "simulated agents from `bench.durable_agents`). Re-run with `make chaos`.",
        "",
        "| scenario | figure | value |",
        "|---|---|---|",
    ]
    c = results.get("chaos")
    if c:
        lines += [
            f"| 1. kill -9 loop | events expected | {fmt(c['expected'])} ({c['agents']} agents x {fmt(c['events_per_agent'])}) |",
            f"| | kills: broker / persister / agents' process | {c['broker_kills']} / {c['persister_kills']} / {c['agent_kills']} |",
            loss_row(c),
            f"| | finished, result | {fmt(c['finished'])}, {verdict(c['ok'])} in {c['seconds']:.1f} s |",
        ]
    s = results.get("stopped")
    if s:
        lines += [
            f"| 2. stopped consumer | stream | {s['agents']} agents, {fmt(s['events_sent'])} events at {s['rate']:.0f}/s; viewer SIGSTOPped {s['stopped_s']:.0f} s |",
            f"| | broker RSS start / max / growth | {s['rss_start_mb']} / {s['rss_max_mb']} / **{s['rss_growth_mb']} MB** |",
            f"| | broker `dropped_hwm` / `dropped_fanout` (whole run) | {fmt(s['dropped_hwm'])} / {fmt(s['dropped_fanout'])} "
            f"(while stopped: {fmt(s['dropped_hwm_while_stopped'])} / {fmt(s['dropped_fanout_while_stopped'])}) |",
            f"| | viewer events: before stop / total | {fmt(s['viewer_received_before_stop'])} / {fmt(s['viewer_received_total'])} |",
            f"| | viewer receives again after SIGCONT | {fmt(s['viewer_resumed_after_s'] is not None)}"
            f" (first after {fmt(s['viewer_resumed_after_s'])} s; {fmt(s['viewer_got_new_events_after_resume'])} of 50 fresh events) |",
            f"| | durable path: sent / stored (distinct) | {fmt(s['events_sent'])} / {fmt(s['stored'])} ({fmt(s['stored_distinct'])}) "
            f"-> {verdict(s['durable_ok'])} |",
        ]
    h = results.get("hostile")
    if h:
        b, i = h["baseline"], h["with_idle"]

        def rtt(x: dict) -> str:
            return f"{x['p50_ms']} / {x['p99_ms']} ms (n={x['n']}, failures {x['failures']})"

        def ratio(x: dict) -> str:
            if not x["p50_ms"] or not b["p50_ms"] or not b["p99_ms"]:
                return "n/a"
            return f"{x['p50_ms'] / b['p50_ms']:.1f}x / {x['p99_ms'] / b['p99_ms']:.1f}x quiet"

        lines += [
            f"| 3. hostile peers | command round trip p50 / p99, quiet | {rtt(b)} |",
            f"| | ... with {fmt(h['idle_opened'])} raw TCP connections that never handshake | {rtt(i)} |",
        ]
        for key in ("flood", "flood_polite", "flood_unlimited"):
            f = h.get(key)
            if not f:
                continue
            c = f["counters"]
            lines += [
                f"| | ... during a {f['label']} | {rtt(f['rtt'])}; {ratio(f['rtt'])} |",
                f"| | that flood | {fmt(f['sent'])} events in {h['flood_s']:.0f} s ({fmt(f['rate'])}/s); routed {fmt(c['routed'])}, "
                f"dropped over the limit {fmt(c['dropped_rate_limited'])} (`dropped_rate_limited`), RATE_LIMITED notices "
                f"{fmt(c['rate_limit_notices'])} sent / {fmt(f['told'])} received, `dropped_hwm` {fmt(c['dropped_hwm'])} |",
            ]
    z = results.get("fuzz")
    if z:
        lines += fuzz_rows(z, fmt)
    n = results.get("netcut")
    if n:
        lines += [
            f"| 5. network cut (black hole) | cut length; stream | {n['cut_s']:.0f} s; {fmt(n['events'])} numbered events at "
            f"{n['rate']:.0f}/s, {fmt(n['created_during_cut'])} of them created during the cut |",
            f"| | offline detected after (peer timeout) | {fmt(n['offline_after_s'])} s ({n['peer_timeout_s']:g} s; "
            f"heartbeat {n['heartbeat_s']:g} s) |",
            f"| | online again after the heal | {fmt(n['online_after_s'])} s (streaming agent {fmt(n['stream_online_after_s'])} s) |",
            f"| | backlog stored after the heal | {fmt(n['backlog_after_s'])} s (stored while cut off: {fmt(n['stored_during_cut'])}) |",
            loss_row(n),
            f"| | command sent during the cut | first `{n['command_first_status']}`, then {' -> '.join(n['command_statuses']) or 'nothing'}; "
            f"ran {n['command_runs']} time(s), result {fmt(n['command_after_s'])} s after the heal "
            f"-> {verdict(n['ok'])} |",
        ]
    lines += [
        "",
        "## How to read it",
        "",
        "- **1** uses `bench.chaos_store.run_chaos`: agents write to a durable outbox and only forget an event once the store "
        "acknowledged it; the store deduplicates by message id. `OK` means every (agent, number) is stored exactly once.",
        "- **2**: the broker never blocks on a slow subscriber. Its per-peer send queue (ROUTER high-water mark, "
        "`send_hwm` 10,000) fills, further events for that subscriber are dropped and counted (`dropped_hwm`, "
        "and `dropped_fanout` for the publish fan-out), so broker memory stays bounded. The stopped viewer's "
        "peer timeout is the product default (broker heartbeat 5 s, 15 s timeout), shorter than the stop: "
        "the broker may also forget the viewer, which then re-introduces itself and re-subscribes after SIGCONT. "
        "A viewer is a live view; what it missed is not replayed to it, and events not sent to a viewer the broker has already forgotten are counted nowhere (most of the gap between events sent and what the viewer got). The persister's path is durable: "
        "every event is stored.",
        "- **3**: 'round trip' is `send_command` + `wait_result` from an operator to a minimal agent, through the broker, "
        "with ratios to the quiet figure of the same run. The broker meters what each agent publishes with two token "
        "buckets (`broker/core/quota.py`; defaults 2,000 msgs/s with a burst of 10,000, and 8 MiB/s with a burst of 16 MiB). "
        "A message over the limit is dropped right after its header is read, before any routing, counted per agent "
        "(`ems status`), reported as a throttled `rate_limited` security event, and the agent gets `RATE_LIMITED` "
        "with a retry-after at most once a second. The *hostile* flooder ignores that and keeps sending; the "
        "*well-behaved* one is a `BusClient`, which keeps to the limit its WELCOME states (what the broker would drop "
        "raises `RateLimited` in the client and is never sent) and pauses on a `RATE_LIMITED` retry-after; the last flood is the "
        "hostile one against the same broker restarted with the limit off. A hostile flooder still costs the broker "
        "a receive, a CurveZMQ decryption and a header decode per message (libzmq cannot stop reading one peer of a "
        "ROUTER), so the others' latency is protected from fan-out and store load, not from that.",
        "- **5** (`bench.netcut`): the agents run in a network namespace joined to the host by a veth pair; the cut "
        "points each end's neighbour entry at a MAC address that does not exist, so frames leave both sides normally "
        "and are discarded on arrival: no RST, no ICMP, no local error (a dead switch port). The broker notices "
        "the silence after its peer timeout (3 heartbeats); the agents notice after theirs, then reconnect with a "
        "growing, jittered delay while their connection attempts vanish too, so 'online again' depends on where in "
        "that cycle the heal falls: at most about one reconnect delay (growing to `reconnect_max_s`, 10 s) plus a "
        "few seconds, as an unanswered TCP connect is abandoned and dialled again after `connect_timeout_s` (2 s). "
        "The command is sent once the broker reports the agent offline, so it waits in the broker's queue.",
        "",
        "## Not covered yet",
        "",
        "- Scenario 3 floods from one agent only: no many-agent flood (each under its own limit), no flood of "
        "operator requests or commands (only agents are metered).",
        "- Idle connections are held for ~10 s only; libzmq drops a connection that has not finished the ZMTP "
        "handshake after its `handshake_ivl` (30 s by default), which this run does not reach. No slowloris on a "
        "half-finished CurveZMQ handshake, no connection-rate flood, no 10,000 idle connections (10,000 enrolled agents are measured by `bench/fleet.py`).",
        "- No disk-full here (the suite fills a real SQLite page limit under the persister: nothing acked, nothing lost), no fsync failure, SQLite corruption or clock jumps. The network cut (5) isolates agents from "
        "the server; broker and persister are never separated, and there is no packet loss, delay or reordering short of a full cut.",
        "- **4** (`bench.fuzz`): a finding is an input that broke a target's invariant: for dispatch, the broker or "
        "the persister raised, answered INTERNAL, stopped answering `status` / `store.stats`, or grew its per-peer "
        "state past its bounds; for ingest, a record outside the store's documented outcomes or a query that raised "
        "after it; for queries, an exception out of `Persister._answer`, not exactly one answer, a kind the role may "
        "not read, or a text search returning rows without the text. A run goes on after a finding; the first input "
        "of each is kept (`crash-<target>-<hash>`, with a `.txt` naming the case and the replay command, e.g. "
        "`python -m bench.fuzz.run query --work DIR --replay FILE`). The suite runs the same targets briefly "
        "(`tests/test_fuzz_dispatch.py`, `tests/test_fuzz_persister.py`).",
        "- Fuzzing does not reach the Curve/ZAP layer or the agent's side (commands it executes); the query target "
        "drives `Persister._answer` directly (its bus a recorder), the dispatch target drives it over real sockets.",
        "- The kill -9 loop kills processes, not the machine: no power-loss test of SQLite's durability.",
        "- Every figure is one run on a 2-core machine, not a median of several.",
    ]
    if q:
        fuzz_s = results.get("fuzz", {}).get("seconds", 30.0)
        lines += ["", "_This page was generated with `--quick` (10,000 events and 3+3 kills in scenario 1, "
                  f"{fuzz_s:.0f} s of fuzzing, a 10 s cut in scenario 5); `make chaos` runs the full size._"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10,000 events, 3+3 kills, 30 s of fuzzing, a 10 s network cut")
    p.add_argument("--fuzz-s", type=float, help="seconds of fuzzing in all (default 600, 30 with --quick), "
                   "shared header 20 %%, dispatch 30 %%, ingest 25 %%, query 25 %%")
    p.add_argument("--fuzz-target-s", action="append", default=[], metavar="NAME=S",
                   help="seconds for one fuzz target (header, dispatch, ingest, query); 0 skips it")
    p.add_argument("--only", nargs="*", choices=["chaos", "stopped", "hostile", "fuzz", "netcut"],
                   help="run only these scenarios (pair with --doc elsewhere to keep docs/reliability.md whole)")
    p.add_argument("--seed", type=int)
    p.add_argument("--dir", type=Path, help="work dir (default: a temp dir, kept)")
    p.add_argument("--doc", type=Path, default=DOC)
    args = p.parse_args(argv)
    fuzz_s = split(args.fuzz_s if args.fuzz_s is not None else (30.0 if args.quick else 600.0),
                   {k: float(v) for k, v in (item.split("=", 1) for item in args.fuzz_target_s)})
    work = args.dir or Path(tempfile.mkdtemp(prefix="ems-reliability-"))
    progress(f"work dir {work}")
    ctx = mp.get_context("spawn")
    only = set(args.only or ["chaos", "stopped", "hostile", "fuzz", "netcut"])
    results: dict[str, Any] = {"quick": args.quick, "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                               "machine": f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
                                          f"{os.cpu_count()} cores"}
    failed = []
    for name, run in (("chaos", lambda: scenario_chaos(work, args.quick, args.seed)),
                      ("stopped", lambda: scenario_stopped_consumer(work, ctx, args.quick)),
                      ("hostile", lambda: scenario_hostile(work, ctx, args.quick)),
                      ("fuzz", lambda: scenario_fuzz(work, fuzz_s)),
                      ("netcut", lambda: scenario_netcut(work, args.quick))):
        if name not in only:
            continue
        try:
            results[name] = run()
        except Exception as exc:  # report it and go on with the next scenario
            progress(f"{name} failed: {exc!r}")
            failed.append(f"{name}: {exc!r}")
    results["errors"] = failed
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "reliability.json").write_text(json.dumps(results, indent=2, default=str))
    page = render(results)
    if failed:
        page += "\n## Scenarios that did not run to the end\n\n" + "\n".join(f"- {f}" for f in failed) + "\n"
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(page)
    print(page)
    ok = not failed and results.get("chaos", {}).get("ok", True) and results.get("stopped", {}).get("durable_ok", True) \
        and not results.get("fuzz", {}).get("crashed", False) and results.get("netcut", {}).get("ok", True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
