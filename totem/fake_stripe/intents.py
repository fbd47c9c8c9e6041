"""PaymentIntents and their Charges: create (confirming at once with ``confirm=true``), confirm, capture,
cancel, and the lapse of an uncaptured authorisation.

An intent keeps ``customer``, ``setup_future_usage`` (off_session | on_session), ``capture_method``
(automatic and automatic_async capture at once; manual only authorises) and ``payment_method``.
``off_session=true`` (with ``confirm=true``) pays without the customer present: it needs the ``customer``
and a ``payment_method`` saved to them (``customers.py``), else a 400 and no intent. Confirming at create
with ``automatic_payment_methods[enabled]`` needs a ``return_url`` unless ``allow_redirects`` is ``never``
(some of those methods redirect); pass ``payment_method_types[]=card`` for a card-only hold. Test cards:
* one whose name contains ``offSessionDeclined`` (``pm_card_visa_offSessionDeclined``) pays on-session
  and declines off-session: 402 ``card_error`` ``authentication_required`` (the bank wants the customer);
* any other containing ``Declined`` (``pm_card_chargeDeclined``) declines: 402 ``card_declined``;
* ``pm_card_authenticationRequired`` waits on-session for 3-D Secure (``requires_action``) and declines
  off-session with ``authentication_required`` (``authentication.py``);
* anything else pays.
A decline leaves the intent ``requires_payment_method`` with ``last_payment_error``, sends
``payment_intent.payment_failed``, and the 402 carries the intent and the payment method.

A payment creates a charge and sends ``charge.succeeded``. Automatic capture: the intent ``succeeded``, a
balance transaction for the amount, ``payment_intent.succeeded``. Manual: the intent ``requires_capture``
with ``amount_capturable`` = amount, the charge ``captured: false``, ``amount_captured: 0``, no balance
transaction, ``payment_intent.amount_capturable_updated``; ``payment_method_details.card.capture_before``
says when the hold lapses (Visa off-session 4 days 18 h, else 7 days). With ``setup_future_usage`` and a
``customer``, a payment saves its payment method to the customer (``payment_method.attached``).

Capture (``amount_to_capture``, 1 … ``amount_capturable``, default all) from ``requires_capture`` only: the
intent ``succeeded`` with ``amount_received`` = captured and ``amount_capturable`` 0, the charge
``captured`` with ``amount_captured``, one balance transaction for what was captured, ``charge.captured``
then ``payment_intent.succeeded``. The rest of the hold is released as Stripe has done since API version
2025-03-31.basil (ours is later): no Refund, no balance transaction, ``amount_refunded`` and ``refunded``
untouched, no ``charge.refunded``. Cancelling an authorisation releases all of it the same way
(``payment_intent.canceled``); a lapsed one (``expire_authorization``, a ``/_fake`` control) is
cancelled with ``cancellation_reason: "expired"`` and sends ``charge.expired`` then
``payment_intent.canceled``. A capture after either is a 400 ``payment_intent_unexpected_state``.
"""

from __future__ import annotations

import copy
import secrets
import time
from typing import Any

from totem.fake_stripe import authentication, customers
from totem.fake_stripe.state import FakeStripe, StripeError, bool_param, choice_param, int_param, new_id

DECLINED = "Declined"
OFF_SESSION_DECLINED = "offSessionDeclined"
CAPTURE_METHODS = ("automatic", "automatic_async", "manual")
FUTURE_USAGES = ("off_session", "on_session")
CANCELLATION_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
CANCELLABLE = ("requires_payment_method", "requires_capture", "requires_confirmation", "requires_action")
HOLD_SECONDS = 7 * 86_400
VISA_OFF_SESSION_HOLD_SECONDS = 4 * 86_400 + 18 * 3_600  # Visa's window for merchant-initiated payments


def create_payment_intent(fake: FakeStripe, params: dict[str, Any], base_url: str = "") -> dict[str, Any]:
    amount = int_param(params, "amount")
    currency = str(params.get("currency", "")).lower()
    if not amount or amount < 1:
        raise StripeError(400, "invalid_request_error", "Amount must be at least 1.", "amount_too_small")
    if len(currency) != 3:
        raise StripeError(400, "invalid_request_error", "Missing required param: currency.",
                          "parameter_missing", param="currency", saved=False)
    capture_method = choice_param(params, "capture_method", CAPTURE_METHODS, "automatic")
    future_usage = choice_param(params, "setup_future_usage", FUTURE_USAGES)
    confirm, off_session = bool_param(params, "confirm"), bool_param(params, "off_session")
    customer_id = str(params["customer"]) if params.get("customer") else None
    if customer_id is not None:
        customers.customer(fake, customer_id, status=400, param="customer")
    _check_confirm_params(params, confirm=confirm, off_session=off_session)
    return_url = authentication.check_return_url(params)
    method = customers.payment_method_for(fake, str(params["payment_method"])) \
        if params.get("payment_method") else None
    if method is not None:
        customers.check_usable(method, customer_id, off_session=off_session)
    types = params.get("payment_method_types")
    intent_id = new_id("pi")
    intent = {
        "id": intent_id, "object": "payment_intent", "amount": amount, "amount_capturable": 0,
        "amount_received": 0, "currency": currency,
        "status": "requires_payment_method" if method is None else "requires_confirmation",
        "client_secret": f"{intent_id}_secret_{secrets.token_hex(8)}", "metadata": params.get("metadata", {}),
        "description": params.get("description"), "created": int(time.time()), "livemode": False,
        "capture_method": capture_method, "confirmation_method": "automatic", "customer": customer_id,
        "setup_future_usage": future_usage, "latest_charge": None, "last_payment_error": None,
        "payment_method": None if method is None else method["id"], "canceled_at": None,
        "payment_method_types": list(types.values()) if isinstance(types, dict) else ["card"],
        "cancellation_reason": None, "next_action": None,
    }
    fake.intents[intent_id] = intent
    fake.emit("payment_intent.created", intent)
    if confirm and method is not None:
        _pay(fake, intent, method, off_session=off_session, return_url=return_url, base_url=base_url)
    return intent


