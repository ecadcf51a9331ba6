"""Run every benchmark and write ``docs/benchmarks.md`` (``make bench``).

Each benchmark runs alone, one after the other, as its own subprocess with
``--json`` (so each also still runs by hand, and nothing here shares a
process with the figures it reports):

  bench/bus.py     EMS broker vs a raw pyzmq forwarder (events/s, command RTT)
  bench/peers.py   EMS vs Mosquitto and NATS; CurveZMQ on/off; durable vs Mosquitto QoS 1
  bench/store.py   durable events/s end to end vs a raw SQLite ceiling
  bench/screen.py  if it exists and Xvfb is installed
  bench/fleet.py   1k-10k simulated agents: broker memory, CPU, presence, reconnect storm, beside Mosquitto
  bench/sync.py    MySQL sync: full snapshot of 100k rows beside LOAD DATA LOCAL INFILE; change latency
  bench/web.py     web UI page time at 10k clients / 1M log rows beside the bare SQL of the same pages

The figures go to bench/out/<name>.json (and each table as printed to
bench/out/<name>.txt); then the markdown is written with the machine facts,
each figure beside its peer and the ratio, every target marked ``met`` or
``MISSED``, and PNG plots under docs/img/ (if matplotlib is installed).

    python -m bench.report                 # everything, a few minutes
    python -m bench.report --quick         # smaller runs, for trying it out
    python -m bench.report --no-run        # only re-write the markdown from bench/out/*.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
DOC = ROOT / "docs" / "benchmarks.md"
IMG = ROOT / "docs" / "img"

#: name -> (module, extra args for --quick)
BENCHES: dict[str, tuple[str, list[str]]] = {
    "bus": ("bench.bus", ["--quick"]),
    "peers": ("bench.peers", ["--quick"]),
    "store": ("bench.store", ["--events", "20000"]),
    "screen": ("bench.screen", ["--quick"]),
    "fleet": ("bench.fleet", ["--quick"]),
    "sync": ("bench.sync", ["--rows", "20000"]),
    "web": ("bench.web", ["--clients", "2000", "--rows", "100000", "--requests", "10"]),
}


#: the command round-trip p50 target (bench/peers.py owns the targets; this one words the explanation)
TARGET_P50_MS = 0.150


def progress(msg: str) -> None:
    print(f"[report] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------
def available(name: str) -> tuple[bool, str]:
    """Whether a benchmark can run here, and why not."""
    if not (ROOT / "bench" / f"{name}.py").exists():
        return False, f"bench/{name}.py does not exist yet"
    if name == "screen" and not shutil.which("Xvfb"):
        return False, "Xvfb is not installed"
    if name in ("sync", "web"):
        from sync.mariadb import find_binary

        if not find_binary("mariadbd"):
            return False, "missing mariadb-server (make dev installs it)"
    if name == "web" and not shutil.which("php"):
        return False, "missing php-cli and php-mysql (make dev installs them)"
    if name == "fleet" and not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        return False, "missing mosquitto (make dev installs it)"
    if name == "peers":
        missing = [b for b in ("mosquitto", "nats-server") if not (shutil.which(b) or Path(f"/usr/sbin/{b}").exists())]
        try:
            import nats  # noqa: F401
            import paho.mqtt  # noqa: F401
        except ImportError as exc:
            missing.append(f"Python package ({exc.name})")
        if missing:
            return False, "missing " + ", ".join(missing) + " (make dev installs them)"
    return True, ""


def _machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields) - idle) / tick, sum(fields) / tick


def _children_cpu_s() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def wait_quiet(limit_s: float, busy_max: float = 0.15, window_s: float = 2.0) -> float:
    """Wait (at most ``limit_s``) until the machine is less than ``busy_max`` busy for a whole window; seconds waited."""
    t0 = time.monotonic()
    said = False
    while time.monotonic() - t0 < limit_s:
        busy0, total0 = _machine_cpu_s()
        time.sleep(window_s)
        busy1, total1 = _machine_cpu_s()
        busy = (busy1 - busy0) / max(1e-9, total1 - total0)
        if busy < busy_max:
            break
        if not said:
            progress(f"machine {busy * 100:.0f} % busy: waiting up to {limit_s:.0f} s for it to go below {busy_max * 100:.0f} %")
            said = True
    return time.monotonic() - t0


def run_bench(name: str, quick: bool) -> dict:
    """Run one benchmark as a subprocess; its table goes to bench/out/NAME.txt, progress to our stderr.

    Also measured: how much of the machine *other* processes used while it
    ran (all CPU time on the machine minus what the benchmark's own process
    tree used), because two cores shared with anything else depress every
    figure.
    """
    module, quick_args = BENCHES[name]
    json_path, txt_path = OUT / f"{name}.json", OUT / f"{name}.txt"
    json_path.unlink(missing_ok=True)
    argv = [sys.executable, "-m", module, "--json", str(json_path)] + (quick_args if quick else [])
    shown = ["python", "-m", module, "--json", str(json_path.relative_to(ROOT))] + (quick_args if quick else [])
    progress(f"running {' '.join(shown)}")
    busy0, total0 = _machine_cpu_s()
    own0 = _children_cpu_s()
    t0 = time.monotonic()
    with txt_path.open("w") as out:
        code = subprocess.run(argv, cwd=ROOT, stdout=out, stdin=subprocess.DEVNULL, check=False).returncode
    seconds = time.monotonic() - t0
    busy1, total1 = _machine_cpu_s()
    own = _children_cpu_s() - own0
    other = max(0.0, (busy1 - busy0) - own) / max(1e-9, total1 - total0)
    progress(f"{name}: exit {code} after {seconds:.0f} s; other processes used {other * 100:.0f} % of the machine meanwhile; "
             f"table in {txt_path.relative_to(ROOT)}")
    return {"name": name, "command": " ".join(shown), "exit_code": code, "seconds": seconds,
            "own_cpu_s": own, "other_load": other}


# ---------------------------------------------------------------------------
# formatting helpers
# ---------------------------------------------------------------------------
def rate(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f}"


def us(ms: float | None) -> str:
    return "–" if ms is None else f"{ms * 1000:,.0f} µs"


def times(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}×"


def verdict(met: bool | None) -> str:
    return "–" if met is None else ("met" if met else "**MISSED**")


def table(header: list[str], rows: list[list[str]]) -> str:
    align = ["---"] + ["--:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def load(name: str) -> dict | None:
    path = OUT / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------
# plots (matplotlib is optional: without it the markdown says so)
# ---------------------------------------------------------------------------
def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        return plt
    except ImportError:
        return None


def plot_throughput(peers: dict, path: Path) -> bool:
    plt = _pyplot()
    tp = peers["summary"].get("throughput", {})
    if plt is None or not tp:
        return False
    order = [("ems", "EMS broker\n(Curve)"), ("mosquitto", "Mosquitto QoS 0\n+ paho-mqtt"), ("nats", "NATS core\n+ nats-py"),
             ("raw", "raw pyzmq fwd\n(Curve)"), ("raw-plain", "raw pyzmq fwd\n(no Curve)"),
             ("proxy", "zmq.proxy\n(Curve)"), ("proxy-plain", "zmq.proxy\n(no Curve)")]
    order = [(k, label) for k, label in order if k in tp]
    values = [tp[k]["events_per_s"] / 1000 for k, _ in order]
    colours = ["#1f6feb" if k == "ems" else "#8b949e" if k.startswith(("raw", "proxy")) else "#d29922" for k, _ in order]
    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=110)
    bars = ax.bar(range(len(order)), values, color=colours)
    ax.bar_label(bars, labels=[f"{v:,.0f}k" for v in values], fontsize=8)
    if "mosquitto" in tp:
        target = tp["mosquitto"]["events_per_s"] * 1.5 / 1000
        ax.axhline(target, color="#cf222e", linestyle="--", linewidth=1)
        ax.text(len(order) - 0.5, target, " target for EMS:\n 1.5× Mosquitto", color="#cf222e", fontsize=8, va="bottom", ha="right")
    ax.set_xticks(range(len(order)), [label for _, label in order], fontsize=8)
    ax.set_ylabel("events/s received (thousands)")
    s = peers["settings"]
    ax.set_title(f"Routed events/s: {s['publishers']} publishers → 1 consumer, {s['body_bytes']} B bodies "
                 f"(median of {s['trials']})", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_rtt_cdf(peers: dict, path: Path) -> bool:
    plt = _pyplot()
    results = peers["results"]
    panels = [("back to back", {"EMS send_command + wait_result": "command_rtt", "NATS request/reply": "nats_rtt",
                                "raw relay echo (4 hops, like EMS)": "raw_echo_relay", "raw direct echo (2 hops)": "raw_echo_direct"}),
              (f"after {peers['settings']['idle_s']:g} s idle", {"EMS send_command + wait_result": "ems_idle_rtt",
                                                                  "NATS request/reply": "nats_idle_rtt",
                                                                  "raw direct echo (2 hops)": "raw_idle_rtt"})]
    panels = [(title, {k: v for k, v in series.items() if v in results}) for title, series in panels]
    panels = [(title, series) for title, series in panels if series]
    if plt is None or not panels:
        return False
    colours = {"EMS send_command + wait_result": "#1f6feb", "NATS request/reply": "#d29922",
               "raw relay echo (4 hops, like EMS)": "#6e7781", "raw direct echo (2 hops)": "#2da44e"}
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), dpi=110, squeeze=False)
    for ax, (title, series) in zip(axes[0], panels):
        for label, key in series.items():
            values = sorted(results[key]["latencies_us"])
            n = len(values)
            ax.step(values, [(i + 1) / n for i in range(n)], where="post", label=f"{label} (n={n})", color=colours[label])
        ax.axvline(150, color="#cf222e", linestyle=":", linewidth=1)
        ax.axvline(1000, color="#cf222e", linestyle="--", linewidth=1)
        ax.text(150, 1.0, "p50 target ", color="#cf222e", fontsize=7, rotation=90, va="top", ha="right")
        ax.text(1000, 1.0, "p99 target ", color="#cf222e", fontsize=7, rotation=90, va="top", ha="right")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())  # minor labels overlap on short ranges
        ax.set_xlabel("round trip (µs, log scale)")
        ax.set_ylabel("fraction of round trips ≤ x")
        ax.set_title(f"Command round trip, {title}", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_durable(peers: dict | None, store: dict | None, path: Path) -> bool:
    plt = _pyplot()
    bars: list[tuple[str, float, str]] = []
    if peers and "durable" in peers["summary"]:
        d = peers["summary"]["durable"]
        bars = [("EMS end to end\n(outbox→broker→\npersister→commit→ack)", d["ems_events_per_s"], "#1f6feb"),
                ("Mosquitto QoS 1\n→ paho → SQLite\n(commit, then PUBACK)", d["mosquitto_qos1_events_per_s"], "#d29922"),
                ("raw SQLite\nexecutemany\n(ceiling)", d["raw_sqlite_events_per_s"], "#8b949e")]
    elif store:
        bars = [("EMS end to end", store["end_to_end"]["events_per_s"], "#1f6feb"),
                ("raw SQLite executemany", store["raw_events_per_s"], "#8b949e")]
    if plt is None or not bars:
        return False
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    drawn = ax.bar(range(len(bars)), [b[1] / 1000 for b in bars], color=[b[2] for b in bars])
    ax.bar_label(drawn, labels=[f"{b[1] / 1000:,.1f}k" for b in bars], fontsize=8)
    ax.axhline(100, color="#cf222e", linestyle="--", linewidth=1)
    ax.text(len(bars) - 0.5, 100, "target: 100k/s ", color="#cf222e", fontsize=8, va="bottom", ha="right")
    ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
    ax.set_ylabel("durable events/s (thousands)")
    ax.set_title("Durable events/s into SQLite", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


FLEET_SYSTEMS = {"ems": ("EMS broker (CurveZMQ)", "#1f6feb"), "floor": ("libzmq floor: Curve ROUTER + ZAP only", "#8b949e"),
                 "mosquitto": ("Mosquitto (no TLS)", "#d29922")}


def plot_fleet(fleet: dict, path: Path) -> bool:
    """Server RSS and CPU share against the number of agents, one line per system."""
    plt = _pyplot()
    sizes = sorted(int(n) for n in fleet["sizes"])
    if plt is None or not sizes:
        return False
    fig, (mem, cpu) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=110)
    for system, (label, colour) in FLEET_SYSTEMS.items():
        points = [(n, fleet["sizes"][str(n)].get(system, {})) for n in sizes]
        points = [(n, r) for n, r in points if r.get("rss_steady_mb") is not None]
        if not points:
            continue
        mem.plot([n for n, _ in points], [r["rss_steady_mb"] for _, r in points], marker="o", color=colour, label=label)
        cpu.plot([n for n, _ in points], [r["cpu_share"] * 100 for _, r in points], marker="o", color=colour, label=label)
    ems_idle = fleet["sizes"][str(sizes[0])].get("ems", {}).get("rss_idle_mb")
    if ems_idle is not None:
        mem.plot([0, sizes[-1]], [ems_idle, ems_idle + sizes[-1] * 30 / 1024], color="#cf222e", linestyle="--",
                 linewidth=1, label="target: EMS idle + 30 KB per agent")
    cpu.axhline(50, color="#cf222e", linestyle="--", linewidth=1, label="target: 50 % of one core")
    mem.set_ylabel("server RSS at steady state (MB)")
    cpu.set_ylabel("server CPU, % of one core")
    for ax, title in ((mem, "Server memory"), (cpu, "Server CPU (all threads)")):
        ax.set_xlabel("connected agents")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.set_xlim(0, sizes[-1] * 1.05)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7, loc="upper left" if ax is mem else "center left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------
# the markdown
# ---------------------------------------------------------------------------
def machine_section(bus: dict | None, peers: dict | None, runs: list[dict]) -> str:
    facts = (peers or bus or {}).get("machine") or {}
    if not facts:
        import zmq

        facts = {"cpus": os.cpu_count(), "cpu_model": "", "platform": platform.platform(), "python": platform.python_version(),
                 "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version()}
    v = (peers or {}).get("machine", {}).get("peers", {})
    rows = [
        ["cores", f"{facts.get('cpus')} ({facts.get('cpus_usable', facts.get('cpus'))} usable)"],
        ["CPU", facts.get("cpu_model") or "–"],
        ["OS", facts.get("platform", "–")],
        ["Python", facts.get("python", "–")],
        ["pyzmq / libzmq", f"{facts.get('pyzmq', '–')} / {facts.get('libzmq', '–')} (CurveZMQ {'available' if facts.get('curve', True) else 'MISSING'})"],
        ["msgpack", facts.get("msgpack", "–")],
        ["SQLite", v.get("sqlite", "–")],
        ["Mosquitto", f"{v.get('mosquitto', '–')} (Debian `mosquitto`), paho-mqtt {v.get('paho_mqtt', '–')}"],
        ["NATS", f"nats-server {v.get('nats_server', '–')} (Debian `nats-server`), nats-py {v.get('nats_py', '–')}"],
        ["machine busy just before", f"{facts.get('busy_before_start', 0) * 100:.0f} % (bus/peers sample /proc/stat for 0.5 s)"],
    ]
    out = ["## Machine", "", table(["", ""], rows), ""]
    if runs:
        out += [("Runs (one after the other, each alone). *Other load* is the share of the machine's CPU that processes "
                "outside the benchmark used while it ran (machine busy time from /proc/stat minus the benchmark's own "
                "process tree); anything above a few per cent depresses the figures."), "",
                table(["benchmark", "command", "exit", "seconds", "other load"],
                      [[r["name"], f"`{r.get('command', '')}`", str(r["exit_code"]), f"{r['seconds']:.0f}",
                        f"{r.get('other_load', 0) * 100:.0f} %" + (" ⚠" if r.get("other_load", 0) > 0.05 else "")]
                       for r in runs]), ""]
        if any(r.get("other_load", 0) > 0.05 for r in runs):
            out += [("**⚠ Other processes were using the machine during the marked runs: those figures are depressed "
                    "and not comparable with a quiet run.**"), ""]
    return "\n".join(out)


def targets_section(bus: dict | None, peers: dict | None, store: dict | None, fleet: dict | None = None,
                    sync: dict | None = None) -> str:
    rows: list[list[str]] = []
    if peers:
        for t in peers["summary"]["targets"].values():
            rows.append(["peers", t["what"], t["shown"], verdict(t["met"])])
    if bus:
        t = bus["summary"]["targets"]
        tr, tc = t["throughput_ratio_ge_50pct"], t["command_p99_le_1ms"]
        rows.append(["bus", "routed events/s ≥ 50 % of the raw pyzmq forwarder", f"{tr['value'] * 100:.0f} %", verdict(tr["met"])])
        rows.append(["bus", "command p99 ≤ 1 ms", us(tc["value_ms"]), verdict(tc["met"])])
    if store:
        e2e, ratio = store["end_to_end"]["events_per_s"], store["ratio"]
        rows.append(["store", "durable events/s ≥ 100,000 end to end", f"{e2e:,.0f}/s", verdict(store["targets_met"]["rate"])])
        rows.append(["store", "durable ≥ 50 % of raw SQLite executemany", f"{ratio * 100:.0f} %", verdict(store["targets_met"]["ratio"])])
    if (OUT / "screen.json").exists():
        for what, met in printed_verdicts("screen"):
            rows.append(["screen", what, "(as printed)", verdict(met)])
    if fleet:
        for t in fleet["targets"].values():
            rows.append(["fleet", t["what"], t["shown"] + (f" ({t['beside']})" if t.get("beside") else ""), verdict(t["met"])])
    if sync:
        met = sync["targets_met"]
        rows.append(["sync", f"full snapshot of {sync['rows_in_store']:,} rows ≤ 1 s", f"{sync['full_snapshot_s']:.2f} s",
                     verdict(met["full_le_1s"])])
        rows.append(["sync", "full snapshot ≥ 50 % of LOAD DATA LOCAL INFILE", f"{sync['ratio'] * 100:.0f} %",
                     verdict(met["ratio_ge_50pct"])])
        rows.append(["sync", "1,000 changed rows, store commit → MySQL commit ≤ 100 ms (median)",
                     f"{sync['change_ms_median']:.0f} ms", verdict(met["change_le_100ms"])])
    if not rows:
        return ""
    missed = sum(1 for r in rows if "MISSED" in r[3])
    head = f"{len(rows) - missed} of {len(rows)} targets met; {missed} **MISSED**." if missed else f"All {len(rows)} targets met."
    return "\n".join(["## Targets", "", head, "", table(["bench", "target", "measured", "verdict"], rows), ""])


def peers_section(peers: dict, images: dict[str, str]) -> str:
    s, summ, res = peers["settings"], peers["summary"], peers["results"]
    out = ["## EMS against the brokers people would pick instead (`bench/peers.py`)", ""]
    tp = summ.get("throughput", {})
    if tp:
        ems = tp.get("ems", {}).get("events_per_s")
        names = {"ems": "**EMS broker** (CurveZMQ)", "mosquitto": "Mosquitto QoS 0 + paho-mqtt", "nats": "NATS core + nats-py",
                 "raw": "raw pyzmq forwarder (CurveZMQ)", "raw-plain": "raw pyzmq forwarder (no Curve)",
                 "proxy": "libzmq `zmq.proxy` (CurveZMQ)", "proxy-plain": "libzmq `zmq.proxy` (no Curve)"}
        rows = []
        for side, r in tp.items():
            rows.append([names.get(side, side), rate(r["events_per_s"]),
                         "–" if side == "ems" else times(ems / r["events_per_s"] if ems and r["events_per_s"] else None),
                         f"{r['server_cpu_us_per_event']:.1f} µs",
                         f"{r['lost']:,} of {r['sent']:,}" + (f" ({r['dropped_counted']:,} counted)" if r.get("dropped_counted") else ""),
                         " / ".join(f"{x / 1000:.1f}k" for x in r["trials_events_per_s"])])
        out += [f"### (a) Routed events/s: {s['publishers']} publishers → one consumer, {s['body_bytes']}-byte bodies", "",
                (f"{s['publishers']} publisher processes × {s['events']:,} events each, one consumer process, median of "
                f"{s['trials']} trial(s); the sides rotate inside each trial. Rate = events received ÷ (go → last event). "
                "*Server CPU/event* is every thread of the server process (the EMS broker's libzmq I/O thread, which does "
                "the Curve crypto, included) ÷ events."), "",
                table(["system", "events/s", "EMS ÷ this", "server CPU/event", "lost", "every trial"], rows), ""]
        if "throughput" in images:
            out += [f"![routed events/s]({images['throughput']})", ""]
    rtt, idle = summ.get("rtt", {}), summ.get("rtt_idle", {})
    if rtt or idle:
        label = {"ems": "**EMS** `send_command` + `wait_result`", "nats": "NATS request/reply",
                 "raw": "raw ROUTER/DEALER echo (direct: 2 hops)", "raw_relay": "raw relay echo via the forwarder (4 hops, like EMS)"}
        out += ["### (b) Command round trip", ""]
        for title, block in ((f"back to back ({s['round_trips']:,} sequential, after {s['warmup']} warm-up)", rtt),
                             ((f"after {s['idle_s']:g} s idle ({s['idle_trips']} per system: one round trip every "
                              f"{s['idle_s']:g} s, round-robin over EMS, NATS and the raw echo)"), idle)):
            if not block:
                continue
            ems = block.get("ems")
            rows = []
            for name, r in block.items():
                ratio = "–" if name == "ems" or not ems else f"{ems['p50_ms'] / r['p50_ms']:.2f}× / {ems['p99_ms'] / r['p99_ms']:.2f}×"
                rows.append([label[name], us(r["p50_ms"]), us(r["p99_ms"]), us(r["max_ms"]), ratio, str(r["failures"])])
            out += [f"{title[0].upper()}{title[1:]}:", "",
                    table(["system", "p50", "p99", "max", "EMS ÷ this (p50 / p99)", "failed"], rows), ""]
        out += [("Targets: EMS p50 ≤ 150 µs, p99 ≤ 1 ms. An EMS command is more than an echo: operator → broker "
                "(queued, acknowledged to the operator) → agent → broker (status *delivered*, then the result) → operator."), ""]
        if "rtt" in images:
            out += [f"![command round trip CDF]({images['rtt']})", ""]
    if "raw-plain" in tp and "raw" in tp:
        rows = []
        for on, off, what in (("raw", "raw-plain", "raw pyzmq forwarder (Python loop)"), ("proxy", "proxy-plain", "libzmq `zmq.proxy` (C)")):
            if on in tp and off in tp:
                a, b = tp[on], tp[off]
                rows.append([what, rate(a["events_per_s"]), rate(b["events_per_s"]), times(b["events_per_s"] / a["events_per_s"]),
                             f"{a['server_cpu_us_per_event']:.1f} / {b['server_cpu_us_per_event']:.1f} µs"])
        out += ["### (c) CurveZMQ on vs off", "",
                ("Benchmark only: the raw forwarder and `zmq.proxy` of `bench/bus.py` started with and without Curve. "
                "The EMS broker itself never runs without it. Target: Curve costs at most 2× (off ÷ on ≤ 2)."), "",
                table(["server", "Curve on, events/s", "Curve off, events/s", "off ÷ on", "server CPU/event on / off"], rows), ""]
    if "durable" in summ:
        d, raw = summ["durable"], res["durable"]
        m = raw["mosquitto_qos1"]
        failed = d.get("ems_error", "")
        rows = [
            ["**EMS** end to end: agent outbox → broker → persister → SQLite commit → ack → outbox delete",
             f"**failed**: {failed}" if failed else rate(d["ems_events_per_s"]), f"{d['ems_stored']:,} / {d['ems_events']:,}", "–"],
            ["Mosquitto QoS 1 → paho subscriber → SQLite commit → PUBACK", rate(d["mosquitto_qos1_events_per_s"]),
             f"{d['mosquitto_stored']:,} / {d['mosquitto_events']:,}",
             times(d["ems_events_per_s"] / d["mosquitto_qos1_events_per_s"] if d["mosquitto_qos1_events_per_s"] else None)],
            ["  (Mosquitto: publishers' PUBACKs, from the broker)", rate(d["mosquitto_puback_per_s"]), "", ""],
            ["raw SQLite `executemany` ceiling (no bus)", rate(d["raw_sqlite_events_per_s"]), "",
             times(d["ems_events_per_s"] / d["raw_sqlite_events_per_s"])],
        ]
        out += ["### (d) Durable events/s", "",
                (f"{d['ems_events']:,} events per system, {s['durable_processes']} sending processes "
                f"(EMS: {s['durable_agents']} simulated agents each, `bench/store.py`'s `run_end_to_end`; Mosquitto: one paho "
                f"publisher each, QoS 1, {m['events'] // s['durable_processes']:,} messages). The Mosquitto subscriber inserts "
                f"batches of up to {s['durable_batch']} rows with one `executemany` transaction into the same table and unique "
                "key as the raw ceiling and acknowledges each batch after its commit (paho `manual_ack`); its figure is rows "
                "committed ÷ (go → last commit)."), "",
                ("**Not the same promise.** A QoS 1 PUBACK comes from the broker as soon as it holds the message in memory "
                "(persistence is off here), not after the SQLite commit: a publisher that has its PUBACK can still lose the "
                "message if Mosquitto or the writer dies. EMS acknowledges only after the persister's commit, and the agent "
                "keeps the event in its own SQLite outbox until then, so the EMS figure includes a second SQLite write and "
                "delete per event on the agent's side."), "",
                table(["path", "events/s", "stored / sent", "EMS ÷ this"], rows), ""]
        if failed:
            out += ["The EMS run did not finish; the last lines of its logs:", ""]
            out += [f"- `{name}`: `{tail}`" for name, tail in raw["ems"].get("logs", {}).items()] + [""]
        if "durable" in images:
            out += [f"![durable events/s]({images['durable']})", ""]
    return "\n".join(out)


def bus_section(bus: dict) -> str:
    summ, s = bus["summary"], bus["settings"]
    rows = [
        ["routed events/s", rate(summ["ems_events_per_s"]), rate(summ["raw_events_per_s"]),
         f"{summ['throughput_ratio'] * 100:.0f} %"],
        ["server main-thread CPU per event", f"{summ['ems_server_cpu_us_per_event']:.1f} µs",
         f"{summ['raw_server_cpu_us_per_event']:.1f} µs",
         f"{summ['ems_server_cpu_us_per_event'] / summ['raw_server_cpu_us_per_event'] * 100:.0f} %" if summ['raw_server_cpu_us_per_event'] else "–"],
        ["lost (sent − received), all trials", f"{summ['ems_lost']:,}", f"{summ['raw_lost']:,}", ""],
        ["command RTT p50 (raw: relay echo, same hops)", us(summ["command_p50_ms"]), us(summ["raw_relay_p50_ms"]),
         times(summ["command_p50_ms"] / summ["raw_relay_p50_ms"])],
        ["command RTT p99", us(summ["command_p99_ms"]), us(summ["raw_relay_p99_ms"]), times(summ["command_p99_ms"] / summ["raw_relay_p99_ms"])],
        ["command RTT max", us(summ["command_max_ms"]), "", ""],
        ["broker main-thread CPU per command", f"{summ['broker_cpu_ms_per_command'] * 1000:,.0f} µs", "", ""],
        ["raw direct echo p50 / p99", "", f"{us(summ['raw_direct_p50_ms'])} / {us(summ['raw_direct_p99_ms'])}", ""],
    ]
    if summ.get("proxy_events_per_s"):
        rows.insert(2, ["libzmq `zmq.proxy` (load generator ceiling)", "", rate(summ["proxy_events_per_s"]), ""])
    return "\n".join([
        "## EMS broker against a raw pyzmq forwarder (`bench/bus.py`)", "",
        (f"{s['publishers']} publishers × {s['events']:,} events of {s['body_bytes']} B, median of {s['trials']} trials; "
        f"{s['round_trips']:,} command round trips. The raw forwarder is a minimal Python loop on a Curve ROUTER with "
        "the broker's HWMs, batch and pyzmq calls: EMS ÷ raw isolates EMS's own logic."), "",
        table(["metric", "EMS", "raw pyzmq", "EMS ÷ raw"], rows), ""])


def store_section(store: dict) -> str:
    e2e = store["end_to_end"]
    rows = [
        ["durable events/s end to end (commit + ack)", rate(e2e["events_per_s"]), rate(store["raw_events_per_s"]),
         f"{store['ratio'] * 100:.0f} %"],
        ["stored / sent", f"{e2e['stored']:,} / {e2e['events']:,}", "", ""],
        ["`Store.write_batch` alone (no bus, no outbox)", rate(store["store_events_per_s"]), rate(store["raw_events_per_s"]),
         f"{store['store_events_per_s'] / store['raw_events_per_s'] * 100:.0f} %"],
    ]
    return "\n".join(["## Durable store (`bench/store.py`)", "",
                      table(["metric", "EMS", "raw SQLite", "EMS ÷ raw"], rows), ""])


def sync_section(sync: dict) -> str:
    c = sync["ceiling"]
    rows = [
        ["full snapshot into an empty database", f"{sync['full_snapshot_s']:.3f} s", f"{c['seconds']:.3f} s",
         f"{sync['ratio'] * 100:.0f} %"],
        ["full snapshot over the same rows (the periodic sync)", f"{sync['resnapshot_s']:.3f} s", "", ""],
        ["rows (every store table)", f"{sync['rows_synced']:,}", f"{c['rows']:,}", ""],
        ["1,000 changed rows, store commit → MySQL commit", f"median {sync['change_ms_median']:.0f} ms, "
         f"max {sync['change_ms_max']:.0f} ms", "", ""],
    ]
    return "\n".join(["## MySQL sync (`bench/sync.py`)", "",
                      "The sync worker's full snapshot (store → bus → sealed for the web → MySQL, page by page with "
                      "its watermarks) beside `LOAD DATA LOCAL INFILE` of the very same rows into empty tables "
                      f"(files {c['write_files_s']:.3f} s + load {c['load_s']:.3f} s), on a private MariaDB started "
                      "for the run.", "", table(["metric", "EMS sync", "LOAD DATA ceiling", "EMS ÷ ceiling"], rows), ""])


def fleet_section(fleet: dict, images: dict[str, str]) -> str:
    s, sizes = fleet["settings"], fleet["sizes"]
    out = [f"## Fleet: {', '.join(f'{int(n):,}' for n in sizes)} simulated agents (`bench/fleet.py`)", "",
           ("For each size, one system after the other on this machine. **EMS**: `ems broker` + `ems persist` with the "
            f"agent's timing (heartbeat {s['heartbeat_s']:g} s, offline after {3 * s['heartbeat_s']:g} s) and N lean agents "
            "(`bench/fleet_clients.py`: one CurveZMQ DEALER each, enrolled before the broker starts; HELLO, heartbeats as the "
            f"client library sends them, the agent's 1.4 KB sysinfo EVENT every {s['event_s']:g} s, which the persister "
            f"stores and acknowledges; at most {s['per_process']:,} agents per process). **libzmq floor**: `bench/fleet_floor.py`, "
            "a CurveZMQ ROUTER with the broker's socket options and ZAP decision that only answers HELLO and sends "
            "heartbeats, with the same agents: what any broker on libzmq with CurveZMQ and ZAP starts from. **Mosquitto** "
            "(no TLS) with as many raw-socket MQTT clients: a PINGREQ when idle for a heartbeat, the same body as a QoS 0 "
            "PUBLISH as often, one more client subscribed to `event/#` in the persister's place."), "",
           ("*Per agent* = (server RSS at steady state − RSS before any client connected) ÷ N. *CPU* = the server "
            f"process's CPU time, all threads, over a {s['window_s']:g} s window after {s['settle_s']:g} s of settling, ÷ wall "
            "time (100 % = one core). *Machine busy* is the whole machine in that window: the client processes and "
            "anything else that ran. *Storm*: the server is SIGKILLed and restarted on the same port and data; the "
            "time from the kill until every client is welcomed again (clients' clocks)."), ""]
    rows = []
    for n, res in sizes.items():
        for system, (label, _) in FLEET_SYSTEMS.items():
            r = res.get(system)
            if r is None:
                continue
            idle, steady = r.get("rss_idle_mb"), r.get("rss_steady_mb")
            storm = r.get("storm_s")
            rows.append([f"**{label}**" if system == "ems" else label, f"{int(n):,}",
                         "–" if r.get("connect_s") is None else f"{r['connect_s']:.1f} s",
                         "–" if steady is None else f"{idle:.0f} → {steady:.0f} MB",
                         "–" if r.get("kb_per_agent") is None else f"{r['kb_per_agent']:.1f} KB",
                         "–" if r.get("cpu_share") is None else f"{r['cpu_share'] * 100:.1f} %",
                         rate(r.get("client_msgs_per_s")),
                         "–" if r.get("machine_busy") is None else f"{r['machine_busy'] * 100:.0f} %",
                         ("–" if storm is None else f"{storm:.1f} s")
                         + (f" ({r['storm_failed']:,} not back)" if r.get("storm_failed") else "")])
    out += [table(["system", "agents", "connected in", "server RSS idle → steady", "per agent", "CPU (one core = 100 %)",
                   "client msgs/s", "machine busy", "storm: all back after"], rows), ""]
    failed = [(n, FLEET_SYSTEMS[system][0], r["error"]) for n, res in sizes.items() for system, r in res.items() if r.get("error")]
    out += [f"- **{label}, {int(n):,} agents failed**: {error}" for n, label, error in failed] + ([""] if failed else [])
    presence = [(n, res["ems"]) for n, res in sizes.items() if "presence_kill" in res.get("ems", {})]
    if presence:
        rows = []
        for n, r in presence:
            st, pk = r["presence_steady"], r["presence_kill"]
            detect = ("–" if pk["detect_max_s"] is None else f"{pk['detect_median_s']:.1f} s / {pk['detect_max_s']:.1f} s")
            rows.append([f"{int(n):,}", f"{st['broker_online']:,} / {st['connected']:,}", f"{pk['killed']:,}",
                         f"{pk['marked_offline']:,}", detect, f"{pk['false_offline']:,}"])
        out += [("EMS presence: the broker's own view (`status`: agents online, each agent's last presence change) against "
                 "the agents the client processes hold connected; then one client process is SIGKILLed and the broker's "
                 "presence stamps say when each of its agents went offline."), "",
                table(["agents", "broker online / connected", "agents SIGKILLed", "marked offline", "offline after (median / last)",
                       "live agents marked offline"], rows), ""]
    if "fleet" in images:
        out += [f"![fleet: server memory and CPU against agents]({images['fleet']})", ""]
    largest = str(max(int(n) for n in sizes))
    ems, floor, mqtt = (sizes[largest].get(k, {}) for k in ("ems", "floor", "mosquitto"))
    notes = []
    if ems.get("kb_per_agent") is not None and floor.get("kb_per_agent") is not None:
        own = ems["kb_per_agent"] - floor["kb_per_agent"]
        notes.append(f"- **Memory.** At {int(largest):,} agents the EMS broker holds {ems['kb_per_agent']:.1f} KB per agent; "
                     f"the libzmq floor with the same agents {floor['kb_per_agent']:.1f} KB, so EMS's own share (peer records, "
                     f"presence, its SQLite caches) is {own:.1f} KB. The rest is what libzmq 4.3.5 keeps per connection: "
                     "its pipes, stream-engine buffers and the session's pipe to the ZAP handler. No socket option trims "
                     "these in this libzmq build (the draft "
                     "`ZMQ_IN/OUT_BATCH_SIZE` options are not compiled in), and ZAP is what checks every key against the "
                     "registry, so it stays."
                     + (f" Mosquitto keeps a client in {mqtt['kb_per_agent']:.1f} KB." if mqtt.get("kb_per_agent") is not None else ""))
    if ems.get("storm_s") is not None:
        text = (f"- **Reconnect storm.** {int(largest):,} agents were all back {ems['storm_s']:.1f} s after the broker was killed "
                f"(it listened again after {ems['storm_listen_s']:.1f} s")
        if ems.get("storm_broker_p50_s") is not None:
            text += f"; half of them within {ems['storm_broker_p50_s']:.1f} s by the broker's presence stamps"
        silent = ems.get("storm_client_counts", {}).get("reopen_silent", 0)
        if silent:
            text += (f"; {silent:,} agents heard nothing for the broker timeout, {3 * s['heartbeat_s']:g} s, and reopened "
                     "their connection, as the client library does")
        text += (f"). libzmq reconnects the DEALER by itself, so an agent learns that the broker restarted only when its "
                 f"next message (sent at most one heartbeat, {s['heartbeat_s']:g} s, later) is answered with HELLO_REQUIRED: "
                 "a storm takes about one heartbeat interval at least; the rest is libzmq's reconnect back-off while the "
                 "broker was down, N CurveZMQ handshakes and the broker working through N HELLOs on a shared machine. "
                 "Mosquitto's clients see the TCP connection close and reconnect at once.")
        notes.append(text)
    kills = [r["presence_kill"] for r in (res.get("ems", {}) for res in sizes.values()) if r.get("presence_kill")]
    if kills and all(k["detect_max_s"] is not None for k in kills):
        slowest = max(k["detect_max_s"] for k in kills)
        notes.append(f"- **Presence.** A SIGKILLed client process closes its connections, and the broker's next send to each "
                     f"of its agents (its heartbeat at the latest) fails: they were offline within {slowest:.1f} s, "
                     f"inside one heartbeat interval ({s['heartbeat_s']:g} s). An agent that is cut off without its connection "
                     f"closing is marked offline after the peer timeout, {3 * s['heartbeat_s']:g} s (`docs/reliability.md`, "
                     "network cut).")
    if ems.get("cpu_share") is not None:
        refs = "; ".join(f"{r['system']}: {r['figure']}" for r in fleet.get("references", []))
        beside = "; ".join(f"{FLEET_SYSTEMS[k][0]} {v['cpu_share'] * 100:.1f} %" for k, v in (("floor", floor), ("mosquitto", mqtt))
                           if v.get("cpu_share") is not None)
        notes.append(f"- **CPU.** {int(largest):,} agents used {ems['cpu_share'] * 100:.1f} % of one core"
                     + (f" ({beside})" if beside else "") + f". Cited in the issue, not measured here: {refs}.")
    if notes:
        out += notes + [""]
    return "\n".join(out)


def printed_table(name: str) -> str:
    try:
        return (OUT / f"{name}.txt").read_text().strip()
    except OSError:
        return ""


def printed_verdicts(name: str) -> list[tuple[str, bool]]:
    """Target lines a benchmark printed itself (``... met`` / ``... MISSED``), for one this report has no layout for."""
    found = []
    for line in printed_table(name).splitlines():
        for chunk in line.split(";"):
            chunk = " ".join(chunk.split())
            if re.search(r"\b(met|MISSED)$", chunk):
                found.append((chunk, chunk.endswith("met")))
    return found


def generic_section(name: str) -> str:
    """A benchmark this generator has no layout for: its own printed table, verbatim."""
    text = printed_table(name)
    return "\n".join([f"## `bench/{name}.py`", "", f"As printed by `python -m bench.{name}` (figures in `bench/out/{name}.json`):",
                      "", "```", text or "(no output)", "```", ""])


def reading_section(peers: dict | None, bus: dict | None) -> str:
    lines = ["## Reading the numbers", ""]
    lines.append("- Two cores carry everything: the server, its libzmq I/O thread, the publishers and the consumer. "
                 "Wall-clock rates depend on how the scheduler splits them; *server CPU per event* is the steadier figure.")
    lines.append("- The routing and round-trip runs (`bench/bus.py`, `bench/peers.py`) start the EMS broker with its per-agent "
                 "rate limit off: at the default 2,000 messages/s per agent it would cap two publishers at 4,000 events/s, "
                 "and these runs measure what the broker can route. The check itself costs about 0.4 µs per message "
                 "(`broker/core/quota.py`, two token buckets). The store, fleet and screen runs use the product's defaults.")
    if peers and peers["summary"].get("throughput"):
        tp = peers["summary"]["throughput"]
        notes = []
        if "mosquitto" in tp:
            m = tp["mosquitto"]
            busy = m["server_cpu_us_per_event"] * m["events_per_s"] / 1e6 * 100
            notes.append(f"Mosquitto was {busy:.0f} % busy at its median rate: the Python side (paho-mqtt reads one packet "
                         "per call, several `recv`s each; each QoS 0 publish is its own `send`) sets its pace, not the C broker")
        if "nats" in tp:
            n = tp["nats"]
            busy = n["server_cpu_us_per_event"] * n["events_per_s"] / 1e6 * 100
            notes.append(f"nats-server was {busy:.0f} % busy: nats-py buffers publishes into large writes and parses "
                         "reads in bulk, and NATS runs here without TLS, while every EMS message is CurveZMQ-encrypted and "
                         "crosses pyzmq one message at a time")
        if notes:
            lines.append("- " + "; ".join(notes) + ".")
    lines.append("- *Lost* is what was sent and never arrived. Mosquitto and NATS are configured not to drop (large "
                 "queues, no subscriber pending limits). The EMS broker and the raw forwarder drop at a subscriber's send "
                 "high-water mark (10,000) when the consumer falls behind and count every drop (*counted*: their own "
                 "`dropped_hwm`): the live feed is best effort with counted drops by contract; durable history comes "
                 "from the persister.")
    lines.append("- Each benchmark still runs alone: `python -m bench.bus`, `python -m bench.peers`, `python -m bench.store`, "
                 "`python -m bench.fleet` "
                 "(`--help` for options, `--json PATH` for the figures). `python -m bench.report --no-run` re-writes this "
                 "page from the last `bench/out/*.json`.")
    return "\n".join(lines) + "\n"


def sync_miss(sync: dict) -> str:
    """Why the full snapshot misses its targets, if it does."""
    met = sync["targets_met"]
    if met["full_le_1s"] and met["ratio_ge_50pct"]:
        return ""
    return (f"- **Full snapshot.** {sync['rows_synced']:,} rows took {sync['full_snapshot_s']:.2f} s against "
            f"{sync['ceiling']['seconds']:.2f} s for MariaDB's own `LOAD DATA LOCAL INFILE` of the same rows. The sync "
            "worker uses that same statement for big pages, so the difference is the Python on both sides of the bus: "
            "the persister decrypts every sensitive field and packs each page, the worker unpacks it, seals each "
            "sensitive field again for the web (AES-GCM, a fresh nonce each) and formats the rows; the two overlap "
            "(the next page is read while the last is written) but share two cores with the broker and MariaDB. "
            "The change path is not affected: 1,000 changed rows reach MySQL in "
            f"{sync['change_ms_median']:.0f} ms (median).")


def misses_section(bus: dict | None, peers: dict | None, store: dict | None, sync: dict | None = None) -> str:
    """Where EMS misses a target, with the figures from this run that say why."""
    out: list[str] = []
    targets = peers["summary"]["targets"] if peers else {}
    rtt = peers["summary"].get("rtt", {}) if peers else {}
    idle = peers["summary"].get("rtt_idle", {}) if peers else {}
    rtt_missed = [k for k, t in targets.items() if k.startswith("command_") and not t["met"]]
    if bus and not bus["summary"]["targets"]["command_p99_le_1ms"]["met"]:
        rtt_missed.append("bus")
    if rtt_missed and rtt.get("ems"):
        ems = rtt["ems"]
        text = (f"- **Command round trip.** An EMS command crosses four process hops (operator → broker → agent → broker → "
                f"operator) and the broker answers with several messages on the way (queued, sent, delivered, done, result). "
                f"Back to back, EMS's p50 is {us(ems['p50_ms'])}")
        if "raw" in rtt:
            text += f"; the raw direct ROUTER/DEALER echo (two hops, nothing in between) takes {us(rtt['raw']['p50_ms'])}"
        if "raw_relay" in rtt:
            relay = rtt["raw_relay"]["p50_ms"]
            text += f", the raw relay echo with the same four hops and no EMS logic {us(relay)}"
            if relay > TARGET_P50_MS:
                text += ": four bare Curve hops alone exceed the 150 µs p50 target on this machine, so no four-hop path meets it"
        if "nats" in rtt:
            text += f" (NATS request/reply, the same four hops through a Go server: {us(rtt['nats']['p50_ms'])})"
        text += "."
        if bus:
            text += (f" The rest is EMS's own work: the broker spends {bus['summary']['broker_cpu_ms_per_command'] * 1000:,.0f} µs "
                     "of main-thread CPU per command (`bench/bus.py`; `--profile-broker` shows where: the SQLite writes of "
                     "the command record and the status messages); p99 and max follow the scheduler on two shared cores.")
        out.append(text)
        if idle.get("ems") and idle.get("raw"):
            out.append(f"- **After an idle second** every path is slower: the raw echo's p50 goes from "
                       f"{us(rtt.get('raw', {}).get('p50_ms'))} to {us(idle['raw']['p50_ms'])}, EMS's from {us(ems['p50_ms'])} "
                       f"to {us(idle['ems']['p50_ms'])}: each hop pays a wake-up of an idle process and cold caches, and "
                       "EMS has more hops and more Python to run.")
    durable_missed = (peers and not targets.get("durable_rate", {"met": True})["met"]) or (store and not store["targets_met"]["rate"])
    if durable_missed:
        text = "- **Durable events/s.** "
        if store:
            text += (f"`Store.write_batch` alone, with no bus and no outbox, writes {rate(store['store_events_per_s'])}/s "
                     f"against SQLite's raw `executemany` {rate(store['raw_events_per_s'])}/s")
            text += (": validation, AES-GCM of every payload and per-record inserts already keep the persister under "
                     "100,000/s. " if store["store_events_per_s"] < 100_000 else ". ")
        text += ("End to end, every event is also written to and deleted from the agent's SQLite outbox, routed and "
                 "acknowledged through the broker, and decoded by the persister, and on this machine the simulated agents, "
                 "the broker and the persister share the same two cores.")
        out.append(text)
    if sync and sync_miss(sync):
        out.append(sync_miss(sync))
    if not out:
        return ""
    return "\n".join(["## Where EMS misses its targets, and why", ""] + out) + "\n"


def write_markdown(runs: list[dict], total_s: float | None, skipped: dict[str, str]) -> str:
    bus, peers, store, screen, fleet = load("bus"), load("peers"), load("store"), load("screen"), load("fleet")
    sync, web = load("sync"), load("web")
    IMG.mkdir(parents=True, exist_ok=True)
    images: dict[str, str] = {}
    plots_ok = _pyplot() is not None
    if peers and plot_throughput(peers, IMG / "bench-events-per-s.png"):
        images["throughput"] = "img/bench-events-per-s.png"
    if peers and plot_rtt_cdf(peers, IMG / "bench-rtt-cdf.png"):
        images["rtt"] = "img/bench-rtt-cdf.png"
    if (peers or store) and plot_durable(peers, store, IMG / "bench-durable.png"):
        images["durable"] = "img/bench-durable.png"
    if fleet and plot_fleet(fleet, IMG / "bench-fleet.png"):
        images["fleet"] = "img/bench-fleet.png"
    when = (peers or bus or {}).get("when") or time.strftime("%Y-%m-%dT%H:%M:%S%z")
    parts = ["# Benchmarks", "",
             f"Generated by `make bench` (`python -m bench.report`) on {when}"
             + (f"; the benchmarks ran for {sum(r['seconds'] for r in runs) / 60:.1f} min"
                + (f" ({total_s / 60:.1f} min with the waits for a quiet machine)."
                   if total_s - sum(r["seconds"] for r in runs) > 30 else ".") if total_s and runs else ".")
             + " Every server and every load generator is its own process on 127.0.0.1 with random ports, started by the "
             "benchmark and stopped by its pid; figures are measured, never asserted.", ""]
    if not plots_ok:
        parts += ["(No plots: matplotlib is not installed. `make dev` installs it.)", ""]
    for name, why in skipped.items():
        parts += [f"- `bench/{name}.py` not run: {why}."]
    if skipped:
        parts.append("")
    failed = [r for r in runs if r["exit_code"] != 0]
    for r in failed:
        parts += [(f"- **`bench/{r['name']}.py` exited with code {r['exit_code']}**: its figures below may be missing or stale; "
                  f"see `bench/out/{r['name']}.txt`.")]
    if failed:
        parts.append("")
    parts.append(machine_section(bus, peers, runs))
    targets = targets_section(bus, peers, store, fleet, sync)
    if targets:
        parts.append(targets)
    if peers:
        parts.append(peers_section(peers, images))
    if bus:
        parts.append(bus_section(bus))
    if store:
        parts.append(store_section(store))
    if screen:
        parts.append(generic_section("screen"))
    if fleet:
        parts.append(fleet_section(fleet, images))
    if sync:
        parts.append(sync_section(sync))
    if web:
        from bench.web import markdown as web_section

        parts.append(web_section(web))
    misses = misses_section(bus, peers, store, sync)
    if misses:
        parts.append(misses)
    parts.append(reading_section(peers, bus))
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(parts)
    DOC.write_text(text)
    return text


# ---------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="each benchmark's quick size (a trial run, not figures to publish)")
    p.add_argument("--only", metavar="LIST", help=f"comma-separated benchmarks to run (default: {','.join(BENCHES)}); "
                   "the others' last figures in bench/out are still reported")
    p.add_argument("--no-run", action="store_true", help="run nothing: re-write the markdown from bench/out/*.json")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                   help="before each benchmark, wait up to S seconds for the machine to be under 15 %% busy (default: don't)")
    args = p.parse_args(argv)
    names = [n for n in (args.only.split(",") if args.only else BENCHES) if n]
    unknown = set(names) - set(BENCHES)
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    OUT.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []
    skipped: dict[str, str] = {}
    t0 = time.monotonic()
    if not args.no_run:
        for name in names:
            ok, why = available(name)
            if not ok:
                progress(f"skipping {name}: {why}")
                skipped[name] = why
                (OUT / f"{name}.json").unlink(missing_ok=True)
                continue
            waited = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else 0.0
            runs.append(run_bench(name, args.quick) | {"waited_s": waited})
    total_s = time.monotonic() - t0 if runs else None
    if runs:
        (OUT / "report-runs.json").write_text(json.dumps({"runs": runs, "total_s": total_s, "skipped": skipped}, indent=2))
    else:
        try:
            saved = json.loads((OUT / "report-runs.json").read_text())
            runs, total_s, skipped = saved["runs"], saved["total_s"], saved.get("skipped", {})
        except (OSError, ValueError, KeyError):
            pass
    write_markdown(runs, total_s, skipped)
    progress(f"wrote {DOC.relative_to(ROOT)}" + (f" after {total_s:.0f} s" if total_s else ""))
    return 1 if any(r["exit_code"] != 0 for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
