"""Notifications: what an attempt to deliver a message came to, and the delivery rules around it.

The relay (workers/relay.py) fans each outbox event out into deliveries, one per (event, channel,
recipient); the notifications pool sends each (email: shared/mail.py; webhook: shared/webhooks.py) and
records the attempt here. Retries follow ``NOTIFY_RETRY_SCHEDULE``; after its last attempt a delivery is
``dead``. A notification's failure never touches the booking, payment or payout it is about.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from shared.db import QUERIES, expect_row
from shared.registry import NOTIFICATION_DELIVER, job_route


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """One attempt to hand a message to its receiver (an SMTP server, a provider's webhook endpoint)."""

    succeeded: bool
    duration_ms: int
    status_code: int | None = None  # HTTP status, or the SMTP reply code
    error: str | None = None  # why it failed, short, no secrets
    response_excerpt: str | None = None  # the first 500 characters the receiver answered
    retry_after_seconds: float | None = None  # a 429/503's Retry-After
    gone: bool = False  # 410 Gone: the endpoint asks to be disabled


@dataclass(frozen=True, slots=True)
class FanOut:
    events: int
    oldest_seconds: float
    jobs: list[uuid.UUID]


def fan_out(conn: psycopg.Connection[Any], *, limit: int, max_attempts: int, from_id: int = 0) -> FanOut:
    """Publish one batch of outbox events as deliveries (and in-app notifications), in one transaction
    (a savepoint when the caller has one open); the caller enqueues the returned send jobs after it commits
    (the sweeper does if that is lost)."""
    with conn.transaction():
        row = expect_row(conn.execute(QUERIES["relay_fan_out"], {
            "limit": limit, "max_attempts": max_attempts, "from_id": from_id,
            **job_route(NOTIFICATION_DELIVER)}).fetchone(), "relay_fan_out")
    return FanOut(events=int(row["events"]), oldest_seconds=float(row["oldest_seconds"] or 0.0),
                  jobs=list(row["jobs"] or []))


# What an event's own payload can cause (a cast refused, a constraint violated), unlike a lost connection or
# a schema mismatch, which would fail every event alike and must never set them all aside.
DATA_ERRORS = (psycopg.DataError, psycopg.IntegrityError)  # SQLSTATE classes 22 and 23


def fan_out_one_by_one(conn: psycopg.Connection[Any], *, limit: int, max_attempts: int,
                       set_aside: Callable[[int, str], None]) -> FanOut:
    """After a batch failed on its data: up to ``limit`` events, each in a transaction of its own; an event
    that fails alone is set aside (published with no deliveries, ``relay_error`` saying why) so the events
    behind it go on. ``set_aside(event_id, reason)`` is told of each."""
    events, oldest, jobs = 0, 0.0, list[uuid.UUID]()
    for _ in range(limit):
        with conn.transaction():
            first = conn.execute(QUERIES["lock_first_unpublished_event"]).fetchone()
            if first is None:
                break
            try:
                one = fan_out(conn, limit=1, max_attempts=max_attempts, from_id=first["id"])
            except DATA_ERRORS as exc:
                reason = f"{type(exc).__name__} (SQLSTATE {exc.sqlstate})"
                conn.execute(QUERIES["set_event_aside"], {"id": first["id"], "error": reason})
                set_aside(first["id"], reason)
                continue
        events, oldest, jobs = events + one.events, max(oldest, one.oldest_seconds), jobs + one.jobs
    return FanOut(events=events, oldest_seconds=oldest, jobs=jobs)


def deep_link(booking_id: uuid.UUID | str | None, status: str | None) -> str:
    """Where a message sends its reader (seed 004 §16): a pending booking to its request page, a paid or
    confirmed one to its confirmation, anything else to its history."""
    if booking_id is None:
        return "/"
    if status in ("pending_payment", "requested"):
        return f"/booking/requested/{booking_id}"
    if status in ("paid", "confirmed", "checked_in"):
        return f"/booking-confirmation/{booking_id}"
    return f"/booking-history/{booking_id}"


def event_link(booking_id: uuid.UUID | str | None, event: dict[str, Any], status: str | None = None) -> str:
    """The deep link of an event: a payout's page, the webhook settings, or its booking's by ``status``
    (the booking's status now, when known; else the one the event carries)."""
    if "payout_id" in event or "payout_batch_id" in event:
        return "/payouts"
    if "endpoint_id" in event:
        return "/settings/webhooks"
    return deep_link(booking_id, status or event.get("status"))


def retry_delay(schedule: list[float], attempts_made: int, retry_after: float | None) -> float | None:
    """Seconds until the next attempt after ``attempts_made`` attempts, or None when none is left (dead).
    ``schedule[i]`` is the wait before attempt i + 1 (the first is 0: at once). A receiver's Retry-After
    (429/503) is honoured when it asks for longer, up to the schedule's longest wait."""
    if attempts_made >= len(schedule):
        return None
    return min(max(schedule[attempts_made], retry_after or 0.0), max(schedule))


def record_attempt(conn: psycopg.Connection[Any], delivery_id: uuid.UUID, attempts_before: int,
                   outcome: AttemptOutcome, schedule: list[float]) -> dict[str, Any] | None:
    """Write the attempt and the delivery's new state (delivered, failed with its next try, or dead)."""
    delay = retry_delay(schedule, attempts_before + 1, outcome.retry_after_seconds)
    dead = not outcome.succeeded and (delay is None or outcome.gone)
    row: dict[str, Any] | None = conn.execute(QUERIES["record_delivery_attempt"], {
        "id": delivery_id, "succeeded": outcome.succeeded, "dead": dead, "retry_in_seconds": delay or 0.0,
        "error": outcome.error, "status_code": outcome.status_code, "duration_ms": outcome.duration_ms,
        "response_excerpt": outcome.response_excerpt}).fetchone()
    return row


def emit(conn: psycopg.Connection[Any], topic: str, aggregate_id: uuid.UUID, payload: dict[str, Any]) -> None:
    """An event for the outside world (email, webhooks, the in-app feed), in the caller's transaction.
    ``payload`` must name the ``provider_id`` it concerns (and its ``booking_id`` when there is one)."""
    conn.execute(QUERIES["insert_outbox_event"], {"topic": topic, "aggregate_id": aggregate_id,
                                                  "payload": Jsonb(payload)})
