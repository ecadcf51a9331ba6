"""Fuzzing the broker's dispatch: valid headers, hostile bodies, every role and kind.

One real broker on a random loopback port, a real persister providing
``store`` and one raw Curve peer per role (agent, viewer, operator, admin,
service, a pending key) for the whole module (``bench.fuzz.dispatch``).
After every message the target checks that the sender's next request is
answered, a ``store.*`` request gets an answer, ``status`` and
``store.stats`` answer, the persister raised nothing, ``internal_errors``
stayed 0 and the broker's per-peer state is bounded; a break is a
``Finding``. Short and deterministic (derandomized); ``make chaos`` runs the
same target under atheris for minutes (``python -m bench.fuzz.run dispatch``).
"""
from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from bench.fuzz.dispatch import OPS, ROLES, DispatchCase, DispatchTarget, dispatch_case, request_body
from bench.fuzz.hostile import Deep, DrawChooser
from broker.core.envelope import Kind


def fuzz(n: int):
    return settings(max_examples=n, deadline=None, database=None, derandomize=True,
                    phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    t = DispatchTarget(tmp_path_factory.mktemp("dispatch"))
    yield t
    t.close()


@st.composite
def cases(draw, role=None, kind=None):
    return dispatch_case(DrawChooser(draw), role, kind)


@st.composite
def requests(draw, role, op):
    return DispatchCase(role, Kind.REQUEST, "", request_body(DrawChooser(draw), op))


@pytest.mark.parametrize("kind", list(Kind), ids=[k.name for k in Kind])
@pytest.mark.parametrize("role", ROLES)
def test_every_role_sends_every_kind_with_hostile_bodies(target, role, kind):
    """Tried: each role (pending key included) sends each of the 18 kinds with
    a valid header and a hostile body (deep nesting, 2^63 and 2^64-1, NaN,
    bytes where strings go, 1 MiB strings, million-item arrays, unknown keys,
    msgpack bombs, random bytes), hostile topic, corr and expiry. Expected:
    an answer or a counted drop; the broker and persister keep serving."""

    @fuzz(6)
    @given(cases(role, kind))
    def one(case):
        target.run(case)

    one()


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("role", ROLES)
def test_every_role_calls_every_operation_with_hostile_arguments(target, role, op):
    """Tried: each role calls each broker and store operation (and unknown
    ones) with a history kind and hostile arguments (limits of inf, NaN, -1,
    2^63; before_id/since/until/id out of int64; NUL and LIKE wildcards in
    text; maps where strings go). Expected: a REPLY or an error code that is
    not INTERNAL; the persister answers and stays up."""

    @fuzz(5)
    @given(requests(role, op))
    def one(case):
        target.run(case)

    one()


DEEP_EVENT = DispatchCase("agent", Kind.EVENT, "event.{me}.app", {"window": Deep(1000)})


def ask(role: str, op: str, **args) -> list[DispatchCase]:
    return [DispatchCase(role, Kind.REQUEST, "", {"op": op, "args": args})]


@fuzz(150)
@given(st.lists(cases(), min_size=1, max_size=3))
# issue #10's known crashes
@example(ask("viewer", "command.list", limit=math.inf))
@example(ask("viewer", "store.query", kind="logs", before_id=2**63))
@example(ask("viewer", "store.query", kind="security", since=2**63))
@example(ask("operator", "store.capture", id=2**63))
@example([DEEP_EVENT, *ask("viewer", "store.query", kind="activity", text="x")])
# found by these harnesses
@example(ask("viewer", "store.query", kind="logs", order=Deep(1000)))
@example(ask("viewer", "store.stats", group_by=Deep(1000)))
@example(ask("viewer", "command.get", id=Deep(1000)))
@example(ask("viewer", "command.list", target={"a": 1}))
@example(ask("admin", "journal.ack", upto=2**63))
@example(ask("admin", "journal.read", limit=math.inf))
@example([DispatchCase("operator", Kind.COMMAND, "command.{agent}",
                       {"target": "{agent}", "name": "ping", "args": {"caller": Deep(1000)}})])
def test_random_message_sequences(target, messages):
    """Tried: sequences of 1-3 random messages from random roles (so that
    what one stores, another reads); issue #10's known crashes
    (``command.list limit=inf``; ``before_id``/``since``/capture id of 2^63;
    an event nested 1,000 deep, then a text search of activity); and what
    these harnesses found (arguments nested 1,000 deep, whose repr in an
    error message recurses; a command whose ``caller`` is nested 1,000 deep,
    queued and delivered with no audit record; a map as ``command.list``
    target; 2^63 and inf in ``journal.ack``/``journal.read``). Expected:
    every invariant of the dispatch target holds after each message."""
    for case in messages:
        target.run(case)
