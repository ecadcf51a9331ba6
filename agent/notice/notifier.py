"""The notifier: every notice on screen (when there is one) and always in the access log."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from agent.notice.backends import NoticeBackend, select_backend
from agent.notice.text import one_line

#: the access-log kind of a notice (:data:`agent.access_log.NOTICE`; not imported: that module imports this package)
NOTICE = "notice"

log = logging.getLogger(__name__)


class Notifier:
    """Shows notices to the logged-in user and appends each one to the access log.

    ``notify(title, text)`` matches :attr:`agent.context.AgentContext.notify`:
    the runner hands ``notifier.notify`` to every handler. It never raises:
    a notice that cannot be shown is still logged.
    """

    def __init__(self, access_log: Callable[..., Any], backend: NoticeBackend | None = None):
        self.access_log = access_log
        self.backend = select_backend() if backend is None else backend

    def notify(self, title: str, text: str) -> None:
        """Log ``title: text`` in the access log and the agent log, then show it."""
        try:
            self.access_log(one_line(title), one_line(text), kind=NOTICE)
        except Exception:  # a full disk must not stop the notice itself
            log.exception("could not append the notice %r to the access log", title)
        log.warning("NOTICE: %s: %s", title, text)
        try:
            self.backend.show(title, text)
        except Exception:
            log.exception("the %s notice backend failed; the notice is logged only", self.backend.name)

    def close(self, dismiss: bool = False) -> None:
        """Release the backend; ``dismiss`` also closes notices still on screen."""
        self.backend.close(dismiss)
