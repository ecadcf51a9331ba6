"""Chat from operators to the logged-in user: ``chat.send``, ``chat.delete`` and receipts.

:class:`ChatInbox` keeps the messages this agent process has seen and one
chat window per operator (``python -m agent.chat.window``, see
:mod:`agent.chat.window` for its JSON-lines protocol). Messages go to a
window in the order their commands arrive, so a backlog queued while the
agent was offline is shown in order. Window events come back through
:meth:`ChatInbox.poll`, which the runner calls every loop pass; it turns
them into durable ``event.<agent>.chat`` reports:

* receipt ``{ref, message_id, direction: "out", status: "delivered"|"read", operator, ts}``
  (``ref`` is what the persister uses to update the stored message);
* reply ``{direction: "in", status: "delivered", body, text, operator, in_reply_to, ts}``.

Without a display a message goes to the access log (the user can read it
there) and is reported ``delivered`` at once.

Thread safety: handlers run on the runner's command lane, ``poll`` on its
loop; one re-entrant lock serialises them and ``poll`` skips a pass rather
than wait for a handler.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from agent.capability import Capability
from agent.chat.channel import WindowProcess
from agent.locking import serialised
from agent.context import AgentContext, CommandError
from agent.notice.display import child_env, gui_available, module_argv
from agent.notice.text import one_line
from broker.core.envelope import Kind

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 10_000
MAX_REPLY_CHARS = 4000
MAX_ID_CHARS = 64
#: messages remembered (for de-duplication and deletes); oldest are forgotten first
MAX_REMEMBERED = 1000
#: a window that exits this often without showing anything means: no usable display
MAX_WINDOW_FAILURES = 2


@dataclass
class ChatMessage:
    """A message from an operator, as this agent knows it."""

    message_id: str
    operator: str
    text: str
    ts: float
    status: str = "pending"  # -> delivered -> read (as shown here)
    deleted: bool = False
    via: str = ""  # "window" or "log"


class ChatInbox(Capability):
    """Operator messages shown to the user, and the user's receipts and replies: a capability the runner owns."""

    name = "chat"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.messages: OrderedDict[str, ChatMessage] = OrderedDict()
        self.windows: dict[str, WindowProcess] = {}
        #: message ids handed to each live window, in order
        self.assigned: dict[WindowProcess, list[str]] = {}
        self.failures: dict[str, int] = {}
        self.events: queue.Queue = queue.Queue()

    def handlers(self) -> dict:
        """The command table entries this object answers."""
        return {"chat.send": self.send, "chat.delete": self.delete}

    # -- commands ---------------------------------------------------------------------
    @serialised
    def send(self, args: dict, ctx: AgentContext) -> dict:
        """Show an operator's message to the logged-in user.

        args: ``message_id`` (the id the message is stored under), ``text``.
        The sender is the authenticated operator. The message appears in a
        chat window where the user can reply; ``delivered`` is reported once
        it is on screen, ``read`` when the user presses Read. Without a
        display it is written to the access log and reported delivered.
        """
        message_id = _message_id(args)
        text = args.get("text")
        if type(text) is not str or not text.strip() or len(text) > MAX_TEXT_CHARS:
            raise CommandError(f"chat.send needs 'text': a non-empty string of at most {MAX_TEXT_CHARS} characters")
        known = self.messages.get(message_id)
        if known is not None:
            return {"message_id": message_id, "status": known.status, "deleted": known.deleted, "duplicate": True}
        self.poll(ctx)  # a window that just closed must not swallow this message
        message = ChatMessage(message_id, ctx.operator_label, text, time.time())
        self._remember(message)
        # the store keeps the conversation: the operator's message first, under its own id,
        # so that the receipts below (ref = message_id) find it
        ctx.report(Kind.EVENT, "chat", {"direction": "out", "body": text, "operator": message.operator, "status": "sent",
                                        "command": ctx.command_id}, msg_id=message_id)
        self._deliver(message, ctx, [])
        return {"message_id": message_id, "status": message.status, "via": message.via}

    @serialised
    def delete(self, args: dict, ctx: AgentContext) -> dict:
        """Hide a message on both sides: here, and flagged deleted in the store (a soft delete).

        args: ``message_id``. Its chat window drops it, and closes when it
        holds no other message. A message this process does not know (the
        agent restarted since: no window shows it any more) is not an
        error: ``known`` is false, and the stored copy is still flagged.
        """
        message_id = _message_id(args)
        message = self.messages.get(message_id)
        if message is not None:
            message.deleted = True
            window = self.windows.get(message.operator)
            if window is not None and message_id in self.assigned.get(window, ()):
                window.send({"cmd": "delete", "message_id": message_id})
        # and on the server's side: the stored message is flagged deleted (kept, hidden)
        ctx.report(Kind.EVENT, "chat", {"ref": message_id, "message_id": message_id, "deleted": True,
                                        "operator": ctx.operator, "ts": time.time()})
        if message is None:
            return {"message_id": message_id, "hidden": False, "known": False}
        return {"message_id": message_id, "hidden": True, "known": True, "status": message.status}

    # -- the runner's calls -------------------------------------------------------------
    def poll(self, ctx: AgentContext) -> list[dict]:
        """Call every loop pass: report what the windows said; returns the reported payloads.

        Never blocks (while a handler holds the inbox, this pass does
        nothing). A window that went away with messages it never showed is
        replaced by a new one that shows them (in order).
        """
        reported: list[dict] = []
        if not self._lock.acquire(blocking=False):
            return reported
        try:
            while True:
                try:
                    window, event = self.events.get_nowait()
                except queue.Empty:
                    break
                if event is None:
                    self._window_gone(window, ctx, reported)
                else:
                    self._window_event(window, event, ctx, reported)
        finally:
            self._lock.release()
        return reported

    @serialised
    def close(self, ctx: AgentContext | None = None) -> None:
        """Close every chat window (the agent is stopping)."""
        for window in list(self.windows.values()):
            window.stop()
        self.windows.clear()
        self.assigned.clear()

    # -- windows --------------------------------------------------------------------------
    def _deliver(self, message: ChatMessage, ctx: AgentContext, reported: list[dict]) -> None:
        """Into the operator's window (opened if needed), else into the access log."""
        if not gui_available() or self.failures.get(message.operator, 0) >= MAX_WINDOW_FAILURES:
            self._to_log(message, ctx, reported)
            return
        window = self.windows.get(message.operator)
        if window is None or not window.running:
            window = self._open_window(message.operator, ctx, reported)
        if window is None:
            self._to_log(message, ctx, reported)
            return
        self._assign(window, message)

    def _assign(self, window: WindowProcess, message: ChatMessage) -> None:
        self.assigned[window].append(message.message_id)
        message.via = "window"
        if not window.send({"cmd": "show", "message_id": message.message_id, "text": message.text, "ts": message.ts}):
            log.info("chat window %s is gone: message %s goes to the next one", window.pid, message.message_id)

    def _open_window(self, operator: str, ctx: AgentContext, reported: list[dict]) -> WindowProcess | None:
        """A new window for ``operator``; what a dead predecessor never showed goes first."""
        leftovers = self._take_unshown(self.windows.pop(operator, None))
        try:
            window = WindowProcess(module_argv("agent.chat.window", "--operator", operator), child_env(), self.events, operator)
        except OSError as exc:
            log.warning("could not open a chat window: %s", exc)
            self.failures[operator] = self.failures.get(operator, 0) + 1
            for message in leftovers:
                self._to_log(message, ctx, reported)
            return None
        self.windows[operator] = window
        self.assigned[window] = []
        for message in leftovers:
            self._assign(window, message)
        return window

    def _take_unshown(self, window: WindowProcess | None) -> list[ChatMessage]:
        """The messages ``window`` was given but never showed (and still should), in order."""
        if window is None:
            return []
        ids = self.assigned.pop(window, [])
        messages = [self.messages[i] for i in ids if i in self.messages]
        unshown = [m for m in messages if m.status == "pending" and not m.deleted]
        if unshown and len(unshown) == len(messages) and window.proc.poll() not in (0, None):
            self.failures[window.key] = self.failures.get(window.key, 0) + 1
            log.warning("chat window for %s exited with %s before showing anything", window.key, window.proc.returncode)
        return unshown

    def _window_event(self, window: WindowProcess, event: dict, ctx: AgentContext, reported: list[dict]) -> None:
        kind = event["event"]
        message = self.messages.get(str(event.get("message_id", "")))
        if kind in ("shown", "read") and message is not None and message.message_id in self.assigned.get(window, ()):
            self.failures.pop(message.operator, None)
            status = "delivered" if kind == "shown" else "read"
            if kind == "read" and message.status == "pending":  # never reported shown: it was
                self._receipt(message, "delivered", ctx, reported)
            self._receipt(message, status, ctx, reported)
        elif kind == "reply":
            self._reply(window, event, ctx, reported)
        elif kind == "closed":
            log.info("chat window of %s closed", window.key)

    def _window_gone(self, window: WindowProcess, ctx: AgentContext, reported: list[dict]) -> None:
        """End of a window's output: forget it, and re-show what it never displayed."""
        window.stop()
        if self.windows.get(window.key) is window:
            del self.windows[window.key]
        for message in self._take_unshown(window):
            self._deliver(message, ctx, reported)

    # -- reports ----------------------------------------------------------------------------
    def _to_log(self, message: ChatMessage, ctx: AgentContext, reported: list[dict]) -> None:
        """No window possible: the access log carries the message; it counts as delivered."""
        ctx.access_log(f"message from {message.operator}", one_line(message.text), operator=message.operator, kind="chat")
        log.warning("chat message %s from %s: no display, written to the access log", message.message_id, message.operator)
        message.via = "log"
        self._receipt(message, "delivered", ctx, reported)

    def _receipt(self, message: ChatMessage, status: str, ctx: AgentContext, reported: list[dict]) -> None:
        if _RANK[status] <= _RANK[message.status]:
            return
        message.status = status
        data = {
            "ref": message.message_id,
            "message_id": message.message_id,
            "direction": "out",
            "status": status,
            "operator": message.operator,
            "ts": time.time(),
        }
        self._report(ctx, data, reported)

    def _reply(self, window: WindowProcess, event: dict, ctx: AgentContext, reported: list[dict]) -> None:
        text = event.get("text")
        if type(text) is not str or not text.strip():
            return
        in_reply_to = event.get("in_reply_to")
        data = {
            "direction": "in",
            "status": "delivered",
            "body": text[:MAX_REPLY_CHARS],
            "text": text[:MAX_REPLY_CHARS],
            "operator": window.key,
            "in_reply_to": in_reply_to if isinstance(in_reply_to, str) else None,
            "ts": time.time(),
        }
        self._report(ctx, data, reported)

    def _report(self, ctx: AgentContext, data: dict, reported: list[dict]) -> None:
        try:
            ctx.report(Kind.EVENT, "chat", data)
        except Exception as exc:  # the outbox refused (disk full...): keep the loop alive
            log.warning("could not keep a chat %s report: %s", data.get("status"), exc)
            return
        reported.append(data)

    def _remember(self, message: ChatMessage) -> None:
        self.messages[message.message_id] = message
        while len(self.messages) > MAX_REMEMBERED:
            self.messages.popitem(last=False)


_RANK = {"pending": 0, "delivered": 1, "read": 2}


def _message_id(args: dict) -> str:
    message_id = args.get("message_id")
    if type(message_id) is not str or not 0 < len(message_id) <= MAX_ID_CHARS:
        raise CommandError(f"'message_id' must be a string of 1-{MAX_ID_CHARS} characters")
    return message_id
