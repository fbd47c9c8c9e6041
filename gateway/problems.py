"""RFC 9457 problem details: the stable error codes, their HTTP statuses, and the exception handlers.

Every error leaves the gateway as ``application/problem+json`` with ``{type, title, status, detail, code,
request_id}``; nothing else (no stack trace, no driver message) ever reaches a client.
"""

from __future__ import annotations

import logging
import uuid
from http import HTTPStatus
from typing import Any

import msgspec
import psycopg
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from psycopg_pool import PoolTimeout

from shared.errors import DomainError

log = logging.getLogger("totem.gateway")

STATUS_BY_CODE: dict[str, int] = {
    "VALIDATION_FAILED": 400,
    "IDEMPOTENCY_KEY_MISSING": 400,
    "IDEMPOTENCY_KEY_INVALID": 400,
    "WEBHOOK_SIGNATURE_INVALID": 400,
    "WEBHOOK_PAYLOAD_INVALID": 400,
    "UNAUTHORIZED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "IDEMPOTENCY_KEY_IN_FLIGHT": 409,
    "BOOKING_SLOT_TAKEN": 409,
    "BOOKING_INVALID_TRANSITION": 409,
    "PROVIDER_SLUG_TAKEN": 409,
    "IDEMPOTENCY_KEY_REUSED": 422,
    "BOOKING_OUTSIDE_AVAILABILITY": 422,
    "RATE_LIMITED": 429,
    "INTERNAL_ERROR": 500,
    "SERVICE_UNAVAILABLE": 503,
}

PROBLEM_MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    """Raise anywhere in the gateway to answer with a problem document."""

    def __init__(self, code: str, detail: str, *, errors: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    @property
    def status(self) -> int:
        return STATUS_BY_CODE[self.code]


class ProblemDocument(msgspec.Struct, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str
    errors: list[dict[str, str]] | None = None


def problem_responses(*codes: str) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problems a route can answer, grouped by HTTP status."""
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(STATUS_BY_CODE[code], []).append(code)
    return {status: ResponseSpec(data_container=ProblemDocument, media_type=PROBLEM_MEDIA_TYPE,
                                 generate_examples=False, description="Problem: " + ", ".join(names))
            for status, names in by_status.items()}


def request_id_of(request: Request[Any, Any, Any]) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def problem_response(request: Request[Any, Any, Any], problem: Problem) -> Response[bytes]:
    headers = dict(problem.headers)
    request_id = request_id_of(request)
    if not request_id:  # unrouted paths (404/405) never pass through the route middleware
        request_id = uuid.uuid4().hex
        headers["x-request-id"] = request_id
    doc = ProblemDocument(
        type=f"https://totem.dev/problems/{problem.code.lower().replace('_', '-')}",
        title=HTTPStatus(problem.status).phrase,
        status=problem.status,
        detail=problem.detail,
        code=problem.code,
        request_id=request_id,
        errors=problem.errors,
    )
    return Response(
        content=msgspec.json.encode(doc), status_code=problem.status, media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def handle_problem(request: Request[Any, Any, Any], exc: Problem) -> Response[bytes]:
    return problem_response(request, exc)


def handle_domain_error(request: Request[Any, Any, Any], exc: DomainError) -> Response[bytes]:
    return problem_response(request, Problem(exc.code, exc.detail))


def handle_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    errors = [
        {key: str(value) for key, value in item.items()} for item in (exc.extra or []) if isinstance(item, dict)
    ]
    detail = "; ".join(_describe(e) for e in errors) or str(exc.detail)
    return problem_response(request, Problem("VALIDATION_FAILED", detail, errors=errors or None))


def _describe(error: dict[str, str]) -> str:
    message, key = error.get("message", ""), error.get("key", "")
    return f"{message} (at {key})" if key and key != "data" and key not in message else message


_CODE_BY_STATUS = {400: "VALIDATION_FAILED", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
                   405: "METHOD_NOT_ALLOWED", 415: "UNSUPPORTED_MEDIA_TYPE", 429: "RATE_LIMITED",
                   503: "SERVICE_UNAVAILABLE"}


def handle_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    code = _CODE_BY_STATUS.get(exc.status_code, "INTERNAL_ERROR")
    detail = exc.detail if exc.status_code < 500 else "the server could not complete the request"
    problem = Problem(code, detail, headers=dict(exc.headers or {}))
    return problem_response(request, problem)


def handle_database_down(request: Request[Any, Any, Any], exc: psycopg.OperationalError) -> Response[bytes]:
    log.warning("database unavailable (%s: %s)", type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "",
                extra={"request_id": request_id_of(request), "error": type(exc).__name__})
    return problem_response(request, Problem("SERVICE_UNAVAILABLE", "the database is unavailable; retry shortly",
                                             headers={"Retry-After": "1"}))


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error", extra={"request_id": request_id_of(request)})
    return problem_response(request, Problem("INTERNAL_ERROR", "the server could not complete the request"))


EXCEPTION_HANDLERS: dict[Any, Any] = {
    Problem: handle_problem,
    DomainError: handle_domain_error,
    ValidationException: handle_validation,
    HTTPException: handle_http,
    psycopg.OperationalError: handle_database_down,
    PoolTimeout: handle_database_down,
    Exception: handle_unexpected,
}
