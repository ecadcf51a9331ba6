"""Typed configuration: every default EMS uses lives in this module.

A server keeps all of its state in one *data directory* (``--data-dir`` or
``EMS_HOME``; ``./var`` by default)::

    var/
      keys/broker.public  keys/broker.secret     the broker's Curve key pair
      keys/operator.*     keys/agent.*           local operator and agent
      broker.db                                  key registry + command queue
      profile.json                               how local CLI tools connect
      logs/                                      one log file per process
      agent/                                     the local agent's own state

Directories are 0700 and files 0600 (:mod:`broker.core.private_files`).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from broker.core.errors import ConfigError
from broker.core.private_files import private_dir

DEFAULT_PORT = 7741
DEFAULT_BIND = f"tcp://127.0.0.1:{DEFAULT_PORT}"
DEFAULT_SERVER = DEFAULT_BIND
DEFAULT_DATA_DIR = "var"
DATA_DIR_ENV = "EMS_HOME"
ENROL_TOKEN_ENV = "EMS_ENROL_TOKEN"

#: Roles a key can hold. Operator roles are ordered viewer < operator < admin.
ROLES = ("agent", "viewer", "operator", "admin", "service")
OPERATOR_ROLES = ("viewer", "operator", "admin")


def resolve_data_dir(path: str | os.PathLike | None) -> Path:
    """The data dir from an explicit path, ``$EMS_HOME`` or ``./var``."""
    chosen = path or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser().resolve()


@dataclass(frozen=True)
class DataDir:
    """Paths inside one data directory. Creating it is explicit: ``ensure()``."""

    root: Path

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def broker_db(self) -> Path:
        return self.root / "broker.db"

    @property
    def profile(self) -> Path:
        return self.root / "profile.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def endpoint_file(self) -> Path:
        """Where a running broker writes the endpoint it actually bound."""
        return self.root / "broker.endpoint"

    def sub(self, name: str) -> "DataDir":
        return DataDir(self.root / name)

    def ensure(self) -> "DataDir":
        """Create the data dir and its keys/ and logs/ folders, all 0700."""
        for path in (self.root, self.keys, self.logs):
            private_dir(path)
        return self


@dataclass
class Timing:
    """Heartbeat and liveness settings shared by the broker and its peers."""

    heartbeat_s: float = 5.0
    #: a peer silent for this long is offline (3 missed heartbeats)
    peer_timeout_s: float = 15.0
    #: a client that hears nothing from the broker this long reconnects
    broker_timeout_s: float = 15.0
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 10.0
    request_timeout_s: float = 10.0
    #: a TCP connect unanswered this long is abandoned and retried (ZMQ_CONNECT_TIMEOUT):
    #: SYNs lost in a network cut would otherwise wait out the kernel's growing backoff
    connect_timeout_s: float = 2.0
    #: a stopping peer or a one-shot tool gives what it sent this long to leave
    #: its socket (``BusClient.close(flush_s=...)``; leaving is not delivery)
    close_flush_s: float = 2.0

    @classmethod
    def fast(cls) -> "Timing":
        """Short settings for tests: offline within about a second."""
        return cls(
            heartbeat_s=0.2,
            peer_timeout_s=1.0,
            broker_timeout_s=1.0,
            reconnect_min_s=0.05,
            reconnect_max_s=0.5,
            request_timeout_s=5.0,
        )


def timing_for(heartbeat_s: float) -> Timing:
    """Timing scaled from one heartbeat interval (offline after 3 missed)."""
    return Timing(
        heartbeat_s=heartbeat_s,
        peer_timeout_s=3 * heartbeat_s,
        broker_timeout_s=3 * heartbeat_s,
        reconnect_min_s=min(0.2, heartbeat_s),
        reconnect_max_s=max(1.0, 2 * heartbeat_s),
    )


@dataclass(frozen=True)
class RateLimit:
    """Per-agent limits on what an agent publishes (EVENT, LOG, SECURITY,
    FRAME, BATCH; a batch is one message and its bytes).

    Two token buckets per agent, messages and bytes; 0 turns a limit off.
    Commands, results, heartbeats and acks are never limited. A message over
    the limit is dropped and counted, and the agent is told (ERROR
    ``RATE_LIMITED`` with ``retry_after_s``) at most once per ``notice_s``.
    The message burst covers an agent's outbox window (5,000 records) resent
    at once after a reconnect; the byte burst covers the largest legal message.
    """

    msgs_per_s: float = 2_000.0
    burst_msgs: float = 10_000.0
    bytes_per_s: float = 8 * 2**20
    burst_bytes: float = 16 * 2**20
    #: at most one RATE_LIMITED notice per agent this often; also the shortest
    #: retry-after, so an agent that overshoots again is always told again
    notice_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("msgs_per_s", "burst_msgs", "bytes_per_s", "burst_bytes", "notice_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"rate limit {name} must be a number >= 0 (0 turns the limit off), not {value!r}")
        if self.msgs_per_s and self.burst_msgs < 1:
            raise ConfigError(f"rate limit burst_msgs must be at least 1 when msgs_per_s is set, not {self.burst_msgs!r}")
        if self.bytes_per_s and self.burst_bytes < 1:
            raise ConfigError(f"rate limit burst_bytes must be at least 1 when bytes_per_s is set, not {self.burst_bytes!r}")
        if self.notice_s <= 0:
            raise ConfigError(f"rate limit notice_s must be > 0, not {self.notice_s!r}")

    @property
    def enabled(self) -> bool:
        return bool(self.msgs_per_s or self.bytes_per_s)

    def describe(self) -> str:
        """The limits in words, for logs, error details and ``ems status``."""
        parts = []
        if self.msgs_per_s:
            parts.append(f"{self.msgs_per_s:,.0f} msgs/s (burst {self.burst_msgs:,.0f})")
        if self.bytes_per_s:
            parts.append(f"{self.bytes_per_s / 2**20:,.1f} MiB/s (burst {self.burst_bytes / 2**20:,.1f} MiB)")
        return ", ".join(parts) or "off"

    def offer(self) -> dict:
        """The limits as a broker's WELCOME tells them to an agent, so that it can pace itself."""
        return {"msgs_per_s": self.msgs_per_s, "burst_msgs": self.burst_msgs,
                "bytes_per_s": self.bytes_per_s, "burst_bytes": self.burst_bytes}

    @classmethod
    def from_offer(cls, offer: object, share: float = 1.0) -> "RateLimit | None":
        """The limits a WELCOME offers, with the rates scaled by ``share``; None
        if there are none or they do not make sense (then nothing is paced)."""
        if not isinstance(offer, dict):
            return None
        try:
            limits = cls(msgs_per_s=offer["msgs_per_s"] * share, burst_msgs=offer["burst_msgs"],
                         bytes_per_s=offer["bytes_per_s"] * share, burst_bytes=offer["burst_bytes"])
        except (KeyError, TypeError, ConfigError):
            return None
        return limits if limits.enabled else None

    @classmethod
    def off(cls) -> "RateLimit":
        """No per-agent limit (for benchmarks of raw routing capacity)."""
        return cls(msgs_per_s=0, bytes_per_s=0)


