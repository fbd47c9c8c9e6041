"""3-D Secure: the test card ``pm_card_authenticationRequired`` (Stripe's 4000 0027 6000 3184, "requires
authentication on all transactions, regardless of how the card is set up") and the page where the customer
authenticates, standing in for the bank's challenge that Stripe hosts on hooks.stripe.com.

On-session, confirming with that card pays nothing yet: the intent is ``requires_action`` (its
``payment_method`` kept, no charge), ``payment_intent.requires_action`` is sent, and ``next_action`` says
what the customer must do. Confirmed with a ``return_url`` (what a page that handles the redirect itself
sends) it is ``{"type": "redirect_to_url", "redirect_to_url": {"url": <this page>, "return_url": <it>}}``;
without one it is ``{"type": "use_stripe_sdk", "use_stripe_sdk": {...}}``, which only Stripe.js reads (its
contents are opaque; ours name the same page). Off-session the bank cannot ask anyone: a 402
``authentication_required`` decline (``intents.py``), so a saved 3-D Secure card cannot hold a deposit.

The page, ``GET /3d_secure_2/hosted?payment_intent=pi_…&payment_intent_client_secret=…``, is plain HTML
with no script and no outside asset; it needs the intent's client secret, as Stripe's does. Its two buttons
submit ``outcome=succeed`` or ``outcome=fail``, and opening it with either does the same at once:
* succeed: the payment goes ahead as a card that needs no authentication would (charge, capture or
  authorisation, ``payment_intent.succeeded`` or ``amount_capturable_updated``);
* fail: the intent is ``requires_payment_method`` with ``last_payment_error`` (``invalid_request_error``,
  code ``payment_intent_authentication_failure``, the payment method dropped) and
  ``payment_intent.payment_failed`` is sent; another payment method may be confirmed.
Then, like Stripe, it redirects to the ``return_url`` with ``payment_intent``,
``payment_intent_client_secret`` and ``redirect_status`` (``succeeded`` | ``failed``) added to its query;
without one it says the outcome. An intent no longer waiting (authenticated, failed, cancelled because its
booking's hold ended) is left as it is whatever the outcome asked: the page only says where it stands.
"""

from __future__ import annotations

import copy
import hmac
import html
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from litestar import MediaType, Request, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.response import Redirect

from totem.fake_stripe.state import FakeStripe, StripeError

CARD = "pm_card_authenticationRequired"
PATH = "/3d_secure_2/hosted"
OUTCOMES = ("succeed", "fail")
FAILURE_MESSAGE = ("The provided PaymentMethod has failed authentication. You can provide payment_method_data or a "
                   "new PaymentMethod to attempt to fulfill this PaymentIntent again.")

Settle = Callable[[FakeStripe, dict[str, Any], dict[str, Any]], None]


def required(card: str) -> bool:
    """Whether the test card a payment method was made from always asks its bank for authentication."""
    return card == CARD


def check_return_url(params: dict[str, Any]) -> str | None:
    """The confirm call's ``return_url``, if any; Stripe refuses one that is not an absolute URL."""
    raw = params.get("return_url")
    if raw is None or raw == "":
        return None
    parts = urlsplit(str(raw))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise StripeError(400, "invalid_request_error", "Invalid URL: return_url must be an absolute URL.",
                          "url_invalid", param="return_url", saved=False)
    return str(raw)


def require_action(fake: FakeStripe, intent: dict[str, Any], method: dict[str, Any], *, return_url: str | None,
                   base_url: str) -> None:
    """The card's bank wants the customer: the intent waits in ``requires_action`` for the page."""
    url = f"{base_url.rstrip('/')}{PATH}?" + urlencode({
        "payment_intent": intent["id"], "payment_intent_client_secret": intent["client_secret"]})
    if return_url is not None:
        next_action = {"type": "redirect_to_url", "redirect_to_url": {"url": url, "return_url": return_url}}
    else:
        next_action = {"type": "use_stripe_sdk",
                       "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": url}}
    intent.update(status="requires_action", payment_method=method["id"], last_payment_error=None,
                  next_action=next_action)
    fake.emit("payment_intent.requires_action", intent)


