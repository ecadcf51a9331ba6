"""What a fuzz target reports when an invariant breaks, and where findings are kept."""
from __future__ import annotations

import hashlib
import traceback
from pathlib import Path


class Finding(AssertionError):
    """An invariant broke. ``signature`` names the bug (exception type and
    the innermost product frame), so repeats of one bug count once."""

    def __init__(self, what: str, detail: str = "", signature: str = ""):
        super().__init__(f"{what}: {detail}" if detail else what)
        self.what, self.detail = what, detail
        self.signature = signature or what


#: the checkout the findings name files in
REPO = Path(__file__).resolve().parents[2]


def where(exc: BaseException) -> str:
    """``Type at file:line in function`` for the innermost frame of EMS code that ``exc`` passed."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/broker/" in f.filename or "/bench/" in f.filename]
    inner = [f for f in frames if "/bench/fuzz/" not in f.filename] or frames
    if not inner:
        return type(exc).__name__
    f = inner[-1]
    # a RecursionError strikes at whichever line of the recursion hits the limit: name the function only
    line = "" if isinstance(exc, RecursionError) else f":{f.lineno}"
    path = Path(f.filename)
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
    return f"{type(exc).__name__} at {shown}{line} in {f.name}"


def from_exception(what: str, exc: BaseException) -> Finding:
    """A Finding for an exception that escaped, with its traceback as detail."""
    text = "".join(traceback.format_exception(exc))
    return Finding(what, text[-4000:], f"{what}: {where(exc)}")


class Findings:
    """Distinct findings of one run: the first input of each signature is
    kept as ``<dir>/crash-<target>-<hash>`` with a ``.txt`` saying what broke
    and how to replay it."""

    def __init__(self, directory: Path, target: str, replay: str):
        self.directory, self.target, self.replay = directory, target, replay
        self.seen: dict[str, dict] = {}
        self.total = 0

    def add(self, finding: Finding, data: bytes, case: object) -> bool:
        """Keep ``finding`` if its signature is new; True if it was."""
        self.total += 1
        if finding.signature in self.seen:
            self.seen[finding.signature]["count"] += 1
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"crash-{self.target}-{hashlib.sha1(finding.signature.encode()).hexdigest()[:12]}"
        path = self.directory / name
        path.write_bytes(data)
        replay = self.replay.format(path=path)
        path.with_suffix(".txt").write_text(
            f"target: {self.target}\nsignature: {finding.signature}\ncase: {case!r}\nreplay: {replay}\n\n{finding}\n")
        self.seen[finding.signature] = {"signature": finding.signature, "file": str(path), "replay": replay,
                                        "case": repr(case)[:500], "count": 1}
        return True
