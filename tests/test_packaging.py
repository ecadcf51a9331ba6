"""What ``pip install .`` puts into site-packages: the product, never a dev harness.

The package list is the one setuptools itself resolves from ``setup.cfg``
(``read_configuration``: ``packages = find:`` with its ``include``), and every
``.py`` file in those package directories is what gets installed.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from setuptools.config.setupcfg import read_configuration

ROOT = Path(__file__).resolve().parents[1]
HARNESS_DIR = ROOT / "bench" / "harness"
#: the dev harnesses that once shipped inside agent/ and gui/
HARNESSES = ("xvfb", "pattern", "demo", "screenshots")


def installed_packages() -> list[str]:
    """The packages ``pip install .`` installs, as setuptools resolves them."""
    return list(read_configuration(str(ROOT / "setup.cfg"))["options"]["packages"])


def installed_modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module those packages install."""
    modules = {}
    for package in installed_packages():
        folder = ROOT.joinpath(*package.split("."))
        for path in folder.glob("*.py"):
            modules[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return modules


def imported_names(path: Path) -> set[str]:
    """Every module name ``path`` imports (absolute imports, anywhere in the file)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_harnesses_exist_where_the_tests_take_them_from():
    """The dev harnesses live in bench/harness, and nothing else does."""
    assert sorted(p.stem for p in HARNESS_DIR.glob("*.py") if p.stem != "__init__") == sorted(HARNESSES)


def test_only_product_packages_are_installed():
    """Tried: every package setup.cfg installs; none is bench, tests or anything below them."""
    roots = {package.split(".")[0] for package in installed_packages()}
    assert roots == {"broker", "agent", "gui", "sync", "bridges"}


@pytest.mark.parametrize("harness", HARNESSES)
def test_no_installed_module_is_a_harness(harness):
    """Tried: each harness's name against every installed module's last name part."""
    clashes = [name for name in installed_modules() if name.rsplit(".", 1)[-1] == harness]
    assert clashes == []


def test_no_installed_module_imports_a_dev_package():
    """Tried: every import statement of every installed module; none reaches bench or tests."""
    offenders = {name: sorted(n for n in imported_names(path) if n.split(".")[0] in ("bench", "tests", "conftest"))
                 for name, path in installed_modules().items()}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_setup_cfg_adds_no_loose_files():
    """Tried: py_modules, package_data and data_files: any of them could ship a harness past the package list."""
    options = read_configuration(str(ROOT / "setup.cfg"))["options"]
    assert not options.get("py_modules") and not options.get("package_data") and not options.get("data_files")
