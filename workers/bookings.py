"""Queue ``bookings``: create a booking (hold the slot, open its Stripe PaymentIntent; or, on a request-mode
resource, request it) and move it through its lifecycle (approve or decline a request, cancel with the
policy's refund, check in, check out, complete, mark paid)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from shared import booking, deposits, ledger, payments
from shared.db import QUERIES, ConstraintViolation, expect_row
from shared.jobs import ClaimedJob, Finish, Handler
from shared.registry import (
    BOOKING_APPROVE,
    BOOKING_CANCEL,
    BOOKING_CHECK_IN,
    BOOKING_CHECK_OUT,
    BOOKING_COMPLETE,
    BOOKING_CREATE,
    BOOKING_DECLINE,
    BOOKING_MARK_PAID,
)
from shared.schemas import BookingCommand, BookingCreated, BookingRequest, BookingTransitioned
from workers.runtime import job_actor, runtime

settings = runtime.boot()


def place_hold_once(conn: psycopg.Connection[Any], job: ClaimedJob) -> booking.Hold:
    """The job's hold, placed by one statement, its own transaction (committed before Stripe is called). A
    retried job finds the hold it placed before (bookings.created_by_job is unique) and goes on with it."""
    request: BookingRequest = msgspec.convert(job.payload, BookingRequest)
    try:
        # only a rerun can find one (a first attempt is the job's first claim): no extra query per booking
        row = conn.execute(QUERIES["booking_of_job"], {"job_id": job.id}).fetchone() if job.attempts > 1 else None
        if row is not None:
            return booking.Hold.from_row(row)
        return booking.create_booking(conn, request, job_id=job.id, max_attempts=job.max_attempts,
                                      default_hold_ttl_seconds=settings.booking_hold_ttl_seconds,
                                      request_ttl_seconds=settings.booking_request_ttl_seconds,
                                      created=booking.creation_params(job.caller, settings.token_secret))
    except ConstraintViolation as exc:  # a second worker holding an expired lease placed it meanwhile
        if exc.constraint != "bookings_created_by_job_key":
            raise
        row = expect_row(conn.execute(QUERIES["booking_of_job"], {"job_id": job.id}).fetchone(), "booking_of_job")
        return booking.Hold.from_row(row)


def prepare_create_booking(conn: psycopg.Connection[Any], job: ClaimedJob) -> Handler | Finish:
    """Hold (own transaction) → PaymentIntent (Stripe, idempotency key from the booking id) → one statement
    records the payment and the job result together."""
    hold = place_hold_once(conn, job)
    if hold.status != "pending_payment":  # requested (the owner answers first), or the hold ran out on a retry
        return lambda conn, job: _created(hold)
    return _open_payment(hold, _email(job.payload) if hold.deposit else None)


def _email(payload: dict[str, Any]) -> str | None:
    """The customer's email of a booking request (for the Stripe Customer a deposit's card is saved to)."""
    email = (payload.get("customer") or {}).get("email")
    return email if isinstance(email, str) else None


def _open_payment(hold: booking.Hold, email: str | None) -> Handler | Finish:
    """The PaymentIntent of a booking on hold (Stripe, idempotency key from the booking id), recorded with the
    job's result. A stay with a security deposit saves the card to a Stripe Customer, to hold the deposit on
    it later without the guest (off-session)."""
    if hold.amount == 0:
        return lambda conn, job: _confirm_free(conn, job, hold)
    customer = None
    if hold.deposit:
        customer = runtime.stripe.create_customer(booking_id=str(hold.booking_id), email=email).id
    intent = runtime.stripe.create_payment_intent(booking_id=str(hold.booking_id), amount=hold.amount,
                                                  currency=hold.currency,
                                                  description=f"Totem booking {hold.booking_id}", customer=customer,
                                                  setup_future_usage="off_session" if customer else None)
    return Finish("finish_job_with_payment", {
        "booking_id": hold.booking_id, "payment_intent_id": intent.id, "client_secret": intent.client_secret,
        "amount": hold.amount, "currency": hold.currency, "customer_id": customer,
    }, _created(hold, payment_intent_id=intent.id, client_secret=intent.client_secret))


def _created(hold: booking.Hold, **payment: str) -> BookingCreated:
    return BookingCreated(booking_id=hold.booking_id, status=hold.status,
                          hold_expires_at=hold.hold_expires_at, **payment)


def _confirm_free(conn: psycopg.Connection[Any], job: ClaimedJob, hold: booking.Hold) -> BookingCreated:
    """Nothing to pay (a free service): the booking is confirmed at once, without Stripe."""
    booking.transition_booking(conn, BookingCommand(booking_id=hold.booking_id, to_status="paid", actor="system",
                                                    reason="nothing to pay"), job_id=job.id,
                               detail={"amount": 0})
    return BookingCreated(booking_id=hold.booking_id, status="paid", hold_expires_at=None)


def _owner_audit(conn: psycopg.Connection[Any], command: BookingCommand, transitioned: BookingTransitioned) -> None:
    """A command by an owner, staff member or admin lands in the owner audit log, in its own transaction."""
    if command.actor != "user":
        return
    conn.execute(QUERIES["insert_owner_audit_for_booking"], {
        "booking_id": command.booking_id, "actor": command.actor, "actor_id": command.actor_id,
        "actor_role": command.actor_role, "action": f"booking.{command.to_status}",
        "before": Jsonb({"status": transitioned.from_status}), "after": Jsonb({"status": transitioned.status}),
        "request_id": command.request_id, "ip": command.ip})


def handle_cancel(conn: psycopg.Connection[Any], job: ClaimedJob) -> BookingTransitioned:
    command = msgspec.convert(job.payload, BookingCommand)
    transitioned = payments.cancel_booking(conn, command, job, now=datetime.now(UTC),
                                           maturity_seconds=settings.payout_maturity_seconds)
    deposits.on_cancel(conn, job, command.booking_id, settings.payout_maturity_seconds)
    _owner_audit(conn, command, transitioned)
    return transitioned


def handle_complete(conn: psycopg.Connection[Any], job: ClaimedJob) -> BookingTransitioned:
    """Completed: the provider's payable matures for payout after PAYOUT_MATURITY_SECONDS."""
    command = msgspec.convert(job.payload, BookingCommand)
    transitioned = booking.transition_booking(conn, command, job_id=job.id)
    ledger.post_maturity(conn, booking_id=command.booking_id, maturity_seconds=settings.payout_maturity_seconds,
                         reason="booking completed")
    _owner_audit(conn, command, transitioned)
    return transitioned


