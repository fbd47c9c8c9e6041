"""Stripe's webhook ingress: verify, store once, enqueue, answer 200 in milliseconds.

The signature is checked with the stripe SDK (``WebhookSignature.verify_header``: HMAC-SHA256 over
"<t>.<payload>", ``STRIPE_WEBHOOK_TOLERANCE_SECONDS`` = 300 s against replays); a bad, missing or stale
signature is a 400 and nothing is stored. A verified event is stored with its apply job in ONE statement
(``store_stripe_event``: UNIQUE event_id), so a duplicate delivery answers 200 ``duplicate: true`` and
changes nothing, and a stored event always has its job. Applying it is the payments worker's business.

An event whose ``api_version`` is not ours (``STRIPE_API_VERSION``: the webhook endpoint was created with
another version) is stored but not applied: ``ignored``, its effect row naming both versions, a warning
logged and counted (``outcome="version_mismatch"``), and a 200. Not refused: Stripe would retry the same
payload, rendered in the same wrong version, for three days, and it would be in no record of ours; stored,
it is kept for support to read and for re-applying once the endpoint is fixed. Not applied: the appliers
read the fields of our version, and another version's payload may name or shape them otherwise.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
import stripe
from litestar import Request, get, post
from prometheus_client import Counter

from gateway.access import PLATFORM, PUBLIC_ROUTE, allow
from gateway.openapi_docs import signed_by
from gateway.problems import Problem, problem_responses
from gateway.state import GatewayState
from shared.broker import build_message
from shared.db import QUERIES, with_reconnect
from shared.errors import Code
from shared.payments import HANDLED_EVENTS
from shared.registry import STRIPE_APPLY_EVENT, job_route
from shared.stripe_api import STRIPE_API_VERSION

log = logging.getLogger("totem.webhooks")



# Stripe's ids and type names never hold a NUL, which Postgres text cannot store: such a payload is not an event.
StripeName = Annotated[str, msgspec.Meta(pattern=r"^[^\x00]*$")]
# Unix seconds up to 9999-12-31: what Postgres (to_timestamp) and Python can hold
UnixTime = Annotated[int, msgspec.Meta(ge=0, le=253_402_300_799)]


class StripeObject(msgspec.Struct):
    id: StripeName | None = None


class StripeEventData(msgspec.Struct):
    object: StripeObject


class StripeEventEnvelope(msgspec.Struct):
    """The part of an event the ingress reads; the whole payload is stored as received."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=r"^[^\x00]*$")]
    type: StripeName
    created: UnixTime
    data: StripeEventData
    api_version: str | None = None


class WebhookReceived(msgspec.Struct):
    received: bool
    duplicate: bool


class StripeEventView(msgspec.Struct):
    event_id: str
    type: str
    object_id: str | None
    status: str
    job_id: uuid.UUID | None
    received_at: datetime
    processed_at: datetime | None
    stripe_created: datetime
    effects: list[dict[str, Any]]
    payload: dict[str, Any]


# Stripe's events by type (the ones we handle; "other" for the rest, to bound the labels) and outcome: stored
# (queued for the payments pool), ignored (a type we do not handle), duplicate, signature_invalid,
# payload_invalid, version_mismatch (stored, not applied: rendered in another API version than ours).
STRIPE_EVENTS = Counter("totem_stripe_webhook_events", "Stripe webhook deliveries by event type and outcome",
                        ["type", "outcome"])


@post("/v1/webhooks/stripe", status_code=200, summary="Stripe webhook ingress",
      opt={**PUBLIC_ROUTE, **signed_by("Stripe-Signature", "Stripe's signature of the raw body (`t=...,v1=...`)")},
      description="Verifies the Stripe-Signature (stripe SDK, 300 s tolerance), stores the event once and "
                  "queues it for the payments worker. A duplicate delivery answers 200 with duplicate: true.",
      responses=problem_responses(Code.WEBHOOK_SIGNATURE_INVALID, Code.WEBHOOK_PAYLOAD_INVALID,
                                  Code.SERVICE_UNAVAILABLE))
