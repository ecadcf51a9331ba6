"""Remote control: the ``control.open``, ``control.close`` and ``input`` commands.

:class:`RemoteControl` ties together the session state
(:mod:`agent.control.sessions`), the visible notices
(:func:`agent.notice.announce`, kind ``remote_control``) and the input
driver (:mod:`agent.control.driver`). Input is accepted only inside a
session opened by the same operator; the access log records each session
(who, when, why), never the keys.

Thread safety: the runner runs handlers on a command lane thread and calls
:meth:`RemoteControl.poll` from its loop; one lock serialises them, and
``poll`` skips a pass rather than wait for input that is being typed.
"""
from __future__ import annotations

import logging
import threading
import time

from agent.accesses import REMOTE_CONTROL, ActiveAccess
from agent.capability import Capability
from agent.indicator.consent import require_consent
from agent.locking import serialised
from agent.context import AgentContext, CommandError
from agent.control.driver import NO_DISPLAY, InputDriver
from agent.control.events import FrameMapper, frame_size, parse_events, region
from agent.control.sessions import NOT_OPEN, ControlSession, ControlSessions
from agent.notice import announce, has_display
from agent.notice.text import one_line
from agent.notice.who import operator_label, reason_sentence
from broker.core.vocabulary import MAX_REASON_CHARS, reason_too_long

log = logging.getLogger(__name__)

NOTICE_KIND = REMOTE_CONTROL


