"""The screen capability: ``capture``, ``thumbnail``, ``live.start``, ``live.stop``.

:class:`Screen` is one agent's screen: its live view (if it has a frame
publisher) and its two look gates (captures, thumbnails: rate limits from
the local policy). The runner (:class:`agent.runner.Agent`) owns one::

    screen = Screen.on_bus(ctx, bus)      # frames as FRAME messages on frame.<agent>.live
    handlers = {..., **screen.handlers()}
    env = bus.poll(min(0.25, screen.wait_s() or 0.25))  # the loop: never delays a frame
    screen.poll(ctx)                      # every pass, after the dispatch: frames go out
    screen.close(ctx)                     # when the agent stops: a view ends, with notices

Each handler is ``fn(args, ctx) -> dict`` (see :mod:`agent.context`); its
docstring is its help. Handlers may run on a command lane thread: they
never touch the bus nor the live view's screen connection (a capture and a
``live.start`` check open their own, briefly). Frames are published best
effort, never through the durable outbox, and nothing is grabbed while the
bus is not connected. All state is on the object: nothing at module level.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

from agent.accesses import LIVE_VIEW, THUMBNAILS, ActiveAccess
from agent.capability import Capability
from agent.context import AgentContext, CommandError
from agent.indicator.consent import CONSENT_ARGS, require_consent
from agent.notice.policy import NOTICE_SWITCHES, SILENCING_FLAGS, announce
from agent.notice.who import operator_label
from agent.screen import captures, thumbnail as thumbs
from broker.core import screen_frames as protocol
from agent.screen.capture import (
    Frame,
    MssSource,
    ScreenSource,
    ScreenUnavailable,
    check_quality,
    encode_jpeg,
    output_size,
)
from agent.screen.live import LiveOptions, LiveView
from broker.core.envelope import Kind, agent_topic
from broker.core.errors import SendError

log = logging.getLogger(__name__)

#: default JPEG quality of an on-demand capture
CAPTURE_QUALITY = 70
#: a capture bigger than this is refused (it travels through the durable outbox)
MAX_CAPTURE_BYTES = 6 * 1024 * 1024


class Screen(Capability):
    """One agent's screen: captures, thumbnails and (with ``publish``) the live view.

    ``publish(body)`` sends a FRAME body (None: no live view; ``live.start``
    says so); ``ready()`` tells whether it can; notices and access-log lines
    go through ``ctx``. ``clock`` drives the gates and the view (tests).
    """

    name = "screen"

    def __init__(self, ctx: AgentContext, publish: Callable[[bytes], Any] | None = None, *,
                 ready: Callable[[], bool] | None = None, source: ScreenSource | None = None,
                 options: LiveOptions | None = None, clock: Callable[[], float] = time.monotonic):
        self.capture_gate = captures.make_gate(ctx.policy, clock)
        self.thumbnail_gate = thumbs.make_gate(ctx.policy, clock)
        self.view: LiveView | None = None
        if publish is not None:
            self.view = LiveView(source or MssSource(), publish, notify=ctx.notify, access_log=ctx.access_log,
                                 ready=ready, options=options, clock=clock, accesses=ctx.accesses)

    @classmethod
    def on_bus(cls, ctx: AgentContext, bus, **kw) -> "Screen":
        """A screen whose frames are published on ``bus`` (a BusClient) under ``frame.<agent>.live``."""

        def publish(body: bytes) -> None:
            if not bus.ready:
                raise SendError("not connected to the broker")
            bus.publish(Kind.FRAME, protocol.TOPIC_NAME, body=body)

        return cls(ctx, publish, ready=lambda: bus.ready, **kw)

    def handlers(self) -> dict[str, Callable[[dict, AgentContext], dict]]:
        return {"capture": self.capture, thumbs.COMMAND: self.thumbnail,
                "live.start": self.live_start, "live.stop": self.live_stop}

    # -- the runner's calls ------------------------------------------------------------
    def poll(self, ctx: AgentContext) -> None:
        """Send the live-view frames that are due (best effort, only while someone watches)."""
        if self.view is not None:
            self.view.pump()

    def wait_s(self) -> float | None:
        """How soon the next frame (or the end body) is due; None while nobody watches."""
        return self.view.wait_s() if self.view is not None else None

    def close(self, ctx: AgentContext | None = None, reason: str = "the agent is stopping") -> None:
        """End the live view (with notices; the end body is published if possible) and its screen connection."""
        view, self.view = self.view, None
        if view is None:
            return
        for body in view.close(reason):
            try:
                view.publish(body)
            except Exception as exc:
                log.debug("could not announce the end of the live view: %s", exc)
        view.source.close()

    def end_live_by_user(self, access: ActiveAccess, ctx: AgentContext) -> None:
        """The user pressed End beside a live view on the indicator (where local policy offers it)."""
        if self.view is not None:
            self.view.end_by_user(access.operator)

    # -- commands ------------------------------------------------------------------
    def capture(self, args: dict, ctx: AgentContext) -> dict:
        """Take a screenshot now and store it (``screen_captures``).

        Args: ``quality`` (1-95, default 70), ``max_width`` (pixels) and/or
        ``scale`` (0-1] to shrink it, ``monitor`` (1 = first, 0 = all),
        ``reason`` (shown to the employee, kept in the access log). Limited by
        this computer's local policy (``captures_per_minute``, all operators
        together, whatever the size): over it, the command fails and says when
        to ask again. Every capture is shown to the employee, naming the
        operator and the reason (a request to hide that is refused). Returns the
        stored record's ``msg_id``, its size and timings; the picture itself is
        delivered to the store durably.
        """
        _only(args, "capture", "quality", "max_width", "scale", "monitor", "reason", *SILENCING_FLAGS, *NOTICE_SWITCHES)
        quality = _arg(check_quality, args.get("quality", CAPTURE_QUALITY))
        max_width, scale, monitor = args.get("max_width"), args.get("scale"), args.get("monitor", 1)
        reason = _reason(args)
        _arg(output_size, 1000, 1000, max_width, scale)  # bad sizes fail before anything is grabbed
        gate = self.capture_gate
        gate.take()
        try:
            t0 = time.perf_counter()
            frame = _grab(monitor)
            t1 = time.perf_counter()
            width, height = output_size(frame.width, frame.height, max_width, scale)
            jpeg = encode_jpeg(frame, quality, max_width, scale)
            t2 = time.perf_counter()
            if len(jpeg) > MAX_CAPTURE_BYTES:
                raise CommandError(f"the capture is {len(jpeg)} bytes, over the {MAX_CAPTURE_BYTES} limit: lower quality or set max_width")
        except CommandError:
            gate.give_back()  # nothing leaves this computer
            raise
        operator = operator_label(ctx)
        announce(ctx, captures.NOTICE_KIND, *captures.notice_text(operator, reason, width, height), args)
        msg_id = ctx.report(Kind.EVENT, "capture", {
            "width": width, "height": height, "quality": quality, "format": "jpeg", "image": jpeg,
            "operator": ctx.operator, "command": ctx.command_id, "monitor": monitor, "reason": reason,
        })
        ctx.access_log("screen captured", f"{width}x{height}", operator=operator, reason=reason)
        return {"msg_id": msg_id, "width": width, "height": height, "quality": quality, "format": "jpeg", "bytes": len(jpeg),
                "monitor": monitor, "screen": [frame.width, frame.height],
                "grab_ms": round((t1 - t0) * 1000, 2), "encode_ms": round((t2 - t1) * 1000, 2)}

    def thumbnail(self, args: dict, ctx: AgentContext) -> dict:
        """A small picture of the screen now, for a client tile in the console; not stored.

        Args: ``width`` (32-320 pixels, default 240), ``quality`` (1-80,
        default 50), ``monitor`` (default 1), ``reason`` (kept in the access
        log). Returns ``image`` (JPEG bytes), its ``width`` and ``height``, the
        ``screen`` size and ``ts``. Limited by this computer's local policy
        (``thumbnails_per_minute``, all operators together): over it, the
        command fails and says when to ask again. The employee is told who is
        looking (see :mod:`agent.screen.thumbnail`); each picture is a line in
        the access log.
        """
        _only(args, thumbs.COMMAND, "width", "quality", "monitor", "reason", *SILENCING_FLAGS, *NOTICE_SWITCHES)
        width = _arg(thumbs.check_width, args.get("width", thumbs.DEFAULT_WIDTH))
        quality = _arg(thumbs.check_quality, args.get("quality", thumbs.DEFAULT_QUALITY))
        monitor, reason = args.get("monitor", 1), _reason(args)
        gate = self.thumbnail_gate
        gate.take()
        try:
            frame = _grab(monitor)
        except CommandError:
            gate.give_back()  # nothing was looked at
            raise
        operator = operator_label(ctx)
        ctx.accesses.touch(THUMBNAILS, ctx.operator, reason, operator)  # the indicator stays up while they continue
        if gate.notice_due(operator):
            announce(ctx, thumbs.NOTICE_KIND, *thumbs.notice_text(operator, gate, reason), args)
        out_width, out_height = output_size(frame.width, frame.height, width)
        jpeg = encode_jpeg(frame, quality, width)
        ctx.access_log("screen thumbnail", f"{out_width}x{out_height}", operator=operator, reason=reason)
        return {"format": "jpeg", "image": jpeg, "width": out_width, "height": out_height, "quality": quality,
                "monitor": monitor, "screen": [frame.width, frame.height], "ts": time.time()}

    def live_start(self, args: dict, ctx: AgentContext) -> dict:
        """Start watching this screen live, or renew your lease on it.

        Args: ``fps`` (default 10, at most 30), ``quality`` (1-95, default 60),
        ``monitor`` (default 1), ``lease_s`` (default 30: send ``live.start``
        again before it runs out, or the view ends), ``full`` (true: send a
        full frame next, after you missed an update), ``reason`` (shown to the
        employee). Frames arrive as FRAME messages on ``frame.<agent>.live``;
        the employee is told who is watching (a request to hide that notice is
        refused where local policy makes it mandatory, as it is by default) and
        sees the indicator while it lasts. Where local policy asks for it, a
        new viewer waits for the employee's Allow ("declined by the user",
        "no answer from the user" otherwise).
        """
        _only(args, "live.start", "fps", "quality", "monitor", "lease_s", "full", "reason", *SILENCING_FLAGS, *NOTICE_SWITCHES,
              *CONSENT_ARGS)
        view = self._live()
        full = args.get("full", False)
        if type(full) is not bool:
            raise CommandError(f"full must be true or false, not {full!r}")
        monitor = args.get("monitor", view.monitor)
        _grab(monitor)  # is there a screen, and that monitor? (our own connection: the view's belongs to the loop)
        if ctx.operator_label not in view.state()["watching"]:
            require_consent(ctx, LIVE_VIEW, args)  # a lease renewal is not asked again
        try:
            state = view.start(ctx.operator_label, fps=args.get("fps"), quality=args.get("quality"), monitor=monitor,
                               lease_s=args.get("lease_s"), full=full, reason=_reason(args),
                               notice=lambda title, text: announce(ctx, LIVE_VIEW, title, text, args), name=operator_label(ctx))
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        return state | {"topic": agent_topic(Kind.FRAME, ctx.client_id, protocol.TOPIC_NAME)}

    def live_stop(self, args: dict, ctx: AgentContext) -> dict:
        """Stop watching this screen live (your lease only; others may still watch).

        Args: ``reason`` (optional, kept in the access log).
        """
        _only(args, "live.stop", "reason")
        reason = _reason(args) or "stopped by the operator"
        return self._live().stop(ctx.operator_label, reason)

    def _live(self) -> LiveView:
        if self.view is None:
            raise CommandError("live view is not available: this agent runs without a frame publisher")
        return self.view


def poll_timeout(view: LiveView | None, idle_s: float) -> float:
    """How long a loop may block (e.g. in ``bus.poll``) without delaying ``view``'s frames."""
    wait = view.wait_s() if view is not None else None
    return idle_s if wait is None else min(idle_s, wait)


def _grab(monitor) -> Frame:
    """One frame through a connection of our own (closed again); CommandError if there is no screen."""
    with MssSource() as source:
        ok, why = source.available()
        if not ok:
            raise _unavailable(why)
        try:
            return source.grab(monitor)
        except ScreenUnavailable as exc:
            raise _unavailable(exc) from exc
        except ValueError as exc:
            raise CommandError(str(exc)) from exc


def _unavailable(why: object) -> CommandError:
    return CommandError(f"{protocol.SCREEN_UNAVAILABLE}: {why}")


def _only(args: dict, command: str, *known: str) -> None:
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise CommandError(f"{command} does not take {', '.join(map(str, unknown))}; it takes {', '.join(known)}")


def _arg(check: Callable, *values):
    try:
        return check(*values)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


def _reason(args: dict) -> str:
    reason = args.get("reason", "")
    if type(reason) is not str:
        raise CommandError("reason must be a string")
    return reason[:200]
