"""Fuzzing the persister: its ingest (``record_for`` + ``Store.write_batch``)
and its history queries (``Persister._answer``), on real SQLite.

Ingest (``bench.fuzz.ingest``): batches of hostile records of every kind and
every event route must end in the store's documented outcomes only
(stored, duplicate, rejected, waiting, or StoreUnavailable for the whole
batch), and every kind must still be queryable and text-searchable after.
Queries (``bench.fuzz.query``): hostile requests for every op, history kind
and role must get exactly one REPLY or ERROR, never an exception; a reply
holds only kinds the role may read and, for a text search, only rows with
the text. Short and deterministic; ``make chaos`` runs both under atheris.
"""
from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bench.fuzz.hostile import KINDS, Deep, DrawChooser, field_value
from bench.fuzz.ingest import ROUTE_FIELDS, IngestCase, IngestTarget, Message, body_for, ingest_case
from bench.fuzz.query import ARGS, ROLES, QueryCase, QueryTarget, query_case
from broker.core.envelope import Kind


def fuzz(n: int):
    return settings(max_examples=n, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def ingest(tmp_path_factory):
    t = IngestTarget(tmp_path_factory.mktemp("ingest"))
    yield t
    t.close()


@pytest.fixture(scope="module")
def query(tmp_path_factory):
    t = QueryTarget(tmp_path_factory.mktemp("query"))
    yield t
    t.close()


# -- ingest ------------------------------------------------------------------------------
#: (message kind, topic after the sender, route) for every record kind and event route the store has
ROUTES = [(Kind.EVENT, f"event.{{s}}.{name}", name) for name in ("sysinfo", "capture", "chat", "fileop", "app")] + [
    (Kind.EVENT, "audit.op-1", "audit"), (Kind.LOG, "log.{s}", "log"), (Kind.SECURITY, "security.{s}", "security")]


@pytest.mark.parametrize("sender", ["agent-1", "", "persister"])
@pytest.mark.parametrize("kind,topic,route", ROUTES, ids=[r[2] for r in ROUTES])
def test_every_route_takes_hostile_bodies(ingest, kind, topic, route, sender):
    """Tried: for every event route (sysinfo, capture, chat, fileop, activity),
    audit, log and security records, from an agent, the broker ("") and the
    persister itself, bodies with that route's fields set to hostile values
    (2^63, NaN, bytes for strings, deep nesting, 1 MiB strings, JPEG bombs).
    Expected: each record stored, duplicate, rejected or waiting; every kind
    still queryable and searchable."""

    @fuzz(12)
    @given(st.data())
    def one(data):
        body = body_for(DrawChooser(data.draw), route)
        ingest.run(IngestCase((Message(kind, topic.format(s=sender), "m1", 1_700_000_000.0, sender, body),)))

    one()


def _deep_event(depth: int, maps: bool = False) -> IngestCase:
    return IngestCase((Message(Kind.EVENT, "event.agent-1.app", "deep", 1_700_000_000.0, "agent-1",
                               {"window": Deep(depth, maps)}),))


@fuzz(300)
@given(st.composite(lambda draw: ingest_case(DrawChooser(draw)))())
@example(_deep_event(1000))
@example(_deep_event(999, maps=True))
def test_random_batches(ingest, case):
    """Tried: batches of 1-4 random messages of every kind (events, logs,
    security events, audit, presence and command status as the broker makes
    them), and events nested 999-1,000 deep (issue #10: a later text search
    crashed the persister). Expected: documented outcomes only, and every
    kind queryable, text-searchable and countable after."""
    ingest.run(case)


# -- queries -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("role", ROLES[:6])
def test_every_role_queries_every_kind_with_hostile_arguments(query, role, kind):
    """Tried: ``store.query`` of each history kind (and unknown ones) by each
    role, with hostile values in every query field (limit, before_id, since,
    until, order, text, include_deleted, thumbnails, client_id). Expected: one
    REPLY or ERROR; rows only of kinds the role may read; a text search
    returns only rows containing the text."""

    @fuzz(6)
    @given(st.data())
    def one(data):
        ch = DrawChooser(data.draw)
        args = {"kind": kind}
        for field in ARGS["store.query"][1:]:
            if ch.int_in(0, 3) == 0:
                args[field] = field_value(ch, field)
        query.run(QueryCase({"op": "store.query", "args": args, "requester": {"client_id": "op-1", "role": role}}))

    one()


def _ask(op: str, role: str = "admin", **args) -> QueryCase:
    return QueryCase({"op": op, "args": args, "requester": {"client_id": "op-1", "role": role}})


@fuzz(300)
@given(st.composite(lambda draw: query_case(DrawChooser(draw)))())
@example(_ask("store.query", "viewer", kind="logs", before_id=2**63))
@example(_ask("store.query", "viewer", kind="security", since=2**63))
@example(_ask("store.query", "viewer", kind="metrics", until=2**64 - 1))
@example(_ask("store.capture", "operator", id=2**63))
@example(_ask("store.capture", "operator", id=math.inf))
@example(_ask("store.query", "viewer", kind="security", text="\x00"))
@example(_ask("store.query", "admin", kind="audit", text="\x00"))
@example(_ask("store.query", "viewer", kind="logs", order=Deep(1000)))
@example(_ask("store.query", "viewer", kind=Deep(1000)))
@example(_ask("store.capture", "operator", id=1, purpose=Deep(1000)))
@example(_ask("store.stats", "viewer", group_by=Deep(1000)))
def test_random_requests(query, case):
    """Tried: random forwarded requests (any op, kind, role, hostile args);
    the crashes issue #10 names: 2^63 and 2^64-1 in before_id, since, until
    and a capture id, a NUL in a text search; and what this harness found:
    an infinite capture id, and arguments nested 1,000 deep (their repr in
    the error message recurses). Expected: one REPLY or ERROR, never an
    exception; a text search returns only rows containing the text."""
    query.run(case)
