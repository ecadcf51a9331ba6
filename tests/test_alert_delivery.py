"""Notices sent out by e-mail and webhook (broker/alerts/delivery.py and friends).

Every test talks to real servers it starts on random loopback ports
(tests/alert_servers.py: a small SMTP server and an HTTP server that checks
the HMAC signature) through a real Dispatcher with its real SQLite outbox.
Time is a ManualClock: quiet hours and retry delays move when the test says.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import stat

import pytest

from broker.alerts.delivery import OUTBOX_NAME, Dispatcher
from broker.alerts.delivery_config import DeliveryConfigError, load_delivery
from broker.alerts.delivery_outbox import GAVE_UP, HELD, SENT
from broker.alerts.notices import ALERT, APPROVAL, OPENED, RESOLVED, Notice
from broker.alerts.webhook import PAYLOAD_VERSION

from alert_servers import SmtpServer, WebhookServer, self_signed
from conftest import ManualClock, wait_for

SECRET = b"hook-secret-for-tests"
#: 23:00 UTC: inside a 22:00-07:00 UTC window
LATE_EVENING = dt.datetime(2026, 12, 5, 23, 0, tzinfo=dt.timezone.utc).timestamp()
MORNING = dt.datetime(2026, 12, 6, 7, 0, tzinfo=dt.timezone.utc).timestamp()


def notice(key="offline:laptop-7", state=OPENED, rule="offline", severity="warning", title="laptop-7 is offline",
           kind=ALERT) -> Notice:
    return Notice(kind=kind, key=key, state=state, rule=rule, severity=severity, title=title,
                  text=f"{title}: no heartbeat for 5 minutes", target="laptop-7", ts=LATE_EVENING,
                  details={"last_seen": 1234.5})


@pytest.fixture
def smtp():
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def hook():
    server = WebhookServer(SECRET).start()
    yield server
    server.stop()


@pytest.fixture
def dispatchers():
    made: list[Dispatcher] = []
    yield made
    for dispatcher in made:
        dispatcher.close()


def secret_file(path, data) -> None:
    """A secret file as the docs ask for it: mode 0600."""
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    path.chmod(0o600)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def email_channel(port: int, **extra) -> dict:
    return {"host": "127.0.0.1", "port": port, "security": "none", "from": "ems@example.org",
            "to": ["ops@example.org", "oncall@example.org"], "timeout_s": 5, **extra}


def section(tmp_path, smtp_port=None, hook_url=None, routes=None, **extra) -> dict:
    secret_file(tmp_path / "hook.key", SECRET + b"\n")
    channels = {}
    if smtp_port is not None:
        channels["email"] = email_channel(smtp_port)
    if hook_url is not None:
        channels["webhook"] = {"url": hook_url, "secret_file": "hook.key", "timeout_s": 5}
    return {"channels": channels, "routes": routes or {"*": {"channels": list(channels)}}, **extra}


def start(dispatchers, tmp_path, body, clock) -> Dispatcher:
    dispatcher = Dispatcher.from_section(body, tmp_path, clock)
    dispatchers.append(dispatcher)
    return dispatcher


def test_an_email_arrives_with_its_subject_body_and_recipients(tmp_path, smtp, dispatchers):
    clock = ManualClock()
    dispatcher = start(dispatchers, tmp_path, section(tmp_path, smtp.port), clock)
    assert dispatcher.notify(notice()) == ["email"]
    dispatcher.flush(clock())
    mail = wait_for(lambda: smtp.mails, what="the mail")[0]
    assert mail.sender == "ems@example.org"
    assert mail.recipients == ["ops@example.org", "oncall@example.org"]
    assert mail.message["Subject"] == "[EMS] opened: laptop-7 is offline"
    assert mail.message.get_content_type() == "text/plain" and not mail.message.is_multipart()
    body = mail.message.get_content()
    assert "laptop-7 is offline: no heartbeat for 5 minutes" in body and "Severity: warning" in body
    assert "Key:      offline:laptop-7" in body and "last_seen: 1234.5" in body
    wait_for(lambda: dispatcher.outbox.rows(status=SENT), what="the row marked sent")


def test_the_outbox_is_a_private_file(tmp_path, smtp, dispatchers):
    """The outbox holds what alerts say about machines: mode 0600 like every EMS database."""
    start(dispatchers, tmp_path, section(tmp_path, smtp.port), ManualClock())
    assert stat.S_IMODE((tmp_path / OUTBOX_NAME).stat().st_mode) == 0o600


def test_smtp_login_reads_the_password_from_its_file(tmp_path, smtp, dispatchers):
    secret_file(tmp_path / "smtp.password", "s3cret-from-file\n")
    body = section(tmp_path)
    body["channels"]["email"] = email_channel(smtp.port, username="ems-mailer", password_file="smtp.password")
    body["routes"] = {"*": {"channels": ["email"]}}
    clock = ManualClock()
    dispatcher = start(dispatchers, tmp_path, body, clock)
    dispatcher.notify(notice())
    wait_for(lambda: smtp.mails, what="the mail")
    assert smtp.logins == [("ems-mailer", "s3cret-from-file")]


def test_starttls_that_the_server_does_not_offer_is_a_failure_not_plain_text(tmp_path, smtp, dispatchers):
    """Tried: security starttls against a server without STARTTLS: the mail is not sent in clear;
    the row waits for a retry with an error that names STARTTLS."""
    body = section(tmp_path)
    body["channels"]["email"] = email_channel(smtp.port, security="starttls")
    body["routes"] = {"*": {"channels": ["email"]}}
    dispatcher = start(dispatchers, tmp_path, body, ManualClock())
    dispatcher.notify(notice())
    row = wait_for(lambda: [r for r in dispatcher.outbox.rows() if r.attempts], what="the failed attempt")[0]
    assert "STARTTLS" in row.last_error and smtp.mails == []


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_mail_goes_over_tls_to_a_server_whose_ca_is_configured(tmp_path, dispatchers, tls, security):
    cert, context = tls
    server = SmtpServer(tls=security, context=context).start()
    try:
        body = section(tmp_path)
        body["channels"]["email"] = email_channel(server.port, security=security, ca_file=cert)
        body["routes"] = {"*": {"channels": ["email"]}}
        dispatcher = start(dispatchers, tmp_path, body, ManualClock())
        dispatcher.notify(notice())
        assert wait_for(lambda: server.mails, what="the mail over TLS")[0].message["Subject"] == "[EMS] opened: laptop-7 is offline"
        assert server.tls_sessions == (1 if security == "starttls" else 0)
    finally:
        server.stop()


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_mail_is_not_sent_to_a_server_whose_certificate_is_not_trusted(tmp_path, dispatchers, tls, security):
    """Tried: TLS to a server with a self-signed certificate and no ca_file: the certificate check fails,
    nothing is sent, the row waits for a retry."""
    server = SmtpServer(tls=security, context=tls[1]).start()
    try:
        body = section(tmp_path)
        body["channels"]["email"] = email_channel(server.port, security=security)
        body["routes"] = {"*": {"channels": ["email"]}}
        dispatcher = start(dispatchers, tmp_path, body, ManualClock())
        dispatcher.notify(notice())
        row = wait_for(lambda: [r for r in dispatcher.outbox.rows() if r.attempts], what="the failed attempt")[0]
        assert "CERTIFICATE_VERIFY_FAILED" in row.last_error and server.mails == []
    finally:
        server.stop()


@pytest.mark.parametrize("trusted", [True, False], ids=["ca-file", "untrusted"])
def test_an_https_webhook_checks_the_certificate(tmp_path, dispatchers, tls, trusted):
    cert, context = tls
    server = WebhookServer(SECRET, context=context).start()
    try:
        body = section(tmp_path, hook_url=server.url)
        if trusted:
            body["channels"]["webhook"]["ca_file"] = cert
        dispatcher = start(dispatchers, tmp_path, body, ManualClock())
        dispatcher.notify(notice())
        if trusted:
            assert wait_for(lambda: server.hooks, what="the https webhook")[0].signed_ok
        else:
            row = wait_for(lambda: [r for r in dispatcher.outbox.rows() if r.attempts], what="the failed attempt")[0]
            assert "CERTIFICATE_VERIFY_FAILED" in row.last_error and server.hooks == []
    finally:
        server.stop()


def test_a_webhook_arrives_with_a_valid_signature(tmp_path, hook, dispatchers):
    clock = ManualClock()
    dispatcher = start(dispatchers, tmp_path, section(tmp_path, hook_url=hook.url), clock)
    sent = notice(kind=APPROVAL, key="approval:42", rule="approval", severity="info", title="Alice asks to run a script")
    assert dispatcher.notify(sent) == ["webhook"]
    got = wait_for(lambda: hook.hooks, what="the webhook")[0]
    assert got.signed_ok and got.path == "/ems"
    assert got.headers["Content-Type"] == "application/json"
    assert got.body == {"version": PAYLOAD_VERSION, "digest": False, "notices": [sent.as_dict()]}


def test_a_webhook_without_a_secret_is_not_signed(tmp_path, hook, dispatchers):
    body = section(tmp_path, hook_url=hook.url)
    del body["channels"]["webhook"]["secret_file"]
    dispatcher = start(dispatchers, tmp_path, body, ManualClock())
    dispatcher.notify(notice())
    got = wait_for(lambda: hook.hooks, what="the webhook")[0]
    assert "X-EMS-Signature" not in got.headers and "X-EMS-Timestamp" not in got.headers and not got.signed_ok


def test_quiet_hours_on_the_webhook_send_one_signed_digest(tmp_path, hook, dispatchers):
    """Quiet hours on the webhook channel: two warnings at 23:00 go as one digest POST at 07:00."""
    clock = ManualClock()
    clock.now = LATE_EVENING
    quiet = {"webhook": {"window": "22:00-07:00", "zone": "UTC"}}
    dispatcher = start(dispatchers, tmp_path, section(tmp_path, hook_url=hook.url, quiet_hours=quiet), clock)
    first, second = notice(), notice(key="disk:laptop-7", rule="disk", title="disk 95 % full")
    assert dispatcher.notify(first) == dispatcher.notify(second) == ["webhook"]
    clock.now = MORNING
    dispatcher.flush(clock())
    got = wait_for(lambda: hook.hooks, what="the digest")[0]
    assert got.signed_ok and got.body == {"version": PAYLOAD_VERSION, "digest": True, "why": "held during quiet hours",
                                          "notices": [first.as_dict(), second.as_dict()]}


def test_sent_rows_are_forgotten_after_a_week(tmp_path, hook, dispatchers):
    clock = ManualClock()
    dispatcher = start(dispatchers, tmp_path, section(tmp_path, hook_url=hook.url), clock)
    dispatcher.notify(notice())
    wait_for(lambda: dispatcher.outbox.rows(status=SENT), what="the row marked sent")
    clock.now += 6 * 86400
    dispatcher.flush(clock())
    assert len(dispatcher.outbox.rows()) == 1
    clock.now += 2 * 86400
    dispatcher.flush(clock())
    assert dispatcher.outbox.rows() == []


def test_a_webhook_signed_with_another_secret_does_not_check_out(tmp_path, dispatchers):
    """Tried: the receiver knows a different secret: the signature it computes differs (the check can fail)."""
    other = WebhookServer(b"not-the-secret").start()
    try:
        dispatcher = start(dispatchers, tmp_path, section(tmp_path, hook_url=other.url), ManualClock())
        dispatcher.notify(notice())
        assert wait_for(lambda: other.hooks, what="the webhook")[0].signed_ok is False
    finally:
        other.stop()


def test_a_redirect_is_not_followed_to_another_host(tmp_path, dispatchers):
    """Tried: the webhook answers 302 to another server: that server receives nothing; the row waits
    for a retry with an error that says redirects are not followed."""
    elsewhere = WebhookServer(SECRET).start()
    redirecting = WebhookServer(SECRET, answer=(302, elsewhere.url)).start()
    try:
        dispatcher = start(dispatchers, tmp_path, section(tmp_path, hook_url=redirecting.url), ManualClock())
        dispatcher.notify(notice())
        row = wait_for(lambda: [r for r in dispatcher.outbox.rows() if r.attempts], what="the failed attempt")[0]
        assert "redirects are not followed" in row.last_error and row.status != SENT
        assert len(redirecting.hooks) == 1 and elsewhere.hooks == []
    finally:
        redirecting.stop()
        elsewhere.stop()


def test_a_webhook_that_answers_500_is_retried(tmp_path, dispatchers):
    failing = WebhookServer(SECRET, answer=(500, "")).start()
    try:
        clock = ManualClock()
        dispatcher = start(dispatchers, tmp_path, section(tmp_path, hook_url=failing.url,
                                                          retry={"first_delay_s": 10}), clock)
        dispatcher.notify(notice())
        wait_for(lambda: [r for r in dispatcher.outbox.rows() if r.attempts == 1], what="the first attempt")
        clock.now += 10
        dispatcher.flush(clock())
        row = wait_for(lambda: [r for r in dispatcher.outbox.rows() if r.attempts == 2], what="the retry")[0]
        assert "500" in row.last_error and len(failing.hooks) == 2
    finally:
        failing.stop()


def test_each_rule_goes_where_its_route_says(tmp_path, smtp, hook, dispatchers):
    """``offline`` is routed to the webhook only: it never becomes a mail. ``disk`` has no route of its
    own and takes ``*`` (e-mail, warning and up): its info notice goes nowhere, its warning is mailed."""
    routes = {"offline": {"channels": ["webhook"]}, "*": {"channels": ["email"], "min_severity": "warning"}}
    clock = ManualClock()
    dispatcher = start(dispatchers, tmp_path, section(tmp_path, smtp.port, hook.url, routes), clock)
    assert dispatcher.notify(notice(severity="critical")) == ["webhook"]
    assert dispatcher.notify(notice(key="disk:laptop-7", rule="disk", severity="info", title="disk 80 % full")) == []
    assert dispatcher.notify(notice(key="disk:laptop-7", rule="disk", title="disk 95 % full")) == ["email"]
    mails = wait_for(lambda: smtp.mails, what="the disk mail")
    hooks = wait_for(lambda: hook.hooks, what="the offline webhook")
    wait_for(lambda: len(dispatcher.outbox.rows(status=SENT)) == 2, what="both rows sent")
    assert [m.message["Subject"] for m in mails] == ["[EMS] opened: disk 95 % full"]
    assert [h.body["notices"][0]["key"] for h in hooks] == ["offline:laptop-7"]
    assert [r.notices[0]["rule"] for r in dispatcher.outbox.rows("email")] == ["disk"]


def test_quiet_hours_hold_warnings_for_one_digest_while_a_critical_goes_at_once(tmp_path, smtp, dispatchers):
    """22:00-07:00 UTC on the e-mail channel, clock at 23:00: two warnings are held, a critical is
    mailed at once; at 06:59 they are still held; at 07:00 ONE digest with both arrives."""
    quiet = {"email": {"window": "22:00-07:00", "zone": "UTC"}}
    clock = ManualClock()
    clock.now = LATE_EVENING
    dispatcher = start(dispatchers, tmp_path, section(tmp_path, smtp.port, quiet_hours=quiet), clock)
    dispatcher.notify(notice())
    dispatcher.notify(notice(key="disk:laptop-7", rule="disk", title="disk 95 % full"))
    dispatcher.notify(notice(key="tamper:laptop-9", rule="tamper", severity="critical", title="agent stopped on laptop-9"))
    dispatcher.flush(clock())
    first = wait_for(lambda: smtp.mails, what="the critical mail")
    assert [m.message["Subject"] for m in first] == ["[EMS] opened: agent stopped on laptop-9"]
    clock.now = MORNING - 60
    dispatcher.flush(clock())
    assert len(dispatcher.outbox.rows(status=HELD)) == 2
    clock.now = MORNING
    dispatcher.flush(clock())
    mails = wait_for(lambda: len(smtp.mails) == 2 and smtp.mails, what="the digest")
    digest = mails[1].message
    assert digest["Subject"] == "[EMS] digest: 2 notices held during quiet hours"
    assert "laptop-7 is offline" in digest.get_content() and "disk 95 % full" in digest.get_content()
    wait_for(lambda: len(dispatcher.outbox.rows(status=SENT)) == 2, what="digest marked sent")
    assert dispatcher.outbox.rows(status=HELD) == []


def test_quiet_hours_in_a_named_zone(tmp_path):
    """22:00-07:00 Europe/Berlin (UTC+1 in December): 23:00 UTC is inside and ends at 06:00 UTC; 21:30 UTC
    (22:30 in Berlin) is inside; 20:30 UTC (21:30 in Berlin) is outside."""
    config = load_delivery(section(tmp_path, 25, quiet_hours={"email": {"window": "22:00-07:00", "zone": "Europe/Berlin"}}),
                           tmp_path)
    quiet = config.quiet_hours["email"]
    assert quiet.ends_at(LATE_EVENING) == MORNING - 3600
    assert quiet.ends_at(LATE_EVENING - 1800 - 3600) == MORNING - 3600
    assert quiet.ends_at(LATE_EVENING - 2.5 * 3600) is None


def test_the_same_notice_is_sent_once(tmp_path, hook, dispatchers):
    """Tried: the same opened notice three times, then resolved, then opened again: three webhooks
    (a key that resolves and opens again is news; the same state told again is not)."""
    dispatcher = start(dispatchers, tmp_path, section(tmp_path, hook_url=hook.url), ManualClock())
    results = [dispatcher.notify(notice()) for _ in range(3)]
    results += [dispatcher.notify(notice(state=RESOLVED)), dispatcher.notify(notice())]
    assert results == [["webhook"], [], [], ["webhook"], ["webhook"]]
    wait_for(lambda: len(hook.hooks) == 3, what="three webhooks")
    assert [h.body["notices"][0]["state"] for h in hook.hooks] == ["opened", "resolved", "opened"]


def test_smtp_down_is_retried_and_delivered_after_a_restart(tmp_path, dispatchers):
    """The SMTP server is down: the send fails and waits (10 s, injected clock). The Dispatcher is
    closed and a new one opened over the same outbox; the server comes up; at the retry time the
    mail arrives (second attempt), nothing lost."""
    port, clock = free_port(), ManualClock()
    body = section(tmp_path, port, retry={"first_delay_s": 10, "max_attempts": 5})
    first = start(dispatchers, tmp_path, body, clock)
    first.notify(notice())
    first.flush(clock())
    row = wait_for(lambda: [r for r in first.outbox.rows() if r.attempts == 1], what="the failed attempt")[0]
    assert f"127.0.0.1:{port}" in row.last_error and row.next_try == clock() + 10
    first.close()
    dispatchers.remove(first)
    server = SmtpServer(port).start()
    try:
        second = start(dispatchers, tmp_path, body, clock)
        clock.now += 10
        second.flush(clock())
        mail = wait_for(lambda: server.mails, what="the mail after the restart")[0]
        assert mail.message["Subject"] == "[EMS] opened: laptop-7 is offline"
        sent = wait_for(lambda: second.outbox.rows(status=SENT), what="the row marked sent")[0]
        assert (sent.id, sent.attempts) == (row.id, 2)
    finally:
        server.stop()


def test_notices_left_for_a_channel_no_longer_configured_are_kept_and_named(tmp_path, hook, dispatchers, caplog):
    """Tried: a notice waits for an unreachable e-mail server; alerts.json then drops the e-mail channel:
    the new Dispatcher keeps the row (not deleted) and says in the log what waits for which channel."""
    first = start(dispatchers, tmp_path, section(tmp_path, free_port()), ManualClock())
    first.notify(notice())
    wait_for(lambda: [r for r in first.outbox.rows() if r.attempts], what="the failed attempt")
    first.close()
    dispatchers.remove(first)
    second = start(dispatchers, tmp_path, section(tmp_path, hook_url=hook.url), ManualClock())
    assert [r.channel for r in second.outbox.rows()] == ["email"]
    assert any("1 notices wait in" in r.getMessage() and "for channel email" in r.getMessage() for r in caplog.records)


def test_it_gives_up_after_the_last_attempt_and_says_so(tmp_path, dispatchers, caplog):
    port, clock = free_port(), ManualClock()
    body = section(tmp_path, port, retry={"first_delay_s": 5, "max_attempts": 2})
    dispatcher = start(dispatchers, tmp_path, body, clock)
    dispatcher.notify(notice())
    wait_for(lambda: [r for r in dispatcher.outbox.rows() if r.attempts == 1], what="the first attempt")
    clock.now += 5
    dispatcher.flush(clock())
    row = wait_for(lambda: dispatcher.outbox.rows(status=GAVE_UP), what="giving up")[0]
    assert row.attempts == 2 and f"127.0.0.1:{port}" in row.last_error
    assert any("gave up sending notice offline:laptop-7" in r.getMessage() and r.levelno == logging.ERROR
               for r in caplog.records)


def test_a_storm_while_the_server_is_down_arrives_as_one_digest(tmp_path, dispatchers):
    """Six notices queue up while SMTP is down (storm_digest_over 3): when it is back they arrive as one
    digest, not six mails, and none is lost."""
    port, clock = free_port(), ManualClock()
    body = section(tmp_path, port, retry={"first_delay_s": 10}, storm_digest_over=3)
    dispatcher = start(dispatchers, tmp_path, body, clock)
    for n in range(6):
        dispatcher.notify(notice(key=f"offline:pc-{n}", title=f"pc-{n} is offline"))
    wait_for(lambda: all(r.attempts for r in dispatcher.outbox.rows()), what="every send to fail once")
    server = SmtpServer(port).start()
    try:
        clock.now += 10
        dispatcher.flush(clock())
        mail = wait_for(lambda: server.mails, what="the digest")[0]
        assert mail.message["Subject"] == "[EMS] digest: 6 notices waiting at once"
        assert all(f"pc-{n} is offline" in mail.message.get_content() for n in range(6))
        wait_for(lambda: dispatcher.outbox.rows(status=SENT), what="the digest marked sent")
        assert len(server.mails) == 1 and len(dispatcher.outbox.rows()) == 1
    finally:
        server.stop()


# -- bad configuration -----------------------------------------------------------------------------
def _good(tmp_path) -> dict:
    secret_file(tmp_path / "smtp.password", "pw")
    secret_file(tmp_path / "hook.key", "k")
    return {
        "channels": {"email": email_channel(587, username="u", password_file="smtp.password", security="starttls"),
                     "webhook": {"url": "https://hooks.example.org/ems", "secret_file": "hook.key", "timeout_s": 5}},
        "routes": {"offline": {"channels": ["webhook"], "min_severity": "warning"}, "*": {"channels": ["email"]}},
        "quiet_hours": {"email": {"window": "22:00-07:00", "zone": "Europe/Berlin"}},
        "dedupe": True, "retry": {"max_attempts": 5, "first_delay_s": 30, "max_delay_s": 600}, "storm_digest_over": 20,
    }


def _set(body: dict, path: str, value) -> dict:
    *parents, last = path.split(".")
    node = body
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return body


_DELETE = object()
EMAIL_AT = "channels.email"
BAD = [
    # (key path, bad value, words the error must hold)
    ("channels", [], "delivery.channels must be an object"),
    ("channels.sms", {"to": "x"}, "delivery.channels.sms is not a known key"),
    (f"{EMAIL_AT}.port", -1, "delivery.channels.email.port must be an integer from 1 to 65535"),
    (f"{EMAIL_AT}.port", 0, "delivery.channels.email.port must be an integer from 1 to 65535"),
    (f"{EMAIL_AT}.port", 2**63, "delivery.channels.email.port must be an integer from 1 to 65535"),
    (f"{EMAIL_AT}.port", 65536, "delivery.channels.email.port"),
    (f"{EMAIL_AT}.port", "25", "delivery.channels.email.port"),
    (f"{EMAIL_AT}.port", True, "delivery.channels.email.port"),
    (f"{EMAIL_AT}.timeout_s", -1, "delivery.channels.email.timeout_s must be more than 0"),
    (f"{EMAIL_AT}.timeout_s", 0, "delivery.channels.email.timeout_s must be more than 0"),
    (f"{EMAIL_AT}.timeout_s", 2**63, "delivery.channels.email.timeout_s"),
    (f"{EMAIL_AT}.timeout_s", float("nan"), "delivery.channels.email.timeout_s must be a number of seconds"),
    (f"{EMAIL_AT}.timeout_s", "5", "delivery.channels.email.timeout_s must be a number of seconds"),
    (f"{EMAIL_AT}.host", 5, "delivery.channels.email.host must be a string"),
    (f"{EMAIL_AT}.host", "", "delivery.channels.email.host"),
    (f"{EMAIL_AT}.host", "smtp.example.org\r\nRCPT", "delivery.channels.email.host must be a host name"),
    (f"{EMAIL_AT}.host", _DELETE, "delivery.channels.email.host is missing"),
    (f"{EMAIL_AT}.security", "tls", "delivery.channels.email.security must be one of starttls, ssl, none"),
    (f"{EMAIL_AT}.from", "not-an-address", "delivery.channels.email.from must be an e-mail address"),
    (f"{EMAIL_AT}.to", "ops@example.org", "delivery.channels.email.to must be a list"),
    (f"{EMAIL_AT}.to", [], "delivery.channels.email.to must name at least one recipient"),
    (f"{EMAIL_AT}.to", ["ops@example.org", 7], "delivery.channels.email.to[1] must be a string"),
    (f"{EMAIL_AT}.to", ["a@b.org, evil@x.org"], "delivery.channels.email.to[0] must be an e-mail address"),
    (f"{EMAIL_AT}.password", "hunter2", "delivery.channels.email.password is refused"),
    (f"{EMAIL_AT}.password_file", "no-such-file", "is not a readable file"),
    (f"{EMAIL_AT}.password_file", _DELETE, "username is set but delivery.channels.email.password_file is missing"),
    (f"{EMAIL_AT}.passwort_file", "x", "delivery.channels.email.passwort_file is not a known key"),
    ("channels.webhook.url", "ftp://hooks.example.org/", "delivery.channels.webhook.url must be an http:// or https://"),
    ("channels.webhook.url", "file:///etc/passwd", "delivery.channels.webhook.url must be an http:// or https://"),
    ("channels.webhook.url", "https://user:pw@hooks.example.org/", "must not hold a user or password"),
    ("channels.webhook.url", 8080, "delivery.channels.webhook.url must be a string"),
    ("channels.webhook.secret", "inline", "delivery.channels.webhook.secret is refused"),
    ("channels.webhook.ca_file", "missing.pem", "delivery.channels.webhook.ca_file names"),
    ("channels.webhook.ca_file", "hook.key", "delivery.channels.webhook.ca_file names"),
    (f"{EMAIL_AT}.ca_file", 3, "delivery.channels.email.ca_file must be a string"),
    ("channels.webhook.timeout_s", -1, "delivery.channels.webhook.timeout_s must be more than 0"),
    ("channels.webhook.timeout_s", 0, "delivery.channels.webhook.timeout_s must be more than 0"),
    ("channels.webhook.timeout_s", 2**63, "delivery.channels.webhook.timeout_s"),
    ("routes", ["email"], "delivery.routes must be an object"),
    ("routes.offline.channels", ["sms"], "delivery.routes.offline.channels[0] names channel 'sms', which is not configured"),
    ("routes.offline.channels", "webhook", "delivery.routes.offline.channels must be a list"),
    ("routes.offline.min_severity", "loud", "delivery.routes.offline.min_severity must be one of info, warning, critical"),
    ("routes.offline.severity", "info", "delivery.routes.offline.severity is not a known key"),
    ("quiet_hours.sms", {"window": "22:00-07:00"}, "delivery.quiet_hours.sms names channel 'sms'"),
    ("quiet_hours.email.window", "25:00-07:00", "delivery.quiet_hours.email.window must look like"),
    ("quiet_hours.email.window", "22:00-22:00", "must not start and end at the same time"),
    ("quiet_hours.email.window", 2200, "delivery.quiet_hours.email.window must be a string"),
    ("quiet_hours.email.zone", "Mars/Olympus", "delivery.quiet_hours.email.zone 'Mars/Olympus' is not a time zone"),
    ("quiet_hours.email.zone", "../../etc/passwd", "is not a time zone"),
    ("dedupe", "yes", "delivery.dedupe must be true or false"),
    ("retry.max_attempts", 0, "delivery.retry.max_attempts must be an integer from 1 to 1000"),
    ("retry.max_attempts", 2**63, "delivery.retry.max_attempts"),
    ("retry.first_delay_s", -1, "delivery.retry.first_delay_s must be more than 0"),
    ("retry.max_delay_s", 10, "delivery.retry.max_delay_s must not be less than first_delay_s"),
    ("storm_digest_over", 0, "delivery.storm_digest_over must be an integer from 1"),
    ("extra", 1, "delivery.extra is not a known key"),
]


def test_the_good_configuration_loads(tmp_path):
    config = load_delivery(_good(tmp_path), tmp_path)
    assert config.channels["email"].password() == "pw" and config.channels["webhook"].secret() == b"k"
    assert config.route_for("offline").channels == ("webhook",) and config.route_for("disk").channels == ("email",)


@pytest.mark.parametrize("path, value, words", BAD, ids=[f"{p}={'(deleted)' if v is _DELETE else repr(v)}"[:60] for p, v, _ in BAD])
def test_a_bad_configuration_is_refused_naming_the_key(tmp_path, path, value, words):
    """Tried: each key of a good delivery section set to a wrong type, an out-of-range number (-1, 0,
    2**63), an unknown channel or key, an inline secret: a DeliveryConfigError names the key."""
    body = _set(_good(tmp_path), path, value)
    with pytest.raises(DeliveryConfigError) as caught:
        load_delivery(body, tmp_path)
    assert words in str(caught.value) and str(caught.value).startswith("alerts.json: ")


@pytest.mark.parametrize("channel, key, name", [("email", "password_file", "smtp.password"),
                                                ("webhook", "secret_file", "hook.key")])
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o666])
def test_a_secret_file_others_may_read_is_refused(tmp_path, channel, key, name, mode):
    """Tried: the password and the webhook secret in files of mode 0640, 0604, 0666: refused, saying chmod 600."""
    body = _good(tmp_path)
    (tmp_path / name).chmod(mode)
    with pytest.raises(DeliveryConfigError, match=f"delivery[.]channels[.]{channel}[.]{key} names .* other users may read.*chmod 600"):
        load_delivery(body, tmp_path)


@pytest.mark.parametrize("section_value", [None, [], "delivery", 3])
def test_a_delivery_section_that_is_not_an_object_is_refused(tmp_path, section_value):
    with pytest.raises(DeliveryConfigError, match="delivery must be an object"):
        load_delivery(section_value, tmp_path)


def test_an_empty_section_delivers_nothing(tmp_path, dispatchers):
    """No channels, no routes: every notice goes nowhere (and nothing is written)."""
    dispatcher = start(dispatchers, tmp_path, {}, ManualClock())
    assert dispatcher.notify(notice(severity="critical")) == [] and dispatcher.outbox.rows() == []


def test_the_example_in_the_docs_loads(tmp_path):
    """docs/alerts.md's example delivery section is valid (with its secret files present)."""
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "docs" / "alerts.md").read_text()
    example = json.loads(text.split("```json", 1)[1].split("```", 1)[0])["delivery"]
    (tmp_path / "secrets").mkdir()
    secret_file(tmp_path / "secrets" / "smtp.password", "pw")
    secret_file(tmp_path / "secrets" / "webhook.key", "k")
    config = load_delivery(example, tmp_path)
    assert set(config.channels) == {"email", "webhook"}
