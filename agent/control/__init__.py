"""Remote control of the user's screen: sessions, visible notices and input.

Wiring (see :class:`~agent.control.service.RemoteControl`)::

    from agent import control
    commands.HANDLERS.update(control.HANDLERS)   # control.open, control.close, input
    control.CONTROL.poll(ctx)                    # every loop pass: idle sessions end
    control.CONTROL.shutdown(ctx)                # when the agent stops

``CONTROL`` is the process's one :class:`RemoteControl`; it holds the open
session (in memory only: a restarted agent has none).
"""
from agent.control.service import RemoteControl

CONTROL = RemoteControl()

#: command name -> handler, for agent.commands.HANDLERS
HANDLERS = CONTROL.handlers()

__all__ = ["CONTROL", "HANDLERS", "RemoteControl"]
