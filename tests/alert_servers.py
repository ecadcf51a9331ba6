"""Real servers for the delivery tests, on random loopback ports: a small SMTP
server (EHLO/HELO, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT: what smtplib sends)
and an HTTP server that takes webhook POSTs and checks their HMAC signature.
Each runs in its own thread; ``stop()`` closes it (and frees its port)."""
from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
import http.server
import json
import socketserver
import ssl
import subprocess
import threading
from dataclasses import dataclass


def self_signed(directory) -> tuple[str, ssl.SSLContext]:
    """A certificate for 127.0.0.1 made with openssl: (its PEM path, for a client's CA file; a server context)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return str(cert), context


@dataclass
class Mail:
    """One message the SMTP server accepted."""

    sender: str
    recipients: list[str]
    message: email.message.EmailMessage


class _SmtpHandler(socketserver.StreamRequestHandler):
    def setup(self) -> None:
        if self.server.tls == "ssl":
            self.request = self.server.context.wrap_socket(self.request, server_side=True)
        super().setup()

    def start_tls(self) -> None:
        self.request = self.server.context.wrap_socket(self.request, server_side=True)
        self.rfile = self.request.makefile("rb")
        self.wfile = self.request.makefile("wb", buffering=0)

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self.reply("220 localhost test SMTP ready")
        sender, recipients = "", []
        while True:
            line = self.rfile.readline()
            if not line:
                return
            verb, _, arg = line.decode().strip().partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                self.reply("250-localhost")
                if self.server.tls == "starttls" and not hasattr(self.request, "cipher"):
                    self.reply("250-STARTTLS")
                self.reply("250 AUTH PLAIN")
            elif verb == "STARTTLS" and self.server.tls == "starttls":
                self.reply("220 go ahead")
                self.start_tls()
                self.server.tls_sessions += 1
            elif verb == "HELO":
                self.reply("250 localhost")
            elif verb == "AUTH":
                _, user, password = base64.b64decode(arg.split()[1]).decode().split("\0")
                self.server.logins.append((user, password))
                self.reply("235 authenticated")
            elif verb == "MAIL":
                sender, recipients = arg.split(":", 1)[1].strip().strip("<>").split(">")[0], []
                self.reply("250 OK")
            elif verb == "RCPT":
                recipients.append(arg.split(":", 1)[1].strip().strip("<>").split(">")[0])
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                self.server.accept(Mail(sender, recipients, self._read_data()))
                self.reply("250 queued")
            elif verb in ("RSET", "NOOP"):
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")

    def _read_data(self) -> email.message.EmailMessage:
        lines = []
        while True:
            line = self.rfile.readline()
            if line in (b".\r\n", b".\n", b""):
                break
            lines.append(line[1:] if line.startswith(b"..") else line)
        return email.message_from_bytes(b"".join(lines), policy=email.policy.default)


class SmtpServer(socketserver.ThreadingTCPServer):
    """``SmtpServer(port=0).start()``; ``mails`` is what arrived, in order. With a server ``context``,
    ``tls="starttls"`` offers STARTTLS and ``tls="ssl"`` speaks TLS from the first byte."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int = 0, tls: str | None = None, context: ssl.SSLContext | None = None):
        super().__init__(("127.0.0.1", port), _SmtpHandler)
        self.port = self.server_address[1]
        self.tls, self.context, self.tls_sessions = tls, context, 0
        self.mails: list[Mail] = []
        self.logins: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def handle_error(self, request, client_address) -> None:
        pass  # a client that refused our certificate: the test looks at what arrived, not at tracebacks

    def accept(self, mail: Mail) -> None:
        with self._lock:
            self.mails.append(mail)

    def start(self) -> "SmtpServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)


@dataclass
class Hook:
    """One POST the webhook server took: headers, parsed JSON, whether the signature checked out."""

    path: str
    headers: dict
    body: dict
    signed_ok: bool


class _HookHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        server: WebhookServer = self.server
        stamp = self.headers.get("X-EMS-Timestamp", "")
        expected = "sha256=" + hmac.new(server.secret, stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        signed_ok = hmac.compare_digest(expected, self.headers.get("X-EMS-Signature", ""))
        server.hooks.append(Hook(self.path, dict(self.headers), json.loads(raw), signed_ok))
        status, location = server.answer
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


class WebhookServer(http.server.ThreadingHTTPServer):
    """Takes POSTs, checks ``X-EMS-Signature`` against ``secret``, answers ``answer`` (status, Location)."""

    daemon_threads = True

    def __init__(self, secret: bytes = b"", answer: tuple[int, str] = (204, ""), context: ssl.SSLContext | None = None):
        super().__init__(("127.0.0.1", 0), _HookHandler)
        self.port = self.server_address[1]
        self.scheme = "https" if context else "http"
        if context:
            self.socket = context.wrap_socket(self.socket, server_side=True)
        self.secret = secret
        self.answer = answer
        self.hooks: list[Hook] = []
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/ems"

    def start(self) -> "WebhookServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)
