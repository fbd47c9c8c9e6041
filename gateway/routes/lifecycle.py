"""Booking lifecycle commands: each is accepted as a job on the ``bookings`` queue (Idempotency-Key
required) and carried out by the worker, where the database's transition rule is final. The gateway
pre-checks the transition so an obviously illegal command is refused at once with 409."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Request, Response, post

from gateway.access import MEMBERS, Access, Grant, allow, request_ip
from gateway.idempotency import Check, keyed_command
from gateway.openapi_docs import KEY_REQUIRED
from gateway.problems import Problem, problem_responses
from gateway.state import GatewayState
from shared.db import QUERIES
from shared.errors import Code
from shared.registry import (
    BOOKING_APPROVE,
    BOOKING_CANCEL,
    BOOKING_CHECK_IN,
    BOOKING_CHECK_OUT,
    BOOKING_COMPLETE,
    BOOKING_DECLINE,
    BOOKING_MARK_PAID,
    DEPOSIT_CLAIM,
    DEPOSIT_RELEASE,
)
from shared.schemas import (
    Accepted,
    BookingCommand,
    BookingStatus,
    CancelRequest,
    CompleteRequest,
    DeclineRequest,
    DepositClaimRequest,
    DepositCommand,
    DepositReleaseRequest,
    NoteRequest,
)

COMMAND_PROBLEMS = problem_responses(
    Code.VALIDATION_FAILED, Code.IDEMPOTENCY_KEY_MISSING, Code.UNAUTHORIZED, Code.FORBIDDEN, Code.NOT_FOUND,
    Code.BOOKING_INVALID_TRANSITION, Code.IDEMPOTENCY_KEY_IN_FLIGHT, Code.IDEMPOTENCY_KEY_REUSED, Code.RATE_LIMITED)
CHECK_IN_PROBLEMS = problem_responses(
    Code.VALIDATION_FAILED, Code.IDEMPOTENCY_KEY_MISSING, Code.UNAUTHORIZED, Code.FORBIDDEN, Code.NOT_FOUND,
    Code.BOOKING_INVALID_TRANSITION, Code.BOOKING_CHECK_IN_TOO_EARLY, Code.IDEMPOTENCY_KEY_IN_FLIGHT,
    Code.IDEMPOTENCY_KEY_REUSED, Code.RATE_LIMITED)
DEPOSIT_PROBLEMS = problem_responses(
    Code.VALIDATION_FAILED, Code.IDEMPOTENCY_KEY_MISSING, Code.UNAUTHORIZED, Code.FORBIDDEN, Code.NOT_FOUND,
    Code.DEPOSIT_NOT_SETTLEABLE, Code.IDEMPOTENCY_KEY_IN_FLIGHT, Code.IDEMPOTENCY_KEY_REUSED, Code.RATE_LIMITED)


async def _role(state: GatewayState, grant: Grant, booking_id: UUID, visible: dict[str, Any], *,
                always_check: bool = False) -> str | None:
    """The caller's role for the audit trail: system and admin have theirs; a member's depends on the booking's
    provider, which costs one read (for users only, unless ``always_check``: a booking the caller may not see
    is then 404 before anything else is read)."""
    caller = grant.caller
    role = caller.role_in(None)
    if not always_check and (caller.kind != "user" or role is not None):
        return role
    async with state.pool.connection() as conn:
        cur = await conn.execute(QUERIES["get_booking_status"], visible)
        found = await cur.fetchone()
    if found is None:
        raise Problem(Code.NOT_FOUND, f"booking {booking_id} does not exist")
    return role if role is not None else caller.role_in(found["provider_id"])


async def _accept_transition(request: Request[Any, Any, Any], state: GatewayState, grant: Grant, booking_id: UUID,
                             body: Any, job_type: str, to_status: BookingStatus, reason: str | None
                             ) -> Response[Accepted]:
    """Accept the command if the caller may see the booking and it may move to ``to_status`` now. The audit
    actor is the verified caller (never a header), with the caller's role in the booking's provider."""
    command = keyed_command(request, body)
    visible = {"booking_id": booking_id, **grant.booking_filter()}
    caller = grant.caller
    role = await _role(state, grant, booking_id, visible)

    async def refusal() -> Problem:
        async with state.pool.connection() as conn:
            cur = await conn.execute(QUERIES["get_booking_status"], visible)
            return _refused(booking_id, await cur.fetchone(), to_status)

    check = Check("check_transition_allowed", {**visible, "to_status": to_status}, refusal)
    payload = BookingCommand(booking_id=booking_id, to_status=to_status, actor=caller.kind, actor_id=caller.id,
                             actor_role=role, reason=reason,
                             request_id=request.scope["state"].get("request_id"),
                             ip=request_ip(request, state.settings))
    return await state.acceptor.accept(
        request, command, job_type=job_type, payload=payload, check=check)


def _refused(booking_id: UUID, row: dict[str, Any] | None, to_status: BookingStatus) -> Problem:
    """Why a command was refused: no such booking (for this caller), too early to check in, a request that
    lapsed, or a status that does not allow it."""
    if row is None:
        return Problem(Code.NOT_FOUND, f"booking {booking_id} does not exist")
    if to_status == "checked_in" and row["status"] == "paid" and row["now"] < row["start_at"]:
        return Problem(Code.BOOKING_CHECK_IN_TOO_EARLY, f"booking {booking_id} begins on {row['start_at']}; "
                                                        "check-in opens on the stay's first day")
    if row["status"] == "requested" and row["hold_expires_at"] <= row["now"]:
        return Problem(Code.BOOKING_INVALID_TRANSITION, f"booking {booking_id} was a request that lapsed "
                                                        f"at {row['hold_expires_at']}")
    return Problem(Code.BOOKING_INVALID_TRANSITION, f"booking {booking_id} is {row['status']}; "
                                                    f"it cannot become {to_status}")


@post("/v1/bookings/{booking_id:uuid}/cancel", status_code=202, summary="Cancel a booking",
      description="From pending_payment or paid, by its customer (customer token), the public token that made "
                  "it, or the provider's staff and owners. Accepted as a job; needs an Idempotency-Key header.",
      opt={**allow(Access.CUSTOMER | Access.PUBLIC_TOKEN | MEMBERS), **KEY_REQUIRED}, responses=COMMAND_PROBLEMS)
async def cancel_booking(request: Request[Any, Any, Any], state: GatewayState, grant: Grant, booking_id: UUID,
                         data: CancelRequest) -> Response[Accepted]:
    return await _accept_transition(request, state, grant, booking_id, data, BOOKING_CANCEL, "cancelled",
                                    data.reason or "cancelled on request")


@post("/v1/bookings/{booking_id:uuid}/complete", status_code=202, opt={**allow(MEMBERS), **KEY_REQUIRED},
      summary="Mark a paid booking completed (staff, owners)", responses=COMMAND_PROBLEMS)
async def complete_booking(request: Request[Any, Any, Any], state: GatewayState, grant: Grant, booking_id: UUID,
                           data: CompleteRequest) -> Response[Accepted]:
    return await _accept_transition(request, state, grant, booking_id, data, BOOKING_COMPLETE, "completed",
                                    data.note or "service delivered")


@post("/v1/system/bookings/{booking_id:uuid}/mark-paid", status_code=202, opt={**allow(Access.SYSTEM), **KEY_REQUIRED},
      summary="Mark a booking paid (system; until payments arrive)", responses=COMMAND_PROBLEMS)
async def mark_booking_paid(request: Request[Any, Any, Any], state: GatewayState, grant: Grant,
                            booking_id: UUID) -> Response[Accepted]:
    return await _accept_transition(request, state, grant, booking_id, None, BOOKING_MARK_PAID, "paid",
                                    "marked paid by the system")


@post("/v1/bookings/{booking_id:uuid}/approve", status_code=202, opt={**allow(MEMBERS), **KEY_REQUIRED},
      responses=COMMAND_PROBLEMS,
      summary="Approve a booking request (staff, owners)",
      description="requested → pending_payment: the job opens the PaymentIntent (its result carries "
                  "payment_intent_id and client_secret) and the payment hold starts. A request that lapsed "
                  "cannot be approved. Needs an Idempotency-Key header.")
async def approve_booking(request: Request[Any, Any, Any], state: GatewayState, grant: Grant, booking_id: UUID,
                          data: NoteRequest) -> Response[Accepted]:
    return await _accept_transition(request, state, grant, booking_id, data, BOOKING_APPROVE, "pending_payment",
                                    data.note)


@post("/v1/bookings/{booking_id:uuid}/decline", status_code=202, opt={**allow(MEMBERS), **KEY_REQUIRED},
      responses=COMMAND_PROBLEMS,
      summary="Decline a booking request (staff, owners)",
      description="requested → declined (final); the dates are free again and the customer is told, with the "
                  "reason if given. Needs an Idempotency-Key header.")
async def decline_booking(request: Request[Any, Any, Any], state: GatewayState, grant: Grant, booking_id: UUID,
                          data: DeclineRequest) -> Response[Accepted]:
    return await _accept_transition(request, state, grant, booking_id, data, BOOKING_DECLINE, "declined",
                                    data.reason or "declined by the host")


@post("/v1/bookings/{booking_id:uuid}/check-in", status_code=202, opt={**allow(MEMBERS), **KEY_REQUIRED},
      responses=CHECK_IN_PROBLEMS,
      summary="Check a paid stay in (staff, owners), from its first day")
async def check_in_booking(request: Request[Any, Any, Any], state: GatewayState, grant: Grant, booking_id: UUID,
                           data: NoteRequest) -> Response[Accepted]:
    return await _accept_transition(request, state, grant, booking_id, data, BOOKING_CHECK_IN, "checked_in",
                                    data.note or "guest arrived")


@post("/v1/bookings/{booking_id:uuid}/check-out", status_code=202, opt={**allow(MEMBERS), **KEY_REQUIRED},
      responses=COMMAND_PROBLEMS,
      summary="Check a stay out (staff, owners)",
      description="checked_in → checked_out. With a security deposit held, the claim window opens "
                  "(DEPOSIT_CLAIM_WINDOW_HOURS); otherwise the stay completes at once.")
async def check_out_booking(request: Request[Any, Any, Any], state: GatewayState, grant: Grant, booking_id: UUID,
                            data: NoteRequest) -> Response[Accepted]:
    return await _accept_transition(request, state, grant, booking_id, data, BOOKING_CHECK_OUT, "checked_out",
                                    data.note or "guest left")


async def _accept_deposit(request: Request[Any, Any, Any], state: GatewayState, grant: Grant, booking_id: UUID,
                          body: Any, job_type: str, amount: int | None, reason: str | None) -> Response[Accepted]:
    """Accept a claim or release if the caller's booking is checked out with its deposit held."""
    command = keyed_command(request, body)
    visible = {"booking_id": booking_id, **grant.booking_filter()}
    caller = grant.caller
    # visible first: the refusal below reads the deposit, which must say nothing to another provider's caller
    role = await _role(state, grant, booking_id, visible, always_check=True)

    async def refusal() -> Problem:
        async with state.pool.connection() as conn:
            cur = await conn.execute(QUERIES["get_booking_deposit"], {"id": booking_id})
            deposit = await cur.fetchone()
        if deposit is None:
            return Problem(Code.DEPOSIT_NOT_SETTLEABLE, f"booking {booking_id} has no security deposit")
        if deposit["status"] != "authorized":
            return Problem(Code.DEPOSIT_NOT_SETTLEABLE, f"the deposit is {deposit['status']}, not held")
        if amount is not None and amount > deposit["amount"]:
            return Problem(Code.DEPOSIT_NOT_SETTLEABLE, f"a claim is at most the deposit ({deposit['amount']})")
        return Problem(Code.DEPOSIT_NOT_SETTLEABLE, "the guest has not checked out yet")

    check = Check("check_deposit_settleable", {**visible, "amount": amount}, refusal)
    payload = DepositCommand(booking_id=booking_id, actor=caller.kind, amount=amount, reason=reason,
                             actor_id=caller.id, actor_role=role, request_id=request.scope["state"].get("request_id"),
                             ip=request_ip(request, state.settings))
    return await state.acceptor.accept(request, command, job_type=job_type, payload=payload, check=check)


