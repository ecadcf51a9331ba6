"""What every web bridge shares: its key, one bus connection, a deadline, exit codes.

A bridge is a short-lived command the PHP web UI runs (``python -m
bridges.server_info``, ``python -m bridges.get_latest_frame``, ``python -m
bridges.get_capture``): it connects
with its own service key (``DATA/keys/<bridge>.*``, registered by ``ems
up``), does one piece of work against one deadline (``--timeout-s``) and
exits. Exit 0 only on success; anything else is one line on stderr and an
exit code from :class:`Exit`, so the caller can tell an offline agent from a
broker that is down. It never hangs: every bus wait is bounded by the
deadline, and an alarm a little after it ends the process regardless.

::

    def work(call: BridgeCall) -> None:
        status = call.request("status")
        ...
    sys.exit(run(SERVER_INFO, args, work))
"""
from __future__ import annotations

import argparse
import enum
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from broker.core import keys
from broker.core.cli_common import add_data_dir
from broker.core.client import PENDING, READY, AccessRevoked, BusClient
from broker.core.config import ClientConfig, DataDir, resolve_data_dir, timing_for
from broker.core.envelope import ErrorCode
from broker.core.errors import ConfigError, EmsError, RemoteError
from broker.core.errors import TimeoutError as BusTimeout
from broker.core.profile import load as load_profile
from broker.core.vocabulary import MAX_REASON_CHARS

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0
#: refused connections for this long (and never a connection) mean the broker is down
UNREACHABLE_AFTER_S = 1.0
#: the alarm that ends a stuck process comes this long after the deadline
ALARM_SLACK_S = 2.0


class Exit(enum.IntEnum):
    """A bridge's exit codes: the PHP side maps them to its messages."""

    OK = 0
    FAILED = 1  # anything not listed: the stderr line says what
    USAGE = 2  # bad arguments (argparse's own code)
    UNREACHABLE = 3  # the broker is not running at the profile's address
    TIMEOUT = 4  # no answer within --timeout-s
    NOT_ALLOWED = 5  # the bridge key is unregistered, pending, revoked, or its role may not do this
    AGENT_OFFLINE = 6
    UNKNOWN_AGENT = 7
    NO_DISPLAY = 8  # the agent has no screen to capture
    SETUP = 9  # no profile or no bridge key in the data dir: run `ems up`
    UNKNOWN_CAPTURE = 10  # the store has no such capture (purged, or another server's)


@dataclass(frozen=True)
class Bridge:
    """One bridge's identity: its key files' name, its bus client id, its registry label."""

    key_name: str
    client_id: str
    label: str


SERVER_INFO = Bridge("server-info", "web-server-info", "server info bridge for the web UI (ems up)")
LATEST_FRAME = Bridge("latest-frame", "web-latest-frame", "latest-frame bridge for the web UI (ems up)")
CAPTURE = Bridge("capture", "web-capture", "stored-capture bridge for the web UI (ems up)")
#: every bridge ``ems up`` creates a service key for
BRIDGES = (SERVER_INFO, LATEST_FRAME, CAPTURE)


class BridgeFailure(EmsError):
    """Why the bridge failed, and the exit code that says so."""

    def __init__(self, code: Exit, message: str):
        super().__init__(message)
        self.code = code


