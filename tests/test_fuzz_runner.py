"""The long-run fuzz plumbing of ``make chaos`` (``bench.fuzz.run``, ``bench.fuzz.scenario``).

A finding is kept once per signature with the input that caused it and a
replay command; a short atheris run of a target in its own process reports
inputs, peak memory and findings; every crash file it keeps replays to the
same finding.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.fuzz.findings import Finding, Findings, from_exception
from bench.fuzz.scenario import fuzz_rows, run_target, split

ROOT = Path(__file__).resolve().parents[1]


def test_findings_keep_the_first_input_of_each_signature(tmp_path):
    """Tried: three findings, two with one signature. Expected: two crash
    files (the first input of each) with a .txt naming the case and the
    replay command; the repeat counted, not written."""
    found = Findings(tmp_path, "query", "replay {path}")
    assert found.add(Finding("a", signature="sig-1"), b"first", "case-1")
    assert not found.add(Finding("a", signature="sig-1"), b"second", "case-2")
    assert found.add(Finding("b", signature="sig-2"), b"third", "case-3")
    files = sorted(p for p in tmp_path.iterdir() if p.suffix != ".txt")
    assert {p.read_bytes() for p in files} == {b"first", b"third"}
    assert found.seen["sig-1"]["count"] == 2 and found.total == 3
    text = Path(found.seen["sig-1"]["file"]).with_suffix(".txt").read_text()
    assert "case-1" in text and f"replay {found.seen['sig-1']['file']}" in text


def test_a_signature_names_the_exception_and_the_product_frame():
    """Tried: a BoundsError raised in broker code and a RecursionError.
    Expected: the type and file:line in function of the innermost broker
    frame; a recursion without its line (it varies with the stack)."""
    from broker.persister.queries import _limit

    with pytest.raises(ValueError) as refused:
        _limit(2**63)
    assert "BoundsError at broker/core/bounds.py:" in from_exception("x", refused.value).signature

    def recurse(n):
        return recurse(n + 1)

    with pytest.raises(RecursionError) as deep:
        recurse(0)
    assert from_exception("y", deep.value).signature == "y: RecursionError"


def test_a_short_atheris_run_reports_inputs_memory_and_replayable_findings(tmp_path):
    """Tried: the query target under atheris for 6 s in its own process, as
    ``make chaos`` runs it. Expected: exit 0, inputs counted, peak RSS
    sampled, report rows for it; each crash file kept replays (exit 1) to
    a finding."""
    result = run_target(tmp_path / "fuzz-query", "query", 6.0, "atheris")
    assert result["exit_code"] == 0, result["log_tail"]
    assert result["runs"] > 100
    assert 10 < result["peak_rss_mb"] < 2048
    rows = fuzz_rows({"engine": "atheris", "targets": {"query": result}}, str)
    assert rows[0].startswith("| 4. fuzz query") and len(rows) == 3 + len(result["findings"])
    for finding in result["findings"][:3]:
        replay = subprocess.run([sys.executable, "-m", "bench.fuzz.run", "query", "--work", str(tmp_path / "replay"),
                                 "--replay", finding["file"]], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert replay.returncode == 1 and "FINDING" in replay.stdout, replay.stdout + replay.stderr


def test_fuzz_time_is_shared_between_targets():
    """Tried: 600 s in all, and one target set to 0. Expected: 120/180/150/150
    s, the zeroed target left out."""
    assert split(600) == {"header": 120.0, "dispatch": 180.0, "ingest": 150.0, "query": 150.0}
    assert "header" not in split(600, {"header": 0})
