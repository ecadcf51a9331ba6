"""What the store's ``activity_logs`` hold about this computer: session events, agent start/stop, operators' actions.

* :class:`ActivityMonitor` — the agent capability that reports them
  (:mod:`agent.activity.monitor`);
* :class:`SessionState`, :func:`changes` — the employee's session as one
  snapshot, and the events between two snapshots (:mod:`agent.activity.session`);
* :func:`select_source` — the platform's way to read it (Linux:
  :mod:`agent.activity.linux`).

Never keystrokes, never screen content; which application is in front
only when the local policy turns ``window_usage`` on (off by default, and
then the start notice says so).
"""
from agent.activity.monitor import ActivityMonitor
from agent.activity.platforms import select_source
from agent.activity.session import NullSource, SessionSource, SessionState, changes

__all__ = ["ActivityMonitor", "NullSource", "SessionSource", "SessionState", "changes", "select_source"]