@post("/v1/bookings/{booking_id:uuid}/deposit/claim", status_code=202, opt={**allow(MEMBERS), **KEY_REQUIRED},
      responses=DEPOSIT_PROBLEMS, summary="Claim part or all of a stay's security deposit (staff, owners)",
      description="After check-out, within DEPOSIT_CLAIM_WINDOW_HOURS: captures `amount` (minor units, at most "
                  "the deposit) of the held authorisation, posts it to the provider's payable, and completes the "
                  "stay. Needs an Idempotency-Key header.")
async def claim_deposit(request: Request[Any, Any, Any], state: GatewayState, grant: Grant, booking_id: UUID,
                        data: DepositClaimRequest) -> Response[Accepted]:
    return await _accept_deposit(request, state, grant, booking_id, data, DEPOSIT_CLAIM, data.amount, data.reason)


@post("/v1/bookings/{booking_id:uuid}/deposit/release", status_code=202, opt={**allow(MEMBERS), **KEY_REQUIRED},
      responses=DEPOSIT_PROBLEMS, summary="Release a stay's security deposit (staff, owners)",
      description="After check-out: cancels the authorisation (nothing is charged) and completes the stay. "
                  "Needs an Idempotency-Key header.")
async def release_deposit(request: Request[Any, Any, Any], state: GatewayState, grant: Grant, booking_id: UUID,
                          data: DepositReleaseRequest) -> Response[Accepted]:
    return await _accept_deposit(request, state, grant, booking_id, data, DEPOSIT_RELEASE, None,
                                 data.reason or "released by the host")
