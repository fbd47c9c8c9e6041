"""Booking lifecycle commands: each is accepted as a job on the ``bookings`` queue (Idempotency-Key
required) and carried out by the worker, where the database's transition rule is final. The gateway
pre-checks the transition so an obviously illegal command is refused at once with 409."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Request, Response, post

from gateway.access import MEMBERS, Access, Grant, allow, request_ip
from gateway.idempotency import Check, keyed_command
from gateway.problems import Problem, problem_responses
from gateway.state import GatewayState
from shared.db import QUERIES
from shared.errors import Code
from shared.registry import BOOKING_CANCEL, BOOKING_COMPLETE, BOOKING_MARK_PAID
from shared.schemas import Accepted, BookingCommand, BookingStatus, CancelRequest, CompleteRequest

COMMAND_PROBLEMS = problem_responses(
    Code.VALIDATION_FAILED, Code.IDEMPOTENCY_KEY_MISSING, Code.UNAUTHORIZED, Code.FORBIDDEN, Code.NOT_FOUND,
    Code.BOOKING_INVALID_TRANSITION, Code.IDEMPOTENCY_KEY_IN_FLIGHT, Code.IDEMPOTENCY_KEY_REUSED, Code.RATE_LIMITED)


async def _accept_transition(request: Request[Any, Any, Any], state: GatewayState, grant: Grant, booking_id: UUID,
                             body: Any, job_type: str, to_status: BookingStatus, reason: str | None
                             ) -> Response[Accepted]:
    """Accept the command if the caller may see the booking and it may move to ``to_status`` now. The audit
    actor is the verified caller (never a header), with the caller's role in the booking's provider."""
    command = keyed_command(request, body)
    visible = {"booking_id": booking_id, **grant.booking_filter()}
    caller = grant.caller
    role = caller.role_in(None)  # system, admin; a member's role depends on the booking's provider:
    if caller.kind == "user" and role is None:  # one more read, for users only (the accept checks visibility)
        async with state.pool.connection() as conn:
            cur = await conn.execute(QUERIES["get_booking_status"], visible)
            found = await cur.fetchone()
        if found is None:
            raise Problem(Code.NOT_FOUND, f"booking {booking_id} does not exist")
        role = caller.role_in(found["provider_id"])

    async def refusal() -> Problem:
        async with state.pool.connection() as conn:
            cur = await conn.execute(QUERIES["get_booking_status"], visible)
            row = await cur.fetchone()
        if row is None:
            return Problem(Code.NOT_FOUND, f"booking {booking_id} does not exist")
        return Problem(Code.BOOKING_INVALID_TRANSITION, f"booking {booking_id} is {row['status']}; "
                                                     f"it cannot become {to_status}")

    check = Check("check_transition_allowed", {**visible, "to_status": to_status}, refusal)
    payload = BookingCommand(booking_id=booking_id, to_status=to_status, actor=caller.kind, actor_id=caller.id,
                             actor_role=role, reason=reason,
                             request_id=request.scope["state"].get("request_id"),
                             ip=request_ip(request, state.settings))
    return await state.acceptor.accept(
        request, command, job_type=job_type, payload=payload, check=check)


@post("/v1/bookings/{booking_id:uuid}/cancel", status_code=202, summary="Cancel a booking",
      description="From pending_payment or paid, by its customer (customer token), the public token that made "
                  "it, or the provider's staff and owners. Accepted as a job; needs an Idempotency-Key header.",
      opt=allow(Access.CUSTOMER | Access.PUBLIC_TOKEN | MEMBERS), responses=COMMAND_PROBLEMS)
async def cancel_booking(request: Request[Any, Any, Any], state: GatewayState, grant: Grant, booking_id: UUID,
                         data: CancelRequest) -> Response[Accepted]:
    return await _accept_transition(request, state, grant, booking_id, data, BOOKING_CANCEL, "cancelled",
                                    data.reason or "cancelled on request")


@post("/v1/bookings/{booking_id:uuid}/complete", status_code=202, opt=allow(MEMBERS),
      summary="Mark a paid booking completed (staff, owners)", responses=COMMAND_PROBLEMS)
async def complete_booking(request: Request[Any, Any, Any], state: GatewayState, grant: Grant, booking_id: UUID,
                           data: CompleteRequest) -> Response[Accepted]:
    return await _accept_transition(request, state, grant, booking_id, data, BOOKING_COMPLETE, "completed",
                                    data.note or "service delivered")


@post("/v1/system/bookings/{booking_id:uuid}/mark-paid", status_code=202, opt=allow(Access.SYSTEM),
      summary="Mark a booking paid (system; until payments arrive)", responses=COMMAND_PROBLEMS)
async def mark_booking_paid(request: Request[Any, Any, Any], state: GatewayState, grant: Grant,
                            booking_id: UUID) -> Response[Accepted]:
    return await _accept_transition(request, state, grant, booking_id, None, BOOKING_MARK_PAID, "paid",
                                    "marked paid by the system")