class BridgeCall:
    """One connected bridge with its deadline: requests and commands bounded by it."""

    def __init__(self, bridge: Bridge, client: BusClient, deadline: float, timeout_s: float):
        self.bridge = bridge
        self.client = client
        self.deadline = deadline
        self.timeout_s = timeout_s

    def remaining(self, what: str) -> float:
        """Seconds left; BridgeFailure(TIMEOUT) naming ``what`` when none are."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise BridgeFailure(Exit.TIMEOUT, f"timed out after {self.timeout_s:g} s waiting for {what}")
        return left

    def request(self, op: str, **args: Any) -> Any:
        """A broker request within the deadline (errors mapped by :func:`failure_of`)."""
        try:
            return self.client.request(op, timeout_s=self.remaining(f"the broker's answer to {op}"), **args)
        except BusTimeout:
            raise BridgeFailure(Exit.TIMEOUT, f"timed out after {self.timeout_s:g} s waiting for the answer to {op}") from None


def add_common_args(p: argparse.ArgumentParser) -> None:
    """``--data-dir`` and ``--timeout-s``, the options every bridge has."""
    add_data_dir(p)
    p.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S,
                   help="give up (exit %d) after this many seconds (default %%(default)s)" % Exit.TIMEOUT)
    p.add_argument("--heartbeat-s", type=float, default=None, help=argparse.SUPPRESS)


def add_person_args(p: argparse.ArgumentParser) -> None:
    """``--operator``, ``--operator-id`` and ``--reason``: the person a bridge acts for and why.

    The bridge vouches for the person its caller (the web UI) authenticated:
    the broker keeps the name for the employee's notice and the audit trail,
    with the bridge as ``via``; ``--operator-id`` (the person's account, e.g.
    ``web:jane``) is kept beside it in the audit trail.
    """
    p.add_argument("--operator", required=True, type=_person, help="the person (display name, shown to the employee)")
    p.add_argument("--operator-id", type=_person, default=None, help="the person's account (kept in the audit trail beside the name)")
    p.add_argument("--reason", required=True, type=_reason, help="why (shown to the employee, kept in the audit trail)")


def person_of(args: argparse.Namespace) -> dict:
    """``args.operator`` for the bus: ``{"name": ..., "id": ...}`` from :func:`add_person_args`'s options."""
    return {"name": args.operator, **({"id": args.operator_id} if args.operator_id else {})}


def _reason(text: str) -> str:
    reason = " ".join(text.split())
    if not reason:
        raise argparse.ArgumentTypeError("a reason is required: the employee is shown it and the audit trail keeps it")
    if len(reason) > MAX_REASON_CHARS:
        raise argparse.ArgumentTypeError(f"a reason is at most {MAX_REASON_CHARS} characters")
    return reason


def _person(text: str) -> str:
    name = " ".join(text.split())
    if not name:
        raise argparse.ArgumentTypeError("name the person who looks (the employee is told who)")
    return name


def run(bridge: Bridge, args: argparse.Namespace, work: Callable[[BridgeCall], None]) -> int:
    """Connect ``bridge`` and run ``work``; the exit code, with a one-line reason on stderr on failure."""
    logging.getLogger().addHandler(logging.NullHandler())  # a bridge's stderr is its one-line reason, no log lines
    timeout_s = args.timeout_s
    if not 0 < timeout_s <= 3600:
        return _fail(BridgeFailure(Exit.USAGE, f"--timeout-s must be in (0, 3600], not {timeout_s:g}"))
    _arm_alarm(timeout_s + ALARM_SLACK_S)
    deadline = time.monotonic() + timeout_s
    client = None
    try:
        client = _client(bridge, args)
        call = BridgeCall(bridge, client, deadline, timeout_s)
        _wait_welcome(call)
        work(call)
        return Exit.OK
    except BridgeFailure as exc:
        return _fail(exc)
    except (EmsError, OSError, zmq.ZMQError) as exc:
        return _fail(failure_of(exc))
    finally:
        if client is not None:
            client.close()
        signal.setitimer(signal.ITIMER_REAL, 0)  # disarmed: a caller in the same process lives on


