"""Queue ``bookings``: create a booking (hold the slot until payment)."""

from __future__ import annotations

from typing import Any

import msgspec
import psycopg

from shared.booking import create_slot_booking
from shared.jobs import ClaimedJob
from shared.schemas import BookingCreated, BookingRequest
from workers.runtime import job_actor, runtime

settings = runtime.boot()


def handle_create_booking(conn: psycopg.Connection[Any], job: ClaimedJob) -> BookingCreated:
    request = msgspec.convert(job.payload, BookingRequest)
    return create_slot_booking(conn, request, job_id=job.id,
                               default_hold_ttl_seconds=settings.booking_hold_ttl_seconds)


create_booking = job_actor("bookings", "create_booking", handle_create_booking)
