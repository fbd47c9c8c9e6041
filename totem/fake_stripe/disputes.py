"""Disputes (chargebacks), opened and closed on demand, as Stripe's Dispute object and events describe them
(API 2026-10-28): in test mode a dispute is opened by paying with a disputing test card; here a ``/_fake``
control opens one on any captured charge.

Opening a dispute (``needs_response``) withdraws the disputed amount and Stripe's dispute fee from the
balance in one balance transaction (type ``adjustment``, reporting category ``dispute``, ``fee`` the
dispute fee with its ``fee_details``, ``source`` the dispute) listed in the dispute's
``balance_transactions``; it sends ``charge.dispute.created`` then ``charge.dispute.funds_withdrawn``. An
inquiry (``warning_needs_response``) withdraws nothing. Closing it won reinstates the amount (a second
balance transaction, reporting category ``dispute_reversal``, no fee: Stripe keeps the dispute fee whatever
the outcome) with ``charge.dispute.funds_reinstated``, then ``charge.dispute.closed`` (status ``won``); lost,
``charge.dispute.closed`` (status ``lost``); an inquiry closes ``warning_closed``. Moving the evidence
deadline (``evidence_details.due_by``) into the past marks it ``past_due`` and loses it, as Stripe does when
no evidence came in time.
"""

from __future__ import annotations

import time
from typing import Any

from totem.fake_stripe.intents import payment_intent
from totem.fake_stripe.state import FakeStripe, StripeError, choice_param, int_param, new_id

DISPUTE_FEE = 1500  # 15.00 in the charge's currency (Stripe's fee for the EUR and USD accounts)
EVIDENCE_WINDOW = 21 * 86_400
REASONS = ("bank_cannot_process", "check_returned", "credit_not_processed", "customer_initiated",
           "debit_not_authorized", "duplicate", "fraudulent", "general", "incorrect_account_details",
           "insufficient_funds", "noncompliant", "product_not_received", "product_unacceptable",
           "subscription_canceled", "unrecognized")
OUTCOMES = ("won", "lost")
OPEN = ("needs_response", "under_review", "warning_needs_response", "warning_under_review")
_EVIDENCE_FIELDS = (
    "access_activity_log", "billing_address", "cancellation_policy", "cancellation_policy_disclosure",
    "cancellation_rebuttal", "customer_communication", "customer_email_address", "customer_name",
    "customer_purchase_ip", "customer_signature", "duplicate_charge_documentation", "duplicate_charge_explanation",
    "duplicate_charge_id", "product_description", "receipt", "refund_policy", "refund_policy_disclosure",
    "refund_refusal_explanation", "service_date", "service_documentation", "shipping_address", "shipping_carrier",
    "shipping_date", "shipping_documentation", "shipping_tracking_number", "uncategorized_file", "uncategorized_text")


def open_dispute(fake: FakeStripe, params: dict[str, Any]) -> dict[str, Any]:
    """``{payment_intent, amount?, reason?, inquiry?}`` → the Dispute; the amount defaults to what the charge
    captured and has not refunded."""
    intent = payment_intent(fake, str(params.get("payment_intent") or ""))
    charge = fake.charges.get(intent.get("latest_charge") or "")
    if charge is None or not charge["captured"]:
        raise StripeError(400, "invalid_request_error", f"PaymentIntent {intent['id']} has no captured charge to "
                          "dispute.", "charge_not_disputable")
    if charge.get("disputed"):
        raise StripeError(400, "invalid_request_error", f"Charge {charge['id']} is already disputed.",
                          "charge_disputed")
    disputable = charge["amount_captured"] - charge["amount_refunded"]
    amount = int_param({k: str(v) for k, v in params.items()}, "amount", required=False) or disputable
    if amount < 1 or amount > disputable:
        raise StripeError(400, "invalid_request_error", f"amount must be 1 … {disputable}", param="amount")
    reason = choice_param(params, "reason", REASONS, "fraudulent")
    inquiry = bool(params.get("inquiry", False))
    now = int(time.time())
    dispute_id = new_id("dp")
    dispute: dict[str, Any] = {
        "id": dispute_id, "object": "dispute", "amount": amount, "balance_transactions": [],
        "charge": charge["id"], "created": now, "currency": charge["currency"], "enhanced_eligibility_types": [],
        "evidence": dict.fromkeys(_EVIDENCE_FIELDS),
        "evidence_details": {"due_by": now + EVIDENCE_WINDOW, "enhanced_eligibility": {}, "has_evidence": False,
                             "past_due": False, "submission_count": 0},
        "is_charge_refundable": inquiry, "livemode": False, "metadata": {}, "network_reason_code": None,
        "payment_intent": intent["id"],
        "payment_method_details": {"type": "card", "card": {
            "brand": charge["payment_method_details"]["card"]["brand"],
            "case_type": "inquiry" if inquiry else "chargeback", "network_reason_code": None}},
        "reason": reason, "status": "warning_needs_response" if inquiry else "needs_response",
    }
    fake.disputes[dispute_id] = dispute
    charge["disputed"] = True
    fake.emit("charge.dispute.created", dispute)
    if not inquiry:
        _move_funds(fake, dispute, -amount, DISPUTE_FEE, "dispute", f"Chargeback withdrawal for {charge['id']}")
        fake.emit("charge.dispute.funds_withdrawn", dispute)
    return dispute


