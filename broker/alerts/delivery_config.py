"""The ``delivery`` section of ``DATA/alerts.json``: where notices go, checked before anything is sent.

:func:`load_delivery` turns the section (a dict) into one typed
:class:`DeliveryConfig` with every default in this module, or raises
:class:`DeliveryConfigError` naming the bad key (``delivery.channels.email.port
must be an integer from 1 to 65535, not -1``). Unknown keys are refused too:
a typo (``"min_severty"``) would otherwise be a rule that silently does nothing.

* ``channels``: ``email`` (an SMTP server) and ``webhook`` (an HTTP(S) URL);
  secrets only by file (``password_file``, ``secret_file``: a path, relative
  paths from the data dir), never inline.
* ``routes``: per rule name (``approval`` for approval requests, ``*`` for
  every other rule): which channels and the minimum severity.
* ``quiet_hours``: per channel, a window (``"22:00-07:00"``) in a named time
  zone during which non-critical notices are held and sent as one digest
  when it ends.
* ``dedupe``: the same notice again (same key, state, severity and title as
  the last one accepted for its key on that channel) is not sent again.
* ``retry``: how often and how patiently a failed send is tried again.
"""
from __future__ import annotations

import datetime as dt
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from broker.alerts.notices import SEVERITIES
from broker.core import bounds
from broker.core.errors import ConfigError, EmsError

EMAIL, WEBHOOK = "email", "webhook"
CHANNELS = (EMAIL, WEBHOOK)
#: the route of every rule that has none of its own
DEFAULT_ROUTE = "*"
SECURITY = ("starttls", "ssl", "none")
MAX_TIMEOUT_S = 300.0
MAX_RECIPIENTS = 100
_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
_INLINE_SECRETS = {"password": "password_file", "secret": "secret_file"}


class DeliveryConfigError(ConfigError):
    """The delivery section of alerts.json is wrong; the message names the key."""


class DeliveryFailed(EmsError):
    """A notice could not be handed to its channel (it stays in the outbox and is tried again)."""


@dataclass(frozen=True)
class EmailChannel:
    """An SMTP server and who gets the mail."""

    host: str
    sender: str
    to: tuple[str, ...]
    port: int = 587
    security: str = "starttls"
    username: str = ""
    password_file: Path | None = None
    timeout_s: float = 10.0
    #: a PEM file of the CA that signed the server's certificate (a private CA); None: the system's CAs
    ca_file: Path | None = None

    def password(self) -> str:
        """The password, read from its file now (so a rotated password needs no restart)."""
        return self.password_file.read_text(encoding="utf-8").strip() if self.password_file else ""


@dataclass(frozen=True)
class WebhookChannel:
    """An HTTP(S) endpoint that receives notices as JSON, signed when a secret is set."""

    url: str
    secret_file: Path | None = None
    timeout_s: float = 10.0
    #: a PEM file of the CA that signed an https:// server's certificate; None: the system's CAs
    ca_file: Path | None = None

    def secret(self) -> bytes:
        """The HMAC key, read from its file now; empty for no signature."""
        return self.secret_file.read_bytes().strip() if self.secret_file else b""


@dataclass(frozen=True)
class Route:
    """Where one rule's notices go, from which severity up."""

    channels: tuple[str, ...]
    min_severity: str = "info"

    def takes(self, severity: str) -> bool:
        """True for ``severity`` at or above the minimum (an unknown severity counts as the loudest)."""
        rank = SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)
        return rank >= SEVERITIES.index(self.min_severity)


