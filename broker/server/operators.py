"""Operators are people: who a command is from, as the agent and the audit trail name them.

Every command the broker routes carries ``args.operator``, set by the broker
and overwriting whatever the sender put there::

    {"id": "jane@vm", "name": "Jane Doe", "via": ""}

* a key of an operator or admin is stamped with its own client id and the
  display name its key carries in the registry (``ems keys add --name``,
  ``ems keys name``); ``via`` is empty. What such a sender says about the
  operator is ignored, and a claim to be someone else is a security event:
  an operator cannot pretend to be another person.
* a key whose role may vouch (:data:`broker.core.permissions.VOUCHING_ROLES`: a
  bridge such as the admin API, which authenticated the person) must name
  that person in ``args.operator`` (``name``, optional ``id``); the broker
  keeps the person and records the bridge's client id as ``via``.

Display names are one line of at most :data:`MAX_NAME_CHARS` characters.
"""
from __future__ import annotations

from typing import Any

from broker.core import permissions

#: longest display name kept for a key or vouched for by a bridge
MAX_NAME_CHARS = 100


def display_name(value: Any) -> str:
    """``value`` as a display name: stripped, one line, at most
    :data:`MAX_NAME_CHARS`; ValueError (saying what is allowed) otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"a display name must be text, not {type(value).__name__}")
    name = value.strip()
    if len(name) > MAX_NAME_CHARS or any(ch < " " or ch == "\x7f" for ch in name):
        raise ValueError(f"a display name is one line of at most {MAX_NAME_CHARS} characters")
    return name


def person_of(registry: Any, peer: Any) -> str:
    """The person behind ``peer``'s key as the audit trail names them: its display name, else its client id."""
    record = registry.get(peer.key)
    return (record.name if record is not None else "") or peer.client_id


def stamp(role: str, client_id: str, key_name: str, args: dict) -> tuple[dict, str]:
    """The ``operator`` stamp for a command from a key with ``role``,
    ``client_id`` and registry display name ``key_name``, and a problem.

    The problem is ``""`` when all is well. For a vouching role a missing
    or unusable person is a problem to refuse the command with; for anyone
    else a claim to be another person is a problem to report (the stamp
    names the key's own person all the same).
    """
    claimed = args.get("operator")
    if role in permissions.VOUCHING_ROLES:
        return _vouched(client_id, claimed)
    own = {"id": client_id, "name": key_name or client_id, "via": ""}
    return own, _impersonation(own, claimed)


def _vouched(client_id: str, claimed: Any) -> tuple[dict, str]:
    """The person a bridge vouches for, with the bridge as ``via``."""
    hint = f"{client_id} sends commands only for a person it names: args.operator = {{'name': '...'}}"
    if not isinstance(claimed, dict):
        return {}, hint
    try:
        name = display_name(claimed.get("name"))
        person_id = display_name(claimed.get("id") or name)
    except ValueError as exc:
        return {}, f"{hint} ({exc})"
    if not name:
        return {}, hint
    return {"id": person_id, "name": name, "via": client_id}, ""


def _impersonation(own: dict, claimed: Any) -> str:
    """What a non-vouching sender claimed beyond itself, or ``""``."""
    if claimed is None:
        return ""
    if not isinstance(claimed, dict):
        return f"args.operator is set by the broker; {type(claimed).__name__} ignored"
    others = {k: v for k, v in claimed.items() if own.get(k) != v and not (k == "via" and not v)}
    if not others:
        return ""
    return f"claimed to act as {str(others)[:200]}: only a vouching service names another person; stamped as {own['id']}"