def _check_confirm_params(params: dict[str, Any], *, confirm: bool, off_session: bool) -> None:
    if off_session and not confirm:
        raise StripeError(400, "invalid_request_error", "off_session can only be used when confirm is true.",
                          param="off_session", saved=False)
    if confirm and not params.get("payment_method"):
        raise StripeError(400, "invalid_request_error", "You cannot confirm this PaymentIntent because it's "
                          "missing a payment method.", "parameter_missing", param="payment_method",
                          saved=False)
    automatic = params.get("automatic_payment_methods") or {}
    if confirm and str(automatic.get("enabled")) == "true" and automatic.get("allow_redirects") != "never" \
            and not params.get("return_url"):
        raise StripeError(400, "invalid_request_error", "A `return_url` must be specified because this Payment "
                          "Intent is configured to automatically accept the payment methods enabled in the "
                          "Dashboard, some of which may require a full page redirect to succeed.",
                          param="return_url", saved=False)


def payment_intent(fake: FakeStripe, intent_id: str) -> dict[str, Any]:
    intent = fake.intents.get(intent_id)
    if intent is None:
        raise StripeError(404, "invalid_request_error", f"No such payment_intent: '{intent_id}'",
                          "resource_missing", param="intent")
    return intent


def charge(fake: FakeStripe, charge_id: str) -> dict[str, Any]:
    found = fake.charges.get(charge_id)
    if found is None:
        raise StripeError(404, "invalid_request_error", f"No such charge: '{charge_id}'", "resource_missing",
                          param="id")
    return found


