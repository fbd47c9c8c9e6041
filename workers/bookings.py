"""Queue ``bookings``: create a booking (hold the slot until payment) and move it through its lifecycle."""

from __future__ import annotations

from typing import Any

import msgspec
import psycopg

from shared import booking
from shared.jobs import ClaimedJob
from shared.schemas import BookingCommand, BookingCreated, BookingRequest, BookingTransitioned
from workers.runtime import job_actor, runtime

settings = runtime.boot()


def handle_create_booking(conn: psycopg.Connection[Any], job: ClaimedJob) -> BookingCreated:
    request: BookingRequest = msgspec.convert(job.payload, BookingRequest)  # type: ignore[arg-type]
    return booking.create_booking(conn, request, job_id=job.id,
                                  default_hold_ttl_seconds=settings.booking_hold_ttl_seconds)


def handle_transition(conn: psycopg.Connection[Any], job: ClaimedJob) -> BookingTransitioned:
    return booking.transition_booking(conn, msgspec.convert(job.payload, BookingCommand), job_id=job.id)


create_booking = job_actor("bookings", "create_booking", handle_create_booking)
cancel_booking = job_actor("bookings", "cancel_booking", handle_transition)
complete_booking = job_actor("bookings", "complete_booking", handle_transition)
mark_booking_paid = job_actor("bookings", "mark_booking_paid", handle_transition)
