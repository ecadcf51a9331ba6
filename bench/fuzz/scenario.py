"""The long fuzz runs of ``make chaos`` (``bench.reliability`` scenario 4).

Each target runs in its own ``python -m bench.fuzz.run`` process for its
share of the time; its RSS is sampled every second (peak reported beside
libFuzzer's own ``peak_rss_mb``), its findings read from the summary the
run keeps. :func:`fuzz_rows` renders the report's rows.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import psutil

ROOT = Path(__file__).resolve().parents[2]
#: each target's share of the fuzzing time (``make chaos``: 600 s in all)
SHARES = {"header": 0.2, "dispatch": 0.3, "ingest": 0.25, "query": 0.25}
WHAT = {
    "header": "`decode_header` + `unpack_body` on raw bytes",
    "dispatch": "broker dispatch: every role x kind, hostile bodies (broker + persister in-process)",
    "ingest": "persister ingest: `record_for` + `Store.write_batch`, then every query",
    "query": "persister queries: `Persister._answer`, every op x kind x role",
}


def split(total_s: float, overrides: dict[str, float] | None = None) -> dict[str, float]:
    """Seconds per target: ``total_s`` by :data:`SHARES`, then ``overrides`` (0 skips a target)."""
    out = {name: round(total_s * share, 1) for name, share in SHARES.items()}
    out.update(overrides or {})
    return {name: s for name, s in out.items() if s > 0}


def run_fuzz(work: Path, seconds: dict[str, float], progress: Callable[[str], None]) -> dict:
    """Run each target for its seconds; what each did and found."""
    engine = "atheris"
    try:
        import atheris  # noqa: F401
    except ImportError:
        engine = "hypothesis"
    out: dict[str, Any] = {"engine": engine, "targets": {}}
    for name, s in seconds.items():
        progress(f"   fuzz {name} for {s:.0f} s ({engine})")
        out["targets"][name] = run_target(work / f"fuzz-{name}", name, s, engine)
        found = out["targets"][name]["findings"]
        progress(f"   {name}: {out['targets'][name]['runs']} inputs, {len(found)} distinct findings")
    out["seconds"] = sum(seconds.values())
    out["crashed"] = any(t["crashed"] or t["findings"] for t in out["targets"].values())
    return out


def run_target(work: Path, name: str, seconds: float, engine: str) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    summary, log = work / "summary.json", work / "fuzz.log"
    argv = [sys.executable, "-m", "bench.fuzz.run", name, "--seconds", str(seconds), "--work", str(work),
            "--summary", str(summary), "--engine", engine]
    with log.open("wb") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT)
    peak = _watch(proc, seconds + 120)
    text = log.read_text(errors="replace")
    stats = {line.split(":")[2].strip(): line.rsplit(":", 1)[1].strip() for line in text.splitlines()
             if line.startswith("stat::")}
    done = json.loads(summary.read_text()) if summary.exists() else {}
    runs = int(stats.get("number_of_executed_units", done.get("runs", 0)))
    libfuzzer_artifacts = sorted(str(p) for p in work.glob("*-*") if p.name.split("-")[0] in ("crash", "oom", "timeout"))
    return {"seconds": seconds, "runs": runs, "exit_code": proc.returncode, "peak_rss_mb": round(peak / 2**20, 1),
            "libfuzzer_peak_rss_mb": int(stats["peak_rss_mb"]) if "peak_rss_mb" in stats else None,
            "findings": done.get("findings", []), "finding_inputs": done.get("finding_inputs", 0),
            "libfuzzer_artifacts": libfuzzer_artifacts, "crashed": proc.returncode != 0,
            "log": str(log), "log_tail": text.splitlines()[-25:] if proc.returncode else []}


def _watch(proc: subprocess.Popen, limit_s: float) -> int:
    """Peak RSS of ``proc`` (sampled each second) until it ends; killed (by pid) past ``limit_s``."""
    peak, end = 0, time.monotonic() + limit_s
    try:
        ps = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                peak = max(peak, ps.memory_info().rss)
            except psutil.NoSuchProcess:
                break
            if time.monotonic() > end:
                proc.kill()
            time.sleep(1.0)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return peak


def fuzz_rows(z: dict, fmt: Callable[[Any], str]) -> list[str]:
    """Report rows for scenario 4."""
    rows = []
    for i, (name, t) in enumerate(z["targets"].items()):
        head = "| 4. fuzz " if i == 0 else "| "
        rows += [
            f"{head}{name}: {WHAT[name]} | engine, time, inputs | {z['engine']}, {t['seconds']:.0f} s, {fmt(t['runs'])} |",
            f"| | peak RSS (sampled / libFuzzer) | {t['peak_rss_mb']} / {fmt(t['libfuzzer_peak_rss_mb'])} MB |",
            f"| | distinct findings (inputs that broke an invariant) | **{len(t['findings'])}** ({fmt(t['finding_inputs'])})"
            f"{'; libFuzzer stopped the run: ' + ', '.join(t['libfuzzer_artifacts']) if t['crashed'] else ''} |",
        ]
        rows += [f"| | finding | `{_cell(f['signature'])}` x{f['count']}: `{_cell(f['file'])}` |" for f in t["findings"]]
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")[:200]
