"""The Stripe objects the fake serves: PaymentIntents, their Charges, Refunds, Transfers, balance transactions.

Each operation reads and changes the account (``state.FakeStripe``), emits the events Stripe would, and
refuses as Stripe does, with a ``StripeError`` carrying Stripe's status, type and code. Test-mode cards as
in Stripe: confirming with ``pm_card_chargeDeclined`` (or any payment method containing "Declined")
declines with a 402 ``card_error`` and a ``payment_intent.payment_failed`` event; anything else succeeds
with a charge, a balance transaction and ``payment_intent.succeeded``. Every charge, refund and transfer
moves money through one balance transaction, listed newest first.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from totem.fake_stripe.state import FakeStripe, StripeError, int_param, new_id

DECLINED = "Declined"


def create_payment_intent(fake: FakeStripe, params: dict[str, Any]) -> dict[str, Any]:
    amount = int_param(params, "amount")
    currency = str(params.get("currency", "")).lower()
    if not amount or amount < 1:
        raise StripeError(400, "invalid_request_error", "Amount must be at least 1.", "amount_too_small")
    if len(currency) != 3:
        raise StripeError(400, "invalid_request_error", "Missing required param: currency.",
                          "parameter_missing", param="currency")
    intent_id = new_id("pi")
    intent = {
        "id": intent_id, "object": "payment_intent", "amount": amount, "amount_received": 0,
        "currency": currency, "status": "requires_payment_method",
        "client_secret": f"{intent_id}_secret_{secrets.token_hex(8)}", "metadata": params.get("metadata", {}),
        "description": params.get("description"), "created": int(time.time()), "livemode": False,
        "capture_method": "automatic", "confirmation_method": "automatic", "latest_charge": None,
        "last_payment_error": None, "payment_method": None, "payment_method_types": ["card"],
    }
    fake.intents[intent_id] = intent
    fake.emit("payment_intent.created", intent)
    return intent


def payment_intent(fake: FakeStripe, intent_id: str) -> dict[str, Any]:
    intent = fake.intents.get(intent_id)
    if intent is None:
        raise StripeError(404, "invalid_request_error", f"No such payment_intent: '{intent_id}'",
                          "resource_missing", param="intent")
    return intent


def confirm_payment_intent(fake: FakeStripe, intent_id: str, params: dict[str, Any]) -> dict[str, Any]:
    intent = payment_intent(fake, intent_id)
    if intent["status"] not in ("requires_payment_method", "requires_confirmation"):
        raise StripeError(400, "invalid_request_error",
                          f"This PaymentIntent's status is {intent['status']}; it cannot be confirmed.",
                          "payment_intent_unexpected_state")
    method = str(params.get("payment_method") or "pm_card_visa")
    intent["payment_method"] = method
    if DECLINED in method:
        error = {"type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
                 "message": "Your card was declined.", "payment_method": {"id": method}}
        intent.update(status="requires_payment_method", last_payment_error=error)
        fake.emit("payment_intent.payment_failed", intent)
        raise StripeError(402, "card_error", "Your card was declined.", "card_declined",
                          decline_code="generic_decline", payment_intent=dict(intent))
    charge_id = new_id("ch")
    txn = _balance_transaction(fake, "charge", intent["amount"], intent["currency"], charge_id)
    charge = {
        "id": charge_id, "object": "charge", "amount": intent["amount"], "amount_captured": intent["amount"],
        "amount_refunded": 0, "currency": intent["currency"], "payment_intent": intent_id,
        "metadata": dict(intent["metadata"]), "paid": True, "captured": True, "refunded": False,
        "status": "succeeded", "balance_transaction": txn["id"], "created": int(time.time()),
        "livemode": False, "payment_method": method,
        "refunds": {"object": "list", "data": [], "has_more": False, "total_count": 0,
                    "url": f"/v1/charges/{charge_id}/refunds"},
    }
    fake.charges[charge_id] = charge
    intent.update(status="succeeded", amount_received=intent["amount"], latest_charge=charge_id,
                  last_payment_error=None)
    fake.emit("charge.succeeded", charge)
    fake.emit("payment_intent.succeeded", intent)
    return intent


def cancel_payment_intent(fake: FakeStripe, intent_id: str, params: dict[str, Any]) -> dict[str, Any]:
    intent = payment_intent(fake, intent_id)
    if intent["status"] in ("succeeded", "canceled"):
        raise StripeError(400, "invalid_request_error",
                          f"You cannot cancel this PaymentIntent because it has a status of {intent['status']}.",
                          "payment_intent_unexpected_state")
    intent.update(status="canceled", cancellation_reason=params.get("cancellation_reason"),
                  canceled_at=int(time.time()))
    fake.emit("payment_intent.canceled", intent)
    return intent


def create_refund(fake: FakeStripe, params: dict[str, Any]) -> dict[str, Any]:
    charge = _charge_to_refund(fake, params)
    remaining = charge["amount"] - charge["amount_refunded"]
    amount = int_param(params, "amount", required=False)
    amount = remaining if amount is None else amount
    if charge["refunded"] or remaining == 0:
        raise StripeError(400, "invalid_request_error", f"Charge {charge['id']} has already been refunded.",
                          "charge_already_refunded")
    if amount < 1 or amount > remaining:
        raise StripeError(400, "invalid_request_error",
                          f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
                          "amount_too_large")
    refund_id = new_id("re")
    txn = _balance_transaction(fake, "refund", -amount, charge["currency"], refund_id)
    refund = {
        "id": refund_id, "object": "refund", "amount": amount, "currency": charge["currency"],
        "charge": charge["id"], "payment_intent": charge["payment_intent"], "status": "succeeded",
        "reason": params.get("reason"), "metadata": params.get("metadata", {}), "created": int(time.time()),
        "balance_transaction": txn["id"],
    }
    fake.refunds[refund_id] = refund
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] == charge["amount"]
    charge["refunds"]["data"].insert(0, refund)
    charge["refunds"]["total_count"] += 1
    fake.emit("refund.created", refund)
    fake.emit("charge.refunded", charge)
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


def create_transfer(fake: FakeStripe, params: dict[str, Any]) -> dict[str, Any]:
    amount = int_param(params, "amount")
    currency = str(params.get("currency", "")).lower()
    destination = params.get("destination")
    if not destination:
        raise StripeError(400, "invalid_request_error", "Missing required param: destination.",
                          "parameter_missing", param="destination")
    if not amount:
        raise StripeError(400, "invalid_request_error", "Amount must be at least 1.", "amount_too_small")
    if not str(destination).startswith("acct_") or "invalid" in str(destination):
        raise StripeError(400, "invalid_request_error", f"No such destination: '{destination}'",
                          "resource_missing", param="destination")
    transfer_id = new_id("tr")
    txn = _balance_transaction(fake, "transfer", -amount, currency, transfer_id)
    transfer = {
        "id": transfer_id, "object": "transfer", "amount": amount, "currency": currency,
        "destination": destination, "transfer_group": params.get("transfer_group"),
        "description": params.get("description"), "metadata": params.get("metadata", {}),
        "reversed": False, "amount_reversed": 0, "created": int(time.time()), "livemode": False,
        "balance_transaction": txn["id"],
    }
    fake.transfers[transfer_id] = transfer
    fake.emit("transfer.created", transfer)
    return transfer


def _balance_transaction(fake: FakeStripe, type_: str, amount: int, currency: str, source: str) -> dict[str, Any]:
    now = int(time.time())
    txn = {"id": new_id("txn"), "object": "balance_transaction", "amount": amount, "currency": currency,
           "fee": 0, "net": amount, "type": type_, "reporting_category": type_, "source": source,
           "status": "available", "created": now, "available_on": now}
    fake.balance_transactions.append(txn)
    return txn


def list_balance_transactions(fake: FakeStripe, query: dict[str, str]) -> dict[str, Any]:
    limit = max(1, min(100, int(query.get("limit", "10"))))
    rows = list(reversed(fake.balance_transactions))  # newest first, as Stripe lists
    for name in ("type", "source"):
        if query.get(name):
            rows = [r for r in rows if r[name] == query[name]]
    if query.get("starting_after"):
        ids = [r["id"] for r in rows]
        rows = rows[ids.index(query["starting_after"]) + 1:] if query["starting_after"] in ids else []
    page = rows[:limit]
    return {"object": "list", "data": page, "has_more": len(rows) > limit, "url": "/v1/balance_transactions"}
