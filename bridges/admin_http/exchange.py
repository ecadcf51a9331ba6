"""What an admin HTTP route takes and answers: the request, the response, the error answer, and a JSON body
checked to be an object with known keys. Shared by the route modules (:mod:`bridges.admin_http.api`,
:mod:`bridges.admin_http.ops_routes`) and the server."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from broker.core.errors import EmsError


class ApiError(EmsError):
    """An HTTP error answer: status, a message and a hint on what to do."""

    def __init__(self, status: int, error: str, hint: str = "", headers: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None):
        super().__init__(f"{status} {error}")
        self.status = status
        self.error = error
        self.hint = hint
        self.headers = headers or {}
        #: more fields for the JSON answer (e.g. a command id)
        self.extra = extra or {}

    def response(self) -> Response:
        return Response(self.status, {"error": self.error, "hint": self.hint, **self.extra}, self.headers)


@dataclass
class Response:
    status: int
    body: dict
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    """One authenticated API call. Routes add what the audit log should show to ``audit``."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes | None
    caller: str
    audit: dict[str, Any] = field(default_factory=dict)
    #: the web role X-EMS-Role claims for the caller ("" when none)
    role: str = ""


def json_object(body: bytes | None, allowed: tuple[str, ...]) -> dict:
    """The body as a JSON object with only ``allowed`` keys; ApiError 400 otherwise."""
    example = 'e.g. {"reason": "user asked for a restart"}'
    if not body:
        raise ApiError(400, "the body is empty: it must be a JSON object", example)
    try:
        value = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the body is not UTF-8: {exc}", example) from exc
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}", example) from exc
    if not isinstance(value, dict):
        raise ApiError(400, f"the body must be a JSON object, not {type(value).__name__}", example)
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)}", f"allowed: {', '.join(allowed)}")
    return value
