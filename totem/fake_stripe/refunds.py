"""Refunds as Stripe makes them: created through the API (``POST /v1/refunds``) or in the Dashboard
(``POST /_fake/refunds``, a control: no metadata of ours), read back (``GET /v1/refunds/{id}``), and later
settled or failed by the bank (``/_fake/refunds/{id}/succeed`` and ``/fail``, controls).

What Stripe documents (API 2024-10-28.acacia and later), and the fake does:

* A refund takes back part or all of what a charge captured (``amount_captured``; a charge only authorised
  has nothing to refund: cancel its intent instead). Its money leaves the balance at once (a ``refund``
  balance transaction), and the charge's ``amount_refunded`` counts it (``refunded`` once all is back).
* Every refund sends ``refund.created``; the charge sends ``charge.refunded``. Since API 2022-11-15 a
  Charge carries no ``refunds`` list (not expanded by default, and webhook payloads are never expanded):
  refund details come from the refund's own events.
* Cards usually refund at once (``succeeded``). Stripe's test card ``pm_card_pendingRefund`` refunds
  ``pending`` (``pending_reason: processing``) and succeeds later (here: ``/succeed``), sending
  ``refund.updated``. ``pm_card_refundFail`` refunds ``succeeded`` and fails later (here: ``/fail``; any
  refund may be failed that way, as a closed card fails it in production).
* A refund that fails after it was created: ``status: failed`` with a ``failure_reason``
  (``expired_or_canceled_card``, ``lost_or_stolen_card``, ``declined``, ``insufficient_funds``,
  ``merchant_request``, ``unknown``), a ``failure_balance_transaction`` (``refund_failure``) that puts the
  money back in the balance, the charge's ``amount_refunded`` back down, and ``refund.updated`` then
  ``refund.failed``.
"""

from __future__ import annotations

import time
from typing import Any

from totem.fake_stripe.intents import payment_intent
from totem.fake_stripe.state import FakeStripe, StripeError, int_param, new_id

PENDING_CARD = "pendingRefund"
FAILURE_REASONS = ("expired_or_canceled_card", "lost_or_stolen_card", "declined", "insufficient_funds",
                   "merchant_request", "unknown")
REASONS = ("duplicate", "fraudulent", "requested_by_customer")


def create_refund(fake: FakeStripe, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/refunds`` (``charge`` or ``payment_intent``, ``amount`` default all that is left,
    ``reason``, ``metadata``), and the Dashboard's refunds."""
    charge = _charge_to_refund(fake, params)
    if not charge["captured"]:
        raise StripeError(400, "invalid_request_error", f"Charge {charge['id']} has not been captured: there is "
                          "nothing to refund. Cancel its PaymentIntent to release the authorization.",
                          "charge_not_refundable")
    remaining = charge["amount_captured"] - charge["amount_refunded"]
    amount = int_param(params, "amount", required=False)
    amount = remaining if amount is None else amount
    if charge["refunded"] or remaining == 0:
        raise StripeError(400, "invalid_request_error", f"Charge {charge['id']} has already been refunded.",
                          "charge_already_refunded")
    if amount < 1 or amount > remaining:
        raise StripeError(400, "invalid_request_error",
                          f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
                          "amount_too_large")
    reason = params.get("reason") or None
    if reason is not None and reason not in REASONS:
        raise StripeError(400, "invalid_request_error", f"Invalid reason: must be one of {', '.join(REASONS)}",
                          param="reason", saved=False)
    pending = PENDING_CARD in fake.test_cards.get(str(charge.get("payment_method")), "")
    refund_id = new_id("re")
    txn = fake.add_balance_transaction("refund", -amount, charge["currency"], refund_id)
    refund: dict[str, Any] = {
        "id": refund_id, "object": "refund", "amount": amount, "balance_transaction": txn["id"],
        "charge": charge["id"], "created": int(time.time()), "currency": charge["currency"],
        "destination_details": {"type": "card", "card": {"type": "refund", "reference_status": "pending",
                                                         "reference_type": "acquirer_reference_number"}},
        "metadata": params.get("metadata") or {}, "payment_intent": charge["payment_intent"],
        "reason": reason, "receipt_number": None, "source_transfer_reversal": None,
        "status": "pending" if pending else "succeeded", "transfer_reversal": None,
    }
    if pending:
        refund["pending_reason"] = "processing"
    fake.refunds[refund_id] = refund
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] == charge["amount_captured"]
    fake.emit("refund.created", refund)
    fake.emit("charge.refunded", charge)
    return refund


