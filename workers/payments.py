"""Queue ``payment_webhooks``: apply stored Stripe events, and issue the refunds cancellations and late
payments stage. Scaled on its own, apart from the bookings pool."""

from __future__ import annotations

from typing import Any

import msgspec
import psycopg

from shared import ledger, payments
from shared.db import QUERIES
from shared.errors import DomainError, NotFound, PaymentProviderRefused
from shared.jobs import ClaimedJob, Handler
from shared.registry import PAYMENT_CANCEL_INTENT, REFUND_ISSUE, STRIPE_APPLY_EVENT
from shared.schemas import CancelIntentJob, IntentCanceled, RefundIssued, RefundJob, StripeEventJob
from workers.runtime import job_actor, runtime

runtime.boot()


def handle_stripe_event(conn: psycopg.Connection[Any], job: ClaimedJob) -> payments.AppliedEvent | DomainError:
    return payments.apply_event(conn, job, msgspec.convert(job.payload, StripeEventJob).event_id)


def prepare_refund(conn: psycopg.Connection[Any], job: ClaimedJob) -> Handler:
    """Call Stripe (idempotency key from the refund row) outside any transaction; then record the answer
    in the work transaction."""
    refund_id = msgspec.convert(job.payload, RefundJob).refund_id
    refund = conn.execute(QUERIES["refund_to_issue"], {"id": refund_id}).fetchone()
    if refund is None or refund["status"] != "pending":  # already settled (e.g. by its charge.refunded event)
        return lambda conn, job: _issued(refund_id, refund)
    try:
        answer = runtime.stripe.create_refund(refund_id=str(refund_id), booking_id=str(refund["booking_id"]),
                                              payment_intent_id=refund["payment_intent_id"], amount=refund["amount"])
    except PaymentProviderRefused as exc:
        refused = exc  # the except clause unbinds its own name; the handler runs after it

        return lambda conn, job: _refused(conn, refund_id, refund, refused)

    def record(conn: psycopg.Connection[Any], job: ClaimedJob) -> RefundIssued:
        conn.execute(QUERIES["lock_booking"], {"id": refund["booking_id"]})  # booking -> payment -> refund
        settled = conn.execute(QUERIES["mark_refund_issued"], {"id": refund_id, "stripe_refund_id": answer.id,
                                                               "succeeded": answer.status == "succeeded"}).fetchone()
        if settled is not None and settled["status"] == "succeeded":  # we settled it (not its event): post it
            ledger.post_refund(conn, refund_id=refund_id, booking_id=refund["booking_id"],
                               stripe_refund_id=answer.id, amount=refund["amount"])
        return RefundIssued(refund_id=refund_id, status="succeeded" if answer.status == "succeeded" else "pending",
                            stripe_refund_id=answer.id, amount=refund["amount"])

    return record


def _issued(refund_id: Any, refund: dict[str, Any] | None) -> RefundIssued | DomainError:
    if refund is None:
        return NotFound(f"refund {refund_id} does not exist")
    return RefundIssued(refund_id=refund_id, status=refund["status"], stripe_refund_id=refund["stripe_refund_id"],
                        amount=refund["amount"])


def _refused(conn: psycopg.Connection[Any], refund_id: Any, refund: dict[str, Any],
             refused: PaymentProviderRefused) -> DomainError:
    """Stripe said no for good: the refund is marked failed (visible on the booking) with the job."""
    conn.execute(QUERIES["mark_refund_failed"], {"id": refund_id, "reason": refused.detail})
    return refused


def prepare_cancel_intent(conn: psycopg.Connection[Any], job: ClaimedJob) -> Handler:
    """The booking stopped waiting (cancelled or expired): cancel its PaymentIntent at Stripe so it can no
    longer be paid. If Stripe refuses (it succeeded meanwhile), the late-payment rule refunds it."""
    intent_id = msgspec.convert(job.payload, CancelIntentJob).payment_intent_id
    payment = conn.execute(QUERIES["payment_by_intent"], {"payment_intent_id": intent_id}).fetchone()
    if payment is None or payment["status"] not in ("requires_payment", "failed"):
        return lambda conn, job: IntentCanceled(payment_intent_id=intent_id, status="not_canceled",
                                                detail=f"payment is {payment['status'] if payment else 'unknown'}")
    try:
        runtime.stripe.cancel_payment_intent(intent_id)
    except PaymentProviderRefused as exc:
        detail = exc.detail
        return lambda conn, job: IntentCanceled(payment_intent_id=intent_id, status="not_canceled", detail=detail)

    def record(conn: psycopg.Connection[Any], job: ClaimedJob) -> IntentCanceled:
        conn.execute(QUERIES["record_payment_canceled"], {"payment_intent_id": intent_id})
        return IntentCanceled(payment_intent_id=intent_id, status="canceled")

    return record


apply_stripe_event = job_actor(STRIPE_APPLY_EVENT, handle_stripe_event)
issue_refund = job_actor(REFUND_ISSUE, prepare=prepare_refund)
cancel_payment_intent = job_actor(PAYMENT_CANCEL_INTENT, prepare=prepare_cancel_intent)
