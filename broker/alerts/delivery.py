"""The sink that sends notices out: routes, quiet hours, de-duplication, retries.

:class:`Dispatcher` is what the alerts service hands every
:class:`~broker.alerts.notices.Notice` to (``notify``) and ticks about once
a second (``flush``). Its contract:

* ``notify`` never waits for the network: it routes the notice (the rule's
  route, else ``*``; below the route's minimum severity it goes nowhere)
  and writes one row per channel to the on-disk outbox
  (:mod:`broker.alerts.delivery_outbox`), a local SQLite insert. A notice
  that falls in a channel's quiet hours is held unless it is critical.
* One worker thread per channel sends what is due, oldest first, and
  records each result: sent, or failed and tried again after a doubling
  delay (``retry``), or given up after ``retry.max_attempts`` (logged as an
  error, the row kept with its last error). A slow or dead SMTP server
  never delays the webhook, nor the caller.
* ``flush(now)`` moves the clock the workers use, folds held notices whose
  window has ended into ONE digest per channel, and wakes the workers.
* Nothing is dropped for want of room: the queue is the outbox on disk. A
  channel with more than ``storm_digest_over`` single notices waiting (a
  storm, or a server that was down) gets them as one digest instead of a
  flood of messages.
* A new Dispatcher over the same data dir picks up whatever the last one
  left (held, due or being retried).
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable

from broker.alerts.delivery_config import DeliveryConfig, DeliveryFailed, EmailChannel, load_delivery
from broker.alerts.delivery_outbox import DUPLICATE, DeliveryOutbox, OutboxRow
from broker.alerts.mail import digest_mail, notice_mail, send_mail
from broker.alerts.notices import SEVERITIES, Notice
from broker.alerts.webhook import payload, post

log = logging.getLogger(__name__)

OUTBOX_NAME = "alerts-outbox.db"
#: the one severity quiet hours never hold
CRITICAL = SEVERITIES[-1]
#: how often an idle worker looks at the outbox even without a wake-up
WORKER_POLL_S = 1.0


class Dispatcher:
    """Routes notices to e-mail and webhook channels through a durable outbox (see the module docstring)."""

    def __init__(self, config: DeliveryConfig, data_dir: Path, clock: Callable[[], float] = time.time):
        self.config = config
        self.clock = clock
        self.outbox = DeliveryOutbox(Path(data_dir) / OUTBOX_NAME)
        self.now = clock()
        self._workers = {name: _ChannelWorker(self, name) for name in config.channels}
        self._warn_about_orphans()
        for worker in self._workers.values():
            worker.start()

    @classmethod
    def from_section(cls, section: Any, data_dir: Path, clock: Callable[[], float] = time.time) -> "Dispatcher":
        """A dispatcher for the ``delivery`` section of alerts.json (DeliveryConfigError if it is wrong)."""
        return cls(load_delivery(section, data_dir), data_dir, clock)

    def _warn_about_orphans(self) -> None:
        """Rows left for a channel that alerts.json no longer configures wait until it is configured again."""
        for channel, count in self.outbox.waiting_by_channel().items():
            if channel not in self.config.channels:
                log.warning("%d notices wait in %s for channel %s, which alerts.json no longer configures; "
                            "they are sent when it is configured again", count, self.outbox.path, channel)

    def notify(self, notice: Notice) -> list[str]:
        """Queue ``notice`` for each channel its route names; the channels it was queued or held for."""
        route = self.config.route_for(notice.rule)
        if route is None or not route.takes(notice.severity):
            log.debug("notice %s (%s, %s) has no route at its severity", notice.key, notice.rule, notice.severity)
            return []
        now, queued = self.clock(), []
        self.now = max(self.now, now)
        for channel in route.channels:
            quiet = self.config.quiet_hours.get(channel)
            hold_until = quiet.ends_at(now) if quiet and notice.severity != CRITICAL else None
            try:
                if self.outbox.add(channel, notice.as_dict(), now, hold_until, self.config.dedupe) == DUPLICATE:
                    continue
            except sqlite3.Error as exc:  # the disk is full or broken: the caller goes on (the inbox has it)
                log.error("could not queue notice %s for channel %s in %s: %s", notice.key, channel, self.outbox.path, exc)
                continue
            queued.append(channel)
            if hold_until is None:
                self._workers[channel].wake()
        return queued

    def flush(self, now: float) -> None:
        """Move the workers' clock to ``now``, release ended quiet hours as digests, collapse storms, wake."""
        self.now = now
        for channel in self.outbox.release_held(now):
            log.info("quiet hours of channel %s ended: sending what they held as one digest", channel)
        for name, worker in self._workers.items():
            if self.outbox.collapse_storm(name, self.config.storm_digest_over, now):
                log.warning("more than %d notices waiting for channel %s: sending them as one digest",
                            self.config.storm_digest_over, name)
            worker.wake()

    def close(self) -> None:
        """Stop the workers (a send in progress finishes, within its channel's timeout) and close the outbox.

        A row whose send was cut short stays due: the next Dispatcher sends it.
        """
        for worker in self._workers.values():
            worker.stop()
        for name, worker in self._workers.items():
            worker.join(self.config.channels[name].timeout_s + 1.0)
        self.outbox.close()

    def send(self, row: OutboxRow) -> None:
        """Hand one outbox row to its channel; :class:`DeliveryFailed` if it did not take it."""
        channel = self.config.channels[row.channel]
        if isinstance(channel, EmailChannel):
            message = digest_mail(row.notices, channel, row.why) if row.why else notice_mail(row.notices[0], channel)
            send_mail(message, channel)
        else:
            post(channel, payload(row.notices, row.why))

    def record(self, row: OutboxRow, error: DeliveryFailed | None) -> None:
        """Write down how a send went: sent, retry later, or give up (and say so)."""
        if error is None:
            self.outbox.mark_sent(row.id, self.now)
            return
        attempts = row.attempts + 1
        if attempts >= self.config.retry.max_attempts:
            log.error("gave up sending %s to channel %s after %d attempts: %s (kept in %s, row %d)",
                      _what(row), row.channel, attempts, error, self.outbox.path, row.id)
            self.outbox.mark_failed(row.id, str(error), None, self.now)
            return
        delay_s = self.config.retry.delay_s(attempts)
        log.warning("could not send %s to channel %s (attempt %d of %d), trying again in %.0f s: %s",
                    _what(row), row.channel, attempts, self.config.retry.max_attempts, delay_s, error)
        self.outbox.mark_failed(row.id, str(error), self.now + delay_s, self.now)


class _ChannelWorker(threading.Thread):
    """Sends one channel's due rows whenever woken (or every :data:`WORKER_POLL_S`)."""

    def __init__(self, dispatcher: Dispatcher, channel: str):
        super().__init__(name=f"ems-alerts-{channel}", daemon=True)
        self.dispatcher = dispatcher
        self.channel = channel
        self._wake = threading.Event()
        self._stopping = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(WORKER_POLL_S)
            self._wake.clear()
            try:
                self._send_due()
            except Exception:  # a bug must not end deliveries for good: log it, try again next pass
                log.exception("channel %s: sending failed unexpectedly", self.channel)

    def _send_due(self) -> None:
        dispatcher = self.dispatcher
        for row in dispatcher.outbox.due(self.channel, dispatcher.now):
            if self._stopping.is_set():
                return
            try:
                dispatcher.send(row)
            except DeliveryFailed as exc:
                dispatcher.record(row, exc)
            else:
                dispatcher.record(row, None)


def _what(row: OutboxRow) -> str:
    if row.why:
        return f"a digest of {len(row.notices)} notices"
    return f"notice {row.notices[0]['key']} ({row.notices[0]['state']})"