def close_dispute(fake: FakeStripe, dispute_id: str, params: dict[str, Any]) -> dict[str, Any]:
    dispute = retrieve_dispute(fake, dispute_id)
    outcome = choice_param(params, "outcome", OUTCOMES)
    if outcome is None:
        raise StripeError(400, "invalid_request_error", "Missing required param: outcome.", "parameter_missing",
                          param="outcome")
    if dispute["status"] not in OPEN:
        raise StripeError(400, "invalid_request_error", f"Dispute {dispute_id} is already closed "
                          f"({dispute['status']}).", "dispute_already_closed")
    _close(fake, dispute, outcome)
    return dispute


def move_due_by(fake: FakeStripe, dispute_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """``{due_by}`` (Unix seconds): the evidence deadline; in the past, the dispute is past due and lost."""
    dispute = retrieve_dispute(fake, dispute_id)
    due_by = int_param({k: str(v) for k, v in params.items()}, "due_by") or 0
    dispute["evidence_details"]["due_by"] = due_by
    if due_by <= time.time() and dispute["status"] in OPEN:
        dispute["evidence_details"]["past_due"] = True
        _close(fake, dispute, "lost")
    elif dispute["status"] in OPEN:
        fake.emit("charge.dispute.updated", dispute)
    return dispute


def retrieve_dispute(fake: FakeStripe, dispute_id: str) -> dict[str, Any]:
    dispute = fake.disputes.get(dispute_id)
    if dispute is None:
        raise StripeError(404, "invalid_request_error", f"No such dispute: '{dispute_id}'", "resource_missing",
                          param="dispute")
    return dispute


def _close(fake: FakeStripe, dispute: dict[str, Any], outcome: str) -> None:
    inquiry = dispute["status"].startswith("warning_")
    if outcome == "won" and not inquiry:
        _move_funds(fake, dispute, dispute["amount"], 0, "dispute_reversal",
                    f"Chargeback reversal for {dispute['charge']}")
        dispute["status"] = "won"
        fake.emit("charge.dispute.funds_reinstated", dispute)
    else:
        dispute["status"] = "warning_closed" if inquiry else "lost"
    dispute["is_charge_refundable"] = False
    fake.emit("charge.dispute.closed", dispute)


def _move_funds(fake: FakeStripe, dispute: dict[str, Any], amount: int, fee: int, category: str,
                description: str) -> None:
    txn = fake.add_balance_transaction("adjustment", amount, dispute["currency"], dispute["id"])
    txn.update({"fee": fee, "net": amount - fee, "reporting_category": category, "description": description,
                "exchange_rate": None,
                "fee_details": [{"amount": fee, "application": None, "currency": dispute["currency"],
                                 "description": "Dispute fee", "type": "stripe_fee"}] if fee else []})
    dispute["balance_transactions"].append(dict(txn))
