"""Credentials at the edge. For now: the system token (owner sessions and public tokens come later)."""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from gateway.problems import Problem
from shared.errors import Code


def require_system_token(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Litestar guard: the X-System-Token header must match SYSTEM_TOKEN (constant-time compare)."""
    expected = connection.app.state.settings.system_token
    given = connection.headers.get("x-system-token")
    if given is None:
        raise Problem(Code.UNAUTHORIZED, "this endpoint needs an X-System-Token header")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Problem(Code.FORBIDDEN, "the X-System-Token is not valid")
