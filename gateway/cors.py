"""CORS for the API (``/v1/...``): which other sites' pages may call it, and read the answers.

A public token's ``allowed_origins`` decide (``gateway.access`` checks the request's ``Origin`` against
them when it resolves the token: another site gets 403). A credentialed answer carries
``Access-Control-Allow-Origin: <that origin>`` only when the token admitted it (``access`` marks the request
with ``cors_origin``); every ``/v1`` answer says ``Vary: Origin``. A preflight carries no credential
(Fetch), so it cannot know the token: it is answered for any well-formed web origin, and allows nothing by
itself: the request that follows is where the token decides. No cookies are used, so no credentials
mode. The gateway's own pages (the widget) are same-origin and need none of this.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    Scope,
    Send,
)

ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")
ALLOWED_METHODS = b"GET, POST, PUT, PATCH, DELETE"
ALLOWED_HEADERS = b"Authorization, Content-Type, Idempotency-Key, X-Request-Id"
EXPOSED = b"Location, Retry-After, Idempotent-Replayed, X-Request-Id, RateLimit, RateLimit-Policy"
PREFLIGHT_MAX_AGE = b"600"
VARY = (b"vary", b"Origin")


def own_origins(connection: ASGIConnection[Any, Any, Any, Any], links_base: str) -> set[str]:
    """The gateway's own origins: PUBLIC_URL's, and the one this request was addressed to."""
    public = urlsplit(links_base)
    return {f"{public.scheme}://{public.netloc}", f"{connection.url.scheme}://{connection.url.netloc}"}


def mark_allowed(connection: ASGIConnection[Any, Any, Any, Any], origin: str) -> None:
    """The credential of this request admits ``origin``: its answer may be read there."""
    connection.scope["state"]["cors_origin"] = origin


def cors_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or not scope["path"].startswith("/v1/"):
            await app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        origin = headers.get(b"origin", b"").decode("latin-1")
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            await _preflight(origin, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [VARY]
                if origin and scope.get("state", {}).get("cors_origin") == origin:
                    extra += [(b"access-control-allow-origin", origin.encode()),
                              (b"access-control-expose-headers", EXPOSED)]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await app(scope, receive, send_with_cors)

    return middleware


async def _preflight(origin: str, send: Send) -> None:
    headers = [VARY, (b"content-length", b"0")]
    status = 403
    if ORIGIN.fullmatch(origin):
        status = 204
        headers += [(b"access-control-allow-origin", origin.encode()),
                    (b"access-control-allow-methods", ALLOWED_METHODS),
                    (b"access-control-allow-headers", ALLOWED_HEADERS),
                    (b"access-control-max-age", PREFLIGHT_MAX_AGE)]
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": headers}
    body: HTTPResponseBodyEvent = {"type": "http.response.body", "body": b"", "more_body": False}
    await send(start)
    await send(body)
