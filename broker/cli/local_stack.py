"""Preparing a data dir for ``ems up``: keys, registry entries, profile.

Idempotent: run it on every start. It creates the broker key pair, a local
operator key (role admin, named after the local user), the persister's
service key and the local agent's key, registers them as accepted, and
writes the operator profile.
"""
from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass

from agent import identity
from broker.core import keys
from broker.core.profile import Profile, connectable, save
from broker.core.config import DataDir
from broker.server.registry import ACCEPTED, KeyRegistry


@dataclass
class LocalStack:
    data: DataDir
    operator_id: str
    agent_id: str
    broker_key: str


def operator_name() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "operator"
    return f"{user}@{socket.gethostname()}"


def prepare(data: DataDir, bind: str, with_agent: bool = True) -> LocalStack:
    data.ensure()
    broker_pair = keys.load_or_create(data.keys, "broker")
    operator_pair = keys.load_or_create(data.keys, "operator")
    operator_id = operator_name()
    agent_id = identity.client_id(data.root / "agent") if with_agent else ""  # before the agent's keys: a new install gets a salted id
    registry = KeyRegistry(data.broker_db)
    try:
        current = registry.get(operator_pair.public)
        if current is None or current.state != ACCEPTED:
            registry.add(operator_pair.public, operator_id, "admin", ACCEPTED, label="local operator (ems up)")
        persister_pair = keys.load_or_create(data.keys, "persister")
        if registry.get(persister_pair.public) is None:
            registry.add(persister_pair.public, "persister", "service", ACCEPTED, label="SQLite persister (ems up)")
        sync_pair = keys.load_or_create(data.keys, "sync")
        if registry.get(sync_pair.public) is None:
            registry.add(sync_pair.public, "sync", "service", ACCEPTED, label="MySQL sync worker (ems up)")
        admin_http_pair = keys.load_or_create(data.keys, "admin-http")
        current = registry.get(admin_http_pair.public)
        if current is None or (current.role == "operator" and current.state == ACCEPTED):  # older stacks: an operator
            # a service now: it vouches for the person behind each call (broker.server.operators)
            registry.add(admin_http_pair.public, "admin-http", "service", ACCEPTED, label="admin HTTP listener (ems up)")
        if with_agent:
            agent_pair = keys.load_or_create(data.root / "agent" / "keys", "agent")
            current = registry.get(agent_pair.public)
            if current is None:
                registry.add(agent_pair.public, agent_id, "agent", ACCEPTED, label=f"{socket.gethostname()} (local)")
    finally:
        registry.close()
    save(data, Profile(server=connectable(bind), server_key=broker_pair.public, key_name="operator", client_id=operator_id))
    return LocalStack(data, operator_id, agent_id, broker_pair.public)
