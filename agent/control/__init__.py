"""Remote control of the user's screen: sessions, visible notices and input.

Wiring (see :class:`~agent.control.service.RemoteControl`)::

    from agent import control
    handlers = {..., **control.HANDLERS}   # control.open, control.close, input (any lane thread)
    control.CONTROL.poll(ctx)              # every loop pass, loop thread: idle sessions end; never blocks
    control.CONTROL.shutdown(ctx)          # when the agent stops: the user is told

``CONTROL`` is the process's one :class:`RemoteControl`; it holds the open
session (in memory only: a restarted agent has none).
"""
from agent.control.service import RemoteControl
from agent.control.sessions import DEFAULT_IDLE_TIMEOUT_S, ControlSessions

CONTROL = RemoteControl()

#: command name -> handler, for agent.commands.HANDLERS
HANDLERS = CONTROL.handlers()

__all__ = ["CONTROL", "DEFAULT_IDLE_TIMEOUT_S", "HANDLERS", "ControlSessions", "RemoteControl"]
