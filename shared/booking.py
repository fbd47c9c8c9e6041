"""Booking rules as plain functions over a connection. The database enforces the guarantees:
``bookings_no_overlap`` (EXCLUDE) refuses double booking, ``bookings_valid_transition`` (trigger over
``booking_transitions``) refuses illegal status changes; this module only translates their refusals.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from shared import tokens
from shared.db import QUERIES, translate_errors
from shared.errors import BookingOutsideAvailability, NotFound
from shared.registry import PAYMENT_CANCEL_INTENT, job_route
from shared.schemas import (
    AuditEntry,
    BookingCommand,
    BookingRequest,
    BookingStatus,
    BookingTransitioned,
    BookingView,
    DepositView,
    DisputeView,
    PaymentView,
    RefundView,
    SlotBookingRequest,
    StayBookingRequest,
)

# What a booking job commits on its first attempt, in order, each statement its own transaction (BEGIN and
# COMMIT would be listed where a transaction spans several): the claim; the hold; the Stripe call (outside
# SQL); the payment and the job's result together. The bench's pgbench ceiling is rendered from this list, and
# a test traces a real booking job through the worker and fails if what it executes differs from it.
BEGIN, COMMIT = "BEGIN", "COMMIT"
CREATE_SLOT_BOOKING_STATEMENTS: tuple[str, ...] = ("claim_job", "insert_slot_booking", "finish_job_with_payment")


@dataclass(frozen=True, slots=True)
class Hold:
    """A booking placed on hold (pending_payment) or requested (waiting for its owner), with what it costs."""

    booking_id: uuid.UUID
    status: BookingStatus
    hold_expires_at: datetime | None
    amount: int
    currency: str
    deposit: int | None = None  # a stay's security deposit, held later on the card that pays

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Hold:
        return cls(booking_id=row["id"], status=row["status"], hold_expires_at=row["hold_expires_at"],
                   amount=row["amount"], currency=row["currency"], deposit=row.get("deposit"))

def creation_params(caller: dict[str, Any] | None, token_secret: str) -> dict[str, Any]:
    """A new booking's id, its customer token's hash (the token is derived from the id: never stored), the
    public token that asked for it, and the audit actor: who the job's caller was (``jobs.caller``)."""
    booking_id = uuid.uuid4()
    caller = caller or {"kind": "system", "id": "system"}
    return {"id": booking_id, "customer_token_sha256": tokens.digest(customer_token(token_secret, booking_id)),
            "created_by_token_id": caller["id"] if caller["kind"] == "public_token" else None,
            "actor": caller["kind"], "actor_id": caller["id"], "actor_role": caller.get("role"),
            "actor_roles": Jsonb(caller.get("roles") or {})}  # a user's role in the booking's provider, by id


def customer_token(token_secret: str, booking_id: uuid.UUID | str) -> str:
    """The token with which a customer reads and cancels their booking (``ct_…``)."""
    return tokens.derive(token_secret, tokens.CUSTOMER, booking_id)


def create_slot_booking(
    conn: psycopg.Connection[Any], request: SlotBookingRequest, *, job_id: uuid.UUID,
    default_hold_ttl_seconds: int, max_attempts: int, created: dict[str, Any], request_ttl_seconds: int | None = None,
) -> Hold:
    """Place a hold on the slot (pending_payment) with snapshot, audit and outbox in the caller's transaction;
    ``created`` is ``creation_params``."""
    params = {
        **created, "job_id": job_id,
        "resource_id": request.resource_id, "service_id": request.service_id, "start_at": request.start_at,
        "customer": Jsonb(request.customer),
        "default_hold_ttl_seconds": default_hold_ttl_seconds, "request_ttl_seconds": request_ttl_seconds,
    }
    return _place_hold(conn, "slot", params, gone="the resource no longer offers that service",
                       outside="the slot is outside the resource's opening hours or blocked", max_attempts=max_attempts)


def _place_hold(conn: psycopg.Connection[Any], kind: str, params: dict[str, Any], *, gone: str,
                outside: str, max_attempts: int) -> Hold:
    """Run insert_<kind>_booking, one statement (its own transaction unless the caller opened one): the
    resource's lock and the sweep of its lapsed holds first, so they never block the new booking, then the
    insert. If it placed nothing, say why (explain_refused_<kind>)."""
    params = {**params, **sweep_params(max_attempts)}
    with translate_errors():
        row = conn.execute(QUERIES[f"insert_{kind}_booking"], params).fetchone()
    if row is None:
        explained = conn.execute(QUERIES[f"explain_refused_{kind}"], params).fetchone()
        if explained is None or not explained["offered"]:
            raise NotFound(gone)
        raise BookingOutsideAvailability(outside)
    return Hold.from_row(row)


