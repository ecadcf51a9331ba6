"""The HTTP layer of the admin listener (stdlib ``http.server``).

Each request runs on its own handler thread and passes, in order: a
loopback ``Host`` (403 otherwise: DNS-rebinding guard), the bearer token
(401), a well-formed ``X-EMS-Operator`` (400) and, for POST, a JSON body
within the size limit (411/413/415). Then :class:`~bridges.admin_http.api.AdminApi`
answers. Every request, refused or not, is logged and written to the
audit log before its answer goes out.
"""
from __future__ import annotations

import json
import logging
import socket
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bridges.admin_http import guard
from bridges.admin_http.api import AdminApi, ApiError, Request, Response
from bridges.admin_http.audit import AuditLog
from bridges.admin_http.config import (
    CLIENT_ID,
    LOG_HINT,
    OPERATOR_HEADER,
    ROLE_HEADER,
    TOKEN_ENV,
    AdminHttpConfig,
)

log = logging.getLogger(__name__)

#: longest request path written to logs
MAX_LOGGED_PATH = 300
CONTENT_LENGTH_HINT = "send the body with a Content-Length"


class AdminHttpServer(ThreadingHTTPServer):
    """A threading HTTP server bound to a loopback address, serving :class:`AdminRequestHandler`."""

    #: server_close() waits for handler threads, so none writes after the audit log is closed
    daemon_threads = False
    block_on_close = True
    #: listen() backlog: socketserver's 5 drops SYNs under a burst (a 1 s retransmit each)
    request_queue_size = 128

    def __init__(self, config: AdminHttpConfig, api: AdminApi, audit: AuditLog):
        self.address_family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        self.config = config
        self.api = api
        self.audit = audit
        super().__init__((config.host, config.port), AdminRequestHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class AdminRequestHandler(BaseHTTPRequestHandler):
    """One admin API request: guards, body, API call, audit, JSON answer."""

    server: AdminHttpServer
    server_version = "ems-admin-http"

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        self.timeout = self.server.config.socket_timeout_s  # cuts off stalled clients
        super().setup()

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _serve(self) -> None:
        started = time.monotonic()
        record: dict[str, Any] = {
            "remote": self.client_address[0],
            "method": self.command,
            "path": self.path[:MAX_LOGGED_PATH],
            "caller": None,  # only named once the token checked out
        }
        req = None
        try:
            self._check_host()
            self._check_token()
            caller = self._caller()
            record["caller"] = caller
            body = self._read_body() if self.command == "POST" else None
            url = urlsplit(self.path)
            req = Request(self.command, url.path, parse_qs(url.query, keep_blank_values=True), body, caller,
                          role=self._caller_role())
            response = self.server.api.handle(req)
        except ApiError as exc:
            response = exc.response()
        except Exception:  # a bug must not kill the listener or leak a traceback to the caller
            log.exception("%s %s failed", self.command, record["path"])
            response = Response(500, {"error": "internal error in the admin listener", "hint": LOG_HINT})
        if req is not None:
            record.update(req.audit)
        self._finish(record, response, started)

    # -- guards ------------------------------------------------------------------
    def _check_host(self) -> None:
        hosts = self.headers.get_all("Host") or []
        if len(hosts) == 1 and guard.host_allowed(hosts[0]):
            return
        problem = f"Host {hosts[0][:100]!r} is not a loopback address" if len(hosts) == 1 else "exactly one Host header is required"
        raise ApiError(403, problem, f"call the listener as http://127.0.0.1:{self.server.server_address[1]}/ "
                                     "(any other Host is refused as a DNS-rebinding guard)")

    def _check_token(self) -> None:
        values = self.headers.get_all("Authorization") or []
        if not values:
            problem = "missing Authorization header"
        elif len(values) > 1 or not guard.bearer_ok(values[0], self.server.config.token):
            problem = "wrong bearer token"
        else:
            return
        raise ApiError(401, problem, f"send Authorization: Bearer <the value of {TOKEN_ENV} on the server>",
                       headers={"WWW-Authenticate": 'Bearer realm="ems-admin"'})

    def _caller(self) -> str:
        try:
            return guard.caller_name(self.headers.get(OPERATOR_HEADER), CLIENT_ID, self.server.config.max_caller_chars)
        except ValueError as exc:
            raise ApiError(400, str(exc), f"{OPERATOR_HEADER} names the person behind the call, e.g. alice@example.org") from exc

    def _caller_role(self) -> str:
        try:
            return guard.caller_role(self.headers.get(ROLE_HEADER))
        except ValueError as exc:
            raise ApiError(400, str(exc), f"{ROLE_HEADER} is the web role of the person {OPERATOR_HEADER} names") from exc

    def _read_body(self) -> bytes:
        ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(415, f"POST bodies must be JSON, not {ctype or 'untyped'}", "send Content-Type: application/json")
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise ApiError(411, "chunked bodies are not supported", CONTENT_LENGTH_HINT)
        length_text = (self.headers.get("Content-Length") or "").strip()
        if not length_text.isdigit():
            self.close_connection = True
            raise ApiError(411, "a POST needs a Content-Length", CONTENT_LENGTH_HINT)
        length, limit = int(length_text), self.server.config.max_body_bytes
        if length > limit:
            self.close_connection = True  # the body is never read
            raise ApiError(413, f"the body is {length} bytes, more than the {limit} allowed", "send only reason, args and ttl_s")
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True
            raise ApiError(400, "timed out reading the body", "send the whole body promptly") from None
        if len(body) != length:
            self.close_connection = True
            raise ApiError(400, "the body is shorter than its Content-Length")
        return body

    # -- answer, log, audit ------------------------------------------------------------
    def _finish(self, record: dict[str, Any], response: Response, started: float) -> None:
        ms = round((time.monotonic() - started) * 1000, 1)
        outcome = "ok" if response.status < 400 else str(response.body.get("error", ""))[:300]
        record.update(status=response.status, outcome=outcome, ms=ms)
        log.info("%s %s from %s by %s -> %d %s (%.1f ms)", record["method"], record["path"], record["remote"],
                 record["caller"] or "-", response.status, outcome, ms)
        self.server.audit.write(record)  # before the answer: a caller who saw it can find it audited
        self._send(response)

    def _send(self, response: Response) -> None:
        payload = json.dumps(response.body, sort_keys=True, default=_jsonable).encode("utf-8") + b"\n"
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            for name, value in response.headers.items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except OSError as exc:
            log.info("could not answer %s %s: %s", self.command, self.path[:MAX_LOGGED_PATH], exc)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (bad request line, unknown method...) as JSON, audited too."""
        self.close_connection = True
        error = message or HTTPStatus(code).phrase
        record = {
            "remote": self.client_address[0],
            "method": getattr(self, "command", None),
            "path": (getattr(self, "path", None) or "")[:MAX_LOGGED_PATH],
            "caller": None,
        }
        self._finish(record, Response(code, {"error": error, "hint": explain or "see the API in the admin-http docs"}), time.monotonic())

    def log_request(self, code="-", size="-") -> None:
        """Requests are logged once, with their outcome, by :meth:`_finish`."""

    def log_message(self, format: str, *args) -> None:  # http.server's signature
        log.info("%s: " + format, self.client_address[0], *args)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    return str(value)
