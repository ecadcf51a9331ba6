"""Run one fuzz target for a while, under atheris (libFuzzer) or hypothesis.

    python -m bench.fuzz.run dispatch --seconds 180 --work /tmp/fz
    python -m bench.fuzz.run dispatch --work /tmp/fz --replay /tmp/fz/findings/crash-dispatch-0123abcd

Targets: ``header`` (``decode_header`` + ``unpack_body`` on raw bytes),
``dispatch``, ``ingest`` and ``query`` (see :mod:`bench.fuzz`). A broken
invariant does not stop the run: the first input of each distinct finding
is kept as ``<work>/findings/crash-<target>-<hash>`` (the atheris input) with
a ``.txt`` beside it naming what broke, the case, the traceback and the
replay command; ``--replay`` runs such a file once and lets the finding
raise. ``--summary`` is rewritten as the run goes: inputs, findings, engine.
libFuzzer's own limits still apply (``-rss_limit_mb=2048``, 60 s per input):
what they catch stops the run with libFuzzer's ``crash-*``/``oom-*`` file.
Broker and bench modules are imported under atheris instrumentation, so
coverage guides the inputs.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import random
import sys
import time
from pathlib import Path

from bench.fuzz.findings import Finding, Findings, from_exception

#: target -> (module, target class, case generator); ``header`` is built in
TARGETS = {
    "header": None,
    "dispatch": ("bench.fuzz.dispatch", "DispatchTarget", "dispatch_case"),
    "ingest": ("bench.fuzz.ingest", "IngestTarget", "ingest_case"),
    "query": ("bench.fuzz.query", "QueryTarget", "query_case"),
}


class HeaderTarget:
    """``decode_header`` and ``unpack_body`` on raw bytes: only ProtocolError may escape."""

    def __init__(self, root: Path):
        from broker.core.envelope import decode_header, unpack_body
        from broker.core.errors import ProtocolError

        self.decoders, self.expected = (decode_header, unpack_body), ProtocolError

    def run(self, data: bytes) -> None:
        for decode in self.decoders:
            try:
                decode(data)
            except self.expected:
                pass
            except Exception as exc:
                raise from_exception(f"{decode.__name__} raised", exc) from exc

    def close(self) -> None:
        pass


def load(name: str, work: Path, instrument: bool):
    """(target, case generator) for ``name``; its modules instrumented for atheris if asked."""
    def build():
        if name == "header":
            return HeaderTarget(work), None
        module, cls, gen = TARGETS[name]
        mod = importlib.import_module(module)
        return getattr(mod, cls)(work / "data"), getattr(mod, gen)

    if not instrument:
        return build()
    import atheris

    with atheris.instrument_imports(include=["broker", "bench.fuzz"]):
        importlib.import_module("broker.core.envelope")
        if name != "header":
            importlib.import_module(TARGETS[name][0])
    return build()


class Run:
    """One run's bookkeeping: inputs, distinct findings, a summary file."""

    def __init__(self, name: str, work: Path, engine: str, summary: Path | None):
        replay = f"{sys.executable} -m bench.fuzz.run {name} --work {work} --replay {{path}}"
        self.findings = Findings(work / "findings", name, replay)
        self.name, self.engine, self.summary, self.runs = name, engine, summary, 0
        self.started = time.monotonic()

    def one(self, target, case, data: bytes) -> None:
        self.runs += 1
        try:
            target.run(case)
        except Finding as finding:
            if self.findings.add(finding, data, case):
                print(f"NEW FINDING ({self.name}): {finding.signature}", file=sys.stderr, flush=True)
                self.write()
        if self.runs % 500 == 0:
            self.write()

    def write(self) -> None:
        if self.summary is None:
            return
        self.summary.write_text(json.dumps({
            "target": self.name, "engine": self.engine, "runs": self.runs,
            "seconds": round(time.monotonic() - self.started, 1),
            "findings": list(self.findings.seen.values()), "finding_inputs": self.findings.total}, indent=2))


def fuzz_atheris(name: str, work: Path, seconds: float, run: Run) -> None:
    import atheris

    from bench.fuzz.hostile import ProviderChooser

    target, gen = load(name, work, instrument=True)

    def one(data: bytes) -> None:
        case = data if gen is None else gen(ProviderChooser(atheris.FuzzedDataProvider(data)))
        run.one(target, case, data)

    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = random.Random(0)
    for i in range(64):  # long random seeds: each case draws many choices, libFuzzer's own start is a few bytes
        seed = corpus / f"seed-{i:02d}"
        if not seed.exists():
            seed.write_bytes(seeds.randbytes(256 + 32 * i))
    atheris.Setup([sys.argv[0], f"-max_total_time={max(1, int(seconds))}", "-rss_limit_mb=2048", "-timeout=60",
                   "-max_len=2048", "-len_control=0",
                   "-print_final_stats=1", f"-artifact_prefix={work}/", str(corpus)], one)
    atheris.Fuzz()  # exits the process


def fuzz_hypothesis(name: str, work: Path, seconds: float, run: Run) -> None:
    """The same target and generator drawn by hypothesis, until ``seconds`` pass."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    from bench.fuzz.hostile import DrawChooser

    target, gen = load(name, work, instrument=False)
    cases = st.binary(max_size=4096) if gen is None else st.composite(lambda draw: gen(DrawChooser(draw)))()
    end = time.monotonic() + seconds

    @settings(max_examples=10**9, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(cases)
    def one(case):
        if time.monotonic() > end:
            raise _Done
        run.one(target, case, repr(case).encode())

    try:
        one()
    except _Done:
        pass
    target.close()
    run.write()


class _Done(Exception):
    """Time is up (ends a hypothesis run)."""


def replay(name: str, work: Path, paths: list[Path]) -> int:
    """Run each file once; a finding raises with its traceback."""
    import atheris

    from bench.fuzz.hostile import ProviderChooser

    target, gen = load(name, work, instrument=False)
    failed = 0
    for path in paths:
        data = path.read_bytes()
        case = data if gen is None else gen(ProviderChooser(atheris.FuzzedDataProvider(data)))
        print(f"{path}: {case!r}"[:2000], flush=True)
        try:
            target.run(case)
            print("  no finding", flush=True)
        except Finding as finding:
            failed += 1
            print(f"  FINDING: {finding}", flush=True)
    target.close()
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", choices=sorted(TARGETS))
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--work", type=Path, required=True, help="data, corpus and findings go here")
    p.add_argument("--engine", choices=["atheris", "hypothesis"], help="default: atheris if it imports")
    p.add_argument("--summary", type=Path, help="JSON summary, rewritten as the run goes")
    p.add_argument("--replay", type=Path, nargs="+", help="run these inputs once each")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)  # the targets provoke warnings by the thousand
    args.work.mkdir(parents=True, exist_ok=True)
    if args.replay:
        logging.getLogger().setLevel(logging.ERROR)
        return replay(args.target, args.work, args.replay)
    engine = args.engine or ("atheris" if importlib.util.find_spec("atheris") else "hypothesis")
    run = Run(args.target, args.work, engine, args.summary)
    run.write()
    if engine == "atheris":
        fuzz_atheris(args.target, args.work, args.seconds, run)
    else:
        fuzz_hypothesis(args.target, args.work, args.seconds, run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
