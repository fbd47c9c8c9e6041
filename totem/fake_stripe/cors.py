"""CORS as Stripe's API answers it: any site's page may call it (a publishable key and a client secret are
meant to be in browsers; a secret key never is), so every answer carries ``Access-Control-Allow-Origin: *``
and a preflight is answered at once. No cookies are involved, so no credentials are allowed."""

from __future__ import annotations

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

ALLOW = [(b"access-control-allow-origin", b"*"),
         (b"access-control-expose-headers", b"Request-Id, Stripe-Version, Idempotent-Replayed")]
PREFLIGHT = [*ALLOW, (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
             (b"access-control-allow-headers", b"Authorization, Content-Type, Idempotency-Key, Stripe-Version"),
             (b"access-control-max-age", b"300")]


def cors_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or not scope["path"].startswith("/v1/"):
            await app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            start: HTTPResponseStartEvent = {"type": "http.response.start", "status": 204, "headers": PREFLIGHT}
            body: HTTPResponseBodyEvent = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(start)
            await send(body)
            return

        async def send_allowed(message: Message) -> None:
            if message["type"] == "http.response.start" and b"origin" in headers:
                message["headers"] = [*message.get("headers", []), *ALLOW]
            await send(message)

        await app(scope, receive, send_allowed)

    return middleware
