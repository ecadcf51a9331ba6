"""The broker never answers INTERNAL to peer input: every role x every kind it
may send x every field the broker reads x hostile values. Before the bounds
checks, ``command.list`` with ``limit=inf`` or ``target=[]`` reached the
catch-all and was answered INTERNAL."""
from __future__ import annotations

import pytest

from broker.core import permissions
from broker.core.errors import RemoteError
from broker.core.config import Timing
from broker.core.envelope import ErrorCode, Kind, pack_body, pack_header

from conftest import Bus, wait_for

#: every hostile value msgpack can carry
VALUES = [-1, 0, 1, 2**31, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), float("inf"), float("nan"), "1", "", "\x00",
          "x" * 5000, None, [], {}, True, b"\x00", [[[[[[[[[[["deep"]]]]]]]]]]], {"a": {"b": {"c": [1, {"d": None}]}}}]

#: fields the broker reads from each kind's body (base: the rest of a valid body)
KIND_FIELDS = {
    Kind.HELLO: ({}, ["client_id", "label", "hostname", "version", "os", "user", "token", "provides", "batches"]),
    Kind.SUBSCRIBE: ({"prefixes": ["event."]}, ["prefixes"]),
    Kind.UNSUBSCRIBE: ({"prefixes": ["event."]}, ["prefixes"]),
    Kind.COMMAND: ({"target": "agent-n", "name": "ping", "args": {"reason": "r"}}, ["target", "name", "args"]),
    Kind.COMMAND_STATUS: ({"id": "c1", "status": "delivered"}, ["id", "status", "result", "name"]),
    Kind.RESULT: ({"id": "c1", "ok": True}, ["id", "ok", "result", "status", "error"]),
    Kind.ACK: ({"ids": ["m1"]}, ["ids"]),
}
#: broker (not store) request ops and their arguments
OP_FIELDS = {
    "status": [], "agents": [],
    "command.get": ["id"], "command.list": ["limit", "target", "names"],
    "journal.read": ["limit"], "journal.ack": ["upto"], "audit.note": ["action", "person", "detail"],
    "keys.list": [], "keys.accept": ["id", "reason"], "keys.reject": ["id", "reason"], "keys.revoke": ["id", "reason"],
    "keys.add": ["public_key", "client_id", "role", "label", "name"], "keys.label": ["id", "label"], "keys.name": ["id", "name"],
    "keys.blocked": [], "keys.unblock": ["id", "reason"],
    "targets.resolve": ["selector", "limit"], "targets.tags": [], "targets.tag": ["kind", "name", "selector", "remove"],
    "bulk.start": ["selector", "name", "args", "max_parallel", "canary", "halt_failure_pct", "ttl_s", "dry_run"],
    "bulk.get": ["id", "limit"], "bulk.list": ["limit"], "bulk.cancel": ["id", "reason", "operator"],
    "approvals.list": ["state", "limit"], "approvals.decide": ["id", "approve", "reason", "operator"], "approvals.rules": [],
    "approvals.require": ["names", "remove"],
    "templates.list": [], "templates.put": ["name", "command", "args", "params", "approval", "description"],
    "templates.remove": ["name"], "templates.run": ["name", "selector", "params", "reason", "max_parallel", "dry_run", "operator"],
    "playbooks.list": [], "playbooks.put": ["name", "steps", "description"], "playbooks.remove": ["name"],
    "playbooks.run": ["name", "selector", "params", "reason", "max_parallel", "ttl_s", "dry_run"],
    "playbooks.get": ["id", "limit"], "playbooks.cancel": ["id", "reason"],
    "schedules.add": ["name", "request_op", "args", "reason", "cron", "at", "tz", "missed", "grace_s"],
    "schedules.list": ["limit"], "schedules.get": ["id", "limit"], "schedules.remove": ["id", "reason"],
    "schedules.pause": ["id", "reason"], "schedules.resume": ["id", "reason"],
    "broadcast.send": ["selector", "text", "reason", "max_parallel", "ttl_s", "dry_run"], "broadcast.get": ["id", "limit"],
    "broadcast.list": ["limit"], "broadcast.cancel": ["id", "reason"],
}
ROLES = ["agent", "viewer", "operator", "admin", "service"]


@pytest.fixture(scope="module")
def bus(tmp_path_factory):
    b = Bus(tmp_path_factory.mktemp("no-internal"), Timing.fast())
    b.agent = b.peer("agent-n")
    b.peers = {"admin": b.admin, "agent": b.agent}
    for role in ("viewer", "operator", "service"):
        b.peers[role] = b.peer(f"{role}-n", role=role)
    yield b
    b.close()


