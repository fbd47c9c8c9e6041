"""A provider's email templates: the effective one per (event, audience), and its own overrides of the
platform's defaults (``notification_templates``; the worker prefers the override, ``delivery_to_send``).

An override is rendered before it is stored, in the same sandbox the worker uses, against a sample context
built by the worker's own ``email_context`` (every variable a default uses, the provider's own name, time
zone and currency): one that does not render is refused with NOTIFICATION_TEMPLATE_INVALID and nothing is
stored. Only an event that has a default can be overridden. Every statement is scoped by the provider in the
path. Owners of the provider (and the platform) may call every route here.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Request, Router, delete, get, put

from gateway.access import OWNERS, Grant, allow, record_action
from gateway.problems import Problem, problem_responses
from gateway.state import GatewayState
from shared.db import QUERIES, translate_errors
from shared.errors import Code
from shared.messages import email_context
from shared.templates import render

AUTH = (Code.UNAUTHORIZED, Code.FORBIDDEN)
PATH = "/providers/{provider_id:uuid}/notification-templates"
ONE = PATH + "/{event:str}/{audience:str}"

Audience = Literal["customer", "provider"]
Body = Annotated[str, msgspec.Meta(max_length=100_000)]


class TemplateWrite(msgspec.Struct, forbid_unknown_fields=True):
    subject: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    text_body: Body
    html_body: Body


class TemplateView(msgspec.Struct):
    event: str
    audience: Audience
    subject: str
    text_body: str
    html_body: str
    source: Literal["default", "provider"]
    updated_at: datetime


class TemplateList(msgspec.Struct):
    items: list[TemplateView]


# Every key any event's payload carries (booking lifecycle, payment_failed, refund_issued, payout_sent,
# webhook_endpoint_disabled, dispute_opened/closed), so an override may use whichever its event has.
_SAMPLE_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
_SAMPLE_EVENT = {
    "booking_id": str(_SAMPLE_ID), "provider_id": str(_SAMPLE_ID), "resource_id": str(_SAMPLE_ID),
    "status": "paid", "from_status": "pending_payment", "start_at": "2031-06-02T08:00:00+00:00",
    "end_at": "2031-06-02T08:30:00+00:00", "amount": 2500, "reason": "requested by the customer",
    "detail": None, "link": f"/booking/{_SAMPLE_ID}", "refund_id": str(_SAMPLE_ID), "payout_id": str(_SAMPLE_ID),
    "failure_code": "card_declined", "endpoint_id": str(_SAMPLE_ID), "url": "https://hooks.example.com/totem",
    "respond_by": "2031-06-02T10:00:00+00:00", "approve_link": f"/console/bookings/{_SAMPLE_ID}/approve",
    "decline_link": f"/console/bookings/{_SAMPLE_ID}/decline", "dispute_id": "dp_sample", "outcome": "lost",
}


def sample_context(provider: dict[str, Any], links_base: str) -> dict[str, Any]:
    """What a real email of this provider is rendered with, built the way the worker builds it."""
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=7)
    row = {
        "event": {**_SAMPLE_EVENT, "currency": provider["currency"]}, "booking_id": _SAMPLE_ID,
        "booking_status": "paid", "booking_kind": "slot", "start_at": start, "end_at": start + timedelta(minutes=30),
        "time_zone": provider["time_zone"], "amount": 2500, "currency": provider["currency"],
        "service_snapshot": {"name": "Haircut"}, "resource_name": "Alex", "provider_name": provider["name"],
        "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
    }
    return email_context(row, links_base)


def _params(provider_id: UUID, event: str, audience: str) -> dict[str, Any]:
    return {"provider_id": provider_id, "event": event, "audience": audience}


@get(PATH, summary="The effective email template per (event, audience): the provider's override, else the default",
     responses=problem_responses(*AUTH, Code.NOT_FOUND))
async def list_notification_templates(state: GatewayState, provider_id: UUID) -> TemplateList:
    async with state.pool.connection() as conn:
        cur = await conn.execute(QUERIES["notification_template_list"], {"provider_id": provider_id})
        rows = await cur.fetchall()
    if not rows:
        raise Problem(Code.NOT_FOUND, f"provider {provider_id} does not exist")
    return TemplateList(items=[msgspec.convert(row, TemplateView) for row in rows if row["event"] is not None])


@put(ONE, summary="Override an event's email template for this provider (checked by rendering it first)",
     responses=problem_responses(*AUTH, Code.VALIDATION_FAILED, Code.NOT_FOUND,
                                 Code.NOTIFICATION_TEMPLATE_INVALID))
async def put_notification_template(request: Request[Any, Any, Any], state: GatewayState, grant: Grant,
                                    provider_id: UUID, event: str, audience: Audience,
                                    data: TemplateWrite) -> TemplateView:
    params = _params(provider_id, event, audience)
    async with state.pool.connection() as conn:
        cur = await conn.execute(QUERIES["notification_template_target"], params)
        target = await cur.fetchone()
    if target is None:
        raise Problem(Code.NOT_FOUND, f"provider {provider_id} does not exist (or is deleted)")
    if not target["event_known"]:
        raise Problem(Code.NOT_FOUND, f"no default template for {event!r} to {audience!r} to override")
    template = msgspec.structs.asdict(data)
    # rendering is CPU work on untrusted text; off the event loop. Raises NotificationTemplateInvalid (422).
    await asyncio.to_thread(render, template, sample_context(target, state.settings.links_base))
    async with state.pool.connection() as conn, conn.transaction():
        with translate_errors():
            cur = await conn.execute(QUERIES["notification_template_upsert"], {**params, **template})
            row = await cur.fetchone()
        if row is None:  # the provider was deleted meanwhile
            raise Problem(Code.NOT_FOUND, f"provider {provider_id} does not exist (or is deleted)")
        await record_action(conn, request, grant, provider_id, "template.put", ("template", f"{event}/{audience}"),
                            after=template)
    return msgspec.convert(row, TemplateView)


@delete(ONE, status_code=204, summary="Drop the provider's override: the default applies again",
        responses=problem_responses(*AUTH, Code.VALIDATION_FAILED, Code.NOT_FOUND))
async def delete_notification_template(request: Request[Any, Any, Any], state: GatewayState, grant: Grant,
                                       provider_id: UUID, event: str, audience: Audience) -> None:
    async with state.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(QUERIES["notification_template_delete"], _params(provider_id, event, audience))
        if await cur.fetchone() is None:
            raise Problem(Code.NOT_FOUND, f"provider {provider_id} has no override of {event} for the {audience}")
        await record_action(conn, request, grant, provider_id, "template.delete", ("template", f"{event}/{audience}"))


router = Router(
    path="/v1", opt=allow(OWNERS), tags=["notification templates"],
    route_handlers=[list_notification_templates, put_notification_template, delete_notification_template],
)
