"""Queue ``payment_webhooks``: apply stored Stripe events, issue the refunds cancellations and late payments
stage, and hold, claim and release stays' security deposits. Scaled on its own, apart from the bookings pool."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from shared import deposits, payments, refund_events
from shared.db import QUERIES
from shared.errors import DepositNotSettleable, DomainError, NotFound, PaymentProviderRefused
from shared.jobs import ClaimedJob, Handler
from shared.registry import (
    DEPOSIT_AUTHORIZE,
    DEPOSIT_CLAIM,
    DEPOSIT_RELEASE,
    PAYMENT_CANCEL_INTENT,
    REFUND_ISSUE,
    STRIPE_APPLY_EVENT,
)
from shared.schemas import (
    CancelIntentJob,
    DepositCommand,
    DepositSettled,
    IntentCanceled,
    RefundIssued,
    RefundJob,
    StripeEventJob,
)
from workers.runtime import job_actor, runtime

settings = runtime.boot()


def handle_stripe_event(conn: psycopg.Connection[Any], job: ClaimedJob) -> payments.AppliedEvent | DomainError:
    return payments.apply_event(conn, job, msgspec.convert(job.payload, StripeEventJob).event_id,
                                maturity_seconds=settings.payout_maturity_seconds,
                                authorize_before_hours=settings.deposit_authorize_before_hours)


def prepare_refund(conn: psycopg.Connection[Any], job: ClaimedJob) -> Handler:
    """Call Stripe (idempotency key from the refund row) outside any transaction; then record the answer
    in the work transaction."""
    refund_id = msgspec.convert(job.payload, RefundJob).refund_id
    refund = conn.execute(QUERIES["refund_to_issue"], {"id": refund_id}).fetchone()
    if refund is None or refund["status"] != "pending":  # already settled (e.g. by its refund.* events)
        return lambda conn, job: _issued(refund_id, refund)
    try:
        answer = runtime.stripe.create_refund(refund_id=str(refund_id), booking_id=str(refund["booking_id"]),
                                              payment_intent_id=refund["payment_intent_id"], amount=refund["amount"])
    except PaymentProviderRefused as exc:
        refused = exc  # the except clause unbinds its own name; the handler runs after it

        return lambda conn, job: _refused(conn, refund_id, refund, refused)

    def record(conn: psycopg.Connection[Any], job: ClaimedJob) -> RefundIssued:
        """Stripe's answer is one more snapshot of the refund, applied as its events are (once, forward only,
        whichever comes first)."""
        outcome = refund_events.apply_refund(conn, {
            "id": answer.id, "object": "refund", "amount": int(answer.amount), "status": str(answer.status),
            "payment_intent": refund["payment_intent_id"], "metadata": {"refund_id": str(refund_id)},
            "failure_reason": getattr(answer, "failure_reason", None)})
        status = outcome.detail.get("status") or refund_events.STATUSES.get(str(answer.status), "pending")
        return msgspec.convert({"refund_id": refund_id, "status": status, "stripe_refund_id": answer.id,
                                "amount": refund["amount"]}, RefundIssued)

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


def prepare_authorize_deposit(conn: psycopg.Connection[Any], job: ClaimedJob) -> Handler:
    """Hold the deposit on the card that paid the stay (a manual-capture PaymentIntent confirmed off-session;
    Stripe idempotency key from the booking). A decline is an outcome, not a job failure: the deposit is
    failed, the owner and the customer are told, and check-in stays possible."""
    booking_id = msgspec.convert(job.payload, DepositCommand).booking_id
    with conn.transaction():
        deposit = deposits.lock(conn, booking_id)
    if deposit is None:
        return lambda conn, job: NotFound(f"booking {booking_id} has no security deposit")
    if deposit["status"] != "pending" or deposit["booking_status"] not in ("paid", "checked_in"):
        return lambda conn, job: deposits.settled(conn, booking_id)  # held already, or nothing to hold for
    customer, card = deposit["stripe_customer_id"], deposit["payment_method_id"]
    if not customer or not card:
        return lambda conn, job: _authorization_failed(conn, booking_id, "no_saved_card",
                                                       "the booking was not paid with a card saved for later", None)
    try:
        intent = runtime.stripe.authorize_deposit(booking_id=str(booking_id), amount=deposit["amount"],
                                                  currency=deposit["currency"], customer=customer, payment_method=card)
    except PaymentProviderRefused as exc:  # a CardDeclined says Stripe's code and the intent it left behind
        code = getattr(exc, "stripe_code", None) or "card_declined"
        message, intent_id = exc.detail, getattr(exc, "payment_intent_id", None)
        return lambda conn, job: _authorization_failed(conn, booking_id, code, message, intent_id)

    def record(conn: psycopg.Connection[Any], job: ClaimedJob) -> DepositSettled:
        if intent.status == "requires_capture":
            deposits.record_authorized(conn, booking_id, intent.id)
        else:
            deposits.record_failed(conn, booking_id, code=f"unexpected_status_{intent.status}", message=None,
                                   payment_intent_id=intent.id)
        return deposits.settled(conn, booking_id)

    return record


def _authorization_failed(conn: psycopg.Connection[Any], booking_id: Any, code: str, message: str | None,
                          intent_id: str | None) -> DepositSettled:
    deposits.record_failed(conn, booking_id, code=code, message=message, payment_intent_id=intent_id)
    return deposits.settled(conn, booking_id)


SETTLED = {"claim": "claimed", "release": "released"}


def _settle_deposit(action: str) -> Any:
    def prepare(conn: psycopg.Connection[Any], job: ClaimedJob) -> Handler:
        """Claim (capture ``amount``) or release (cancel) a held deposit. The deposit is taken for this job
        first (its own transaction: a second claim or the automatic release is refused meanwhile); Stripe is
        called with the booking's idempotency key, so a job killed mid-call and retried captures once; the
        answer is recorded with the job's result, and the stay completes."""
        command = msgspec.convert(job.payload, DepositCommand)
        with conn.transaction():
            deposit = deposits.lock(conn, command.booking_id)
            if deposit is not None and deposit["status"] == SETTLED[action]:  # done: by this job's killed attempt
                return lambda conn, job: deposits.settled(conn, command.booking_id)  # (its webhook recorded it)
            refusal = _settle_refusal(deposit, command, action, job)
            if refusal is not None:
                raise refusal
            taken = conn.execute(QUERIES["take_deposit_for_settling"], {
                "booking_id": command.booking_id, "job_id": job.id, "action": action,
                "claim_amount": command.amount if action == "claim" else None,
                "claim_reason": command.reason if action == "claim" else None}).fetchone()
            if taken is None:
                raise DepositNotSettleable("another claim or release of this deposit is in progress")
        if taken["settle_action"] != action:
            raise DepositNotSettleable(f"a {taken['settle_action']} of this deposit is in progress")
        try:
            if action == "claim":
                intent = runtime.stripe.capture_deposit(booking_id=str(command.booking_id),
                                                        payment_intent_id=taken["payment_intent_id"],
                                                        amount=taken["claim_amount"])
            else:
                intent = runtime.stripe.release_deposit(booking_id=str(command.booking_id),
                                                        payment_intent_id=taken["payment_intent_id"])
        except PaymentProviderRefused as exc:
            refused = exc
            return lambda conn, job: _hold_gone(conn, job, command, taken["payment_intent_id"], refused)

        def record(conn: psycopg.Connection[Any], job: ClaimedJob) -> DepositSettled:
            actor = command.actor if command.actor in ("user", "scheduler") else "system"
            if action == "claim":
                deposits.record_claimed(conn, command.booking_id, payment_intent_id=intent.id,
                                        amount=int(intent.amount_received), reason=command.reason, job_id=job.id,
                                        actor=actor, maturity_seconds=settings.payout_maturity_seconds)
            else:
                deposits.record_released(conn, command.booking_id, job_id=job.id, actor=actor,
                                         maturity_seconds=settings.payout_maturity_seconds)
            _owner_audit(conn, command, action)
            return deposits.settled(conn, command.booking_id)

        return record

    return prepare