def burst(bus, role: str, frames: list[list[bytes]]) -> None:
    """Send every message, then a status REQUEST as a barrier: once its answer
    (a REPLY, or FORBIDDEN for an agent) is back, every message sent before it
    on this connection was handled."""
    client = bus.peers[role]
    idle = [peer for peer in bus.peers.values() if peer is not client]
    for peer in idle:  # heartbeats due since the last test
        peer.drain(10_000, 0)
    for header, body in frames:
        client.socket.send_multipart([header, body])
    barrier = client.send(Kind.REQUEST, data={"op": "status", "args": {}})
    answered = []

    def barrier_answered():
        answered.extend(env for env in client.drain(10_000, 0.05) if env.corr == barrier)
        for peer in idle:  # the other peers keep their heartbeats going (a loaded machine must not time them out)
            peer.drain(10_000, 0)
        return answered

    wait_for(barrier_answered, 15, interval_s=0.0, what="the barrier's answer")


def cases():
    for role in ROLES:
        for kind, (_, fields) in KIND_FIELDS.items():
            if permissions.may_send(role, kind):
                yield pytest.param(role, kind, None, fields, id=f"{role}-{kind.name}")
        if permissions.may_send(role, Kind.REQUEST):
            for op, fields in OP_FIELDS.items():
                yield pytest.param(role, Kind.REQUEST, op, fields, id=f"{role}-{op}")


@pytest.mark.parametrize("role, kind, op, fields", list(cases()))
def test_no_peer_input_is_answered_internal(bus, role, kind, op, fields):
    """Tried: as each role, each kind it may send (HELLO, SUBSCRIBE, COMMAND, RESULT,
    ACK, ... and every broker request op) with each field the broker reads set to each
    of -1, 0, 2^31, 2^63-1, 2^63, 2^64-1, inf, nan, "1", "", NUL, 5,000 chars, None,
    [], {}, True, bytes and nested containers: the broker's catch-all (INTERNAL) is
    never reached, and it still answers an admin's status."""
    frames = []
    for field in fields or [None]:
        for value in VALUES:
            if op is None:
                base = dict(KIND_FIELDS[kind][0])
                topic = "ack.agent-n" if kind is Kind.ACK else ("command.agent-n" if kind is Kind.COMMAND else "")
                base[field] = value
                frames.append([pack_header(kind, topic), pack_body(base)])
            else:
                frames.append([pack_header(Kind.REQUEST, op), pack_body({"op": op, "args": {field: value} if field else {}})])
    before = bus.broker.counters.get("internal_errors", 0)
    burst(bus, role, frames)
    assert bus.broker.counters.get("internal_errors", 0) == before
    assert bus.admin.request("status", timeout_s=10)["broker"]["peers"] >= 5


def test_error_codes_for_hostile_request_args(bus):
    """Tried: command.list limit=inf and target=[] (the two INTERNAL answers found): now BAD_REQUEST."""
    for args in ({"limit": float("inf")}, {"target": []}, {"limit": 2**64 - 1, "names": [None]}):
        with pytest.raises(RemoteError) as err:
            bus.admin.request("command.list", **args)
        assert err.value.code == ErrorCode.BAD_REQUEST


def test_the_op_table_names_every_broker_op():
    """An op added to the broker (its permission rule or its function) without
    a row here would go unfuzzed."""
    from broker.server import request_ops

    assert set(OP_FIELDS) == {op for op in permissions.REQUEST_OPS if not op.startswith(permissions.SERVICE_PREFIXES)}
    assert set(OP_FIELDS) == set(request_ops.OPS)


@pytest.mark.parametrize("depth", [31, 33, 1000])
def test_a_result_past_the_limits_fails_the_command_instead_of_reaching_the_operator(bus, depth):
    """Tried: an agent answering a real command with a result nested ``depth``
    deep (a stolen agent feeding the operator's console something its JSON
    and Qt models would recurse on). Expected: up to the store's depth the
    result is relayed as it is; past it the command fails with a clear
    error, nothing of the value reaches the operator, a security event."""
    operator = bus.peers["operator"]
    cmd_id = operator.send_command("agent-n", "ping", {"reason": "depth test"})["id"]
    wait_for(lambda: any(e.kind is Kind.COMMAND and e.msg_id == cmd_id for e in [bus.agent.poll(0.05)] if e), 10,
             what="the command at the agent")
    value = "leaf"
    for _ in range(depth):
        value = [value]
    bus.agent.send(Kind.RESULT, data={"ok": True, "output": value}, corr=cmd_id)
    outcome = operator.wait_result(cmd_id, timeout_s=10)
    if depth < 32:
        assert outcome["status"] == "done" and "leaf" in repr(outcome["result"]["output"])
    else:
        assert outcome["status"] == "failed" and "refused by the broker" in outcome["result"]["error"]
        assert "output" not in outcome["result"]
        assert bus.broker.counters["security_malformed"] > 0
    assert bus.broker.counters["internal_errors"] == 0
