"""What the OpenAPI document says beyond each route's own declaration: the problems the app itself answers
on every route (``gateway.access`` refuses credentials, the limiter answers 429, validation answers 400)."""

from __future__ import annotations

from litestar import Litestar
from litestar.handlers.http_handlers import HTTPRouteHandler

from gateway.access import Access, declared_access, is_automatic_options
from gateway.problems import problem_responses
from shared.errors import Code


def document_problems(app: Litestar) -> None:
    """Every route's OpenAPI entry lists the problems the app itself can answer on it, beside its own: a
    malformed parameter or body (400), the rate limit (429), a missing or refused credential (401, 403) on
    any but public routes, and an unknown id (404) wherever the path names one."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if not isinstance(handler, HTTPRouteHandler) or is_automatic_options(handler):
                continue
            codes = [Code.VALIDATION_FAILED, Code.RATE_LIMITED]
            if declared_access(handler) != Access.PUBLIC:
                codes += [Code.UNAUTHORIZED, Code.FORBIDDEN]
            if "{" in route.path:
                codes.append(Code.NOT_FOUND)
            handler.responses = {**problem_responses(*codes), **(handler.responses or {})}
