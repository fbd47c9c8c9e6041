"""Bookings: accept creation as a job; read a booking with its audit trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Request, Response, get, post
from litestar.params import Parameter

from gateway.access import MEMBERS, OWNERS, Access, Grant, allow
from gateway.idempotency import Check, KeyedCommand, keyed_command
from gateway.instants import INSTANT_PATTERN, INSTANT_SCHEMA, parse_instant
from gateway.openapi_docs import KEY_REQUIRED
from gateway.pagination import Cursor, decode_cursor, next_cursor
from gateway.problems import Problem, problem_responses
from gateway.state import GatewayState
from shared.booking import read_booking
from shared.db import QUERIES, with_reconnect
from shared.errors import Code
from shared.payments import quote_refund
from shared.registry import BOOKING_CREATE
from shared.schemas import (
    Accepted,
    BookingPage,
    BookingRequest,
    BookingStatus,
    BookingSummary,
    BookingView,
    StayBookingRequest,
)


@post("/v1/bookings", status_code=202, summary="Request a booking",
      description="Validates and records the request as a job, then answers 202 at once. Needs an "
                  "Idempotency-Key header. Poll the job at `status_url` until it is terminal.",
      opt={**allow(Access.PUBLIC_TOKEN | OWNERS), **KEY_REQUIRED},
      responses=problem_responses(Code.VALIDATION_FAILED, Code.IDEMPOTENCY_KEY_MISSING, Code.NOT_FOUND,
                                  Code.IDEMPOTENCY_KEY_IN_FLIGHT, Code.IDEMPOTENCY_KEY_REUSED,
                                  Code.UNAUTHORIZED, Code.FORBIDDEN, Code.RATE_LIMITED, Code.SERVICE_UNAVAILABLE))
async def create_booking(request: Request[Any, Any, Any], state: GatewayState, grant: Grant,
                         data: BookingRequest) -> Response[Accepted]:
    command = keyed_command(request, data)
    if isinstance(data, StayBookingRequest):
        return await _accept_stay(request, state, grant, command, data)
    if data.start_at <= datetime.now(UTC):
        raise Problem(Code.REQUEST_UNPROCESSABLE, "start_at must be in the future",
                      errors=[{"field": "start_at", "message": "must be in the future"}])

    offer = Check("check_slot_offer", {"resource_id": data.resource_id, "service_id": data.service_id,
                                       "scope": grant.scope_param},
                  Problem(Code.NOT_FOUND, f"resource {data.resource_id} does not exist or does not offer "
                                       f"service {data.service_id}"))
    return await state.acceptor.accept(
        request, command, job_type=BOOKING_CREATE, payload=data, check=offer)


MAX_NIGHTS = 90


async def _accept_stay(request: Request[Any, Any, Any], state: GatewayState, grant: Grant, command: KeyedCommand,
                       data: StayBookingRequest) -> Response[Accepted]:
    nights = (data.check_out - data.check_in).days
    if not 1 <= nights <= MAX_NIGHTS:
        raise Problem(Code.REQUEST_UNPROCESSABLE, f"check_out must be 1 to {MAX_NIGHTS} nights after check_in",
                      errors=[{"field": "check_out", "message": f"1 to {MAX_NIGHTS} nights after check_in"}])
    if data.check_in < datetime.now(UTC).date() - timedelta(days=1):
        raise Problem(Code.REQUEST_UNPROCESSABLE, "check_in is in the past",
                      errors=[{"field": "check_in", "message": "in the past"}])
    listing = Check("check_stay_listing", {"resource_id": data.resource_id, "scope": grant.scope_param},
                    Problem(Code.NOT_FOUND, f"listing {data.resource_id} does not exist"))
    return await state.acceptor.accept(
        request, command, job_type=BOOKING_CREATE, payload=data, check=listing)


@get("/v1/bookings", summary="List the bookings of the caller's providers (cursor pagination)", opt=allow(MEMBERS),
     responses=problem_responses(Code.UNAUTHORIZED, Code.FORBIDDEN, Code.VALIDATION_FAILED))
async def list_bookings(
    state: GatewayState,
    grant: Grant,
    provider: Annotated[UUID | None, Parameter(query="provider")] = None,
    resource: Annotated[UUID | None, Parameter(query="resource")] = None,
    status: Annotated[BookingStatus | None, Parameter(query="status")] = None,
    from_: Annotated[str | None, Parameter(query="from", pattern=INSTANT_PATTERN, schema_extra=INSTANT_SCHEMA,
                                           description="bookings ending after (RFC 3339)")] = None,
    to: Annotated[str | None, Parameter(query="to", pattern=INSTANT_PATTERN, schema_extra=INSTANT_SCHEMA,
                                        description="bookings starting before (RFC 3339)")] = None,
    limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    cursor: Cursor = None,
) -> BookingPage:
    after_created_at, after_id = decode_cursor(cursor)
    params = {"provider_id": provider, "resource_id": resource, "status": status,
              "from": parse_instant(from_, "from"), "to": parse_instant(to, "to"),
              "limit": limit + 1, "after_created_at": after_created_at, "after_id": after_id, **grant.booking_filter()}

    async def read() -> list[dict[str, Any]]:
        async with state.read_pool.connection() as conn:  # a replica's lag may hide a booking made a moment ago
            cur = await conn.execute(QUERIES["list_bookings"], params)
            return await cur.fetchall()

    rows = await with_reconnect(read)
    return BookingPage(items=[BookingSummary(**row) for row in rows[:limit]], next_cursor=next_cursor(rows, limit))


@get("/v1/bookings/{booking_id:uuid}", summary="Read a booking with its audit trail",
     description="Its customer (with the booking's customer token), the public token that made it, and the "
                 "provider's members.",
     opt=allow(Access.CUSTOMER | Access.PUBLIC_TOKEN | MEMBERS),
     responses=problem_responses(Code.NOT_FOUND, Code.UNAUTHORIZED, Code.FORBIDDEN, Code.RATE_LIMITED))
async def get_booking(state: GatewayState, grant: Grant, booking_id: UUID) -> BookingView:
    async def read() -> BookingView | None:
        async with state.pool.connection() as conn:
            return await read_booking(conn, booking_id, grant.booking_filter())

    booking = await with_reconnect(read)
    if booking is None:
        raise Problem(Code.NOT_FOUND, f"booking {booking_id} does not exist")
    return booking


_CANCELLABLE = ("requested", "pending_payment", "paid")


class RefundQuoteView(msgspec.Struct):
    booking_id: UUID
    status: str
    cancellable: bool  # whether the booking may be cancelled now at all
    paid: int  # what was paid and not yet refunded
    refund: int  # what a cancellation now gives back (the rest is kept by the provider)
    currency: str
    refund_percent: int
    window: dict[str, Any] | None  # the policy window that applies, if any
    hours_before_start: float
    policy: list[dict[str, Any]]
    quoted_at: datetime
    basis: Literal["policy", "nothing_paid", "not_cancellable"]


@get("/v1/bookings/{booking_id:uuid}/refund-quote", tags=["bookings"],
     opt=allow(Access.CUSTOMER | Access.PUBLIC_TOKEN | MEMBERS),
     summary="The refund cancelling this booking now would give, by its cancellation policy (read only)",
     description="The same rule the bookings worker applies when it cancels: the policy window with the "
                 "largest `min_hours_before_start` still met gives `refund_percent` of what was paid, rounded "
                 "down. Nothing paid (a request, an unpaid hold): `refund` 0 and nothing is charged.",
     responses=problem_responses(Code.NOT_FOUND, Code.UNAUTHORIZED, Code.FORBIDDEN, Code.RATE_LIMITED))
async def refund_quote(state: GatewayState, grant: Grant, booking_id: UUID) -> RefundQuoteView:
    async def read() -> Any:
        async with state.pool.connection() as conn:
            return await read_booking(conn, booking_id, grant.booking_filter())

    booking = await with_reconnect(read)
    if booking is None:
        raise Problem(Code.NOT_FOUND, f"booking {booking_id} does not exist")
    now = datetime.now(UTC)
    paid = sum(p.amount - p.amount_refunded for p in booking.payments if p.status == "succeeded")
    quote = quote_refund(booking.cancellation_policy, booking.start_at, now, paid)
    cancellable = booking.status in _CANCELLABLE
    basis: Literal["policy", "nothing_paid", "not_cancellable"] = (
        "not_cancellable" if not cancellable else "policy" if booking.status == "paid" else "nothing_paid")
    refund = min(quote.amount, paid) if basis == "policy" else 0
    return RefundQuoteView(booking_id=booking.id, status=booking.status, cancellable=cancellable, paid=paid,
                           refund=refund, currency=booking.currency, refund_percent=quote.refund_percent,
                           window=quote.window, hours_before_start=quote.hours_before_start,
                           policy=booking.cancellation_policy, quoted_at=now, basis=basis)
