"""Outside calls to Stripe, through the real ``stripe`` SDK (``StripeClient``), from worker code only.

Every call carries a Stripe idempotency key derived from our own row (booking, refund, payout), and is
retried by tenacity on what may be transient (connection errors, 429, 5xx) with that same key, so a retry
never charges, refunds or pays twice: Stripe (and the fake) answer a repeated key with the first result.
The SDK's own network retries are off, so tenacity is the single retry policy and its attempts are logged.
What Stripe refuses for good (invalid request, card error, auth) is raised as ``PaymentProviderRefused``;
a declined card as its subclass ``CardDeclined``, which keeps Stripe's ``decline_code`` (e.g.
``authentication_required``: the bank wants the customer present) and the intent it left behind.

Security deposits: the customer's first, on-session payment saves their card (``create_customer``, then
``create_payment_intent(customer=..., setup_future_usage="off_session")``; the card to keep is the
``payment_method`` of the paid intent). Before check-in ``authorize_deposit`` holds the deposit off-session
(the intent ends ``requires_capture``), then ``capture_deposit`` takes part or all of it, or
``release_deposit`` lets it go.

One API version, ``STRIPE_API_VERSION``, set on the client explicitly (not left to the SDK's default, which a
library upgrade would change under us): every request names it in ``Stripe-Version``, the fake speaks only
it, and the webhook endpoint must be created with it (README, "The Stripe API version"), since a webhook
payload is rendered in the endpoint's version, not the request's.
"""

from __future__ import annotations

import logging
from typing import Any

import stripe
import tenacity

from shared.config import Settings
from shared.errors import PaymentProviderRefused
from shared.stripe_http import Urllib3Client

log = logging.getLogger("totem.stripe")
logging.getLogger("stripe").setLevel(logging.WARNING)  # the SDK logs every request at INFO: ours say enough
stripe.enable_telemetry = False  # no request-timing headers to Stripe

STRIPE_API_VERSION = "2026-10-28.endive"
TRANSIENT = (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError)


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("stripe call failed; retrying with the same idempotency key",
                extra={"attempt": state.attempt_number, "error": type(exc).__name__ if exc else None})


class CardDeclined(PaymentProviderRefused):
    """Stripe declined the card (a 402 ``card_error``). ``stripe_code`` is Stripe's error code
    (``card_declined``, ``authentication_required``, ...), ``decline_code`` the issuer's reason, and
    ``payment_intent_id`` the intent the attempt left in ``requires_payment_method``."""

    def __init__(self, detail: str, *, stripe_code: str | None = None, decline_code: str | None = None,
                 payment_intent_id: str | None = None) -> None:
        super().__init__(detail)
        self.stripe_code = stripe_code
        self.decline_code = decline_code
        self.payment_intent_id = payment_intent_id

    def __reduce__(self) -> tuple[Any, ...]:  # keyword fields survive pickling, as the positional detail does
        return _card_declined, (self.detail, self.stripe_code, self.decline_code, self.payment_intent_id)

    @classmethod
    def from_stripe(cls, exc: stripe.CardError) -> CardDeclined:
        error = (exc.json_body or {}).get("error", {}) if isinstance(exc.json_body, dict) else {}
        intent = error.get("payment_intent") or {}
        return cls(f"Stripe refused: {exc.user_message or exc}", stripe_code=exc.code,
                   decline_code=error.get("decline_code"),
                   payment_intent_id=intent.get("id") if isinstance(intent, dict) else None)


def _card_declined(detail: str, stripe_code: str | None, decline_code: str | None,
                   payment_intent_id: str | None) -> CardDeclined:
    return CardDeclined(detail, stripe_code=stripe_code, decline_code=decline_code,
                        payment_intent_id=payment_intent_id)


