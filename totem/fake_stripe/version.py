"""The one Stripe API version the fake speaks: the one our client pins (``shared.stripe_api``).

Stripe answers each request in the version its ``Stripe-Version`` header names, else in the account's
default version. The fake has one version and plays an account whose default is it: no header, that
version; the same one, fine; any other, Stripe's 400 ``invalid_request_error`` saying which one it speaks
(a fake that quietly answered in a version it does not speak would hide the upgrade we did not make).
Every answer says the version in ``Stripe-Version``, and every event carries it as ``api_version``.
"""

from __future__ import annotations

from shared.stripe_api import STRIPE_API_VERSION
from totem.fake_stripe.state import StripeError

API_VERSION = STRIPE_API_VERSION


def version_refusal(requested: str | None) -> StripeError | None:
    """None when a request naming ``requested`` in ``Stripe-Version`` (or nothing) can be answered."""
    if not requested or requested.strip() == API_VERSION:
        return None
    return StripeError(400, "invalid_request_error",
                       f"Invalid Stripe API version: {requested}. This account (Totem's fake Stripe) speaks only "
                       f"API version {API_VERSION}; send Stripe-Version: {API_VERSION} or leave it out.",
                       "api_version_invalid", param="Stripe-Version", saved=False)
