"""The broker's request ops: one table of functions (broker/request_ops) and
one table of who may ask (broker/permissions.REQUEST_OPS), kept in step.

The rule for each op lives in permissions alone; the ops package checks at
import that both name the same broker ops. These tests drive that check
with each op dropped from either side and with an op added to either side,
and hold every op function to a docstring that is its spec.
"""
from __future__ import annotations

import pytest

from broker.core import permissions


from broker.server import request_ops
BROKER_OPS = sorted(request_ops.OPS)


def test_both_tables_name_the_same_broker_ops():
    """The functions answer exactly the ops permissions gives a rule and
    that no service answers."""
    assert set(request_ops.OPS) == request_ops.broker_ops()
    assert not [op for op in request_ops.OPS if op.startswith(permissions.SERVICE_PREFIXES)]


@pytest.mark.parametrize("op", BROKER_OPS)
def test_an_op_with_no_permission_rule_is_refused_at_import(monkeypatch, op):
    """Tried: the permission table without ``op`` (its function still in the
    ops table). Expected: the import-time check raises, naming ``op``."""
    monkeypatch.setattr(permissions, "REQUEST_OPS", {k: v for k, v in permissions.REQUEST_OPS.items() if k != op})
    with pytest.raises(RuntimeError, match=op.replace(".", r"\.")):
        request_ops._check()


@pytest.mark.parametrize("op", BROKER_OPS)
def test_an_op_with_no_function_is_refused_at_import(monkeypatch, op):
    """Tried: the ops table without ``op`` (its permission rule still there).
    Expected: the import-time check raises, naming ``op``."""
    monkeypatch.setattr(request_ops, "OPS", {k: v for k, v in request_ops.OPS.items() if k != op})
    with pytest.raises(RuntimeError, match=op.replace(".", r"\.")):
        request_ops._check()


@pytest.mark.parametrize("side", ["permissions", "functions"])
def test_an_op_added_on_one_side_only_is_refused_at_import(monkeypatch, side):
    """Tried: a new op ``keys.frobnicate`` in one table and not the other.
    Expected: the import-time check raises, naming it."""
    if side == "permissions":
        monkeypatch.setattr(permissions, "REQUEST_OPS", {**permissions.REQUEST_OPS, "keys.frobnicate": ("admin", False)})
    else:
        monkeypatch.setattr(request_ops, "OPS", {**request_ops.OPS, "keys.frobnicate": request_ops.OPS["keys.list"]})
    with pytest.raises(RuntimeError, match=r"keys\.frobnicate"):
        request_ops._check()


def test_a_service_op_needs_no_function(monkeypatch):
    """A new ``store.*`` op is forwarded to the store: it needs a permission
    rule only, and the check accepts it (it raises nothing)."""
    monkeypatch.setattr(permissions, "REQUEST_OPS", {**permissions.REQUEST_OPS, "store.frobnicate": ("viewer", True)})
    request_ops._check()
    assert "store.frobnicate" not in request_ops.broker_ops()


@pytest.mark.parametrize("op", BROKER_OPS)
def test_each_op_function_has_its_spec_as_docstring(op):
    """Each op is a small function whose docstring is its spec, naming the op."""
    doc = request_ops.OPS[op].__doc__ or ""
    assert doc.startswith(f"``{op}``"), f"{op}: docstring should start with ``{op}``"
