"""Forward the agent's own log records to the server (``client_logs``) through the durable outbox.

:class:`LogForwarder` is a :class:`logging.Handler`. Each record at or above
the local policy's ``log_forward_level`` becomes an outbox record::

    report(Kind.LOG, "agent", {level, logger, message, ts}, priority=log_priority(levelno))

so WARNING and above are *important* and survive a full outbox longer than
INFO chatter. At most ``log_forward_per_minute`` records are forwarded per
minute (a token bucket: bursts up to that many, then an even rate); the
records held back are counted, and the next forwarded record says how many
(``suppressed`` in its data and a note at the end of its message).

It never recurses and never raises:

* records from the loggers that forwarding itself uses (the outbox, the
  delivery pump, the bus client, this module: :data:`EXCLUDED_LOGGERS`) are
  not forwarded, nor any record emitted in the same thread while a record
  is being forwarded;
* the handler does not hold a lock while it writes to the outbox, so a
  module that logs while holding its own lock cannot deadlock against it;
* a failure to keep a record (outbox full, disk full, closed) is counted
  (:attr:`LogForwarder.failed`) and reported with the next record that
  gets through, never raised into the code that logged.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from agent.context import LocalPolicy
from agent.outbox import log_priority
from broker.core.envelope import Kind

log = logging.getLogger(__name__)

#: Loggers (and their children) whose records are never forwarded.
EXCLUDED_LOGGERS = ("agent.outbox", "agent.delivery", "agent.log_forward", "broker.core.client", "broker.core.sqlite_db")
#: Longest forwarded message (exception text included), in characters.
MAX_MESSAGE_CHARS = 8 * 1024
_FORMATTER = logging.Formatter()


def parse_level(value: Any) -> int:
    """A logging level from ``"INFO"``, ``"warning"``, ``30`` or ``"30"``; ValueError otherwise."""
    if type(value) is int:
        return value
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    level = logging.getLevelName(text.upper())
    if type(level) is not int:
        raise ValueError(f"unknown log level {value!r}")
    return level


class LogForwarder(logging.Handler):
    """Forwards log records to ``report`` (the durable sender's ``report``).

    ``per_minute`` < 1 turns forwarding off. ``clock`` (monotonic seconds)
    drives the rate limit; tests pass their own.
    """

    def __init__(
        self,
        report: Callable[..., str],
        level: int | str = logging.INFO,
        per_minute: int = 600,
        clock: Callable[[], float] = time.monotonic,
        exclude: tuple[str, ...] = EXCLUDED_LOGGERS,
    ):
        super().__init__(parse_level(level))
        self.report = report
        self.per_minute = max(0, int(per_minute))
        self.clock = clock
        self.exclude = tuple(exclude)
        #: records forwarded, held back by the rate limit, and lost to failures
        self.forwarded = 0
        self.suppressed = 0
        self.failed = 0
        self._tokens = float(self.per_minute)
        self._refilled = clock()
        self._owed = 0  # records not forwarded since the last one that was
        self._counters = threading.Lock()
        self._local = threading.local()

    @classmethod
    def from_policy(cls, report: Callable[..., str], policy: LocalPolicy, **kwargs: Any) -> LogForwarder:
        """A forwarder with the level and rate of the agent's local policy.

        An unknown level in the policy falls back to INFO (with a warning).
        """
        try:
            level = parse_level(policy.log_forward_level)
        except ValueError:
            log.warning("log_forward_level %r is not a log level; forwarding INFO and above", policy.log_forward_level)
            level = logging.INFO
        return cls(report, level, policy.log_forward_per_minute, **kwargs)

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter and emit without holding the handler lock (see the module docstring)."""
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """Forward ``record`` if it may go; never raises."""
        if getattr(self._local, "busy", False) or self._excluded(record.name):
            return
        self._local.busy = True
        owed = 0
        try:
            admitted = self._admit()
            if admitted is None:
                return
            owed = admitted
            data = {
                "level": record.levelname,
                "logger": record.name,
                "message": self._message(record, owed),
                "ts": record.created,
            }
            if owed:
                data["suppressed"] = owed
            self.report(Kind.LOG, "agent", data, priority=log_priority(record.levelno))
            with self._counters:
                self.forwarded += 1
        except Exception:  # noqa: BLE001 - never raise into the caller: outbox full or closed, disk full, format arguments that do not match...
            with self._counters:
                self.failed += 1
                self._owed += owed + 1
        finally:
            self._local.busy = False

    def _excluded(self, name: str) -> bool:
        return any(name == prefix or name.startswith(prefix + ".") for prefix in self.exclude)

    def _admit(self) -> int | None:
        """Take a token: the count of records owed a mention, or None if this one is held back."""
        with self._counters:
            if self.per_minute < 1:
                return None
            now = self.clock()
            elapsed = max(0.0, now - self._refilled)
            self._refilled = now
            self._tokens = min(float(self.per_minute), self._tokens + elapsed * self.per_minute / 60.0)
            if self._tokens < 1.0:
                self.suppressed += 1
                self._owed += 1
                return None
            self._tokens -= 1.0
            owed, self._owed = self._owed, 0
            return owed

    def _message(self, record: logging.LogRecord, owed: int) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + _FORMATTER.formatException(record.exc_info)
        elif record.exc_text:
            message += "\n" + record.exc_text
        if record.stack_info:
            message += "\n" + record.stack_info
        note = (
            f" [{owed} earlier log record{'s' if owed != 1 else ''} not forwarded: "
            f"over {self.per_minute}/min, or could not be kept]"
            if owed
            else ""
        )
        if len(message) + len(note) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - len(note) - 15] + " ...[truncated]"
        return message + note


def install(report: Callable[..., str], policy: LocalPolicy, logger: logging.Logger | None = None, **kwargs: Any) -> LogForwarder:
    """Attach a forwarder built from ``policy`` to ``logger`` (the root logger by default).

    Records reach it only if ``logger`` lets them through: its level must
    be at or below the forwarding level.
    """
    forwarder = LogForwarder.from_policy(report, policy, **kwargs)
    (logger or logging.getLogger()).addHandler(forwarder)
    return forwarder


def uninstall(forwarder: LogForwarder, logger: logging.Logger | None = None) -> None:
    """Detach ``forwarder`` (before the outbox it writes to is closed)."""
    (logger or logging.getLogger()).removeHandler(forwarder)
    forwarder.close()