class RemoteControl(Capability):
    """Remote-control sessions and input for one agent: a capability the runner owns."""

    name = "control"

    def __init__(self, sessions: ControlSessions | None = None, driver: InputDriver | None = None):
        self.sessions = sessions or ControlSessions()
        self.driver = driver or InputDriver()
        self._lock = threading.Lock()

    def handlers(self) -> dict:
        """The command table entries this object answers."""
        return {"control.open": self.open, "control.close": self.end, "input": self.input}

    # -- commands --------------------------------------------------------------------
    def open(self, args: dict, ctx: AgentContext) -> dict:
        """Start remote control of this screen.

        args: ``reason`` (required: shown to the user and written to the
        access log). The user sees "<operator> is now controlling your
        screen: <reason>" and the indicator with an End button while it
        lasts. Where this computer's local policy asks for it, the user is
        asked first: "declined by the user" or "no answer from the user"
        fail the command. Only one operator at a time; opening again as the
        same operator keeps the session. Returns the session id, the screen
        size and the idle timeout.
        """
        reason = _reason(args)
        operator = _operator(ctx)
        if not has_display():
            raise CommandError(NO_DISPLAY)
        with self._lock:
            self._expire(ctx)
            held = self.sessions.refuse_if_held(operator)
        if held is None:
            require_consent(ctx, NOTICE_KIND, args)  # outside the lock: the loop keeps running while the user decides
        with self._lock:
            width, height = self.driver.screen_size()
            who = operator_label(ctx)
            session, new = self.sessions.open(operator, reason, who)
            if new:
                announce(ctx, NOTICE_KIND, "Remote control started", f"{who} is now controlling your screen. {reason_sentence(reason)}", args)
                ctx.accesses.begin(NOTICE_KIND, operator, reason, session.session_id, who)
                ctx.access_log("remote control started", operator=who, reason=reason, kind="control.start")
                log.info("remote-control session %s opened by %s", session.session_id, operator)
        return {**session.summary(), "new": new, "screen_w": width, "screen_h": height, "idle_timeout_s": self.sessions.idle_timeout_s}

    @serialised
    def end_by_user(self, access: ActiveAccess, ctx: AgentContext) -> None:
        """The user pressed End on the indicator: that session ends now (the operator's next input is told)."""
        session = self.sessions.end_by_user(access.session_id)
        if session is not None:
            self._ended(ctx, session, f"You ended {session.who}'s remote control", {})

    @serialised
    def end(self, args: dict, ctx: AgentContext) -> dict:
        """End the sender's remote-control session (the user is told). args: optional ``reason``."""
        operator = _operator(ctx)
        ended = self._expire(ctx)
        if ended is not None and ended.operator == operator:
            return {**ended.summary(), "closed": True, "ended_by": "idle timeout"}
        held = self.sessions.current
        if (held is None or held.operator != operator) and operator in self.sessions.ended_by_user:
            return {"operator": operator, "closed": True, "ended_by": "user"}
        session = self.sessions.close(operator)
        reason = one_line(str(args.get("reason") or ""))[:MAX_REASON_CHARS]
        text = f"{session.who} is no longer controlling your screen" + (f": {reason}" if reason else "")
        self._ended(ctx, session, text, args)
        return {**session.summary(), "closed": True, "ended_by": "operator"}

    @serialised
    def input(self, args: dict, ctx: AgentContext) -> dict:
        """Execute mouse and keyboard events inside the sender's open session.

        args: ``events`` — a list of ``{type: move|click|wheel|key|text, x,
        y, button, clicks, dx, dy, key, text}`` — and ``frame_w``/``frame_h``,
        the size of the frame the operator was looking at (pointer
        coordinates are scaled from it to the screen, or to ``region``
        ``{left, top, width, height}`` when the frame shows one monitor).
        Returns counts only; nothing typed is stored or logged.
        """
        if not has_display():
            raise CommandError(NO_DISPLAY)
        operator = _operator(ctx)
        ended = self._expire(ctx)
        if ended is not None and ended.operator == operator:
            raise CommandError(f"{NOT_OPEN}: your session ended after {self.sessions.idle_timeout_s:g} s without input; open a new one")
        session = self.sessions.require(operator)
        events = parse_events(args, self.driver.known_keys())
        frame = frame_size(args)
        if frame is None and any(e.positioned for e in events):
            raise CommandError("frame_w and frame_h (the size of the frame you see) are required for pointer events")
        mapper = None
        if frame is not None:
            left, top, width, height = region(args, *self.driver.screen_size())
            mapper = FrameMapper(*frame, width, height, left, top)
        try:
            result = self.driver.run(events, mapper)
        except CommandError:
            raise
        except Exception as exc:  # the message could quote input: name the type only
            log.warning("remote input failed in session %s: %s", session.session_id, type(exc).__name__)
            raise CommandError(f"remote input failed: {type(exc).__name__}") from exc
        self.sessions.touch(session)
        return {"session_id": session.session_id, **result}

    # -- the runner's calls --------------------------------------------------------------
    def poll(self, ctx: AgentContext) -> list[dict]:
        """Call every loop pass: ends an idle session (with its notice); returns what ended.

        Never waits: while a command holds the session (input being typed)
        the session is not idle, and this pass does nothing.
        """
        if not self._lock.acquire(blocking=False):
            return []
        try:
            ended = self._expire(ctx)
        finally:
            self._lock.release()
        return [ended.summary()] if ended is not None else []

    @serialised
    def close(self, ctx: AgentContext) -> None:
        """The agent is stopping: end any open session and tell the user."""
        session = self.sessions.end()
        if session is not None:
            self._ended(ctx, session, f"{session.who}'s remote control ended: the EMS agent is stopping", {})

    # -- helpers ---------------------------------------------------------------------------
    def _expire(self, ctx: AgentContext) -> ControlSession | None:
        session = self.sessions.expire()
        if session is not None:
            text = f"{session.who}'s remote control ended after {self.sessions.idle_timeout_s:g} s without input"
            self._ended(ctx, session, text, {})
        return session

    def _ended(self, ctx: AgentContext, session: ControlSession, text: str, args: dict) -> None:
        ctx.accesses.end(NOTICE_KIND, session.operator, session.session_id)
        announce(ctx, NOTICE_KIND, "Remote control ended", text, args)
        ctx.access_log("remote control ended", text, operator=session.who, reason=session.reason, kind="control.end")
        log.info("remote-control session %s of %s ended after %.0f s", session.session_id, session.operator, time.time() - session.opened_at)


def _operator(ctx: AgentContext) -> str:
    if not ctx.operator:
        raise CommandError("remote control needs an authenticated operator")
    return ctx.operator


def _reason(args: dict) -> str:
    raw = args.get("reason")
    reason = one_line(raw) if isinstance(raw, str) else ""
    if not reason:
        raise CommandError("control.open needs a reason (it is shown to the user and kept in the access log)")
    if len(reason) > MAX_REASON_CHARS:
        raise CommandError(reason_too_long())
    return reason
