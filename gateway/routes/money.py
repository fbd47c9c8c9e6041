"""Owner views of money, computed from the ledger: balance, statement (opening balance plus the page's running
sum), payouts; and the system's reconciliation trigger. The views read the read pool (a replica may trail the
primary a moment)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from uuid import UUID
from zoneinfo import ZoneInfo

import msgspec
from litestar import Request, Response, get, post
from litestar.params import Parameter
from psycopg.rows import tuple_row

from gateway.access import OWNERS, PLATFORM, Grant, allow
from gateway.idempotency import keyed_command
from gateway.instants import DATE_OR_INSTANT_PATTERN, DATE_OR_INSTANT_SCHEMA, parse_instant
from gateway.openapi_docs import KEY_REQUIRED
from gateway.pagination import Cursor, decode_cursor, decode_entry_cursor, encode_cursor, next_cursor, unissued_cursor
from gateway.problems import Problem, problem_responses
from gateway.reads import fetch_rows, require_provider
from gateway.state import GatewayState
from shared.connect import hold_reason
from shared.db import QUERIES, with_reconnect
from shared.errors import Code
from shared.ledger import Balance
from shared.registry import LEDGER_RECONCILE
from shared.schemas import Accepted

MAX_STATEMENT_PAGE = 1000  # entries per statement page, at most and by default


class ProviderBalance(msgspec.Struct):
    provider_id: UUID
    balances: list[Balance]
    payouts_held: str | None = None  # why its connected account cannot be paid now (None: it can)


class StatementEntry(msgspec.Struct):
    id: int
    created_at: datetime
    available_at: datetime
    amount: int  # what we owe the provider: + earned, - refunded or paid out
    currency: str
    account: str
    transaction_id: int
    kind: str
    booking_id: UUID | None
    payout_id: UUID | None
    description: str | None
    running_balance: int


class Statement(msgspec.Struct):
    """One page of a period's statement: ``opening_balances`` is what we owed just before its first entry,
    ``closing_balances`` just after its last; ``next_cursor`` continues the period (``truncated`` says the same:
    kept for clients of the time when a statement was one page)."""

    provider_id: UUID
    from_: datetime = msgspec.field(name="from")
    to: datetime = msgspec.field()
    opening_balances: dict[str, int] = msgspec.field()
    closing_balances: dict[str, int] = msgspec.field()
    entries: list[StatementEntry] = msgspec.field()
    truncated: bool = False
    next_cursor: str | None = None


class PayoutLine(msgspec.Struct):
    payout_id: UUID
    booking_id: UUID
    amount: int
    status: str
    stripe_transfer_id: str | None
    failure_reason: str | None


class PayoutBatch(msgspec.Struct):
    id: UUID
    provider_id: UUID
    currency: str
    total: int
    destination: str
    period_start: datetime
    period_end: datetime
    created_at: datetime
    lines: list[PayoutLine]
    held_reason: str | None = None  # why nothing of it was paid (its money waits for a later period)


class PayoutPage(msgspec.Struct):
    items: list[PayoutBatch]
    next_cursor: str | None


@get("/v1/providers/{provider_id:uuid}/balance", opt=allow(OWNERS),
     summary="A provider's balance per currency: pending, available, in transit, paid out",
     responses=problem_responses(Code.UNAUTHORIZED, Code.FORBIDDEN, Code.NOT_FOUND))
async def provider_balance(state: GatewayState, provider_id: UUID) -> ProviderBalance:
    await require_provider(state, provider_id, lag_ok=True)
    rows = await fetch_rows(state, "provider_balances", {"provider_id": provider_id}, lag_ok=True)
    account = await fetch_rows(state, "stripe_account_of", {"provider_id": provider_id}, lag_ok=True)
    return ProviderBalance(provider_id=provider_id, balances=[Balance(**row) for row in rows],
                           payouts_held=hold_reason(account[0] if account else None))


@get("/v1/providers/{provider_id:uuid}/statement", opt=allow(OWNERS),
     summary="A provider's ledger entries between two instants, with the running balance (cursor pagination)",
     responses=problem_responses(Code.UNAUTHORIZED, Code.FORBIDDEN, Code.NOT_FOUND, Code.VALIDATION_FAILED))
async def provider_statement(
    state: GatewayState, provider_id: UUID,
    from_: Annotated[str, Parameter(query="from", pattern=DATE_OR_INSTANT_PATTERN, schema_extra=DATE_OR_INSTANT_SCHEMA,
                                    description="an ISO-8601 instant with an offset, or a local date "
                                    "of the provider (YYYY-MM-DD: from its first moment)")],
    to: Annotated[str, Parameter(query="to", pattern=DATE_OR_INSTANT_PATTERN, schema_extra=DATE_OR_INSTANT_SCHEMA,
                                 description="an ISO-8601 instant with an offset, or a local date of "
                                 "the provider (YYYY-MM-DD: to its end, inclusive)")],
    limit: Annotated[int, Parameter(ge=1, le=MAX_STATEMENT_PAGE,
                                    description="entries on this page")] = MAX_STATEMENT_PAGE,
    cursor: Cursor = None,
) -> Statement:
    rows = await fetch_rows(state, "get_provider", {"id": provider_id}, lag_ok=True)
    if not rows:
        raise Problem(Code.NOT_FOUND, f"provider {provider_id} does not exist")
    zone = ZoneInfo(rows[0]["time_zone"])
    start, end = _instant(from_, zone, "from"), _instant(to, zone, "to", end_of_day=True)
    if end <= start:
        raise Problem(Code.REQUEST_UNPROCESSABLE, "from must be before to",
                      errors=[{"field": "to", "message": "after from"}])
    # where this page starts: the period's first instant, or just past the entry the last page ended with
    after = decode_entry_cursor(cursor)
    if after is not None and not start <= after[0] < end:
        raise unissued_cursor()
    position = (after[0], after[1] + 1) if after is not None else (start, 0)
    params = {"provider_id": provider_id, "from": position[0], "from_id": position[1], "to": end, "limit": limit + 1}
    opening_rows, page = await with_reconnect(lambda: _statement_rows(state, params))
    opening = {row["currency"]: row["balance"] for row in opening_rows}
    closing = dict(opening)
    entries = []
    for row in page[:limit]:  # the running balance of what we owe, per currency
        currency = row[_CURRENCY]
        closing[currency] = closing.get(currency, 0) + row[_AMOUNT]
        entries.append(StatementEntry(*(*row, closing[currency])))  # the page's columns, then running_balance
    more = encode_cursor(entries[-1].created_at, entries[-1].id) if len(page) > limit else None
    return Statement(provider_id=provider_id, from_=start, to=end, opening_balances=opening,
                     closing_balances=closing, entries=entries, truncated=more is not None, next_cursor=more)


# provider_statement's columns are StatementEntry's fields in order (all but running_balance)
_AMOUNT, _CURRENCY = 3, 4


async def _statement_rows(state: GatewayState, params: dict[str, Any]) -> tuple[list[dict[str, Any]],
                                                                               list[tuple[Any, ...]]]:
    """The opening balances and the page, on one connection. The page comes as tuples in binary: a dict per
    row and text parsing were half of the client's time for a full page (measured at 1M entries: 5,001 rows
    decoded in 8.6 ms as dicts from binary, 4.4 ms as tuples; bench/ledger.py)."""
    async with state.read_pool.connection() as conn:
        opening = await (await conn.execute(QUERIES["statement_opening"], params)).fetchall()
        page = conn.cursor(row_factory=tuple_row, binary=True)
        await page.execute(QUERIES["provider_statement"], params)
        return opening, await page.fetchall()


@get("/v1/payouts", opt=allow(OWNERS), summary="A provider's payout batches with their booking lines",
     responses=problem_responses(Code.UNAUTHORIZED, Code.FORBIDDEN, Code.VALIDATION_FAILED))
async def list_payouts(
    state: GatewayState, grant: Grant, provider: UUID, limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    cursor: Cursor = None,
) -> PayoutPage:
    if not grant.covers(provider):
        raise Problem(Code.NOT_FOUND, f"provider {provider} does not exist")
    before_created_at, before_id = decode_cursor(cursor)
    rows = await fetch_rows(state, "list_payout_batches", {"provider_id": provider, "limit": limit + 1,
                                                       "before_created_at": before_created_at, "before_id": before_id},
                            lag_ok=True)
    items = [PayoutBatch(**{**row, "lines": [PayoutLine(**line) for line in row["lines"] or []]})
             for row in rows[:limit]]
    return PayoutPage(items=items, next_cursor=next_cursor(rows, limit))


def _instant(text: str, zone: ZoneInfo, name: str, *, end_of_day: bool = False) -> datetime:
    """A statement bound: an instant as given (it must carry an offset), or a local date of the provider: its
    first moment, or for ``to`` the first moment of the next day (the date is inclusive)."""
    refused = Problem(Code.VALIDATION_FAILED, f"{name} must be an ISO-8601 instant with an offset, or a date",
                      errors=[{"field": name, "message": "an instant with an offset, or YYYY-MM-DD"}])
    try:
        if len(text) == len("YYYY-MM-DD"):
            day = date.fromisoformat(text)
            return datetime.combine(day + timedelta(days=1) if end_of_day else day, time(0), zone)
    except ValueError:
        raise refused from None
    except OverflowError:  # 9999-12-31 as ``to``: its end is past the last instant Python can hold
        raise Problem(Code.REQUEST_UNPROCESSABLE, f"{name} is out of range",
                      errors=[{"field": name, "message": "out of range"}]) from None
    moment = parse_instant(text, name)
    if moment is None:
        raise refused
    return moment


class ReconcileRequest(msgspec.Struct, forbid_unknown_fields=True):
    note: str | None = None


@post("/v1/system/reconciliations", opt={**allow(PLATFORM), **KEY_REQUIRED}, status_code=202,
      summary="Reconcile the ledger with Stripe's balance transactions now (as a job)",
      responses=problem_responses(Code.UNAUTHORIZED, Code.FORBIDDEN, Code.IDEMPOTENCY_KEY_MISSING))
async def run_reconciliation(request: Request[Any, Any, Any], state: GatewayState,
                             data: ReconcileRequest) -> Response[Accepted]:
    command = keyed_command(request, data)
    return await state.acceptor.accept(
        request, command, job_type=LEDGER_RECONCILE, payload=data, check=None)
