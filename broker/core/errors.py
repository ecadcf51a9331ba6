"""One error hierarchy for every EMS component.

Errors that cross the wire travel as :class:`broker.core.envelope.ErrorCode`
values; :class:`RemoteError` turns such a reply back into an exception.
"""
from __future__ import annotations


class EmsError(Exception):
    """Base class of every error EMS raises on purpose."""


class ConfigError(EmsError):
    """Bad or missing configuration (data dir, keys, profile)."""


class ProtocolError(EmsError):
    """A frame that is not valid EMS wire format."""

    def __init__(self, code, detail: str = ""):
        super().__init__(f"{code.name}: {detail}" if detail else code.name)
        self.code = code
        self.detail = detail


class SendError(EmsError):
    """A message could not be handed to the bus."""


class TimeoutError(EmsError):  # noqa: A001 - deliberately scoped to EMS
    """No answer arrived in time."""


class RemoteError(EmsError):
    """The broker (or a service behind it) answered with an error code."""

    def __init__(self, code, message: str, detail: str = ""):
        text = f"{message} ({detail})" if detail else message
        super().__init__(f"[{getattr(code, 'name', code)}] {text}")
        self.code = code
        self.message = message
        self.detail = detail


class Refused(EmsError):
    """A request the broker refuses with a particular error code (not BAD_REQUEST): a broker op raises it,
    the broker answers ``code`` with the message."""

    def __init__(self, code, message: str):
        super().__init__(message)
        self.code = code
        self.message = message
