"""RFC 9457 problem details: the one place errors become HTTP answers.

The codes and their statuses are declared in ``shared/errors.py`` (``Code``, ``VOCABULARY``); this module
turns a Problem, a DomainError, a validation failure, a constraint the database refused, or an outage into
a problem document.

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
import psycopg.errors
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from psycopg_pool import PoolTimeout

from shared.db import ConstraintViolation
from shared.errors import Code, DomainError, status_of

log = logging.getLogger("totem.gateway")

PROBLEM_MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    """Raise anywhere in the gateway to answer with a problem document."""

    def __init__(self, code: Code, detail: str, *, errors: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    @property
    def status(self) -> int:
        return status_of(self.code)


class ProblemDocument(msgspec.Struct, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str
    errors: list[dict[str, str]] | None = None


def problem_responses(*codes: Code) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problems a route can answer, grouped by HTTP status."""
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(status_of(code), []).append(str(code))
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
        code=str(problem.code),
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
    aliases = _public_names(request)
    errors = [_with_field({key: str(value) for key, value in item.items()}, aliases)
              for item in (exc.extra or []) if isinstance(item, dict)]
    detail = "; ".join(_describe(e) for e in errors) or str(exc.detail)
    return problem_response(request, Problem(Code.VALIDATION_FAILED, detail, errors=errors or None))


def _public_names(request: Request[Any, Any, Any]) -> dict[str, str]:
    """A handler's Python parameter names (``from_``) by the names callers use (``from``)."""
    handler = request.scope.get("route_handler")
    signature = getattr(handler, "parsed_fn_signature", None)
    names: dict[str, str] = {}
    for name, field in (signature.parameters.items() if signature is not None else ()):
        kwarg = field.kwarg_definition
        public = getattr(kwarg, "query", None) or getattr(kwarg, "header", None) if kwarg is not None else None
        if isinstance(public, str) and public != name:
            names[name] = public
    return names


def _with_field(error: dict[str, str], aliases: dict[str, str]) -> dict[str, str]:
    """Litestar names the parameter or body field at fault ``key`` (by its Python name: ``from_``); our own
    problems say ``field``, by the name callers use: both, public."""
    if error.get("key") in aliases:
        key = aliases[error["key"]]
        error = {**error, "key": key, "message": error.get("message", "").replace(f"`{error['key']}`", f"`{key}`")}
    key = error.get("key", "")
    if key == "data" and error.get("message") == "'data'":  # Litestar's KeyError for a request without a body
        return {**error, "message": "this request needs a JSON body"}
    return {**error, "field": key} if key and key != "data" and "field" not in error else error


def _describe(error: dict[str, str]) -> str:
    message, key = error.get("message", ""), error.get("key", "")
    return f"{message} (at {key})" if key and key != "data" and key not in message else message


_CODE_BY_STATUS = {400: Code.VALIDATION_FAILED, 401: Code.UNAUTHORIZED, 403: Code.FORBIDDEN, 404: Code.NOT_FOUND,
                   405: Code.METHOD_NOT_ALLOWED, 415: Code.UNSUPPORTED_MEDIA_TYPE, 429: Code.RATE_LIMITED,
                   503: Code.SERVICE_UNAVAILABLE}


def handle_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    code = _CODE_BY_STATUS.get(exc.status_code, Code.INTERNAL_ERROR)
    detail = exc.detail if exc.status_code < 500 else "the server could not complete the request"
    problem = Problem(code, detail, headers=dict(exc.headers or {}))
    return problem_response(request, problem)


def handle_constraint(request: Request[Any, Any, Any], exc: ConstraintViolation) -> Response[bytes]:
    """A constraint shared/db.py names no domain error for: the database refused a value the request's schema
    admitted (a malformed one never reaches it), so the request is unprocessable rather than malformed."""
    return problem_response(request, Problem(Code.REQUEST_UNPROCESSABLE, f"refused by the database ({exc.constraint})"))


# Values the schema admits but Postgres cannot hold: a NUL (U+0000) in text or jsonb, an instant or a number
# beyond its range. The statement failed, so its transaction (a key, a job) rolled back: nothing was changed.
UNHOLDABLE = (psycopg.errors.UntranslatableCharacter, psycopg.errors.CharacterNotInRepertoire,
              psycopg.errors.DatetimeFieldOverflow, psycopg.errors.NumericValueOutOfRange)


def handle_unholdable(request: Request[Any, Any, Any], exc: psycopg.DataError) -> Response[bytes]:
    return problem_response(request, Problem(Code.REQUEST_UNPROCESSABLE, "a value cannot be stored: text may not "
                                             "hold U+0000, and instants and numbers must be in range"))


def handle_pool_timeout(request: Request[Any, Any, Any], exc: PoolTimeout) -> Response[bytes]:
    log.warning("database pool saturated", extra={"request_id": request_id_of(request)})
    return problem_response(request, Problem(Code.SERVICE_UNAVAILABLE, "the server is saturated; retry shortly",
                                             headers={"Retry-After": "1"}))


def handle_database_down(request: Request[Any, Any, Any], exc: psycopg.OperationalError) -> Response[bytes]:
    log.warning("database unavailable (%s: %s)", type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "",
                extra={"request_id": request_id_of(request), "error": type(exc).__name__})
    return problem_response(request, Problem(Code.SERVICE_UNAVAILABLE, "the database is unavailable; retry shortly",
                                             headers={"Retry-After": "1"}))


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error", extra={"request_id": request_id_of(request)})
    return problem_response(request, Problem(Code.INTERNAL_ERROR, "the server could not complete the request"))


EXCEPTION_HANDLERS: dict[Any, Any] = {
    Problem: handle_problem,
    DomainError: handle_domain_error,
    ValidationException: handle_validation,
    HTTPException: handle_http,
    psycopg.OperationalError: handle_database_down,
    PoolTimeout: handle_pool_timeout,
    ConstraintViolation: handle_constraint,
    **dict.fromkeys(UNHOLDABLE, handle_unholdable),
    Exception: handle_unexpected,
}
