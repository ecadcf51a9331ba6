"""Preparing a data dir for ``ems up``: keys, registry entries, profile.

Idempotent: run it on every start. It creates the broker key pair, a local
operator key (role admin, client id ``user@host``), the persister's
and the alerts service's keys and the local agent's key, registers them as accepted, and
writes the operator profile. Each web bridge (``bridges.bridge_call.BRIDGES``)
gets its own service key.

The local operator is a person: the key carries a display name (what the
employee's notices and the audit trail show), ``--operator-name`` when
given, else the one it already has (``ems keys name`` changes it), else the
OS account's full name (:func:`account_display_name`).
"""
from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass

from agent import identity
from bridges.bridge_call import BRIDGES
from broker.alerts.runner import CLIENT_ID as ALERTS_ID, KEY_NAME as ALERTS_KEY
from broker.core import keys
from broker.core.profile import Profile, connectable, save
from broker.core.config import DataDir
from broker.core.errors import EmsError
from broker.server.operators import display_name
from broker.server.registry import ACCEPTED, KeyRegistry


@dataclass
class LocalStack:
    data: DataDir
    operator_id: str
    agent_id: str
    broker_key: str
    #: the person behind the local operator key ("Jane Doe")
    operator_name: str = ""


def operator_id() -> str:
    """The local operator key's client id: ``user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "operator"
    return f"{user}@{socket.gethostname()}"


def account_display_name(account=None) -> str:
    """The full name of the OS account (``account``: a ``pwd`` entry, default this process's
    user): the first field of its GECOS entry, else the login name."""
    login = operator_id().split("@", 1)[0]
    if account is None:
        try:
            import pwd  # Unix only

            account = pwd.getpwuid(os.getuid())
        except (ImportError, KeyError):  # no passwd entry (a container's bare uid), or Windows
            return login
    try:
        return display_name(account.pw_gecos.split(",", 1)[0]) or account.pw_name or login
    except ValueError:  # not one short line: the login name is
        return account.pw_name or login


def prepare(data: DataDir, bind: str, with_agent: bool = True, operator_name: str = "") -> LocalStack:
    """Make ``data`` ready for ``ems up``; ``operator_name`` names the local operator's person (see above)."""
    data.ensure()
    broker_pair = keys.load_or_create(data.keys, "broker")
    operator_pair = keys.load_or_create(data.keys, "operator")
    operator = operator_id()
    agent_id = identity.client_id(data.root / "agent") if with_agent else ""  # before the agent's keys: a new install gets a salted id
    registry = KeyRegistry(data.broker_db)
    try:
        current = registry.get(operator_pair.public)
        name = _checked_name(operator_name or (current.name if current is not None else "") or account_display_name())
        if current is None or current.state != ACCEPTED:
            current = registry.add(operator_pair.public, operator, "admin", ACCEPTED, label="local operator (ems up)", name=name)
        if current.name != name:
            registry.set_name(current, name)
        persister_pair = keys.load_or_create(data.keys, "persister")
        if registry.get(persister_pair.public) is None:
            registry.add(persister_pair.public, "persister", "service", ACCEPTED, label="SQLite persister (ems up)")
        alerts_pair = keys.load_or_create(data.keys, ALERTS_KEY)
        if registry.get(alerts_pair.public) is None:
            registry.add(alerts_pair.public, ALERTS_ID, "service", ACCEPTED, label="alerts service (ems up)")
        admin_http_pair = keys.load_or_create(data.keys, "admin-http")
        current = registry.get(admin_http_pair.public)
        if current is None or (current.role == "operator" and current.state == ACCEPTED):  # older stacks: an operator
            # a service now: it vouches for the person behind each call (broker.server.operators)
            registry.add(admin_http_pair.public, "admin-http", "service", ACCEPTED, label="admin HTTP listener (ems up)")
        _register_bridges(data, registry)
        if with_agent:
            agent_pair = keys.load_or_create(data.root / "agent" / "keys", "agent")
            current = registry.get(agent_pair.public)
            if current is None:
                registry.add(agent_pair.public, agent_id, "agent", ACCEPTED, label=f"{socket.gethostname()} (local)")
    finally:
        registry.close()
    save(data, Profile(server=connectable(bind), server_key=broker_pair.public, key_name="operator", client_id=operator))
    return LocalStack(data, operator, agent_id, broker_pair.public, name)


def _checked_name(name: str) -> str:
    try:
        return display_name(name)
    except ValueError as exc:
        raise EmsError(f"--operator-name {name!r}: {exc}") from exc


def _register_bridges(data: DataDir, registry: KeyRegistry) -> None:
    """One service key per web bridge, registered once (a revoked one stays revoked)."""
    for bridge in BRIDGES:
        pair = keys.load_or_create(data.keys, bridge.key_name)
        if registry.get(pair.public) is None:
            registry.add(pair.public, bridge.client_id, "service", ACCEPTED, label=bridge.label)