class StripeApi:
    def __init__(self, settings: Settings) -> None:
        api_base = settings.stripe_api_base or stripe.DEFAULT_API_BASE
        base = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
        self.client = stripe.StripeClient(
            # stripe's BaseAddresses TypedDict lives in a private module; this dict is one
            settings.stripe_api_key, base_addresses=base,  # type: ignore[arg-type]
            max_network_retries=0, stripe_version=STRIPE_API_VERSION,
            http_client=Urllib3Client(timeout=settings.stripe_timeout_seconds, api_base=api_base))
        self.retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TRANSIENT),
            stop=tenacity.stop_after_attempt(settings.stripe_max_attempts),
            wait=tenacity.wait_exponential_jitter(multiplier=0.05, max=2.0),
            before_sleep=_log_retry, reraise=True)

    def _call(self, method: Any, params: dict[str, Any], idempotency_key: str | None = None) -> Any:
        options = {"idempotency_key": idempotency_key} if idempotency_key else {}
        try:
            return self.retrying(method, params=params, options=options)
        except TRANSIENT:
            raise  # still failing after our retries: the job is handed back and retried later
        except stripe.CardError as exc:
            raise CardDeclined.from_stripe(exc) from exc
        except stripe.StripeError as exc:
            raise PaymentProviderRefused(f"Stripe refused: {exc.user_message or exc}") from exc

    def create_customer(self, *, booking_id: str, email: str | None) -> Any:
        params: dict[str, Any] = {"metadata": {"booking_id": booking_id}}
        if email:
            params["email"] = email
        return self._call(self.client.v1.customers.create, params, f"totem-booking-{booking_id}-customer")

    def create_payment_intent(self, *, booking_id: str, amount: int, currency: str,
                              description: str | None, customer: str | None = None,
                              setup_future_usage: str | None = None) -> Any:
        """The booking's payment, confirmed by the customer in the browser. With ``customer`` and
        ``setup_future_usage="off_session"`` the card it is paid with is saved to that customer."""
        params: dict[str, Any] = {
            "amount": amount, "currency": currency.lower(), "metadata": {"booking_id": booking_id},
            "automatic_payment_methods": {"enabled": True},
        }
        if description:
            params["description"] = description
        if customer:
            params["customer"] = customer
        if setup_future_usage:
            params["setup_future_usage"] = setup_future_usage
        return self._call(self.client.v1.payment_intents.create, params, f"totem-booking-{booking_id}-intent")

    def authorize_deposit(self, *, booking_id: str, amount: int, currency: str, customer: str,
                          payment_method: str, attempt: int = 1) -> Any:
        """Hold ``amount`` on the customer's saved card without them present: the intent it returns is
        ``requires_capture``. A decline raises ``CardDeclined`` (``decline_code`` says why; with
        ``authentication_required`` only the customer, on-session, can authorise). Stripe answers a key it
        has seen with its first answer, a decline included: a new try after a decline needs ``attempt`` + 1."""
        params: dict[str, Any] = {
            "amount": amount, "currency": currency.lower(), "customer": customer, "payment_method": payment_method,
            "payment_method_types": ["card"],  # a hold is a card's; and no return_url for redirecting methods
            "capture_method": "manual", "confirm": True, "off_session": True,
            "metadata": {"booking_id": booking_id, "purpose": "deposit"},
            "description": f"Security deposit for booking {booking_id}",
        }
        suffix = "" if attempt == 1 else f"-{attempt}"
        return self._call(self.client.v1.payment_intents.create, params,
                          f"totem-deposit-{booking_id}-authorize{suffix}")

    def capture_deposit(self, *, booking_id: str, payment_intent_id: str, amount: int) -> Any:
        """Take ``amount`` (at most what was held) of the deposit; the rest of the hold is released."""
        return self._call(lambda params, options: self.client.v1.payment_intents.capture(
            payment_intent_id, params=params, options=options),
            {"amount_to_capture": amount}, f"totem-deposit-{booking_id}-capture")

    def release_deposit(self, *, booking_id: str, payment_intent_id: str) -> Any:
        """Let the whole hold go (the intent is cancelled; nothing was taken, so nothing is refunded)."""
        return self._call(lambda params, options: self.client.v1.payment_intents.cancel(
            payment_intent_id, params=params, options=options),
            {"cancellation_reason": "abandoned"}, f"totem-deposit-{booking_id}-release")

    def cancel_payment_intent(self, payment_intent_id: str) -> Any:
        return self._call(lambda params, options: self.client.v1.payment_intents.cancel(
            payment_intent_id, params=params, options=options),
            {"cancellation_reason": "abandoned"}, f"totem-cancel-{payment_intent_id}")

    def create_refund(self, *, refund_id: str, booking_id: str, payment_intent_id: str, amount: int,
                      reason: str = "requested_by_customer") -> Any:
        params = {"payment_intent": payment_intent_id, "amount": amount, "reason": reason,
                  "metadata": {"refund_id": refund_id, "booking_id": booking_id}}
        return self._call(self.client.v1.refunds.create, params, f"totem-refund-{refund_id}")

    def create_transfer(self, *, payout_id: str, amount: int, currency: str, destination: str,
                        metadata: dict[str, str], transfer_group: str | None = None,
                        source_transaction: str | None = None) -> Any:
        """``source_transaction``: the charge that funded it (the transfer is tied to it, and waits for its
        funds rather than the platform's available balance)."""
        params: dict[str, Any] = {"amount": amount, "currency": currency.lower(), "destination": destination,
                                  "metadata": {"payout_id": payout_id, **metadata}}
        if transfer_group:
            params["transfer_group"] = transfer_group
        if source_transaction:
            params["source_transaction"] = source_transaction
        return self._call(self.client.v1.transfers.create, params, f"totem-payout-{payout_id}")

    def create_connected_account(self, *, provider_id: str, email: str | None, country: str | None = None) -> Any:
        """A provider's Express connected account (controller properties: the platform pays Stripe's fees
        and bears losses, Stripe collects the requirements, the Express Dashboard). One per provider: the
        key is the provider's, so a retry or a racing second request gets the same account."""
        params: dict[str, Any] = {
            "controller": {"fees": {"payer": "application"}, "losses": {"payments": "application"},
                           "requirement_collection": "stripe", "stripe_dashboard": {"type": "express"}},
            "capabilities": {"transfers": {"requested": True}},
            "metadata": {"provider_id": provider_id},
        }
        if email:
            params["email"] = email
        if country:
            params["country"] = country
        return self._call(self.client.v1.accounts.create, params, f"totem-provider-{provider_id}-account")

    def create_account_link(self, *, account_id: str, refresh_url: str, return_url: str, key: str) -> Any:
        """A fresh onboarding link (single-use, minutes long): ``key`` is the request's own."""
        params = {"account": account_id, "type": "account_onboarding", "refresh_url": refresh_url,
                  "return_url": return_url}
        return self._call(self.client.v1.account_links.create, params, f"totem-account-link-{key}")

    def list_balance_transactions(self, **params: Any) -> Any:
        return self._call(self.client.v1.balance_transactions.list, params)
