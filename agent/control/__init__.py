"""Remote control of the user's screen: sessions, visible notices and input.

Wiring (the agent's runner owns one :class:`~agent.control.service.RemoteControl`)::

    control = RemoteControl()
    handlers = {..., **control.handlers()}  # control.open, control.close, input (any lane thread)
    control.poll(ctx)                       # every loop pass, loop thread: idle sessions end; never blocks
    control.close(ctx)                      # when the agent stops: the user is told

A :class:`RemoteControl` holds the open session in memory only: a restarted
agent has none.
"""
from agent.control.service import RemoteControl
from agent.control.sessions import DEFAULT_IDLE_TIMEOUT_S, ControlSessions

__all__ = ["DEFAULT_IDLE_TIMEOUT_S", "ControlSessions", "RemoteControl"]