def failure_of(exc: Exception) -> BridgeFailure:
    """The exit code and message for an error the bus or the setup raised."""
    if isinstance(exc, BridgeFailure):
        return exc
    if isinstance(exc, AccessRevoked):
        return BridgeFailure(Exit.NOT_ALLOWED, f"the broker revoked this bridge's key: {exc.detail or exc.message}")
    if isinstance(exc, RemoteError):
        code = {ErrorCode.FORBIDDEN: Exit.NOT_ALLOWED, ErrorCode.REVOKED: Exit.NOT_ALLOWED,
                ErrorCode.NOT_ENROLLED: Exit.NOT_ALLOWED, ErrorCode.UNKNOWN_TARGET: Exit.UNKNOWN_AGENT}.get(exc.code, Exit.FAILED)
        return BridgeFailure(code, f"the broker refused: {exc.detail or exc.message}")
    if isinstance(exc, BusTimeout):
        return BridgeFailure(Exit.TIMEOUT, str(exc))
    if isinstance(exc, ConfigError):
        return BridgeFailure(Exit.SETUP, str(exc))
    return BridgeFailure(Exit.FAILED, f"{type(exc).__name__}: {exc}")


def _fail(exc: BridgeFailure) -> int:
    line = " ".join(str(exc).split())  # one line, whatever the message held
    print(f"error: {line}", file=sys.stderr, flush=True)
    return exc.code


def _arm_alarm(after_s: float) -> None:
    """End the process (exit TIMEOUT) if it is still running ``after_s`` from now, whatever it waits on."""
    def expired(*_):
        os.write(2, f"error: gave up after {after_s:g} s (the bridge's hard limit)\n".encode())
        os._exit(Exit.TIMEOUT)
    signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, after_s)


def _client(bridge: Bridge, args) -> BusClient:
    """An unconnected BusClient with the bridge's key, for the profile's broker."""
    data = DataDir(resolve_data_dir(args.data_dir))
    profile = load_profile(data)
    try:
        keypair = keys.load(data.keys, bridge.key_name)
    except ConfigError as exc:
        raise BridgeFailure(Exit.SETUP, f"{exc}; `ems up` creates it and registers it as service '{bridge.client_id}'") from exc
    config = ClientConfig(server=profile.server, server_key=profile.server_key)
    if args.heartbeat_s:
        config.timing = timing_for(args.heartbeat_s)
    return BusClient(config, keypair, hello={"client_id": bridge.client_id})


def _wait_welcome(call: BridgeCall) -> None:
    """Connect and wait for the broker's WELCOME, telling a broker that is
    down, a key it refuses and a key it does not know apart."""
    client = call.client
    client.connect()
    monitor = client.socket.get_monitor_socket()
    try:
        refused_since, connected = None, False
        while client.state != READY:
            left = call.remaining(f"the broker at {client.config.server} to let the bridge in")
            try:
                client.wait_ready(min(left, 0.1))
            except BusTimeout:
                pass
            for event in _events(monitor):
                if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                    raise BridgeFailure(Exit.NOT_ALLOWED, f"the broker refused the key of {call.bridge.client_id} "
                                                          "(revoked or rejected): see `ems keys list`")
                if event in (zmq.EVENT_CONNECTED, zmq.EVENT_HANDSHAKE_SUCCEEDED):
                    connected = True
                elif event == zmq.EVENT_CONNECT_RETRIED and not connected:
                    refused_since = refused_since or time.monotonic()
            if client.state == PENDING:
                raise BridgeFailure(Exit.NOT_ALLOWED, f"the key of {call.bridge.client_id} is not registered at the broker "
                                                      f"(pending): `ems up` registers it as a service")
            if refused_since is not None and not connected and time.monotonic() - refused_since >= UNREACHABLE_AFTER_S:
                raise BridgeFailure(Exit.UNREACHABLE, f"the broker is unreachable at {client.config.server} "
                                                      "(connection refused): is `ems up` running?")
    finally:
        if client.socket is not None:
            client.socket.disable_monitor()
        monitor.close(linger=0)


def _events(monitor: zmq.Socket) -> list[int]:
    """The socket events that have come in (without waiting)."""
    events = []
    while monitor.poll(0):
        events.append(recv_monitor_message(monitor)["event"])
    return events
