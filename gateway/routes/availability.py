"""Availability computed in SQL in the provider's time zone: free slots of a slot resource for a service,
or free nights of a stay listing. Read from the read pool: a replica's answer may trail by its lag, which is
harmless, as the booking itself is decided on the primary (bookings_no_overlap)."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from uuid import UUID

from litestar import get
from litestar.params import Parameter

from gateway.access import WIDGET, Grant, allow
from gateway.problems import Problem, problem_responses
from gateway.state import GatewayState
from shared.db import QUERIES, with_reconnect
from shared.errors import Code
from shared.schemas import NightAvailability, Slot, SlotAvailability

MAX_WINDOW_DAYS = 62


@get("/v1/resources/{resource_id:uuid}/availability",
     summary="Free slots (slot resource, needs service_id) or free nights (stay listing)",
     opt=allow(WIDGET),
     responses=problem_responses(Code.VALIDATION_FAILED, Code.NOT_FOUND, Code.UNAUTHORIZED, Code.FORBIDDEN,
                                 Code.RATE_LIMITED))
async def slot_availability(
    state: GatewayState, grant: Grant, resource_id: UUID,
    from_date: Annotated[date, Parameter(query="from", description="first local date (YYYY-MM-DD)")],
    to_date: Annotated[date, Parameter(query="to", description="last local date, inclusive")],
    service_id: Annotated[UUID | None, Parameter(query="service_id")] = None,
    service: Annotated[UUID | None, Parameter(query="service", description="alias of service_id")] = None,
    step_minutes: Annotated[int, Parameter(query="step", ge=5, le=240)] = 15,
) -> SlotAvailability | NightAvailability:
    chosen = service_id or service
    if to_date < from_date or (to_date - from_date).days >= MAX_WINDOW_DAYS:
        raise Problem(Code.REQUEST_UNPROCESSABLE, f"need from <= to and a window of at most {MAX_WINDOW_DAYS} days")
    params = {"resource_id": resource_id, "service_id": chosen, "from": from_date, "to": to_date,
              "step_minutes": step_minutes, "scope": grant.scope_param}

    async def read() -> SlotAvailability | NightAvailability:
        async with state.read_pool.connection() as conn:
            cur = await conn.execute(QUERIES["get_resource_zone"], params)
            resource = await cur.fetchone()
            if resource is None:
                raise Problem(Code.NOT_FOUND, f"resource {resource_id} does not exist")
            if resource["kind"] == "stay":
                cur = await conn.execute(QUERIES["night_availability"], params)
                nights = [row["night"] for row in await cur.fetchall()]
                return NightAvailability(resource_id=resource_id, time_zone=resource["time_zone"], nights=nights)
            if chosen is None:
                raise Problem(Code.REQUEST_UNPROCESSABLE, "service_id is required for a slot resource",
                              errors=[{"field": "service_id", "message": "required"}])
            cur = await conn.execute(QUERIES["get_offer_time_zone"], params)
            zone = await cur.fetchone()
            if zone is None:
                raise Problem(Code.NOT_FOUND,
                              f"resource {resource_id} does not exist or does not offer service {chosen}")
            cur = await conn.execute(QUERIES["slot_availability"], params)
            slots = [Slot(**row) for row in await cur.fetchall()]
        return SlotAvailability(resource_id=resource_id, service_id=chosen, time_zone=zone["time_zone"], slots=slots)

    return await with_reconnect(read)