@dataclass(frozen=True)
class QuietHours:
    """A daily window (minutes after midnight, local to ``zone``); it may span midnight."""

    start_min: int
    end_min: int
    zone: str

    def ends_at(self, now: float) -> float | None:
        """When the window ``now`` falls in ends (epoch seconds), or None outside it."""
        local = dt.datetime.fromtimestamp(now, ZoneInfo(self.zone))
        minute = local.hour * 60 + local.minute
        if self.start_min < self.end_min:
            inside = self.start_min <= minute < self.end_min
        else:
            inside = minute >= self.start_min or minute < self.end_min
        if not inside:
            return None
        day = local.date() if minute < self.end_min else local.date() + dt.timedelta(days=1)
        end = dt.datetime.combine(day, dt.time(self.end_min // 60, self.end_min % 60), ZoneInfo(self.zone))
        return end.timestamp()


@dataclass(frozen=True)
class Retry:
    """Failed sends are tried again after ``first_delay_s``, doubling up to ``max_delay_s``;
    after ``max_attempts`` tries the record is given up (and kept)."""

    max_attempts: int = 10
    first_delay_s: float = 30.0
    max_delay_s: float = 3600.0

    def delay_s(self, attempts: int) -> float:
        """The wait after the ``attempts``-th failure."""
        return min(self.max_delay_s, self.first_delay_s * 2 ** min(attempts - 1, 32))


@dataclass(frozen=True)
class DeliveryConfig:
    """Everything the dispatcher needs, checked."""

    channels: dict[str, EmailChannel | WebhookChannel] = field(default_factory=dict)
    routes: dict[str, Route] = field(default_factory=dict)
    quiet_hours: dict[str, QuietHours] = field(default_factory=dict)
    dedupe: bool = True
    retry: Retry = Retry()
    #: more due notices than this on one channel go out as one digest (a storm is one message)
    storm_digest_over: int = 20

    def route_for(self, rule: str) -> Route | None:
        """The rule's own route, else the ``*`` route, else None (not delivered)."""
        return self.routes.get(rule) or self.routes.get(DEFAULT_ROUTE)


def load_delivery(section: Any, data_dir: Path) -> DeliveryConfig:
    """Check the ``delivery`` section of alerts.json; relative secret files are under ``data_dir``."""
    try:
        return _delivery(section, Path(data_dir))
    except bounds.BoundsError as exc:
        raise DeliveryConfigError(f"alerts.json: {exc}") from exc


def _delivery(section: Any, data_dir: Path) -> DeliveryConfig:
    known = ("channels", "routes", "quiet_hours", "dedupe", "retry", "storm_digest_over")
    section = _table(section, "delivery", known)
    channels = _channels(section.get("channels", {}), data_dir)
    routes = {name: _route(value, f"delivery.routes.{name}", channels)
              for name, value in _table(section.get("routes", {}), "delivery.routes").items()}
    quiet = {name: _quiet(value, f"delivery.quiet_hours.{name}", channels)
             for name, value in _table(section.get("quiet_hours", {}), "delivery.quiet_hours").items()}
    return DeliveryConfig(
        channels=channels, routes=routes, quiet_hours=quiet,
        dedupe=bounds.boolean(section.get("dedupe", True), "delivery.dedupe"),
        retry=_retry(section.get("retry", {})),
        storm_digest_over=bounds.int64(section.get("storm_digest_over", 20), "delivery.storm_digest_over", 1, 10_000))


def _table(value: Any, name: str, known: tuple[str, ...] | None = None) -> dict:
    """A JSON object with string keys, each of them ``known`` (any key when None)."""
    if type(value) is not dict or not all(type(k) is str for k in value):
        raise DeliveryConfigError(f"alerts.json: {name} must be an object, not {bounds.shown(value)}")
    for key in value:
        if key in _INLINE_SECRETS and known and _INLINE_SECRETS[key] in known:
            raise DeliveryConfigError(
                f"alerts.json: {name}.{key} is refused: a secret is never written in alerts.json; put it in a "
                f"private file (mode 0600) and name that file in {name}.{_INLINE_SECRETS[key]}")
        if known is not None and key not in known:
            raise DeliveryConfigError(f"alerts.json: {name}.{key} is not a known key (known: {', '.join(known)})")
    return value


def _channels(value: Any, data_dir: Path) -> dict:
    channels = {}
    for name, body in _table(value, "delivery.channels", CHANNELS).items():
        channels[name] = _email(body, data_dir) if name == EMAIL else _webhook(body, data_dir)
    return channels


def _email(value: Any, data_dir: Path) -> EmailChannel:
    where = "delivery.channels.email"
    body = _table(value, where, ("host", "port", "security", "username", "password_file", "from", "to", "timeout_s",
                                 "ca_file"))
    for required in ("host", "from", "to"):
        if required not in body:
            raise DeliveryConfigError(f"alerts.json: {where}.{required} is missing")
    username = bounds.text(body.get("username", ""), f"{where}.username", 200)
    password_file = _secret_file(body.get("password_file"), f"{where}.password_file", data_dir)
    if username and password_file is None:
        raise DeliveryConfigError(f"alerts.json: {where}.username is set but {where}.password_file is missing")
    return EmailChannel(
        host=_host(body["host"], f"{where}.host"),
        port=bounds.int64(body.get("port", 587), f"{where}.port", 1, 65535),
        security=bounds.one_of(body.get("security", "starttls"), f"{where}.security", SECURITY),
        username=username, password_file=password_file,
        sender=_address(body["from"], f"{where}.from"),
        to=tuple(_address(a, f"{where}.to[{i}]")
                 for i, a in enumerate(bounds.text_list(body["to"], f"{where}.to", MAX_RECIPIENTS, 254))) or _no_one(where),
        timeout_s=_timeout(body.get("timeout_s", 10.0), f"{where}.timeout_s"),
        ca_file=_ca_file(body.get("ca_file"), f"{where}.ca_file", data_dir))


def _webhook(value: Any, data_dir: Path) -> WebhookChannel:
    where = "delivery.channels.webhook"
    body = _table(value, where, ("url", "secret_file", "timeout_s", "ca_file"))
    if "url" not in body:
        raise DeliveryConfigError(f"alerts.json: {where}.url is missing")
    url = bounds.text(body["url"], f"{where}.url", 2000, empty=False)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeliveryConfigError(f"alerts.json: {where}.url must be an http:// or https:// URL with a host, not {bounds.shown(url)}")
    if parts.username or parts.password:
        raise DeliveryConfigError(f"alerts.json: {where}.url must not hold a user or password; use {where}.secret_file")
    return WebhookChannel(url=url, secret_file=_secret_file(body.get("secret_file"), f"{where}.secret_file", data_dir),
                          timeout_s=_timeout(body.get("timeout_s", 10.0), f"{where}.timeout_s"),
                          ca_file=_ca_file(body.get("ca_file"), f"{where}.ca_file", data_dir))


def _route(value: Any, where: str, channels: dict) -> Route:
    body = _table(value, where, ("channels", "min_severity"))
    names = bounds.text_list(body.get("channels", []), f"{where}.channels", len(CHANNELS), 20)
    for i, name in enumerate(names):
        if name not in channels:
            raise DeliveryConfigError(_unknown_channel(f"{where}.channels[{i}]", name, channels))
    return Route(channels=tuple(dict.fromkeys(names)),
                 min_severity=bounds.one_of(body.get("min_severity", "info"), f"{where}.min_severity", SEVERITIES))


def _quiet(value: Any, where: str, channels: dict) -> QuietHours:
    if where.rsplit(".", 1)[1] not in channels:
        raise DeliveryConfigError(_unknown_channel(where, where.rsplit(".", 1)[1], channels))
    body = _table(value, where, ("window", "zone"))
    window = _WINDOW.match(bounds.text(body.get("window"), f"{where}.window", 11))
    if not window:
        raise DeliveryConfigError(f"alerts.json: {where}.window must look like \"22:00-07:00\" (24-hour HH:MM-HH:MM)")
    start, end = int(window[1]) * 60 + int(window[2]), int(window[3]) * 60 + int(window[4])
    if start == end:
        raise DeliveryConfigError(f"alerts.json: {where}.window must not start and end at the same time")
    zone = bounds.text(body.get("zone", "UTC"), f"{where}.zone", 64, empty=False)
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise DeliveryConfigError(f"alerts.json: {where}.zone {bounds.shown(zone)} is not a time zone name "
                                  "(like Europe/Berlin or UTC)") from exc
    return QuietHours(start, end, zone)


def _retry(value: Any) -> Retry:
    body = _table(value, "delivery.retry", ("max_attempts", "first_delay_s", "max_delay_s"))
    first = _seconds(body.get("first_delay_s", 30.0), "delivery.retry.first_delay_s", 86400.0)
    longest = _seconds(body.get("max_delay_s", 3600.0), "delivery.retry.max_delay_s", 7 * 86400.0)
    if longest < first:
        raise DeliveryConfigError("alerts.json: delivery.retry.max_delay_s must not be less than first_delay_s")
    return Retry(bounds.int64(body.get("max_attempts", 10), "delivery.retry.max_attempts", 1, 1000), first, longest)


def _seconds(value: Any, name: str, most: float) -> float:
    seconds = bounds.finite(value, name, "a number of seconds")
    if not 0 < seconds <= most:
        raise DeliveryConfigError(f"alerts.json: {name} must be more than 0 and at most {most:g} seconds, not {bounds.shown(value)}")
    return seconds


def _timeout(value: Any, name: str) -> float:
    return _seconds(value, name, MAX_TIMEOUT_S)


def _host(value: Any, name: str) -> str:
    host = bounds.text(value, name, 253, empty=False)
    if not re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", host):
        raise DeliveryConfigError(f"alerts.json: {name} must be a host name or address, not {bounds.shown(host)}")
    return host


def _address(value: Any, name: str) -> str:
    address = bounds.text(value, name, 254, empty=False)
    if not re.fullmatch(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+", address):
        raise DeliveryConfigError(f"alerts.json: {name} must be an e-mail address (name@example.org), not {bounds.shown(address)}")
    return address


def _file(value: Any, name: str, data_dir: Path) -> Path | None:
    """An existing file named by ``value`` (relative to the data dir), or None for None."""
    if value is None:
        return None
    path = Path(bounds.text(value, name, 1000, empty=False)).expanduser()
    path = path if path.is_absolute() else data_dir / path
    if not path.is_file():
        raise DeliveryConfigError(f"alerts.json: {name} names {path}, which is not a readable file")
    return path


def _ca_file(value: Any, name: str, data_dir: Path) -> Path | None:
    path = _file(value, name, data_dir)
    if path is not None:
        try:
            ssl.create_default_context(cafile=str(path))
        except (ssl.SSLError, OSError) as exc:
            raise DeliveryConfigError(f"alerts.json: {name} names {path}, which holds no PEM certificate: {exc}") from exc
    return path


def _secret_file(value: Any, name: str, data_dir: Path) -> Path | None:
    path = _file(value, name, data_dir)
    if path is not None and path.stat().st_mode & 0o077:
        raise DeliveryConfigError(f"alerts.json: {name} names {path}, which other users may read; "
                                  f"make it private: chmod 600 {path}")
    return path


def _no_one(where: str) -> tuple:
    raise DeliveryConfigError(f"alerts.json: {where}.to must name at least one recipient")


def _unknown_channel(where: str, name: str, channels: dict) -> str:
    configured = ", ".join(channels) or "none"
    return f"alerts.json: {where} names channel {bounds.shown(name)}, which is not configured (configured: {configured})"