def confirm_payment_intent(fake: FakeStripe, intent_id: str, params: dict[str, Any],
                           base_url: str = "") -> dict[str, Any]:
    intent = payment_intent(fake, intent_id)
    if intent["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
        raise StripeError(400, "invalid_request_error",
                          f"This PaymentIntent's status is {intent['status']}; it cannot be confirmed.",
                          "payment_intent_unexpected_state")
    off_session = bool_param(params, "off_session")
    return_url = authentication.check_return_url(params)
    future_usage = choice_param(params, "setup_future_usage", FUTURE_USAGES, intent["setup_future_usage"])
    method = customers.payment_method_for(
        fake, str(params.get("payment_method") or intent["payment_method"] or "pm_card_visa"))
    customers.check_usable(method, intent["customer"], off_session=off_session)
    intent["setup_future_usage"] = future_usage
    _pay(fake, intent, method, off_session=off_session, return_url=return_url, base_url=base_url)
    return intent


def _refusal(card: str, off_session: bool) -> tuple[str, str] | None:
    """(code, message) of a test card's decline, or None."""
    if OFF_SESSION_DECLINED in card or authentication.required(card):  # the former contains "Declined" too
        return ("authentication_required", "Your card was declined. This transaction requires "
                "authentication.") if off_session else None
    return ("card_declined", "Your card was declined.") if DECLINED in card else None


def _pay(fake: FakeStripe, intent: dict[str, Any], method: dict[str, Any], *, off_session: bool,
         return_url: str | None = None, base_url: str = "") -> None:
    card = fake.test_cards[method["id"]]
    refusal = _refusal(card, off_session)
    if refusal is not None:
        code, message = refusal
        decline_code = "generic_decline" if code == "card_declined" else code
        error = {"type": "card_error", "code": code, "decline_code": decline_code, "message": message,
                 "payment_method": copy.deepcopy(method)}
        intent.update(status="requires_payment_method", payment_method=None, last_payment_error=error,
                      next_action=None)
        fake.emit("payment_intent.payment_failed", intent)
        raise StripeError(402, "card_error", message, code, decline_code=decline_code,
                          payment_intent=copy.deepcopy(intent), payment_method=copy.deepcopy(method))
    if authentication.required(card):  # on-session: the customer authenticates on the page first
        authentication.require_action(fake, intent, method, return_url=return_url, base_url=base_url)
        return
    settle(fake, intent, method, off_session=off_session)


def settle(fake: FakeStripe, intent: dict[str, Any], method: dict[str, Any], *, off_session: bool = False) -> None:
    """A payment the bank accepts: charged (or authorised, for manual capture), its events sent."""
    manual = intent["capture_method"] == "manual"
    charge = _charge(fake, intent, method, captured=not manual, off_session=off_session)
    intent.update(payment_method=method["id"], latest_charge=charge["id"], last_payment_error=None, next_action=None)
    if manual:
        intent.update(status="requires_capture", amount_capturable=intent["amount"])
    else:
        intent.update(status="succeeded", amount_received=intent["amount"])
    fake.emit("charge.succeeded", charge)
    fake.emit("payment_intent.amount_capturable_updated" if manual else "payment_intent.succeeded", intent)
    if intent["setup_future_usage"] and intent["customer"]:
        customers.attach(fake, method, intent["customer"])


def _charge(fake: FakeStripe, intent: dict[str, Any], method: dict[str, Any], *, captured: bool,
            off_session: bool) -> dict[str, Any]:
    charge_id, now, amount = new_id("ch"), int(time.time()), intent["amount"]
    card = {key: method["card"][key] for key in ("brand", "last4", "exp_month", "exp_year", "funding", "country")}
    if not captured:
        window = VISA_OFF_SESSION_HOLD_SECONDS if off_session and card["brand"] == "visa" else HOLD_SECONDS
        card["capture_before"] = now + window
    charge = {
        "id": charge_id, "object": "charge", "amount": amount, "amount_captured": amount if captured else 0,
        "amount_refunded": 0, "currency": intent["currency"], "payment_intent": intent["id"],
        "customer": intent["customer"], "metadata": dict(intent["metadata"]), "paid": True, "captured": captured,
        "refunded": False, "status": "succeeded", "balance_transaction": None, "created": now,
        "livemode": False, "payment_method": method["id"], "disputed": False,
        "billing_details": dict(method["billing_details"]),
        "payment_method_details": {"type": "card", "card": card},
    }  # no ``refunds`` list: not expanded by default since API 2022-11-15 (refunds.py)
    if captured:
        charge["balance_transaction"] = fake.add_balance_transaction("charge", amount, intent["currency"],
                                                                     charge_id)["id"]
    fake.charges[charge_id] = charge
    return charge


def capture_payment_intent(fake: FakeStripe, intent_id: str, params: dict[str, Any]) -> dict[str, Any]:
    intent = payment_intent(fake, intent_id)
    if intent["status"] != "requires_capture":
        raise StripeError(400, "invalid_request_error",
                          f"This PaymentIntent could not be captured because it has a status of {intent['status']}. "
                          "Only a PaymentIntent with one of the following statuses may be captured: "
                          "requires_capture.", "payment_intent_unexpected_state",
                          payment_intent=copy.deepcopy(intent))
    capturable = intent["amount_capturable"]
    amount = int_param(params, "amount_to_capture", required=False)
    amount = capturable if amount is None else amount
    if amount < 1:
        raise StripeError(400, "invalid_request_error", "The amount to capture must be at least 1.",
                          "amount_too_small", param="amount_to_capture")
    if amount > capturable:
        raise StripeError(400, "invalid_request_error", "The payment could not be captured because the requested "
                          f"capture amount ({amount}) is greater than the amount you can capture for this charge "
                          f"({capturable}).", "amount_too_large", param="amount_to_capture")
    charge = fake.charges[intent["latest_charge"]]
    txn = fake.add_balance_transaction("charge", amount, intent["currency"], charge["id"])
    charge.update(captured=True, amount_captured=amount, balance_transaction=txn["id"])
    intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
    fake.emit("charge.captured", charge)
    fake.emit("payment_intent.succeeded", intent)
    return intent


def cancel_payment_intent(fake: FakeStripe, intent_id: str, params: dict[str, Any]) -> dict[str, Any]:
    intent = payment_intent(fake, intent_id)
    reason = choice_param(params, "cancellation_reason", CANCELLATION_REASONS)
    if intent["status"] not in CANCELLABLE:
        raise StripeError(400, "invalid_request_error",
                          f"You cannot cancel this PaymentIntent because it has a status of {intent['status']}. "
                          f"Only a PaymentIntent with one of the following statuses may be canceled: "
                          f"{', '.join(CANCELLABLE)}.", "payment_intent_unexpected_state")
    intent.update(status="canceled", cancellation_reason=reason, canceled_at=int(time.time()), amount_capturable=0,
                  next_action=None)
    fake.emit("payment_intent.canceled", intent)
    return intent


def expire_authorization(fake: FakeStripe, intent_id: str) -> dict[str, Any]:
    """The hold lapses, as it does when not captured in time: released, the intent cancelled."""
    intent = payment_intent(fake, intent_id)
    if intent["status"] != "requires_capture":
        raise StripeError(400, "invalid_request_error", f"Only an authorisation (status requires_capture) can "
                          f"lapse; this PaymentIntent's status is {intent['status']}.",
                          "payment_intent_unexpected_state")
    intent.update(status="canceled", cancellation_reason="expired", canceled_at=int(time.time()),
                  amount_capturable=0)
    fake.emit("charge.expired", fake.charges[intent["latest_charge"]])
    fake.emit("payment_intent.canceled", intent)
    return intent
