"""The alerts service's settings: DATA/alerts.json, every key optional.

Keys:

* ``offline_expected_s`` (number, default 600): after an operator orders a reboot,
  shutdown or update of an agent, its going offline within this many seconds is
  expected: the offline alert is recorded as suppressed and nobody is told; still
  offline when the window ends, the alert opens.
* ``minimum_version`` (text, default ``""``): the EMS version agents should run for
  version rules that name none (``""``: this server's own version).
* ``tick_s`` (number, default 1): how often time alone is judged (offline waits,
  resolves, the end of a suppression window).
* ``delivery`` (map): handed untouched to the delivery sinks (e-mail, webhook, routing,
  quiet hours); this module does not read it.

A file that does not parse, or a key of the wrong type, stops the service with an
error naming the file and the key: a typo must not silently turn alerts off.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from broker.core import bounds
from broker.core.errors import EmsError
from broker.core.selectors import version_tuple

SETTINGS_FILE = "alerts.json"


@dataclass
class AlertSettings:
    offline_expected_s: float = 600.0
    minimum_version: str = ""
    tick_s: float = 1.0
    delivery: dict = field(default_factory=dict)


def load(root: Path) -> AlertSettings:
    """The settings in ``root``/alerts.json, or the defaults when there is no such file."""
    path = Path(root) / SETTINGS_FILE
    if not path.exists():
        return AlertSettings()
    try:
        raw = json.loads(path.read_text())
        if type(raw) is not dict:
            raise bounds.BoundsError("the file must hold one JSON object")
        unknown = sorted(set(raw) - {"offline_expected_s", "minimum_version", "tick_s", "delivery"})
        if unknown:
            raise bounds.BoundsError(f"unknown key(s) {', '.join(unknown)}")
        settings = AlertSettings(
            offline_expected_s=_seconds(raw.get("offline_expected_s", 600.0), "offline_expected_s"),
            minimum_version=bounds.text(raw.get("minimum_version", ""), "minimum_version", 40),
            tick_s=max(0.05, _seconds(raw.get("tick_s", 1.0), "tick_s")),
            delivery=raw.get("delivery", {}),
        )
        if type(settings.delivery) is not dict:
            raise bounds.BoundsError("delivery must be a JSON object")
        if settings.minimum_version and version_tuple(settings.minimum_version) is None:
            raise bounds.BoundsError(f"minimum_version {settings.minimum_version!r} is not a version such as 1.4.2")
    except (ValueError, OSError) as exc:
        raise EmsError(f"{path}: {exc} (fix or remove the file; its keys are described in `ems alerts serve --help`)") from exc
    return settings


def _seconds(value, name: str) -> float:
    seconds = bounds.finite(value, name, "a number of seconds")
    if not 0 <= seconds <= 30 * 86400:
        raise bounds.BoundsError(f"{name} must be from 0 to 2592000 seconds")
    return seconds
