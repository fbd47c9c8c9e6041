"""Security deposits of stays (seed 004 §5): a second PaymentIntent, ``capture_method=manual``, for the listing's
``security_deposit``, held on the card that paid the booking shortly before arrival and, after check-out,
captured in part or in full (a claim) or cancelled (a release); released automatically when the claim
window passes. The stay completes once its deposit is settled.

Every change is recorded by a conditional UPDATE (``sql/queries/deposits.sql``) from the states it may
leave, so Stripe's answer to our call and Stripe's webhook about the same change, in either order, record it
once: the first changes the row (and tells the customer), the second finds nothing to change. A claimed
deposit is final (trigger ``booking_deposits_check_transition``) and posted to the ledger under the
PaymentIntent's key, so it is captured, posted and paid out once.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from shared import ledger
from shared.booking import transition_booking
from shared.db import QUERIES
from shared.jobs import ClaimedJob
from shared.notifications import emit
from shared.registry import DEPOSIT_AUTHORIZE, DEPOSIT_RELEASE, job_route
from shared.schemas import BookingCommand, DepositCommand, DepositSettled


def _tell(conn: psycopg.Connection[Any], topic: str, row: dict[str, Any], **extra: Any) -> None:
    emit(conn, topic, row["booking_id"], {
        "booking_id": str(row["booking_id"]), "provider_id": str(row["provider_id"]), "amount": row["amount"],
        "currency": row["currency"], "deposit_status": row["status"], **extra})


def lock(conn: psycopg.Connection[Any], booking_id: uuid.UUID) -> dict[str, Any] | None:
    """The booking's deposit with its booking's status, both rows locked (booking first)."""
    row: dict[str, Any] | None = conn.execute(QUERIES["lock_deposit"], {"booking_id": booking_id}).fetchone()
    return row


def settled(conn: psycopg.Connection[Any], booking_id: uuid.UUID) -> DepositSettled:
    """Where a deposit and its booking stand now (a job's result)."""
    row = conn.execute(QUERIES["lock_deposit"], {"booking_id": booking_id}).fetchone()
    if row is None:
        return DepositSettled(booking_id=booking_id, deposit_status="released")
    return DepositSettled(booking_id=booking_id, deposit_status=row["status"], booking_status=row["booking_status"],
                          claimed_amount=row["claimed_amount"], payment_intent_id=row["payment_intent_id"],
                          failure_code=row["failure_code"])


def save_card(conn: psycopg.Connection[Any], booking_id: uuid.UUID, payment_method_id: str | None) -> bool:
    """The booking was paid: remember its card for the deposit. False when the booking has no deposit."""
    if not payment_method_id:
        return False
    return conn.execute(QUERIES["save_deposit_card"], {"booking_id": booking_id,
                                                       "payment_method_id": payment_method_id}).fetchone() is not None


def stage_due_authorizations(conn: psycopg.Connection[Any], *, before_hours: float, max_attempts: int,
                             booking_id: uuid.UUID | None = None, by: str = "scheduler",
                             limit: int = 200) -> list[uuid.UUID]:
    """deposit.authorize jobs for the deposits now due (or this booking's); the caller enqueues them."""
    rows = conn.execute(QUERIES["stage_due_deposit_authorizations"], {
        **job_route(DEPOSIT_AUTHORIZE), "before_seconds": before_hours * 3600, "booking_id": booking_id,
        "max_attempts": max_attempts, "by": by, "limit": limit}).fetchall()
    return [row["id"] for row in rows]


def stage_lapsed_releases(conn: psycopg.Connection[Any], *, max_attempts: int, limit: int = 200) -> list[uuid.UUID]:
    """deposit.release jobs for held deposits whose claim window has closed; the caller enqueues them."""
    rows = conn.execute(QUERIES["stage_lapsed_deposit_releases"], {
        **job_route(DEPOSIT_RELEASE), "max_attempts": max_attempts, "limit": limit}).fetchall()
    return [row["id"] for row in rows]


def record_authorized(conn: psycopg.Connection[Any], booking_id: uuid.UUID, payment_intent_id: str) -> bool:
    row = conn.execute(QUERIES["record_deposit_authorized"], {
        "booking_id": booking_id, "payment_intent_id": payment_intent_id}).fetchone()
    if row is not None:
        _tell(conn, "deposit_authorized", row, payment_intent_id=payment_intent_id)
    return row is not None


def record_failed(conn: psycopg.Connection[Any], booking_id: uuid.UUID, *, code: str, message: str | None,
                  payment_intent_id: str | None, from_statuses: tuple[str, ...] = ("pending",)) -> bool:
    """Declined (from pending) or lapsed at Stripe (from authorized): the owner and the customer are told;
    check-in is not blocked (the owner decides)."""
    row = conn.execute(QUERIES["record_deposit_failed"], {
        "booking_id": booking_id, "failure_code": code, "failure_message": (message or "")[:500] or None,
        "payment_intent_id": payment_intent_id, "from_statuses": list(from_statuses)}).fetchone()
    if row is not None:
        _tell(conn, "deposit_failed", row, failure_code=code)
    return row is not None


def complete_stay(conn: psycopg.Connection[Any], booking_id: uuid.UUID, *, job_id: uuid.UUID | None, actor: str,
                  reason: str, maturity_seconds: float) -> bool:
    """A checked-out stay whose deposit is settled is completed, and its provider's payable matures."""
    row = conn.execute(QUERIES["lock_booking"], {"id": booking_id}).fetchone()
    if row is None or row["status"] != "checked_out":
        return False
    transition_booking(conn, BookingCommand(booking_id=booking_id, to_status="completed", actor=actor, reason=reason),
                       job_id=job_id)
    ledger.post_maturity(conn, booking_id=booking_id, maturity_seconds=maturity_seconds, reason="stay completed")
    return True


def record_claimed(conn: psycopg.Connection[Any], booking_id: uuid.UUID, *, payment_intent_id: str, amount: int,
                   reason: str | None, job_id: uuid.UUID | None, actor: str, maturity_seconds: float) -> bool:
    """Captured ``amount``: posted to the ledger once, the customer told, the stay completed. If the stay had
    completed already (the capture was learnt late, from Stripe's event), the claim matures on its own."""
    row = conn.execute(QUERIES["record_deposit_claimed"], {
        "booking_id": booking_id, "amount": amount, "reason": reason}).fetchone()
    if row is None:
        return False
    ledger.post_deposit_capture(conn, booking_id=booking_id, payment_intent_id=payment_intent_id, amount=amount,
                                currency=row["currency"])
    _tell(conn, "deposit_claimed", row, reason=row["claim_reason"] or "damage")
    if not complete_stay(conn, booking_id, job_id=job_id, actor=actor, reason="security deposit claimed",
                         maturity_seconds=maturity_seconds):
        ledger.post_maturity(conn, booking_id=booking_id, maturity_seconds=maturity_seconds,
                             reason="security deposit claimed", key=f"maturity:{booking_id}:deposit")
    return True


def record_released(conn: psycopg.Connection[Any], booking_id: uuid.UUID, *, job_id: uuid.UUID | None, actor: str,
                    maturity_seconds: float, from_statuses: tuple[str, ...] = ("authorized",)) -> bool:
    """Nothing will be taken. A hold that was placed is cancelled at Stripe by the caller; the customer is
    told; the stay completes if it is checked out."""
    row = conn.execute(QUERIES["record_deposit_released"], {
        "booking_id": booking_id, "from_statuses": list(from_statuses)}).fetchone()
    if row is None:
        return False
    if "authorized" in from_statuses:
        _tell(conn, "deposit_released", row)
    complete_stay(conn, booking_id, job_id=job_id, actor=actor, reason="security deposit released",
                  maturity_seconds=maturity_seconds)
    return True


def on_check_out(conn: psycopg.Connection[Any], booking_id: uuid.UUID, *, job_id: uuid.UUID, actor: str,
                 claim_window_hours: float, maturity_seconds: float) -> None:
    """After check-out: a held deposit may be claimed until the window closes; with nothing held (no deposit,
    never authorised, declined) the stay completes at once."""
    deposit = lock(conn, booking_id)
    if deposit is not None and deposit["status"] == "authorized":
        conn.execute(QUERIES["open_claim_window"], {"booking_id": booking_id,
                                                    "window_seconds": claim_window_hours * 3600})
        return
    if deposit is not None and deposit["status"] == "pending":
        record_released(conn, booking_id, job_id=job_id, actor=actor, maturity_seconds=maturity_seconds,
                        from_statuses=("pending",))
        return
    complete_stay(conn, booking_id, job_id=job_id, actor=actor, reason="checked out; no deposit held",
                  maturity_seconds=maturity_seconds)


def on_cancel(conn: psycopg.Connection[Any], job: ClaimedJob, booking_id: uuid.UUID, maturity_seconds: float) -> None:
    """A cancelled stay takes no deposit: one never held is released here; a held one by a release job."""
    deposit = lock(conn, booking_id)
    if deposit is None:
        return
    if deposit["status"] in ("pending", "failed"):
        record_released(conn, booking_id, job_id=job.id, actor="system", maturity_seconds=maturity_seconds,
                        from_statuses=("pending", "failed"))
    elif deposit["status"] == "authorized":
        job.follow_up(conn, DEPOSIT_RELEASE, DepositCommand(booking_id=booking_id, actor="system",
                                                            reason="booking cancelled"))
