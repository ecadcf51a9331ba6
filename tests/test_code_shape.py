"""Small modules with one job: no product module over ~500 lines, no function over 60.

Every ``.py`` file of the product packages is read (not imported); a module
or function past its limit fails the test, naming it, unless
:data:`STATED_REASONS` says why it may be longer.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("agent", "broker", "gui", "sync", "bridges")
#: "~500": the wire-format module is the one place for the envelope and sits just over it
MAX_MODULE_LINES = 510
MAX_FUNCTION_LINES = 60
#: "path" or "path:function" -> why it may be longer (none today)
STATED_REASONS: dict[str, str] = {}


def product_files() -> list[Path]:
    return sorted(p for package in PRODUCT for p in (ROOT / package).rglob("*.py"))


def oversize(files: list[Path], root: Path = ROOT) -> list[str]:
    """Every module and function past its limit, as ``path: lines`` / ``path:function: lines``."""
    found = []
    for path in files:
        name = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines > MAX_MODULE_LINES and name not in STATED_REASONS:
            found.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(text, name)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and f"{name}:{node.name}" not in STATED_REASONS:
                    found.append(f"{name}:{node.name}: {length} lines")
    return found


def test_the_product_packages_are_found():
    files = product_files()
    assert len(files) > 100 and any(p.name == "runner.py" for p in files)


def test_no_product_module_or_function_is_oversize():
    assert oversize(product_files()) == []


def test_the_check_finds_a_long_module_and_a_long_function(tmp_path):
    """Tried: a 600-line module whose one function is 61 lines: both are named."""
    body = "def long():\n" + "    x = 1\n" * 60 + "\n" * 540
    module = tmp_path / "big.py"
    module.write_text(body)
    assert oversize([module], tmp_path) == ["big.py: 601 lines", "big.py:long: 61 lines"]