def prepare_approve(conn: psycopg.Connection[Any], job: ClaimedJob) -> Handler | Finish:
    """requested → pending_payment in a transaction of its own (the payment hold starts now; the database
    refuses a request that lapsed meanwhile), then the PaymentIntent as for an instant booking. A retried job
    finds its own approval in the audit trail and goes on to the payment."""
    command = msgspec.convert(job.payload, BookingCommand)
    with conn.transaction():
        row = conn.execute(QUERIES["approval_of_job"], {"booking_id": command.booking_id,
                                                        "job_id": job.id}).fetchone() if job.attempts > 1 else None
        if row is None:
            transitioned = booking.transition_booking(conn, command, job_id=job.id,
                                                      default_hold_ttl_seconds=settings.booking_hold_ttl_seconds)
            _owner_audit(conn, command, transitioned)
            row = expect_row(conn.execute(QUERIES["approval_of_job"], {"booking_id": command.booking_id,
                                                                       "job_id": job.id}).fetchone(), "approval_of_job")
    hold = booking.Hold.from_row(row)
    if hold.status != "pending_payment":  # paid or expired since: nothing left to pay for
        return lambda conn, job: _created(hold)
    return _open_payment(hold, row["email"])


def handle_check_in(conn: psycopg.Connection[Any], job: ClaimedJob) -> BookingTransitioned:
    """paid → checked_in, not before the stay's first day (the database's rule)."""
    command = msgspec.convert(job.payload, BookingCommand)
    transitioned = booking.transition_booking(conn, command, job_id=job.id)
    _owner_audit(conn, command, transitioned)
    return transitioned


def handle_check_out(conn: psycopg.Connection[Any], job: ClaimedJob) -> BookingTransitioned:
    """checked_in → checked_out; then the stay completes at once, or when its held deposit is settled."""
    command = msgspec.convert(job.payload, BookingCommand)
    transitioned = booking.transition_booking(conn, command, job_id=job.id)
    _owner_audit(conn, command, transitioned)
    deposits.on_check_out(conn, command.booking_id, job_id=job.id, actor="system",
                          claim_window_hours=settings.deposit_claim_window_hours,
                          maturity_seconds=settings.payout_maturity_seconds)
    status = expect_row(conn.execute(QUERIES["lock_booking"], {"id": command.booking_id}).fetchone(), "lock_booking")
    return msgspec.structs.replace(transitioned, status=status["status"])


def handle_decline(conn: psycopg.Connection[Any], job: ClaimedJob) -> BookingTransitioned:
    command = msgspec.convert(job.payload, BookingCommand)
    transitioned = booking.transition_booking(conn, command, job_id=job.id)
    _owner_audit(conn, command, transitioned)
    conn.execute(QUERIES["release_unheld_deposit"], {"booking_id": command.booking_id})
    return transitioned


def handle_transition(conn: psycopg.Connection[Any], job: ClaimedJob) -> BookingTransitioned:
    return booking.transition_booking(conn, msgspec.convert(job.payload, BookingCommand), job_id=job.id)


create_booking = job_actor(BOOKING_CREATE, prepare=prepare_create_booking)
cancel_booking = job_actor(BOOKING_CANCEL, handle_cancel)
complete_booking = job_actor(BOOKING_COMPLETE, handle_complete)
mark_booking_paid = job_actor(BOOKING_MARK_PAID, handle_transition)
approve_booking = job_actor(BOOKING_APPROVE, prepare=prepare_approve)
decline_booking = job_actor(BOOKING_DECLINE, handle_decline)
check_in_booking = job_actor(BOOKING_CHECK_IN, handle_check_in)
check_out_booking = job_actor(BOOKING_CHECK_OUT, handle_check_out)
