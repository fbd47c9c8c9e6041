"""The booking widget: the page ``/widget/{provider_slug}`` and the embed loader ``/widget.js``.

The page is an HTML shell (no inline script or style) whose ES modules (``static/widget/``) call the public
API with the provider's public token (``?token=pk_…``), or, for a customer who comes back from their mail,
with the booking's customer token (in the URL's fragment, ``#ct=…``, so it never reaches a server log or a
Referer). What the modules need is rendered into the shell's data attributes: the provider, the token, the
payment adapter (``fake``: a test-card form confirming on the fake Stripe; ``stripe``: Stripe.js's Payment
Element with STRIPE_PUBLISHABLE_KEY; ``none``).

Embedding: ``<script src="{PUBLIC_URL}/widget.js" data-token="pk_…">`` asks the API for the token's provider
(a cross-origin call, so CORS and the token's ``allowed_origins`` decide, and a refused site is told so),
then mounts the page in an iframe. The iframe, not a shadow-DOM mount, because the customer's name, email
and card stay out of reach of the host page's scripts, the page keeps its own strict CSP whatever the host's,
and its ``frame-ancestors`` (the token's ``allowed_origins``) stops a site that writes the iframe itself, as
Stripe Checkout and cal.com's embed do.
"""

from __future__ import annotations

import html
from typing import Annotated, Any
from urllib.parse import urlsplit

from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import Parameter

from gateway.access import PUBLIC_ROUTE
from gateway.problems import Problem
from gateway.state import GatewayState
from gateway.web.files import static_file
from shared import tokens
from shared.config import Settings
from shared.db import QUERIES, with_reconnect
from shared.errors import Code

STRIPE_JS = "https://js.stripe.com"
FAKE_PUBLISHABLE_KEY = "pk_test_totem_fake"  # the fake takes any pk_test_ key with the intent's client secret
Slug = Annotated[str, Parameter(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]
Token = Annotated[str | None, Parameter(query="token", pattern=r"^pk_[A-Za-z0-9_-]{8,200}$")]


def payment_adapter(settings: Settings) -> tuple[str, str, str]:
    """(adapter, API base the browser confirms at, publishable key)."""
    if settings.stripe_api_base:
        return "fake", settings.stripe_api_base.rstrip("/"), settings.stripe_publishable_key or FAKE_PUBLISHABLE_KEY
    if settings.stripe_publishable_key:
        return "stripe", "https://api.stripe.com", settings.stripe_publishable_key
    return "none", "", ""


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(adapter: str, stripe_base: str, frame_ancestors: list[str]) -> str:
    scripts = connect = ["'self'"]
    frames = ["'none'"]
    if adapter == "fake":
        connect = ["'self'", _origin(stripe_base)]
    elif adapter == "stripe":  # the one external script, only with a real key
        scripts, connect = ["'self'", STRIPE_JS], ["'self'", "https://api.stripe.com"]
        frames = [STRIPE_JS, "https://hooks.stripe.com"]
    return "; ".join([
        "default-src 'none'", f"script-src {' '.join(scripts)}", "style-src 'self'", "img-src 'self' data:",
        f"connect-src {' '.join(connect)}", f"frame-src {' '.join(frames)}", "base-uri 'none'",
        "form-action 'none'", f"frame-ancestors {' '.join(frame_ancestors)}"])


SHELL = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Book with {name}</title>
<link rel="stylesheet" href="/static/widget/widget.css">
<script type="module" src="/static/widget/app.js"></script>
</head>
<body>
<main id="widget" {attributes}>
<h1>Book with {name}</h1>
<p id="loading">Loading…</p>
<noscript><p>This booking page needs JavaScript.</p></noscript>
</main>
</body>
</html>
"""


@get("/widget/{provider_slug:str}", opt=PUBLIC_ROUTE, include_in_schema=False)
async def widget_page(state: GatewayState, provider_slug: Slug, token: Token = None) -> Response[str]:
    """The booking page of a provider; with a public token, only for that token's provider."""
    async def read() -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        async with state.pool.connection() as conn:
            provider = await (await conn.execute(QUERIES["widget_provider"], {"slug": provider_slug})).fetchone()
            found = None
            if token is not None:
                found = await (await conn.execute(QUERIES["use_public_token"],
                                                  {"digest": tokens.digest(token)})).fetchone()
            return provider, found

    provider, found = await with_reconnect(read)
    if provider is None:
        raise Problem(Code.NOT_FOUND, f"provider {provider_slug} does not exist")
    if token is not None and (found is None or found["provider_id"] != provider["id"]):
        raise Problem(Code.UNAUTHORIZED, "the token is unknown, revoked, or not this provider's")
    ancestors = ["'self'", *(found["allowed_origins"] or ["*"])] if found else ["'self'"]
    adapter, stripe_base, publishable_key = payment_adapter(state.settings)
    data = {"provider-id": str(provider["id"]), "provider-slug": provider["slug"], "provider-name": provider["name"],
            "time-zone": provider["time_zone"], "currency": provider["currency"], "token": token or "",
            "payments": adapter, "stripe-base": stripe_base, "publishable-key": publishable_key}
    attributes = " ".join(f'data-{key}="{html.escape(value, quote=True)}"' for key, value in data.items())
    body = SHELL.format(name=html.escape(provider["name"]), attributes=attributes)
    return Response(body, media_type="text/html; charset=utf-8", headers={
        "Content-Security-Policy": content_security_policy(adapter, stripe_base, ancestors),
        "Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


@get("/widget.js", opt=PUBLIC_ROUTE, include_in_schema=False, sync_to_thread=False)
def widget_loader() -> Response[bytes]:
    """The embed snippet's script (a classic script: it finds its own ``data-token``)."""
    return static_file("widget/loader.js")


ROUTES: list[HTTPRouteHandler] = [widget_page, widget_loader]
