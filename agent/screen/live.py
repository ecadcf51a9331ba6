"""A live view of the agent's screen: frames flow only while an operator watches.

:class:`LiveView` is driven by the agent's own loop, no threads: between
two polls of the bus the loop calls :meth:`LiveView.pump` (or
:meth:`LiveView.tick` to get the bodies and send them itself), and polls
no longer than :meth:`LiveView.wait_s` so that frames keep their rate.

* **Lease.** ``live.start`` from an operator opens or renews that
  operator's lease (``lease_s``, default 30 s); ``live.stop`` or an expired
  lease ends it. Frames flow while at least one lease is open. Each
  operator that starts or ends watching is announced to the employee
  (``notify``) and written to the local access log.
* **Latest wins.** Each tick grabs the screen as it is now; nothing is
  queued. A body the bus refuses is dropped, and the next update is a full
  frame (so the operator never keeps a stale region).
* **Rate.** At most ``fps`` grabs a second (default 10, at most 30).
* **Changes only.** The first update is the full screen; after that only
  the 32 x 32 tiles that changed (:mod:`agent.screen.tiles`). Tiles that
  hold old pixels moved elsewhere (a scroll, a dragged window) go as
  *copies* of the operator's previous picture (:mod:`agent.screen.motion`);
  the rest are merged into rectangles, one JPEG each. An idle screen sends
  nothing but a keep-alive every ``keepalive_s`` (about 80 bytes).

The body format is :mod:`broker.core.screen_frames`.

Threads: :meth:`LiveView.start`, :meth:`~LiveView.stop` and
:meth:`~LiveView.state` may be called from command threads (the agent runs
handlers on worker lanes); everything else, and the screen source, belongs
to the loop that calls :meth:`~LiveView.pump`. A lock keeps the two apart.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from agent.accesses import LIVE_VIEW, AccessRegistry
from agent.notice.who import reason_sentence
from agent.screen import motion, tiles
from broker.core import screen_frames as protocol
from agent.screen.capture import (
    Frame,
    ScreenSource,
    ScreenUnavailable,
    check_quality,
    encode_region,
)
from broker.core.screen_frames import Copy, Tile, Update

log = logging.getLogger(__name__)

#: why a view ends when its operator stops renewing it (told to the employee and the operator)
VIEWER_GONE = "the viewer closed or lost its connection"


@dataclass
class LiveOptions:
    """Defaults and limits of a live view (agent side; an operator chooses within the limits)."""

    fps: float = 10.0
    max_fps: float = 30.0
    quality: int = 60
    lease_s: float = 30.0
    min_lease_s: float = 1.0
    max_lease_s: float = 300.0
    #: longest silence while idle before a keep-alive
    keepalive_s: float = 2.0
    #: tile side in pixels (change detection granularity; 32 sends least for scrolling text)
    tile: int = 32
    #: tallest merged rectangle, in tiles (caps a single JPEG's size)
    max_rect_rows: int = 16
    #: an update bigger than this is split into several bodies
    max_body_bytes: int = 4 * 1024 * 1024
    #: "simplejpeg", "pillow" or None for the best available
    encoder: str | None = None
    #: look for scrolls and moved windows and send them as copies
    motion: bool = True
    #: largest scroll / move (pixels per frame) looked for
    max_shift: int = 256
    #: after the user ends an operator's view, that operator's live.start is refused this long
    user_end_hold_s: float = 120.0


class LiveView:
    """Who watches this agent's screen, and the updates they get.

    ``publish(body)`` hands one FRAME body to the bus and raises if it
    cannot; ``ready()`` says whether the bus is connected (while it is not,
    nothing is grabbed). ``notify(title, text)`` and ``access_log(event,
    detail)`` are the agent's notice and access-log hooks; ``accesses`` (the
    agent's registry) shows each watcher on the indicator. ``clock`` is
    monotonic seconds (injectable for tests); ``wall`` stamps bodies. The
    ``source`` is only used by :meth:`tick` (the loop's thread).
    """

    def __init__(self, source: ScreenSource, publish: Callable[[bytes], Any] | None = None, *,
                 notify: Callable[[str, str], Any], access_log: Callable[..., Any],
                 ready: Callable[[], bool] | None = None, options: LiveOptions | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 accesses: AccessRegistry | None = None):
        self.source = source
        self.accesses = accesses if accesses is not None else AccessRegistry()
        #: operator -> the name the employee reads
        self.names: dict[str, str] = {}
        #: operator -> when the user ended their view (clock seconds)
        self.ended_by_user: dict[str, float] = {}
        self.publish = publish
        self.notify = notify
        self.access_log = access_log
        self.ready = ready
        self.options = options or LiveOptions()
        self.clock = clock
        self.wall = wall
        #: operator -> lease expiry (clock seconds)
        self.watchers: dict[str, float] = {}
        self.fps = self.options.fps
        self.quality = self.options.quality
        self.monitor = 1
        self.seq = 0
        #: counters for benchmarks and diagnostics (``tiles``: sent as JPEG; ``copied_tiles``: sent as copies)
        self.stats = {"grabs": 0, "updates": 0, "full_frames": 0, "keepalives": 0, "rects": 0, "tiles": 0,
                      "copies": 0, "copied_tiles": 0, "bodies": 0, "bytes": 0, "dropped": 0,
                      "grab_s": 0.0, "diff_s": 0.0, "encode_s": 0.0}
        self._prev: Frame | None = None
        self._need_full = True
        self._next_grab = 0.0
        self._last_sent = 0.0
        self._pending: list[bytes] = []  # end-of-view bodies waiting for the next tick
        self._shifts: list[tuple[int, int]] = []  # the copies' shifts in the last update
        self._lock = threading.RLock()

    # -- leases -----------------------------------------------------------------
    @property
    def active(self) -> bool:
        """True while at least one operator watches."""
        return bool(self.watchers)

    def start(self, operator: str, *, fps: float | None = None, quality: int | None = None, monitor: int | None = None,
              lease_s: float | None = None, full: bool = False, reason: str = "",
              notice: Callable[[str, str], Any] | None = None, name: str = "") -> dict:
        """Open or renew ``operator``'s lease; returns the view's state.

        ``fps``, ``quality`` and ``monitor`` apply to the whole view (the
        latest request wins; the caller checks that the monitor exists);
        ``full`` asks for a full frame next (an operator that lost an
        update sends it). ``notice(title, text)`` shows the start notice
        (default ``notify``; the command handler passes one that applies
        the local notice policy); ``name`` is the operator as the employee
        reads it. Raises ValueError for bad arguments, and for an operator
        whose view the user ended less than ``user_end_hold_s`` ago.
        """
        o = self.options
        fps = self.fps if fps is None else _number("fps", fps, 0.1, o.max_fps)
        quality = self.quality if quality is None else check_quality(quality)
        lease_s = o.lease_s if lease_s is None else _number("lease_s", lease_s, o.min_lease_s, o.max_lease_s)
        if monitor is not None and (type(monitor) is not int or monitor < 0):
            raise ValueError(f"no monitor {monitor!r}")
        with self._lock:
            monitor = self.monitor if monitor is None else monitor
            now = self.clock()
            new = operator not in self.watchers
            if new:
                self._refuse_if_ended_by_user(operator, now)
                who = self.names[operator] = name or operator
                self.accesses.begin(LIVE_VIEW, operator, reason, name=who)
                detail = f"{who} is viewing your screen. {reason_sentence(reason)}"
                (notice or self.notify)("Live view started", detail)
                self.access_log("live view started", operator=who, reason=reason)
                log.info("live view: %s started watching (fps %s, quality %s, lease %.0f s)", operator, fps, quality, lease_s)
            if new or full or monitor != self.monitor:
                self._need_full = True  # a new watcher has no picture yet
            if not self.watchers:
                self._next_grab = now
            self.fps, self.quality, self.monitor = fps, quality, monitor
            self.watchers[operator] = now + lease_s
            return self.state(now) | {"started": new}

    def stop(self, operator: str, reason: str = "stopped by the operator") -> dict:
        """End ``operator``'s lease (nothing happens if there was none); returns the view's state."""
        with self._lock:
            watching = operator in self.watchers
            if watching:
                self._end(operator, reason)
            return self.state() | {"stopped": watching}

    def end_by_user(self, operator: str) -> dict:
        """The user ended ``operator``'s view on the indicator; their ``live.start`` waits ``user_end_hold_s``."""
        with self._lock:
            if operator in self.watchers:
                self.ended_by_user[operator] = self.clock()
                self._end(operator, "ended by the user")
            return self.state()

    def _refuse_if_ended_by_user(self, operator: str, now: float) -> None:
        ended = self.ended_by_user.get(operator)
        if ended is None:
            return
        wait = ended + self.options.user_end_hold_s - now
        if wait > 0:
            raise ValueError(f"the user ended your live view; ask them before you start again (in {wait:.0f} s at the earliest)")
        del self.ended_by_user[operator]

    def close(self, reason: str = "the agent is stopping") -> list[bytes]:
        """End every lease (with notices); returns the end-of-view body, if one is due, unsent."""
        with self._lock:
            for operator in list(self.watchers):
                self._end(operator, reason)
            pending, self._pending = self._pending, []
            return pending

    def state(self, now: float | None = None) -> dict:
        """Who watches, the settings, and each lease's remaining seconds."""
        with self._lock:
            now = self.clock() if now is None else now
            return {"watching": sorted(self.watchers), "fps": self.fps, "quality": self.quality, "monitor": self.monitor,
                    "tile": self.options.tile, "seq": self.seq,
                    "leases_s": {op: round(max(0.0, t - now), 1) for op, t in sorted(self.watchers.items())}}

    def _end(self, operator: str, reason: str) -> None:
        del self.watchers[operator]
        self.accesses.end(LIVE_VIEW, operator)
        who = self.names.pop(operator, operator)
        self.notify("Live view ended", f"{who} stopped viewing your screen ({reason})")
        self.access_log("live view ended", operator=who, reason=reason)
        log.info("live view: %s stopped watching (%s)", operator, reason)
        if not self.watchers:
            self._pending.append(protocol.pack_end(self.seq, reason))
            self._prev = None
            self._need_full = True

    def _expire(self, now: float) -> None:
        for operator, until in list(self.watchers.items()):
            if until <= now:
                self._end(operator, VIEWER_GONE)

    # -- frames -------------------------------------------------------------------
    def request_full(self) -> None:
        """Make the next update a full frame (after a lost body or on an operator's request)."""
        with self._lock:
            self._need_full = True

    def wait_s(self, now: float | None = None) -> float | None:
        """Seconds until the next tick has work, or None while nobody watches."""
        with self._lock:
            if self._pending:
                return 0.0
            if not self.watchers:
                return None
            now = self.clock() if now is None else now
            return max(0.0, min(self._next_grab, min(self.watchers.values())) - now)

    def tick(self, now: float | None = None) -> list[bytes]:
        """The FRAME bodies due now (often none): expire leases, grab, diff, encode.

        Never raises for a lost screen: the view ends with a notice instead.
        """
        with self._lock:
            return self._tick(self.clock() if now is None else now)

    def _tick(self, now: float) -> list[bytes]:
        self._expire(now)
        out, self._pending = self._pending, []
        if not self.watchers or now < self._next_grab:
            return out
        self._next_grab = now + 1.0 / self.fps
        if self.ready is not None and not self.ready():
            self._need_full = True  # the operators may miss anything in between
            return out
        t0, grabbed_at = time.perf_counter(), self.wall()
        try:
            frame = self.source.grab(self.monitor)
        except (ScreenUnavailable, ValueError) as exc:
            log.warning("live view: the screen is gone (%s): ending the view", exc)
            return out + self.close(f"screen unavailable: {exc}")
        t1 = time.perf_counter()
        self.stats["grabs"] += 1
        self.stats["grab_s"] += t1 - t0
        out += self._update(frame, now, t1, grabbed_at)
        return out

    def pump(self, now: float | None = None) -> int:
        """:meth:`tick` and publish what it returns; the number of bodies published."""
        sent = 0
        for body in self.tick(now):
            try:
                self.publish(body)
            except Exception as exc:  # best effort: drop, and repair with a full frame later
                with self._lock:
                    self.stats["dropped"] += 1
                    self._need_full = True
                log.debug("live view: dropped a frame body (%s)", exc)
                continue
            sent += 1
        return sent

    def _update(self, frame: Frame, now: float, t0: float, ts: float) -> list[bytes]:
        o = self.options
        prev = self._prev
        full = self._need_full or prev is None or (prev.width, prev.height) != (frame.width, frame.height)
        if full:
            changed = tiles.all_tiles(frame.width, frame.height, o.tile)
        else:
            changed = tiles.changed_tiles(prev.bgra, frame.bgra, frame.width, frame.height, o.tile)
        copies: list[Copy] = []
        if changed and not full and o.motion:
            moved, changed = motion.find_copies(prev.bgra, frame.bgra, frame.width, frame.height, o.tile, changed, o.max_shift,
                                                hints=self._shifts)
            self._shifts = list(moved)  # a scroll or a drag usually goes on at the same speed
            for (dx, dy), group in moved.items():
                self.stats["copied_tiles"] += len(group)
                merged = tiles.merge_tiles(group, frame.width, frame.height, o.tile, max_rows=1 << 20)
                copies += [Copy(x, y, w, h, dx, dy) for x, y, w, h in merged]
        rects = tiles.merge_tiles(changed, frame.width, frame.height, o.tile, o.max_rect_rows) if changed else []
        t1 = time.perf_counter()
        self.stats["diff_s"] += t1 - t0
        self._prev = frame
        if not rects and not copies:
            if now - self._last_sent < o.keepalive_s:
                return []
            self.stats["keepalives"] += 1
            return self._sent(now, [protocol.pack_update(Update(self.seq, ts, frame.monitor, frame.width, frame.height))])
        encoded = [Tile(x, y, w, h, encode_region(frame, x, y, w, h, self.quality, encoder=o.encoder)) for x, y, w, h in rects]
        self.stats["encode_s"] += time.perf_counter() - t1
        self.seq += 1
        self._need_full = False
        self.stats["updates"] += 1
        self.stats["full_frames"] += full
        self.stats["rects"] += len(rects)
        self.stats["tiles"] += len(changed)
        self.stats["copies"] += len(copies)
        groups = _split(encoded, o.max_body_bytes)
        bodies = [protocol.pack_update(Update(self.seq, ts, frame.monitor, frame.width, frame.height, full, group, i,
                                              len(groups), copies=copies if i == 0 else []))
                  for i, group in enumerate(groups)]
        return self._sent(now, bodies)

    def _sent(self, now: float, bodies: list[bytes]) -> list[bytes]:
        self._last_sent = now
        self.stats["bodies"] += len(bodies)
        self.stats["bytes"] += sum(map(len, bodies))
        return bodies


def _split(encoded: list[Tile], max_bytes: int) -> list[list[Tile]]:
    """Group tiles so that each body stays under ``max_bytes`` (one tile alone may exceed it)."""
    overhead = protocol.tile_overhead()
    groups: list[list[Tile]] = [[]]
    size = 200  # the body's own fields
    for t in encoded:
        need = len(t.jpeg) + overhead
        if groups[-1] and size + need > max_bytes:
            groups.append([])
            size = 200
        groups[-1].append(t)
        size += need
    return groups


def _number(name: str, value, lo: float, hi: float) -> float:
    if type(value) not in (int, float) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a number from {lo:g} to {hi:g}, not {value!r}")
    return float(value)
