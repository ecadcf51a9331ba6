"""Chat between operators and the logged-in user.

Wiring (the agent's runner owns one :class:`~agent.chat.inbox.ChatInbox`)::

    inbox = ChatInbox()
    handlers = {..., **inbox.handlers()}   # chat.send, chat.delete (one lane keeps them in order)
    inbox.poll(ctx)                        # every loop pass, loop thread: receipts and replies -> ctx.report
    inbox.close(ctx)                       # when the agent stops: chat windows close

An inbox holds the messages it has seen (memory only) and one chat window
process per operator.
"""
from agent.chat.inbox import ChatInbox, ChatMessage

__all__ = ["ChatInbox", "ChatMessage"]
