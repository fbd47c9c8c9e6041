"""Availability: free slots of a resource for a service, computed in SQL in the provider's time zone."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from uuid import UUID

from litestar import get
from litestar.datastructures import State
from litestar.params import Parameter

from gateway.problems import Problem
from shared.db import QUERIES, with_reconnect
from shared.schemas import Slot, SlotAvailability

MAX_WINDOW_DAYS = 62


@get("/v1/resources/{resource_id:uuid}/availability", summary="Free slots of a resource for a service")
async def slot_availability(
    state: State, resource_id: UUID,
    from_date: Annotated[date, Parameter(query="from", description="first local date (YYYY-MM-DD)")],
    to_date: Annotated[date, Parameter(query="to", description="last local date, inclusive")],
    service_id: Annotated[UUID | None, Parameter(query="service_id")] = None,
    service: Annotated[UUID | None, Parameter(query="service", description="alias of service_id")] = None,
    step_minutes: Annotated[int, Parameter(query="step", ge=5, le=240)] = 15,
) -> SlotAvailability:
    chosen = service_id or service
    if chosen is None:
        raise Problem("VALIDATION_FAILED", "service_id is required",
                      errors=[{"field": "service_id", "message": "required"}])
    if to_date < from_date or (to_date - from_date).days >= MAX_WINDOW_DAYS:
        raise Problem("VALIDATION_FAILED", f"need from <= to and a window of at most {MAX_WINDOW_DAYS} days")
    params = {"resource_id": resource_id, "service_id": chosen, "from": from_date, "to": to_date,
              "step_minutes": step_minutes}

    async def read() -> SlotAvailability:
        async with state.pool.connection() as conn:
            cur = await conn.execute(QUERIES["get_offer_time_zone"], params)
            zone = await cur.fetchone()
            if zone is None:
                raise Problem("NOT_FOUND", f"resource {resource_id} does not exist or does not offer service {chosen}")
            cur = await conn.execute(QUERIES["slot_availability"], params)
            slots = [Slot(**row) for row in await cur.fetchall()]
        return SlotAvailability(resource_id=resource_id, service_id=chosen, time_zone=zone["time_zone"], slots=slots)

    return await with_reconnect(read)
