"""Settings of the admin HTTP listener: every default in one place.

The listener serves loopback only (the PHP web UI on the same machine calls
it) and refuses to start without a bearer token in ``$EMS_ADMIN_TOKEN``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from bridges.admin_http.token_strength import estimate_bits
from broker.core.errors import ConfigError
from broker.core.vocabulary import MAX_REASON_CHARS

TOKEN_ENV = "EMS_ADMIN_TOKEN"
#: a shorter token is refused: it would be guessable
MIN_TOKEN_CHARS = 16
#: a token whose estimated entropy is lower is refused (token_strength.estimate_bits;
#: ``secrets.token_urlsafe(32)`` scores about 250)
MIN_TOKEN_BITS = 72.0
#: the listener's bus key (``DATA/keys/admin-http.*``) and its client id
KEY_NAME = "admin-http"
CLIENT_ID = "admin-http"
#: header naming the person behind a call (set by the web UI)
OPERATOR_HEADER = "X-EMS-Operator"
#: the web role of the person X-EMS-Operator names (viewer, operator or admin); the broker stands behind at most operator
ROLE_HEADER = "X-EMS-Role"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9090
DEFAULT_LISTEN = f"{DEFAULT_HOST}:{DEFAULT_PORT}"
#: JSON lines, one per HTTP call, in DATA/logs/
AUDIT_FILE = "admin-http-audit.log"
#: where an error the caller cannot fix is explained (the listener's own log)
LOG_HINT = "see DATA/logs/admin-http.log"
#: where a running listener writes the address it actually bound
ENDPOINT_FILE = "admin-http.endpoint"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

TOKEN_HINT = (
    f"set {TOKEN_ENV} to a long random secret before starting, e.g. "
    f"export {TOKEN_ENV}=\"$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')\" "
    "and give the same value to the web UI"
)


@dataclass
class AdminHttpConfig:
    """Everything the admin HTTP listener needs besides its bus connection."""

    token: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    #: larger POST bodies are refused with 413 before they are read
    max_body_bytes: int = 16 * 1024
    #: how long one bus round trip (a request, queuing a command) may take
    bus_timeout_s: float = 10.0
    #: right after start, a request waits this long for the bus connection
    #: instead of failing at once (``ems up`` starts everything together)
    bus_startup_grace_s: float = 5.0
    #: ``?wait=1`` waits this long for a result unless ``timeout_s`` says otherwise
    wait_default_s: float = 30.0
    wait_max_s: float = 300.0
    #: admin actions expire if the agent has not run them within this time
    #: (a reboot arriving a day late would surprise everyone)
    command_ttl_s: float = 3600.0
    command_ttl_max_s: float = 7 * 24 * 3600.0
    #: a slow or stalled HTTP client is cut off after this
    socket_timeout_s: float = 10.0
    #: longest reason / caller name accepted
    max_reason_chars: int = MAX_REASON_CHARS
    max_caller_chars: int = 64


def token_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The bearer token from ``$EMS_ADMIN_TOKEN``; ConfigError (with how to set it) if absent or weak."""
    token = (os.environ if environ is None else environ).get(TOKEN_ENV, "").strip()
    if not token:
        raise ConfigError(f"{TOKEN_ENV} is not set: the admin HTTP listener never runs without a token; {TOKEN_HINT}")
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"{TOKEN_ENV} is too short ({len(token)} characters, at least {MIN_TOKEN_CHARS}); {TOKEN_HINT}")
    bits = estimate_bits(token)
    if bits < MIN_TOKEN_BITS:
        raise ConfigError(
            f"{TOKEN_ENV} has too little entropy (about {bits:.0f} bits, at least {MIN_TOKEN_BITS:.0f}): repeated or "
            f"sequential characters, a small alphabet or common words are guessable; {TOKEN_HINT}"
        )
    return token


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) on a loopback address; port 0 picks a free one."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"--listen {text!r} is not HOST:PORT (e.g. {DEFAULT_LISTEN})")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.lower() not in LOOPBACK_HOSTS:
        raise ConfigError(
            f"--listen {text!r}: the admin listener serves loopback only (127.0.0.1, localhost or [::1]); "
            "the web UI calls it from the same machine"
        )
    return ("127.0.0.1" if host.lower() == "localhost" else host.lower()), int(port_text)
