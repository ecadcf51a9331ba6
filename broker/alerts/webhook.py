"""Notices as a JSON POST to a webhook, signed with HMAC-SHA256 when a secret is set.

The body is ``{"version": 1, "digest": false, "notices": [<Notice.as_dict()>]}``
(a digest carries several notices and ``"digest": true`` with ``"why"``).
With a secret, two headers let the receiver check it came from EMS and is
fresh: ``X-EMS-Timestamp`` (epoch seconds) and ``X-EMS-Signature:
sha256=<hex>``, the HMAC-SHA256 with the secret of ``<timestamp>.<body>``
(see :func:`signature`). Redirects are never followed (a 3xx answer is a
failure that names where it pointed: configure the final URL), so a notice
cannot be carried to another host; any answer but 2xx, a timeout or a
refused connection is a :class:`DeliveryFailed`.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import time
import urllib.error
import urllib.request

from broker.alerts.delivery_config import DeliveryFailed, WebhookChannel

PAYLOAD_VERSION = 1
SIGNATURE_HEADER = "X-EMS-Signature"
TIMESTAMP_HEADER = "X-EMS-Timestamp"


def payload(notices: list[dict], why: str = "") -> bytes:
    """The JSON body: one notice, or a digest of several when ``why`` says why they were held."""
    body = {"version": PAYLOAD_VERSION, "digest": bool(why), "notices": notices}
    if why:
        body["why"] = why
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of ``<timestamp>.<body>`` with ``secret``."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise DeliveryFailed(f"webhook {req.full_url} answered {code} redirecting to {newurl}; "
                             "redirects are not followed: configure the final URL")


def _opener(channel: WebhookChannel) -> urllib.request.OpenerDirector:
    """No redirects; https certificates checked against the system's CAs or the channel's CA file."""
    context = ssl.create_default_context(cafile=str(channel.ca_file) if channel.ca_file else None)
    return urllib.request.build_opener(_NoRedirects, urllib.request.HTTPSHandler(context=context))


def post(channel: WebhookChannel, body: bytes) -> int:
    """POST ``body`` to the channel's URL; the HTTP status, or :class:`DeliveryFailed`."""
    request = urllib.request.Request(channel.url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "EMS-alerts/1"})
    secret = channel.secret()
    if secret:
        stamp = str(int(time.time()))  # wall-clock: the receiver compares it with its own
        request.add_header(TIMESTAMP_HEADER, stamp)
        request.add_header(SIGNATURE_HEADER, signature(secret, stamp, body))
    try:
        with _opener(channel).open(request, timeout=channel.timeout_s) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        raise DeliveryFailed(f"webhook {channel.url} answered {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DeliveryFailed(f"webhook {channel.url} could not be reached: {exc}") from exc
