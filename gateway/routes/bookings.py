"""Bookings: accept creation as a job; read a booking with its audit trail."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from litestar import Request, Response, get, post
from litestar.datastructures import State

from gateway.idempotency import Check, keyed_command
from gateway.problems import Problem
from shared.booking import read_booking
from shared.db import with_reconnect
from shared.schemas import Accepted, BookingRequest, BookingView


@post("/v1/bookings", status_code=202, summary="Request a booking",
      description="Validates and records the request as a job, then answers 202 at once. Needs an "
                  "Idempotency-Key header. Poll the job at `status_url` until it is terminal.",
      response_headers=None)
async def create_booking(request: Request[Any, Any, Any], state: State, data: BookingRequest) -> Response[Accepted]:
    command = keyed_command(request, data)
    if data.start_at <= datetime.now(UTC):
        raise Problem("VALIDATION_FAILED", "start_at must be in the future",
                      errors=[{"field": "start_at", "message": "must be in the future"}])

    offer = Check("check_slot_offer", {"resource_id": data.resource_id, "service_id": data.service_id},
                  Problem("NOT_FOUND", f"resource {data.resource_id} does not exist or does not offer "
                                       f"service {data.service_id}"))
    return await state.acceptor.accept(  # type: ignore[no-any-return]
        request, command, job_type="booking.create", payload=data, check=offer)


@get("/v1/bookings/{booking_id:uuid}", summary="Read a booking with its audit trail")
async def get_booking(state: State, booking_id: UUID) -> BookingView:
    async def read() -> BookingView | None:
        async with state.pool.connection() as conn:
            return await read_booking(conn, booking_id)

    booking = await with_reconnect(read)
    if booking is None:
        raise Problem("NOT_FOUND", f"booking {booking_id} does not exist")
    return booking
