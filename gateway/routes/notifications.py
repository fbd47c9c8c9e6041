"""What the system told the outside world: a provider's in-app feed, and its deliveries (emails and
webhooks) with every attempt; dead letters can be retried."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Request, get, post
from litestar.params import Parameter

from gateway.access import MEMBERS, OWNERS, Grant, allow, record_action
from gateway.pagination import Cursor, decode_cursor, next_cursor
from gateway.problems import Problem, problem_responses
from gateway.reads import fetch_rows, require_provider
from gateway.state import GatewayState
from shared.db import QUERIES
from shared.errors import Code
from shared.notifications import event_link

Limit = Annotated[int, Parameter(ge=1, le=200)]
DeliveryStatus = Literal["pending", "delivered", "failed", "dead"]


class Notification(msgspec.Struct):
    id: UUID
    topic: str
    booking_id: UUID | None
    payload: dict[str, Any]
    link: str  # where the owner's app opens it (seed 004 §16), by the booking's status in the event
    read_at: datetime | None
    created_at: datetime


def _notification(row: dict[str, Any]) -> Notification:
    return Notification(**row, link=event_link(row["booking_id"], row["payload"]))


class NotificationPage(msgspec.Struct):
    items: list[Notification]
    next_cursor: str | None


class Attempt(msgspec.Struct):
    attempt: int
    succeeded: bool
    status_code: int | None
    duration_ms: int
    error: str | None
    response_excerpt: str | None
    created_at: datetime


class Delivery(msgspec.Struct):
    id: UUID
    event_id: int
    topic: str
    channel: Literal["email", "webhook", "in_app"]
    recipient: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    updated_at: datetime
    attempt_log: list[Attempt]


class DeliveryPage(msgspec.Struct):
    items: list[Delivery]
    next_cursor: str | None


class RetryScheduled(msgspec.Struct):
    id: UUID
    status: DeliveryStatus


def _page(cursor: str | None, limit: int) -> dict[str, Any]:
    after_created_at, after_id = decode_cursor(cursor)
    return {"after_created_at": after_created_at, "after_id": after_id, "limit": limit + 1}


@get("/v1/providers/{provider_id:uuid}/notifications", opt=allow(MEMBERS),
     summary="A provider's in-app notifications, newest first",
     responses=problem_responses(Code.UNAUTHORIZED, Code.FORBIDDEN, Code.NOT_FOUND, Code.VALIDATION_FAILED))
async def list_notifications(state: GatewayState, provider_id: UUID, unread: bool = False, limit: Limit = 50,
                             cursor: Cursor = None) -> NotificationPage:
    await require_provider(state, provider_id)
    rows = await fetch_rows(state, "list_notifications",
                       {"provider_id": provider_id, "unread": unread, **_page(cursor, limit)})
    return NotificationPage(items=[_notification(row) for row in rows[:limit]], next_cursor=next_cursor(rows, limit))


@post("/v1/providers/{provider_id:uuid}/notifications/{notification_id:uuid}/read", opt=allow(MEMBERS),
      status_code=200, summary="Mark an in-app notification read (idempotent)",
      responses=problem_responses(Code.UNAUTHORIZED, Code.FORBIDDEN, Code.NOT_FOUND))
async def mark_notification_read(state: GatewayState, provider_id: UUID, notification_id: UUID) -> Notification:
    rows = await fetch_rows(state, "mark_notification_read", {"id": notification_id, "provider_id": provider_id})
    if not rows:
        raise Problem(Code.NOT_FOUND, f"provider {provider_id} has no notification {notification_id}")
    return _notification(rows[0])


@get("/v1/providers/{provider_id:uuid}/deliveries", opt=allow(OWNERS),
     summary="A provider's email and webhook deliveries with their attempts, newest first (dead letters: "
             "?status=dead)",
     responses=problem_responses(Code.UNAUTHORIZED, Code.FORBIDDEN, Code.NOT_FOUND, Code.VALIDATION_FAILED))
async def list_deliveries(state: GatewayState, provider_id: UUID, status: DeliveryStatus | None = None,
                          limit: Limit = 50, cursor: Cursor = None) -> DeliveryPage:
    await require_provider(state, provider_id)
    rows = await fetch_rows(state, "list_deliveries", {"provider_id": provider_id, "status": status,
                                                  **_page(cursor, limit)})
    items = [msgspec.convert(row, Delivery) for row in rows[:limit]]
    return DeliveryPage(items=items, next_cursor=next_cursor(rows, limit))


@post("/v1/deliveries/{delivery_id:uuid}/retry", opt=allow(OWNERS), status_code=202,
      summary="Send a failed or dead delivery again now (the scheduler picks it up within a tick)",
      responses=problem_responses(Code.UNAUTHORIZED, Code.FORBIDDEN, Code.NOT_FOUND))
async def retry_delivery(request: Request[Any, Any, Any], state: GatewayState, grant: Grant,
                         delivery_id: UUID) -> RetryScheduled:
    async with state.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(QUERIES["retry_delivery"], {"id": delivery_id, "scope": grant.scope_param})
        rows = await cur.fetchall()
        if not rows:
            raise Problem(Code.NOT_FOUND, f"no failed or dead delivery {delivery_id}")
        await record_action(conn, request, grant, rows[0]["provider_id"], "delivery.retry", ("delivery", delivery_id))
    return RetryScheduled(id=rows[0]["id"], status=rows[0]["status"])
