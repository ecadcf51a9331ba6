"""Notices as plain-text e-mail, sent with smtplib.

:func:`notice_mail` words one notice (subject ``[EMS] opened: <title>``),
:func:`digest_mail` several held ones in one message; :func:`send_mail`
hands a message to the channel's SMTP server with its timeout, over
implicit TLS (``ssl``), STARTTLS (``starttls``: refused if the server does
not offer it, never silently in clear) or plain (``none``, for a relay on
the same host). Any failure is a :class:`DeliveryFailed` naming the server.
"""
from __future__ import annotations

import datetime as dt
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from broker.alerts.delivery_config import DeliveryFailed, EmailChannel

SUBJECT_PREFIX = "[EMS]"
MAX_SUBJECT_CHARS = 200


def notice_mail(notice: dict, channel: EmailChannel) -> EmailMessage:
    """One notice (a :meth:`Notice.as_dict`) as a message from and to the channel's addresses."""
    subject = f"{SUBJECT_PREFIX} {notice['state']}: {_one_line(notice['title'])}"
    return _message(subject, _notice_text(notice), channel)


def digest_mail(notices: list[dict], channel: EmailChannel, why: str) -> EmailMessage:
    """Several notices in one message; ``why`` says why they were held (quiet hours, a storm)."""
    counts = f"{len(notices)} notice{'s' if len(notices) != 1 else ''}"
    parts = [f"{counts} {why}.", ""]
    for index, notice in enumerate(notices, 1):
        parts += [f"--- {index} of {len(notices)} ---", _notice_text(notice), ""]
    return _message(f"{SUBJECT_PREFIX} digest: {counts} {why}", "\n".join(parts), channel)


def send_mail(message: EmailMessage, channel: EmailChannel) -> None:
    """Deliver ``message`` to the channel's server; :class:`DeliveryFailed` if it is not accepted."""
    server = f"{channel.host}:{channel.port}"
    try:
        if channel.security == "ssl":
            smtp = smtplib.SMTP_SSL(channel.host, channel.port, timeout=channel.timeout_s, context=_tls(channel))
        else:
            smtp = smtplib.SMTP(channel.host, channel.port, timeout=channel.timeout_s)
        with smtp:
            if channel.security == "starttls":
                smtp.starttls(context=_tls(channel))
            if channel.username:
                smtp.login(channel.username, channel.password())
            refused = smtp.send_message(message)
    except (smtplib.SMTPException, OSError, ValueError) as exc:
        raise DeliveryFailed(f"SMTP server {server} did not take the mail: {exc}") from exc
    if refused:
        raise DeliveryFailed(f"SMTP server {server} refused recipients: {', '.join(sorted(refused))}")


def _tls(channel: EmailChannel) -> ssl.SSLContext:
    """Certificates checked against the system's CAs, or the channel's own CA file."""
    return ssl.create_default_context(cafile=str(channel.ca_file) if channel.ca_file else None)


def _message(subject: str, body: str, channel: EmailChannel) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject[:MAX_SUBJECT_CHARS]
    message["From"] = channel.sender
    message["To"] = ", ".join(channel.to)
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=channel.sender.rsplit("@", 1)[1])
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body)
    return message


def _notice_text(notice: dict) -> str:
    when = dt.datetime.fromtimestamp(notice.get("ts") or 0, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        f"{notice['title']}",
        "",
        f"{notice['text']}",
        "",
        f"State:    {notice['state']}",
        f"Severity: {notice['severity']}",
        f"Rule:     {notice['rule']}",
        f"Key:      {notice['key']}",
        f"Client:   {notice.get('target') or '-'}",
        f"Time:     {when}",
    ]
    lines += [f"{key}: {value}" for key, value in sorted((notice.get("details") or {}).items(), key=lambda kv: str(kv[0]))]
    return "\n".join(lines)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