@dataclass
class BrokerConfig:
    """Everything the broker needs to run."""

    data_dir: DataDir
    bind: str = DEFAULT_BIND
    timing: Timing = field(default_factory=Timing)
    #: libzmq drops a connection that sends a frame over this (ZMQ_MAXMSGSIZE)
    max_message_bytes: int = 16 * 1024 * 1024
    #: bodies the broker unpacks itself (requests, commands, hello)
    max_body_bytes: int = 1024 * 1024
    #: messages queued to one connection (ZMQ_SNDHWM) before more to it are
    #: dropped and counted (``dropped_hwm``): memory (up to this many messages
    #: per slow peer) against drops (a peer that reads late loses what passes
    #: it). ``peer_budget_bytes`` bounds the same queue in bytes for live traffic
    send_hwm: int = 10_000
    receive_hwm: int = 100_000
    #: connections that do not finish the Curve handshake are closed after
    handshake_timeout_s: float = 10.0
    #: TCP accept queue (ZMQ_BACKLOG; libzmq's default of 100 drops SYNs under
    #: a connection burst, delaying every peer behind it by a 1 s retransmit)
    listen_backlog: int = 1024
    #: commands without an explicit expiry live this long in the queue
    command_ttl_s: float = 24 * 3600.0
    #: optional shared secret that auto-accepts new agent keys
    enrol_token: str | None = None
    #: new keys are recorded pending up to this many in all, and up to
    #: ``max_pending_per_source`` from one source address (an IPv6 /64); past
    #: either cap a new key stays an unrecorded peer that may only say HELLO,
    #: so the enrolment token still admits it (broker/server/enrolment.py)
    max_pending_keys: int = 1000
    max_pending_per_source: int = 50
    #: messages handled per poll wake-up before timers get a turn
    batch: int = 1000
    #: write what a pass of messages changes in broker.db in one transaction and
    #: send what it promises after that (broker/server/group_commit.py); False
    #: commits each statement at once (the older path, for bench/command_path.py)
    group_commit: bool = True
    #: per-agent message and byte rates for what agents publish (broker/core/quota.py)
    rate_limit: RateLimit = field(default_factory=RateLimit)
    #: bytes one connection may have sent to it and not yet taken before live
    #: fan-out and screen frames to it are dropped (broker/server/flow.py); commands,
    #: results and replies are never dropped for it (send_hwm bounds them). Keep it
    #: above an agent's byte burst (rate_limit.burst_bytes): a burst arrives at once
    peer_budget_bytes: int = 32 * 2**20
    #: a reading peer reports its credit every this many bytes received
    credit_every_bytes: int = 256 * 2**10

    def __post_init__(self) -> None:
        hwm = self.send_hwm
        if isinstance(hwm, bool) or not isinstance(hwm, int) or hwm < 1:
            # libzmq reads 0 as "no bound": memory would grow with every slow peer
            raise ConfigError(f"send_hwm must be a whole number of messages >= 1, not {hwm!r}")


@dataclass
class ClientConfig:
    """How a peer reaches the broker."""

    server: str = DEFAULT_SERVER
    #: the broker's public key (Z85); required: Curve is never optional
    server_key: str = ""
    timing: Timing = field(default_factory=Timing)
    send_hwm: int = 100_000
    receive_hwm: int = 100_000
    max_message_bytes: int = 16 * 1024 * 1024
