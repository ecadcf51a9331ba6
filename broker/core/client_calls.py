"""Request / response on a bus connection: the half of :class:`broker.core.client.BusClient` that waits for answers.

:class:`Calls` is a base class of ``BusClient``: :meth:`~Calls.call` sends
one message and waits for the message correlated to it (re-sent after a
reconnect; an ERROR answer raises :class:`RemoteError`), keeping whatever
else arrives for ``poll``; :meth:`~Calls.request`, :meth:`~Calls.subscribe`,
:meth:`~Calls.send_command` and :meth:`~Calls.wait_result` build on it. It
uses the connection's ``send``, ``ready``, ``wait_ready``, ``generation``,
``clock`` and ``config``, its one-step ``_poll_once`` and its backlog
(``_keep``, ``_backlog``).
"""
from __future__ import annotations

import time
from typing import Any, Callable

from broker.core.envelope import Envelope, ErrorCode, Kind, new_id
from broker.core.errors import ProtocolError, RemoteError, TimeoutError
from broker.core.vocabulary import is_final


class Calls:
    """``call`` and the helpers built on it (see the module docstring)."""

    def call(self, kind: Kind, data: Any, *, topic: str = "", msg_id: str | None = None, expires: float | None = None,
             timeout_s: float | None = None, until: Callable[[Envelope], bool] | None = None) -> Envelope:
        """Send and wait for the answer correlated to it (resent after a reconnect).

        The answer is the first message whose ``corr`` is this message's id
        (and that ``until`` accepts, if given). An ERROR answer raises
        :class:`RemoteError`. Other messages are kept for :meth:`poll`.
        """
        timeout_s = self.config.timing.request_timeout_s if timeout_s is None else timeout_s
        deadline = self.clock() + timeout_s
        if not self.ready:
            self.wait_ready(timeout_s)
        msg_id = self.send(kind, topic, data, msg_id=msg_id, expires=expires)
        generation = self.generation
        while True:
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise TimeoutError(f"no answer to {kind.name} within {timeout_s:.1f} s")
            if self.generation != generation and self.ready:
                generation = self.generation  # reconnected: the broker may not have seen it
                self.send(kind, topic, data, msg_id=msg_id, expires=expires)
            env = self._poll_once(min(remaining, 0.2))
            if env is None:
                continue
            if env.corr == msg_id:
                if env.kind is Kind.ERROR:
                    err = error_of(env)
                    code = err.get("code")
                    if code in (ErrorCode.HELLO_REQUIRED, ErrorCode.NOT_ENROLLED):
                        continue  # re-sent once we are welcomed again
                    raise RemoteError(_code(code), err.get("error", "error"), err.get("detail", ""))
                if until is None or until(env):
                    return env
            self._keep(env)

    def request(self, op: str, timeout_s: float | None = None, **args) -> Any:
        """Call a broker operation (``status``, ``keys.list``, ...) and return its result."""
        return self.call(Kind.REQUEST, {"op": op, "args": args}, timeout_s=timeout_s).data()

    def subscribe(self, prefixes: list[str], timeout_s: float | None = None) -> list[str]:
        """Receive messages whose topic starts with any of ``prefixes`` (kept across reconnects)."""
        self.prefixes = list(dict.fromkeys(self.prefixes + list(prefixes)))
        return self.call(Kind.SUBSCRIBE, {"prefixes": list(prefixes)}, timeout_s=timeout_s).data()["prefixes"]

    def send_command(self, target: str, name: str, args: dict | None = None, ttl_s: float | None = None,
                     timeout_s: float | None = None, cmd_id: str | None = None, statuses: bool = False) -> dict:
        """Queue a command for an agent; returns its first status (``queued``...).

        The broker then sends this client the RESULT; with ``statuses`` also every status on
        the way (``sent``, ``delivered``...: for :meth:`wait_result`'s ``on_status``)."""
        expires = time.time() + ttl_s if ttl_s else None
        body = {"target": target, "name": name, "args": args or {}, **({"statuses": True} if statuses else {})}
        env = self.call(Kind.COMMAND, body, topic=f"command.{target}",
                        msg_id=cmd_id or new_id(), expires=expires, timeout_s=timeout_s)
        return env.data()

    def wait_result(self, cmd_id: str, timeout_s: float, on_status: Callable[[dict], None] | None = None) -> dict:
        """Wait for a command's final outcome (``done``, ``failed``, ``expired``).

        Status changes on the way (sent only if :meth:`send_command` asked for
        ``statuses``, or to a subscriber of ``command.``) are passed to ``on_status``. If the result
        message was missed (say, across a broker restart) the broker's
        command record is asked for every few seconds.
        """
        deadline = self.clock() + timeout_s
        next_check = self.clock() + max(2.0, self._heartbeat_s)
        waiting = [e for e in self._backlog if e.corr == cmd_id]  # arrived during send_command
        for env in waiting:
            self._backlog.remove(env)
        while True:
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise TimeoutError(f"command {cmd_id} has no result after {timeout_s:.0f} s")
            env = waiting.pop(0) if waiting else self._poll_once(min(remaining, 0.2))
            if env is not None and env.corr == cmd_id:
                data = env.data()
                if env.kind is Kind.RESULT:
                    return data
                if env.kind is Kind.COMMAND_STATUS and on_status is not None:
                    on_status(data)
                continue
            if env is not None:
                self._keep(env)
            if self.clock() >= next_check and self.ready:
                next_check = self.clock() + max(2.0, self._heartbeat_s)
                record = self.request("command.get", id=cmd_id)
                if is_final(record.get("status")):
                    return {k: record[k] for k in ("id", "target", "name", "status", "result")}


def error_of(env: Envelope) -> dict:
    """The body of an ERROR message as a map (empty if it is not one)."""
    try:
        data = env.data()
        return data if isinstance(data, dict) else {}
    except ProtocolError:
        return {}


def _code(value) -> ErrorCode | int:
    try:
        return ErrorCode(value)
    except ValueError:
        return value
