"""Checks every admin HTTP request passes before it reaches the API.

Pure functions over header values, so they are easy to test and to read:
the ``Host`` guard against DNS rebinding, the bearer token (compared in
constant time) and the caller name a trusted front end may pass on.
"""
from __future__ import annotations

import hmac
import re

from bridges.admin_http.config import OPERATOR_HEADER, ROLE_HEADER

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_CALLER = re.compile(r"[A-Za-z0-9._@+-]+(?: [A-Za-z0-9._@+-]+)*")


def host_allowed(host_header: str | None) -> bool:
    """True for a loopback ``Host``: 127.0.0.1, localhost or [::1], each with an optional port.

    A browser tricked by DNS rebinding sends the attacker's host name here,
    so anything else is refused.
    """
    if not host_header:
        return False
    value = host_header.strip().lower()
    for name in _LOOPBACK_NAMES:
        if value == name:
            return True
        if value.startswith(name + ":"):
            port = value[len(name) + 1:]
            return port.isdigit() and len(port) <= 5
    return False


def bearer_ok(authorization: str | None, token: str) -> bool:
    """True if ``Authorization`` is ``Bearer <token>`` (token compared in constant time)."""
    if not authorization:
        return False
    scheme, _, presented = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode("utf-8", "surrogateescape"), token.encode("utf-8"))


def caller_name(header: str | None, default: str, max_chars: int) -> str:
    """The person behind the call from ``X-EMS-Operator``, else ``default``.

    Raises ValueError (with what is allowed) for a name that could not be
    written safely into logs and the audit trail.
    """
    if header is None or not header.strip():
        return default
    name = header.strip()
    if len(name) > max_chars or not _CALLER.fullmatch(name):
        raise ValueError(
            f"{OPERATOR_HEADER} must be 1-{max_chars} characters of letters, digits, spaces and ._@+-"
        )
    return name


#: the roles ``X-EMS-Role`` may name
CALLER_ROLES = ("viewer", "operator", "admin")


def caller_role(header: str | None) -> str:
    """The web role from ``X-EMS-Role`` (``""`` when absent); ValueError for anything but :data:`CALLER_ROLES`."""
    if header is None or not header.strip():
        return ""
    role = header.strip().lower()
    if role not in CALLER_ROLES:
        raise ValueError(f"{ROLE_HEADER} must be one of {', '.join(CALLER_ROLES)}")
    return role
