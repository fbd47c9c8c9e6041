"""Money moving out and the record of it: Refunds, Transfers, and the balance transactions list.

Each operation reads and changes the account (``state.FakeStripe``), emits the events Stripe would, and
refuses as Stripe does, with a ``StripeError`` carrying Stripe's status, type and code. A refund takes
back part or all of what a charge captured (``amount_captured``; a charge only authorised has nothing to
refund: cancel its intent instead), with ``refund.created`` and ``charge.refunded``. Every capture,
refund and transfer moves money through one balance transaction, listed newest first. PaymentIntents
and their charges live in ``intents.py``, customers and payment methods in ``customers.py``.
"""

from __future__ import annotations

import time
from typing import Any

from totem.fake_stripe import accounts
from totem.fake_stripe.intents import payment_intent
from totem.fake_stripe.state import FakeStripe, StripeError, int_param, new_id


def create_refund(fake: FakeStripe, params: dict[str, Any]) -> dict[str, Any]:
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
    refund_id = new_id("re")
    txn = fake.add_balance_transaction("refund", -amount, charge["currency"], refund_id)
    refund = {
        "id": refund_id, "object": "refund", "amount": amount, "currency": charge["currency"],
        "charge": charge["id"], "payment_intent": charge["payment_intent"], "status": "succeeded",
        "reason": params.get("reason"), "metadata": params.get("metadata", {}), "created": int(time.time()),
        "balance_transaction": txn["id"],
    }
    fake.refunds[refund_id] = refund
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] == charge["amount_captured"]
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
    source = accounts.check_transfer(fake, params, amount, currency)
    transfer_id = new_id("tr")
    txn = fake.add_balance_transaction("transfer", -amount, currency, transfer_id)
    transfer = {
        "id": transfer_id, "object": "transfer", "amount": amount, "currency": currency,
        "destination": destination, "transfer_group": params.get("transfer_group"), "source_transaction": source,
        "description": params.get("description"), "metadata": params.get("metadata", {}),
        "reversed": False, "amount_reversed": 0, "created": int(time.time()), "livemode": False,
        "balance_transaction": txn["id"],
    }
    fake.transfers[transfer_id] = transfer
    fake.emit("transfer.created", transfer)
    return transfer


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
