"""Chat between operators and the logged-in user.

Wiring (see :class:`~agent.chat.inbox.ChatInbox`)::

    from agent import chat
    handlers = {..., **chat.HANDLERS}   # chat.send, chat.delete (one lane keeps them in order)
    chat.INBOX.poll(ctx)                # every loop pass, loop thread: receipts and replies -> ctx.report
    chat.INBOX.close()                  # when the agent stops: chat windows close

``INBOX`` is the process's one :class:`ChatInbox`: the messages it has seen
(memory only) and one chat window process per operator.
"""
from agent.chat.inbox import ChatInbox, ChatMessage

INBOX = ChatInbox()

#: command name -> handler, for agent.commands.HANDLERS
HANDLERS = INBOX.handlers()

__all__ = ["HANDLERS", "INBOX", "ChatInbox", "ChatMessage"]
