"""`ems` finds each sub-command through one table and imports only the one being run."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from broker.cli.main import SUBCOMMANDS, build_parser, chosen_command


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_every_subcommand_module_configures_and_runs(name):
    module = importlib.import_module(SUBCOMMANDS[name].module)
    assert callable(module.configure) and callable(module.run)
    parser = build_parser(name)
    action = next(a for a in parser._subparsers._group_actions if a.dest == "command")  # noqa: SLF001 - argparse keeps them there
    sub = action.choices[name]
    assert sub.description and sub.description != SUBCOMMANDS[name].help, f"{name}: configure() gave no description"
    assert sub.format_help().startswith(f"usage: ems {name} ")


def _modules_loaded_by(argv: list[str]) -> set[str]:
    code = ("import sys, json\nfrom broker.cli.main import build_parser, chosen_command\n"
            f"argv = {argv!r}\nbuild_parser(chosen_command(argv))\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('agent', 'gui', 'bridges', 'sync', 'broker', 'PySide6'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    return set(json.loads(out))


def test_help_alone_loads_no_component():
    loaded = _modules_loaded_by(["--help"])
    assert not {m for m in loaded if m.split(".")[0] in ("agent", "gui", "bridges", "PySide6")}, loaded
    assert not {m for m in loaded if m.startswith(("broker.server", "broker.persister"))}, loaded


@pytest.mark.parametrize("argv,absent", [
    (["tail"], ("gui", "PySide6", "agent", "broker.server", "broker.persister", "bridges")),
    (["status"], ("gui", "PySide6", "agent", "broker.server", "broker.persister", "bridges")),
    (["agent"], ("gui", "PySide6", "broker.server", "broker.persister", "bridges")),
    (["broker"], ("gui", "PySide6", "agent", "broker.persister", "bridges")),
    (["persist"], ("gui", "PySide6", "agent", "broker.server", "bridges")),
])
def test_a_subcommand_loads_only_its_component(argv, absent):
    loaded = _modules_loaded_by(argv)
    assert SUBCOMMANDS[argv[0]].module in loaded
    leaked = sorted(m for m in loaded if m.startswith(absent))
    assert not leaked, f"ems {argv[0]} imported {leaked}"


def test_the_subcommand_is_the_first_known_word():
    assert chosen_command(["--log-level", "INFO", "send", "agent-1", "status"]) == "send"
    assert chosen_command(["--help"]) is None