def authenticate(fake: FakeStripe, intent: dict[str, Any], outcome: str, settle: Settle) -> bool:
    """Apply the customer's answer to an intent waiting for it; False (nothing changes) if it is not."""
    if intent["status"] != "requires_action" or intent.get("next_action") is None:
        return False
    method = fake.payment_methods[intent["payment_method"]]
    intent["next_action"] = None
    if outcome == "succeed":
        settle(fake, intent, method)
        return True
    intent.update(status="requires_payment_method", payment_method=None, last_payment_error={
        "type": "invalid_request_error", "code": "payment_intent_authentication_failure",
        "doc_url": "https://docs.stripe.com/error-codes/payment-intent-authentication-failure",
        "message": FAILURE_MESSAGE, "payment_method": copy.deepcopy(method)})
    fake.emit("payment_intent.payment_failed", intent)
    return True


def waiting_intent(fake: FakeStripe, intent_id: str, client_secret: str) -> dict[str, Any]:
    """The intent the page is about, if the client secret is its own (else Stripe's 404: nothing to see)."""
    intent = fake.intents.get(intent_id)
    if intent is None or not hmac.compare_digest(client_secret.encode(), str(intent["client_secret"]).encode()):
        raise StripeError(404, "invalid_request_error", "No such authentication session.", "resource_missing")
    return intent


def return_location(return_url: str, intent: dict[str, Any]) -> str:
    """Where the customer goes back to: the ``return_url`` with what Stripe adds to its query."""
    parts = urlsplit(return_url)
    query = [*parse_qsl(parts.query, keep_blank_values=True),
             ("payment_intent", intent["id"]), ("payment_intent_client_secret", intent["client_secret"]),
             ("redirect_status", "succeeded" if intent["status"] in ("succeeded", "requires_capture", "processing")
              else "failed")]
    return urlunsplit(parts._replace(query=urlencode(query)))


_STANDING = {
    "succeeded": "Authentication complete: the payment went through.",
    "requires_capture": "Authentication complete: the amount is held on the card.",
    "requires_payment_method": "Authentication failed: the payment did not go through.",
    "canceled": "This payment was cancelled; there is nothing to authenticate.",
}

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>3D Secure test page</title></head>
<body style="font-family: sans-serif; max-width: 28rem; margin: 2rem auto; padding: 0 1rem">
<h1>3D Secure test page</h1>
<p>Test mode: this page stands in for the card issuer's check.</p>
<p>Payment {intent_id}: {amount} in the minor unit of {currency}.</p>
{body}
</body>
</html>
"""


def page(intent: dict[str, Any]) -> str:
    """The challenge while the intent waits for it (two buttons), else where the intent stands."""
    if intent["status"] == "requires_action":
        hidden = "".join(f'<input type="hidden" name="{name}" value="{html.escape(str(value), quote=True)}">'
                         for name, value in (("payment_intent", intent["id"]),
                                             ("payment_intent_client_secret", intent["client_secret"])))
        body = (f'<form method="get" action="{PATH}">{hidden}'
                '<button type="submit" name="outcome" value="succeed">Complete authentication</button> '
                '<button type="submit" name="outcome" value="fail">Fail authentication</button></form>')
    else:
        body = f'<p id="outcome">{html.escape(_STANDING.get(intent["status"], intent["status"]))}</p>'
        body += "<p>You can close this window.</p>"
    return PAGE.format(amount=int(intent["amount"]), currency=html.escape(intent["currency"].upper()),
                       intent_id=html.escape(intent["id"]), body=body)


def pages(fake: FakeStripe, settle: Settle) -> list[HTTPRouteHandler]:
    """The authentication page; ``settle`` pays an authenticated intent as ``intents.py`` pays any card."""

    @get(PATH, media_type=MediaType.HTML)
    async def authentication_page(request: Request[Any, Any, Any]) -> Response[Any]:
        query = request.query_params
        outcome = query.get("outcome")
        try:
            intent = waiting_intent(fake, str(query.get("payment_intent", "")),
                                    str(query.get("payment_intent_client_secret", "")))
            if outcome is not None and outcome not in OUTCOMES:
                raise StripeError(400, "invalid_request_error", "outcome must be succeed or fail.", param="outcome")
        except StripeError as exc:
            message = html.escape(str(exc.body["error"]["message"]))
            return Response(f"<!doctype html><title>3D Secure</title><p>{message}</p>", status_code=exc.status,
                            media_type=MediaType.HTML)
        next_action = intent.get("next_action") or {}
        return_url = (next_action.get("redirect_to_url") or {}).get("return_url")
        if outcome is not None and authenticate(fake, intent, outcome, settle) and return_url:
            return Redirect(return_location(return_url, intent), status_code=303)
        return Response(page(intent), media_type=MediaType.HTML,
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    return [authentication_page]