def create_stay_booking(
    conn: psycopg.Connection[Any], request: StayBookingRequest, *, job_id: uuid.UUID,
    default_hold_ttl_seconds: int, max_attempts: int, created: dict[str, Any], request_ttl_seconds: int | None = None,
) -> Hold:
    """Hold a listing's nights (pending_payment) with snapshot, audit and outbox in the caller's transaction."""
    params = {
        **created, "job_id": job_id, "resource_id": request.resource_id,
        "check_in": request.check_in, "check_out": request.check_out, "guests": request.guests,
        "customer": Jsonb(request.customer), "default_hold_ttl_seconds": default_hold_ttl_seconds,
        "request_ttl_seconds": request_ttl_seconds,
    }
    return _place_hold(conn, "stay", params, gone="the listing does not exist or no longer takes bookings",
                       outside="those nights are in the past or blocked", max_attempts=max_attempts)


def create_booking(
    conn: psycopg.Connection[Any], request: BookingRequest, *, job_id: uuid.UUID, default_hold_ttl_seconds: int,
    max_attempts: int, created: dict[str, Any], request_ttl_seconds: int | None = None,
) -> Hold:
    """A hold (instant resources) or a request (request-mode resources: it waits for the owner, holding the
    time, for the resource's request_ttl_hours or ``request_ttl_seconds`` when set)."""
    if isinstance(request, StayBookingRequest):
        return create_stay_booking(conn, request, job_id=job_id, default_hold_ttl_seconds=default_hold_ttl_seconds,
                                   max_attempts=max_attempts, created=created, request_ttl_seconds=request_ttl_seconds)
    return create_slot_booking(conn, request, job_id=job_id, default_hold_ttl_seconds=default_hold_ttl_seconds,
                               max_attempts=max_attempts, created=created, request_ttl_seconds=request_ttl_seconds)


def transition_booking(
    conn: psycopg.Connection[Any], command: BookingCommand, *, job_id: uuid.UUID | None = None,
    detail: dict[str, Any] | None = None, default_hold_ttl_seconds: int | None = None,
) -> BookingTransitioned:
    """Move a booking to ``command.to_status`` with audit and outbox, in the caller's transaction. An approved
    request's payment hold runs from now (the provider's hold TTL, else ``default_hold_ttl_seconds``)."""
    params = {"id": command.booking_id, "to_status": command.to_status, "actor": command.actor,
              "actor_id": command.actor_id, "actor_role": command.actor_role, "reason": command.reason,
              "job_id": job_id, "detail": Jsonb(detail) if detail is not None else None,
              "default_hold_ttl_seconds": default_hold_ttl_seconds}
    with translate_errors():
        row = conn.execute(QUERIES["transition_booking"], params).fetchone()
    if row is None:
        raise NotFound(f"booking {command.booking_id} does not exist")
    return BookingTransitioned(booking_id=row["id"], from_status=row["from_status"], status=row["to_status"])


def sweep_params(max_attempts: int) -> dict[str, Any]:
    """What a sweep of lapsed holds stages for each open PaymentIntent: a cancel-intent job (routed by the
    registry) with ``max_attempts``."""
    cancel = job_route(PAYMENT_CANCEL_INTENT)
    return {"max_attempts": max_attempts, "cancel_type": cancel["type"], "cancel_queue": cancel["queue"],
            "cancel_actor": cancel["actor"]}


def expire_overdue_holds(conn: psycopg.Connection[Any], *, max_attempts: int,
                         limit: int = 500) -> tuple[int, list[uuid.UUID]]:
    """The scheduler's sweep: every lapsed hold. Returns how many expired and the cancel-intent jobs
    staged for their open PaymentIntents (for the caller to enqueue). One statement, its own transaction."""
    row = conn.execute(QUERIES["expire_overdue_holds"], {"limit": limit, "resource_id": None, "actor": "scheduler",
                                                         **sweep_params(max_attempts)}).fetchone()
    return (int(row["expired"]), list(row["cancel_jobs"] or [])) if row else (0, [])


async def read_booking(conn: psycopg.AsyncConnection[Any], booking_id: uuid.UUID,
                       visible_to: dict[str, Any]) -> BookingView | None:
    """The booking with its audit trail, payments, refunds and disputes, if ``visible_to`` (``Grant.booking_filter()``:
    scope, only_booking, created_by_token) lets the caller see it."""
    cur = await conn.execute(QUERIES["get_booking"], {"id": booking_id, **visible_to})
    row = await cur.fetchone()
    if row is None:
        return None
    cur = await conn.execute(QUERIES["get_booking_audit"], {"id": booking_id})
    audit = [AuditEntry(**entry) for entry in await cur.fetchall()]
    cur = await conn.execute(QUERIES["get_booking_payments"], {"id": booking_id})
    payments = [PaymentView(**payment) for payment in await cur.fetchall()]
    cur = await conn.execute(QUERIES["get_booking_refunds"], {"id": booking_id})
    refunds = [RefundView(**refund) for refund in await cur.fetchall()]
    deposit = None
    if row["kind"] == "stay":
        cur = await conn.execute(QUERIES["get_booking_deposit"], {"id": booking_id})
        found = await cur.fetchone()
        deposit = DepositView(**found) if found else None
    cur = await conn.execute(QUERIES["get_booking_disputes"], {"id": booking_id})
    disputes = [DisputeView(**dispute) for dispute in await cur.fetchall()]
    return BookingView(**row, audit=audit, payments=payments, refunds=refunds, deposit=deposit, disputes=disputes)
