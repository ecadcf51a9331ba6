"""The employee sees every access while it lasts, and is asked first where local policy says so.

* :class:`Indicator` (:mod:`agent.indicator.service`) — the capability that
  shows the agent's :class:`~agent.accesses.AccessRegistry` on screen and
  acts on the user's End and Access log clicks;
* :func:`select_indicator` (:mod:`agent.indicator.backends`) — a tray icon
  where the desktop has a tray, else the always-on-top privacy bar
  (:mod:`agent.indicator.bar`);
* :func:`require_consent` (:mod:`agent.indicator.consent`) — the consent
  prompt (:mod:`agent.indicator.prompt`) that ``LocalPolicy.ask_before``
  asks for; the server cannot skip it.

Windows run as child processes (``python -m agent.indicator.bar`` ...), so a
toolkit crash cannot reach the agent.
"""
from agent.indicator.backends import ChildIndicator, IndicatorBackend, LogOnlyIndicator, select_indicator, tray_available
from agent.indicator.consent import CONSENT_ARGS, DECLINED, NO_ANSWER, require_consent
from agent.indicator.service import Indicator

__all__ = ["CONSENT_ARGS", "DECLINED", "NO_ANSWER", "ChildIndicator", "Indicator", "IndicatorBackend", "LogOnlyIndicator",
           "require_consent", "select_indicator", "tray_available"]
