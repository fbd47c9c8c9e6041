"""The owner console: ``/console`` and its pages are one HTML shell that loads plain ES modules
(``static/console/*.js``). The modules call the JSON API with the signed-in user's session token (kept in the
tab's ``sessionStorage``), so the console is held to exactly the access rules of any other API client, and a
staff session sees what the API lets staff see. The shell is the same for every page; the modules route on
``location.pathname``. A path that is no console page is a 404 problem, like any unknown URL.

Also here: ``GET /v1/bookings/{id}/refund-quote``, the refund a cancellation would give now, computed by the
same ``quote_refund`` the bookings worker applies when it cancels (the console shows it before asking)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Response, get
from litestar.enums import MediaType
from litestar.handlers import HTTPRouteHandler
from litestar.params import Parameter

from gateway.access import MEMBERS, PUBLIC_ROUTE, Access, Grant, allow
from gateway.problems import Problem, problem_responses
from gateway.state import GatewayState
from gateway.web import STATIC
from shared.booking import read_booking
from shared.db import with_reconnect
from shared.errors import Code
from shared.payments import quote_refund

SHELL = STATIC / "console" / "index.html"
PAGES = re.compile(r"(|sign-in|bookings|money|settings|bookings/[0-9a-fA-F-]{36}(/approve|/decline)?)/?")
SHELL_HEADERS = {
    "Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"}
CANCELLABLE = ("requested", "pending_payment", "paid")


def _shell() -> Response[bytes]:
    return Response(SHELL.read_bytes(), media_type=MediaType.HTML, headers=SHELL_HEADERS)


@get("/console", opt=PUBLIC_ROUTE, include_in_schema=False, sync_to_thread=False)
def console_home() -> Response[bytes]:
    return _shell()


@get("/console/{page:path}", opt=PUBLIC_ROUTE, include_in_schema=False, sync_to_thread=False)
def console_page(page: Annotated[str, Parameter(max_length=120)]) -> Response[bytes]:
    if not PAGES.fullmatch(page.lstrip("/")):
        raise Problem(Code.NOT_FOUND, f"the console has no page /console{page}")
    return _shell()


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
    cancellable = booking.status in CANCELLABLE
    basis: Literal["policy", "nothing_paid", "not_cancellable"] = (
        "not_cancellable" if not cancellable else "policy" if booking.status == "paid" else "nothing_paid")
    refund = min(quote.amount, paid) if basis == "policy" else 0
    return RefundQuoteView(booking_id=booking.id, status=booking.status, cancellable=cancellable, paid=paid,
                           refund=refund, currency=booking.currency, refund_percent=quote.refund_percent,
                           window=quote.window, hours_before_start=quote.hours_before_start,
                           policy=booking.cancellation_policy, quoted_at=now, basis=basis)


ROUTES: list[HTTPRouteHandler] = [console_home, console_page, refund_quote]