async def stripe_webhook(request: Request[Any, Any, Any], state: GatewayState) -> WebhookReceived:
    settings = state.settings
    payload = await request.body()
    try:
        _verify(payload, request.headers.get("stripe-signature"), settings.stripe_webhook_secret,
                settings.stripe_connect_webhook_secret, settings.stripe_webhook_tolerance_seconds)
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as exc:
        log.warning("stripe webhook refused", extra={"reason": str(exc)[:120]})
        STRIPE_EVENTS.labels("unknown", "signature_invalid").inc()
        raise Problem(Code.WEBHOOK_SIGNATURE_INVALID, "the Stripe-Signature header does not verify this payload "
                                   "(bad signature, wrong secret or older than the tolerance)") from None
    try:
        event = msgspec.json.decode(payload, type=StripeEventEnvelope)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        STRIPE_EVENTS.labels("unknown", "payload_invalid").inc()
        raise Problem(Code.WEBHOOK_PAYLOAD_INVALID, f"signed payload is not a Stripe event: {exc}") from None

    same_version = event.api_version in (None, STRIPE_API_VERSION)  # none: only events from before 2014
    handled = event.type in HANDLED_EVENTS and same_version
    ignored_reason = "event type not handled" if same_version else (
        f"api_version {event.api_version}: this endpoint applies only {STRIPE_API_VERSION}")
    if not same_version:
        log.warning("stripe event in another API version: stored, not applied",
                    extra={"event_id": event.id, "api_version": event.api_version, "expected": STRIPE_API_VERSION})
    params = {"event_id": event.id, "event_type": event.type, "object_id": event.data.object.id,
              "created": event.created, "payload": _storable(payload.decode()), "handled": handled,
              "ignored_reason": ignored_reason, "job_id": uuid.uuid4(),
              **job_route(STRIPE_APPLY_EVENT), "max_attempts": settings.job_max_attempts,
              "request_id": request.scope.get("state", {}).get("request_id")}

    async def store() -> dict[str, Any] | None:
        async with state.pool.connection() as conn:
            cur = await conn.execute(QUERIES["store_stripe_event"], params)
            return await cur.fetchone()

    stored = await with_reconnect(store)  # safe twice: the event id makes a repeat a duplicate
    if stored is not None and stored["job_id"] is not None:
        state.enqueuer.submit(build_message(STRIPE_APPLY_EVENT, stored["job_id"]))
    outcome = "duplicate" if stored is None else "stored" if handled else "ignored" if same_version \
        else "version_mismatch"
    STRIPE_EVENTS.labels(event.type if event.type in HANDLED_EVENTS else "other", outcome).inc()
    return WebhookReceived(received=True, duplicate=stored is None)


# A JSON escape of U+0000 not itself escaped (preceded by an even number of backslashes).
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def _storable(payload: str) -> str:
    """The payload as jsonb can hold it. jsonb refuses the escape \\u0000, which a customer's metadata may
    carry; refusing the event would only make Stripe resend it for three days, so it is stored with U+FFFD in
    its place (the signature was verified over the payload as received)."""
    return _NUL_ESCAPE.sub(lambda m: m.group(1) + "\\ufffd", payload) if "\\u0000" in payload else payload


def _verify(payload: bytes, header: str | None, secret: str, connect_secret: str | None, tolerance: int) -> None:
    """The account endpoint's secret, else the Connect endpoint's (both may point at this URL)."""
    try:
        stripe.WebhookSignature.verify_header(payload, header, secret, tolerance)
    except stripe.SignatureVerificationError:
        if not connect_secret:
            raise
        stripe.WebhookSignature.verify_header(payload, header, connect_secret, tolerance)


@get("/v1/system/stripe-events/{event_id:str}", opt=allow(PLATFORM),
     summary="What a Stripe event was and what applying it changed (support)",
     responses=problem_responses(Code.UNAUTHORIZED, Code.FORBIDDEN, Code.NOT_FOUND))
async def get_stripe_event(state: GatewayState, event_id: str) -> StripeEventView:
    async def read() -> dict[str, Any] | None:
        async with state.pool.connection() as conn:
            cur = await conn.execute(QUERIES["get_stripe_event"], {"event_id": event_id})
            return await cur.fetchone()

    row = await with_reconnect(read)
    if row is None:
        raise Problem(Code.NOT_FOUND, f"no Stripe event {event_id} was received")
    return StripeEventView(**row)
