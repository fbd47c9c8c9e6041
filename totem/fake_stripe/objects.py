"""Money moving out and the record of it: Transfers, and the balance transactions list.

Each operation reads and changes the account (``state.FakeStripe``), emits the events Stripe would, and
refuses as Stripe does, with a ``StripeError`` carrying Stripe's status, type and code. Every capture,
refund and transfer moves money through one balance transaction, listed newest first. PaymentIntents
and their charges live in ``intents.py``, refunds in ``refunds.py``, customers and payment methods in
``customers.py``.
"""

from __future__ import annotations

import time
from typing import Any

from totem.fake_stripe import accounts
from totem.fake_stripe.state import FakeStripe, StripeError, int_param, new_id


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
        "reversals": {"object": "list", "data": [], "has_more": False,
                      "url": f"/v1/transfers/{transfer_id}/reversals"},
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
