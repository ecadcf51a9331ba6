"""``store.changes``: the sync worker's change feed, answered by the persister.

A request ``{since: {table: seq}, acked, max_rows, max_bytes, count, wait_s}``
from a service (the sync worker; nobody else may: the broker checks, this
is the second line) is answered with one page of
:func:`broker.persister.changes.read_changes`. When nothing has changed and
``wait_s`` is given, the answer is held (a long poll) until the persister
next commits, or ``wait_s`` passes, and then given: a change reaches the
sync worker in the same pass that stored it, without a timer. Deletions
made outside a commit of records (a retention purge, ``ems`` maintenance on
the file) are in the answer to the next poll, at most ``wait_s`` later.

``acked`` (table -> seq) are the watermarks the sync worker has committed
to MySQL (``since`` may run ahead of them while it fetches the next page
before the last is committed): tombstones at or below them are no longer
needed and are dropped (:func:`broker.persister.change_log.forget_tombstones`).
"""
from __future__ import annotations

import logging
from typing import Callable

from broker.core import bounds
from broker.core.client import BusClient
from broker.core.envelope import Envelope, ErrorCode, Kind, error_body, pack_body
from broker.core.errors import EmsError
from broker.persister import change_log, changes
from broker.persister.store import Store

log = logging.getLogger(__name__)

OP = "store.changes"
#: longest hold of a long poll (below the broker's forwarding give-up, 3 x request timeout)
MAX_WAIT_S = 20.0
#: long polls held at once (one sync worker needs one)
MAX_WAITING = 8


class ChangeFeed:
    """Answers ``store.changes`` for the persister (one thread: the persister's)."""

    def __init__(self, bus: BusClient, store: Store, clock: Callable[[], float]):
        self.bus, self.store, self.clock = bus, store, clock
        #: held long polls: (request envelope, parsed args, give-up time)
        self.waiting: list[tuple[Envelope, dict, float]] = []

    def takes(self, env: Envelope) -> bool:
        """Answer ``env`` if it is a ``store.changes`` request (True), else leave it (False)."""
        try:
            request = env.data()
        except EmsError:
            return False
        if type(request) is not dict or request.get("op") != OP:
            return False
        try:
            args = self._parse(request)
        except (ValueError, TypeError, bounds.BoundsError) as exc:
            self._send(env, Kind.ERROR, error_body(ErrorCode.BAD_REQUEST, str(exc)[:500]))
            return True
        except PermissionError as exc:
            self._send(env, Kind.ERROR, error_body(ErrorCode.FORBIDDEN, str(exc)))
            return True
        self._forget(args["acked"])
        page = self._page(env, args)
        if page is None:
            return True
        if page["tables"] or page["more"] or not args["wait_s"] or len(self.waiting) >= MAX_WAITING:
            self._send(env, Kind.REPLY, pack_body(page))
        else:
            self.waiting.append((env, args, self.clock() + args["wait_s"]))
        return True

    def committed(self) -> None:
        """The store just committed: answer every held long poll."""
        waiting, self.waiting = self.waiting, []
        for env, args, _ in waiting:
            self._answer(env, args)

    def tick(self, now: float) -> None:
        """Answer the long polls whose wait is over."""
        due = [w for w in self.waiting if w[2] <= now]
        if due:
            self.waiting = [w for w in self.waiting if w[2] > now]
            for env, args, _ in due:
                self._answer(env, args)

    def _answer(self, env: Envelope, args: dict) -> None:
        page = self._page(env, args)
        if page is not None:
            self._send(env, Kind.REPLY, pack_body(page))

    def _page(self, env: Envelope, args: dict) -> dict | None:
        try:
            return changes.read_changes(self.store.connection, self.store.crypto, args["since"], args["max_rows"],
                                        args["max_bytes"], args["count"])
        except Exception as exc:  # a locked or broken store: the sync worker asks again
            log.warning("change feed page failed: %s", exc)
            self._send(env, Kind.ERROR, error_body(ErrorCode.UNAVAILABLE, f"the store cannot be read now: {exc}"[:500]))
            return None

    @staticmethod
    def _parse(request: dict) -> dict:
        requester, args = request.get("requester"), request.get("args") or {}
        if type(requester) is not dict or requester.get("role") != "service":
            raise PermissionError(f"only services read {OP}")
        if type(args) is not dict:
            raise TypeError("args is a map")
        marks = {}
        for name in ("since", "acked"):
            given = args.get(name) or {}
            if type(given) is not dict:
                raise TypeError(f"{name} maps table names to sequence numbers")
            marks[name] = {t: bounds.int64(given.get(t, 0), f"{name}.{t}") for t in change_log.SYNCED}
        return {
            **marks,
            "max_rows": bounds.limit(args.get("max_rows"), "max_rows", changes.DEFAULT_ROWS, 1, changes.MAX_ROWS),
            "max_bytes": bounds.limit(args.get("max_bytes"), "max_bytes", changes.DEFAULT_BYTES, 1024, changes.MAX_BYTES),
            "count": bool(args.get("count", False)),
            "wait_s": min(max(bounds.finite(args.get("wait_s") or 0.0, "wait_s", "a number of seconds"), 0.0), MAX_WAIT_S),
        }

    def _forget(self, since: dict[str, int]) -> None:
        try:
            change_log.forget_tombstones(self.store.connection, since)
        except Exception as exc:  # only housekeeping: the next request tries again
            log.debug("tombstones not dropped now: %s", exc)

    def _send(self, env: Envelope, kind: Kind, body: bytes) -> None:
        try:
            self.bus.send(kind, body=body, corr=env.msg_id)
        except EmsError as exc:  # the sync worker times out and asks again
            log.debug("change feed answer to %s not sent: %s", env.msg_id, exc)