def _settle_refusal(deposit: dict[str, Any] | None, command: DepositCommand, action: str,
                    job: ClaimedJob) -> DomainError | None:
    if deposit is None:
        return DepositNotSettleable(f"booking {command.booking_id} has no security deposit")
    if deposit["status"] != "authorized":
        return DepositNotSettleable(f"the deposit is {deposit['status']}, not held")
    if deposit["settle_job"] == job.id:
        return None  # this job took it before (a retry): go on, whatever the clock says now
    if deposit["booking_status"] not in ("checked_out", "cancelled"):
        return DepositNotSettleable(f"the booking is {deposit['booking_status']}: settle after check-out")
    if action == "claim":
        if deposit["booking_status"] != "checked_out":  # a cancelled stay was never stayed in: release only
            return DepositNotSettleable("only a checked-out stay's deposit may be claimed")
        if command.amount is None or command.amount > deposit["amount"]:
            return DepositNotSettleable(f"a claim is at most the deposit ({deposit['amount']})")
        if deposit["claim_deadline"] is not None and deposit["claim_deadline"] < datetime.now(UTC):
            return DepositNotSettleable("the claim window has closed")
    return None


def _hold_gone(conn: psycopg.Connection[Any], job: ClaimedJob, command: DepositCommand, intent_id: str,
               refused: PaymentProviderRefused) -> DomainError:
    """Stripe has no hold left to capture or cancel (it lapsed): the deposit failed, the stay completes."""
    deposits.record_failed(conn, command.booking_id, code="authorization_unavailable", message=refused.detail,
                           payment_intent_id=intent_id, from_statuses=("authorized",))
    deposits.complete_stay(conn, command.booking_id, job_id=job.id, actor="system",
                           reason="the deposit hold was gone at Stripe",
                           maturity_seconds=settings.payout_maturity_seconds)
    return refused


def _owner_audit(conn: psycopg.Connection[Any], command: DepositCommand, action: str) -> None:
    if command.actor != "user":
        return
    conn.execute(QUERIES["insert_owner_audit_for_booking"], {
        "booking_id": command.booking_id, "actor": command.actor, "actor_id": command.actor_id,
        "actor_role": command.actor_role, "action": f"deposit.{action}",
        "before": None, "after": Jsonb({"amount": command.amount, "reason": command.reason}),
        "request_id": command.request_id, "ip": command.ip})


apply_stripe_event = job_actor(STRIPE_APPLY_EVENT, handle_stripe_event)
issue_refund = job_actor(REFUND_ISSUE, prepare=prepare_refund)
cancel_payment_intent = job_actor(PAYMENT_CANCEL_INTENT, prepare=prepare_cancel_intent)
authorize_deposit = job_actor(DEPOSIT_AUTHORIZE, prepare=prepare_authorize_deposit)
claim_deposit = job_actor(DEPOSIT_CLAIM, prepare=_settle_deposit("claim"))
release_deposit = job_actor(DEPOSIT_RELEASE, prepare=_settle_deposit("release"))