def create_dashboard_refund(fake: FakeStripe, data: dict[str, Any]) -> dict[str, Any]:
    """A refund someone made in the Dashboard: no idempotency key, no metadata of ours."""
    params = {"payment_intent": data.get("payment_intent"), "charge": data.get("charge")}
    if data.get("amount") is not None:
        params["amount"] = str(data["amount"])
    return create_refund(fake, {k: v for k, v in params.items() if v is not None})


def retrieve_refund(fake: FakeStripe, refund_id: str) -> dict[str, Any]:
    refund = fake.refunds.get(refund_id)
    if refund is None:
        raise StripeError(404, "invalid_request_error", f"No such refund: '{refund_id}'", "resource_missing",
                          param="id")
    return refund


def succeed_refund(fake: FakeStripe, refund_id: str) -> dict[str, Any]:
    """A pending refund settles (the bank confirmed it): ``succeeded``, ``refund.updated``."""
    refund = retrieve_refund(fake, refund_id)
    if refund["status"] != "pending":
        raise StripeError(400, "invalid_request_error", f"Only a pending refund can succeed; refund {refund_id} "
                          f"is {refund['status']}.", "refund_unexpected_state")
    refund["status"] = "succeeded"
    refund.pop("pending_reason", None)
    fake.emit("refund.updated", refund)
    return refund


def fail_refund(fake: FakeStripe, refund_id: str, failure_reason: str | None) -> dict[str, Any]:
    """A created refund fails (the card was closed, the bank returned it): the money comes back to the
    balance and off the charge's ``amount_refunded``; ``refund.updated`` then ``refund.failed``."""
    refund = retrieve_refund(fake, refund_id)
    reason = failure_reason or "expired_or_canceled_card"
    if reason not in FAILURE_REASONS:
        raise StripeError(400, "invalid_request_error",
                          f"Invalid failure_reason: must be one of {', '.join(FAILURE_REASONS)}")
    if refund["status"] not in ("pending", "succeeded"):
        raise StripeError(400, "invalid_request_error", f"Refund {refund_id} is {refund['status']}: it can no "
                          "longer fail.", "refund_unexpected_state")
    txn = fake.add_balance_transaction("refund_failure", refund["amount"], refund["currency"], refund_id)
    refund.update(status="failed", failure_reason=reason, failure_balance_transaction=txn["id"])
    refund.pop("pending_reason", None)
    charge = fake.charges[refund["charge"]]
    charge["amount_refunded"] -= refund["amount"]
    charge["refunded"] = charge["amount_refunded"] == charge["amount_captured"]
    fake.emit("refund.updated", refund)
    fake.emit("refund.failed", refund)
    return refund


def _charge_to_refund(fake: FakeStripe, params: dict[str, Any]) -> dict[str, Any]:
    if params.get("charge"):
        charge = fake.charges.get(str(params["charge"]))
    elif params.get("payment_intent"):
        intent = payment_intent(fake, str(params["payment_intent"]))
        charge = fake.charges.get(intent["latest_charge"] or "")
    else:
        raise StripeError(400, "invalid_request_error", "One of charge or payment_intent is required.",
                          "parameter_missing")
    if charge is None:
        raise StripeError(400, "invalid_request_error", "This PaymentIntent does not have a successful charge "
                          "to refund.", "charge_not_refundable")
    return charge
