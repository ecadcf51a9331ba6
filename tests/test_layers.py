"""The layers are contracts: `lint-imports` (setup.cfg's [importlinter]) passes on the tree,
and fails on a copy of the tree with one forbidden import added, for every kind of breach.

The breaches tried: the ground floor importing a component, the CLI or a dev harness;
one component importing another's internals (each direction that matters); anything
below the CLI importing it; a non-GUI part importing Qt; the product importing bench.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("broker", "agent", "gui", "bridges", "sync", "bench")
LINT = str(Path(sys.executable).with_name("lint-imports"))


def lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([LINT, "--no-cache", "--config", str(tree / "setup.cfg")], cwd=tree, capture_output=True,
                          text=True, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, timeout=120)


def test_the_tree_keeps_every_contract():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("tree")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__", "*.png", "*.json"))
    shutil.copy(ROOT / "setup.cfg", copy / "setup.cfg")
    return copy


BREACHES = [
    ("broker/core/envelope.py", "import agent.runner", "the ground floor imports nothing else of the project"),
    ("broker/core/client.py", "import broker.server.loop", "the ground floor imports nothing else of the project"),
    ("broker/core/config.py", "import broker.cli.main", "the ground floor imports nothing else of the project"),
    ("agent/runner.py", "import gui.models", "the CLI on top"),
    ("gui/models/clients.py", "import agent.screen.live", "the CLI on top"),
    ("gui/console_controller.py", "import broker.persister.service", "the CLI on top"),
    ("broker/persister/service.py", "import broker.server.registry", "the CLI on top"),
    ("bridges/admin_http/api.py", "import broker.server.peers", "the CLI on top"),
    ("broker/server/loop.py", "import broker.persister.store", "the CLI on top"),
    ("agent/runner.py", "import broker.cli.main", "the CLI on top"),
    ("sync/__init__.py", "import bridges.admin_http.api", "the CLI on top"),
    ("agent/notice/window.py", "import PySide6.QtWidgets", "only the operator console loads Qt"),
    ("broker/server/fanout.py", "import bench.stack", "the product never imports the benchmarks"),
]


@pytest.mark.parametrize("path,line,contract", BREACHES, ids=[f"{p}:{l.split()[1]}" for p, l, _ in BREACHES])
def test_each_breach_is_caught(tree_copy, path, line, contract):
    target = tree_copy / path
    original = target.read_text()
    target.write_text(original + f"\n{line}  # a breach this test adds\n")
    try:
        result = lint(tree_copy)
    finally:
        target.write_text(original)
    assert result.returncode != 0, f"lint-imports let `{line}` in {path} through:\n{result.stdout}"
    broken = [row for row in result.stdout.splitlines() if row.endswith("BROKEN")]
    assert any(contract.split()[0:3] == row.split()[0:3] for row in broken) or contract in result.stdout, result.stdout


def test_no_import_cycles():
    """Tried: every module of the product against every other (imports under TYPE_CHECKING left out, as they
    never run). A cycle is a pair of modules that cannot be understood, tested or moved apart."""
    import grimp

    graph = grimp.build_graph(*PACKAGES[:-1], include_external_packages=False, exclude_type_checking_imports=True,
                              cache_dir=None)
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if module < imported and graph.chain_exists(imported=module, importer=imported):
                cycles.append(f"{module} <-> {imported}")
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)
