"""`ems up`'s local operator is a person: its key carries a display name.

The name comes from ``--operator-name``, else the name the key already has
(``ems keys name`` changed it), else the OS account's full name (GECOS),
else its login name. The real `ems up` process is tested in
test_processes.py (``test_ems_up_runs_supervises_and_stops``).
"""
from __future__ import annotations

import pwd

import pytest

from broker.cli.local_stack import account_display_name, operator_id, prepare
from broker.core.config import DataDir
from broker.core.errors import EmsError
from broker.server.registry import KeyRegistry


def account(login: str, gecos: str) -> pwd.struct_passwd:
    return pwd.struct_passwd((login, "x", 1000, 1000, gecos, f"/home/{login}", "/bin/sh"))


@pytest.mark.parametrize("gecos, expected", [
    ("Jane Doe,Room 4,+49 30 1234,,", "Jane Doe"),
    ("Jane Doe", "Jane Doe"),
    ("", "jdoe"),
    (",,,", "jdoe"),
    ("  ", "jdoe"),
    ("Jane\nDoe", "jdoe"),  # not one line: the login name
    ("x" * 101, "jdoe"),
])
def test_the_default_name_is_the_account_s_full_name_else_its_login(gecos, expected):
    assert account_display_name(account("jdoe", gecos)) == expected


def names(data: DataDir) -> dict[str, str]:
    registry = KeyRegistry(data.broker_db)
    try:
        return {r.client_id: r.name for r in registry.all() if r.role == "admin"}
    finally:
        registry.close()


def test_prepare_names_the_operator_keeps_a_later_name_and_takes_a_new_one(tmp_path):
    data = DataDir(tmp_path / "var")
    stack = prepare(data, "tcp://127.0.0.1:7741", with_agent=False)
    assert stack.operator_id == operator_id() and "@" in stack.operator_id
    assert stack.operator_name == account_display_name() != ""
    assert names(data) == {stack.operator_id: account_display_name()}

    stack = prepare(data, "tcp://127.0.0.1:7741", with_agent=False, operator_name="  Jane Doe ")
    assert stack.operator_name == "Jane Doe" and names(data) == {stack.operator_id: "Jane Doe"}

    registry = KeyRegistry(data.broker_db)  # what `ems keys name` does through the broker
    registry.set_name(registry.accepted_by_client(stack.operator_id), "Jane Q. Doe")
    registry.close()
    assert prepare(data, "tcp://127.0.0.1:7741", with_agent=False).operator_name == "Jane Q. Doe"  # a restart keeps it
    assert names(data) == {stack.operator_id: "Jane Q. Doe"}


def test_a_name_that_is_not_one_short_line_is_refused(tmp_path):
    with pytest.raises(EmsError, match="--operator-name"):
        prepare(DataDir(tmp_path / "var"), "tcp://127.0.0.1:7741", with_agent=False, operator_name="Jane\nDoe")
