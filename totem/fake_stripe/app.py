"""``create_app``: the fake's one assembly point, configured from the environment it is given.

``FAKE_STRIPE_WEBHOOK_URL`` (default: Totem's own ``/v1/webhooks/stripe`` on ``PORT``),
``STRIPE_WEBHOOK_SECRET`` (default ``whsec_totem_dev``), ``STRIPE_CONNECT_WEBHOOK_SECRET`` (unset: connected
accounts' events are signed with the same secret), ``STRIPE_API_KEY`` (unset: any caller is let in)
and ``FAKE_STRIPE_ENABLED_EVENTS`` (comma list, default ``*``). The webhook HTTP client opens at start-up;
shutdown cancels deliveries still under way.
"""

from __future__ import annotations

import os

from litestar import Litestar

from totem.fake_stripe import authentication, intents
from totem.fake_stripe.cors import cors_middleware
from totem.fake_stripe.delivery import WebhookEndpoint
from totem.fake_stripe.routes import fake_controls, hosted_pages, stripe_api
from totem.fake_stripe.state import FakeStripe


def _enabled(spec: str) -> frozenset[str] | None:
    names = frozenset(name.strip() for name in spec.split(",") if name.strip())
    return None if not names or "*" in names else names


def create_app(env: dict[str, str] | None = None) -> Litestar:
    env = dict(os.environ) if env is None else env
    port = env.get("PORT", "8000")
    webhooks = WebhookEndpoint(
        url=env.get("FAKE_STRIPE_WEBHOOK_URL") or f"http://127.0.0.1:{port}/v1/webhooks/stripe",
        secret=env.get("STRIPE_WEBHOOK_SECRET") or "whsec_totem_dev",
        connect_secret=env.get("STRIPE_CONNECT_WEBHOOK_SECRET") or None,
        enabled_events=_enabled(env.get("FAKE_STRIPE_ENABLED_EVENTS", "*")),
    )
    fake = FakeStripe(webhooks=webhooks)
    return Litestar(
        route_handlers=[*stripe_api(fake, api_key=env.get("STRIPE_API_KEY") or None), *fake_controls(fake),
                        *authentication.pages(fake, intents.settle),
                        *hosted_pages(fake)],
        middleware=[cors_middleware], on_startup=[webhooks.open], on_shutdown=[webhooks.close], openapi_config=None,
        debug=False,
    )
