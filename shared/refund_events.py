"""Refunds as Stripe reports them: ``refund.created``, ``refund.updated`` and ``refund.failed`` (sent for every
refund since API 2024-10-28.acacia), the answer to our own ``POST /v1/refunds``, and ``charge.refunded``.

Since API 2022-11-15 a Charge no longer lists its refunds, so a refund's details (id, amount, status, our
``metadata.refund_id``) come only from the refund itself. The rules, each applied once whatever the order
of arrival and the number of copies:

* **Ours or theirs.** A refund naming one of our refund rows in ``metadata.refund_id`` (the row we stage
  before calling Stripe) settles that row; any other (the Dashboard, another integration) is recorded as an
  ``external`` refund of the payment. Either way the row names Stripe's id once (``refunds.stripe_refund_id``
  is UNIQUE).
* **Forward only.** A refund's status moves pending → succeeded → failed, or pending → failed (Stripe's
  ``requires_action`` counts as pending, ``canceled`` as failed); a stale snapshot delivered late changes
  nothing (``advance_refund``; the trigger ``refunds_valid_transition`` refuses the rest).
* **Ledger as Stripe's balance.** A refund Stripe created takes the money from the balance at once (its
  balance transaction), pending or not: it is posted once (``ledger.post_refund``) as soon as its payment's
  capture is recorded (if the refund's event came first, the capture posts it). One that fails gives the
  money back (Stripe's ``failure_balance_transaction``): ``ledger.post_refund_reversal``, once. So a failed
  refund always ends posted and reversed, whatever order its events came in.
* **``charge.refunded`` only moves the charge's total** (``payments.amount_refunded``): kept as a hint for when
  it arrives before its refunds' events; it posts nothing.

Every function runs in the caller's transaction, after the booking was locked (booking → payment → refund).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from shared import ledger
from shared.db import QUERIES, expect_row

# Stripe's refund statuses, as our refund rows keep them.
STATUSES = {"pending": "pending", "requires_action": "pending", "succeeded": "succeeded",
            "failed": "failed", "canceled": "failed"}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What applying a refund did (``stripe_event_effects.effect`` and its detail)."""

    effect: str
    booking_id: uuid.UUID | None
    detail: dict[str, Any]


def _our_refund_id(obj: dict[str, Any]) -> uuid.UUID | None:
    raw = (obj.get("metadata") or {}).get("refund_id")
    try:
        return uuid.UUID(str(raw)) if raw else None
    except ValueError:
        return None


def apply_refund(conn: psycopg.Connection[Any], obj: dict[str, Any]) -> Outcome:
    """Apply one snapshot of a Stripe Refund (an event's object, or Stripe's answer to our create call)."""
    intent_id = obj.get("payment_intent")
    payment = conn.execute(QUERIES["refund_payment"], {"payment_intent_id": intent_id}).fetchone() \
        if intent_id else None
    if payment is None:
        return Outcome("unknown_booking", None, {"stripe_refund_id": obj["id"], "payment_intent_id": intent_id})
    booking_id = payment["booking_id"]  # a payment's booking never changes; its status may, so read it again
    conn.execute(QUERIES["lock_booking"], {"id": booking_id})  # once its booking is locked
    payment = expect_row(conn.execute(QUERIES["refund_payment"], {"payment_intent_id": intent_id}).fetchone(),
                         "refund_payment")
    status = STATUSES.get(str(obj["status"]), "pending")
    failure_reason = obj.get("failure_reason") or ("canceled" if obj["status"] == "canceled" else None)
    terms = {"stripe_refund_id": obj["id"], "status": status,
             "failure_reason": failure_reason if status == "failed" else None}
    row = conn.execute(QUERIES["lock_refund"], {"refund_id": _our_refund_id(obj), "stripe_refund_id": obj["id"],
                                                "payment_id": payment["id"]}).fetchone()
    changed: dict[str, Any] | None
    if row is None:
        changed = conn.execute(QUERIES["insert_external_refund"], {
            **terms, "booking_id": booking_id, "payment_id": payment["id"], "amount": int(obj["amount"]),
            "currency": payment["currency"]}).fetchone()
        row = changed
    else:
        changed = conn.execute(QUERIES["advance_refund"], {**terms, "id": row["id"]}).fetchone()
        row = changed or row
    if row is None:  # a concurrent insert of the same external refund (cannot happen under the booking lock)
        return Outcome("no_change", booking_id, {"reason": "refund already recorded", "stripe_refund_id": obj["id"]})
    if payment["status"] == "succeeded":
        post(conn, row)
    refunded = refresh_amount_refunded(conn, payment["id"])
    detail = {"refund_id": str(row["id"]), "kind": row["kind"], "amount": row["amount"], "status": row["status"],
              "stripe_refund_id": obj["id"]}
    if refunded is not None:
        detail["amount_refunded"] = refunded
    if changed is None:
        return Outcome("no_change", booking_id, {**detail, "reason": f"refund already {row['status']}"})
    if row["status"] == "failed":
        return Outcome("refund_failed", booking_id, {**detail, "failure_reason": row["failure_reason"]})
    return Outcome("refund_recorded", booking_id, detail)


def post(conn: psycopg.Connection[Any], refund: dict[str, Any]) -> None:
    """Post a refund Stripe created (once), and its reversal if it failed (once). Its payment must be
    captured (recorded as succeeded)."""
    if refund["stripe_refund_id"] is None:  # Stripe refused to create it: no money moved
        return
    if not conn.execute(QUERIES["ledger_transaction_entries"], {"key": f"refund:{refund['id']}"}).fetchone():
        ledger.post_refund(conn, refund_id=refund["id"], booking_id=refund["booking_id"],
                           stripe_refund_id=refund["stripe_refund_id"], amount=refund["amount"])
    if refund["status"] == "failed":
        ledger.post_refund_reversal(conn, refund_id=refund["id"], booking_id=refund["booking_id"],
                                    stripe_refund_id=refund["stripe_refund_id"], reason=refund["failure_reason"])


def post_after_capture(conn: psycopg.Connection[Any], payment_id: uuid.UUID) -> None:
    """The payment's capture was just recorded: post the refunds whose events came before it."""
    for refund in conn.execute(QUERIES["stripe_refunds_of_payment"], {"payment_id": payment_id}).fetchall():
        post(conn, refund)
    refresh_amount_refunded(conn, payment_id)


def refresh_amount_refunded(conn: psycopg.Connection[Any], payment_id: uuid.UUID) -> int | None:
    """Recompute the payment's refunded total; the new total if it changed."""
    row = conn.execute(QUERIES["refresh_amount_refunded"], {"payment_id": payment_id}).fetchone()
    return int(row["amount_refunded"]) if row else None


def charge_refunded(conn: psycopg.Connection[Any], obj: dict[str, Any]) -> int | None:
    """A ``charge.refunded`` event: keep Stripe's running total (the highest reported) and recompute the
    payment's refunded total; the new total if it changed. Nothing is posted: refunds post from their own
    events."""
    row = conn.execute(QUERIES["record_charge_refunded"], {
        "payment_intent_id": obj.get("payment_intent"), "amount_refunded": int(obj["amount_refunded"]),
        "charge_id": obj["id"]}).fetchone()
    return refresh_amount_refunded(conn, row["id"]) if row else None
