"""Queue ``notifications``: send one delivery (an email over SMTP, or a signed webhook to a provider's
endpoint) and record the attempt.

The send happens in ``prepare``, outside any transaction; the attempt and the delivery's new state commit
with the job. A send that happened but whose record was lost (a crash in between) is sent again: delivery
is at least once, and every message carries its delivery id (``Message-ID``, ``webhook-id``) so a
receiver can drop the duplicate. A failure here never touches the booking, payment or payout it is about.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec
import psycopg

from shared import messages, notifications
from shared.db import QUERIES
from shared.errors import DomainError, NotFound, NotificationTemplateInvalid
from shared.jobs import ClaimedJob, Handler
from shared.mail import Email, send_email
from shared.notifications import AttemptOutcome
from shared.registry import NOTIFICATION_DELIVER
from shared.schemas import DeliveryJob, DeliverySent
from shared.templates import render
from shared.webhooks import post_webhook
from workers.runtime import job_actor, runtime

log = logging.getLogger("totem.notifications")
settings = runtime.boot()


def _send(row: dict[str, Any]) -> AttemptOutcome:
    """One attempt, by channel. Raises NotificationTemplateInvalid for a template that does not render."""
    if row["channel"] == "email":
        if not settings.smtp_url:
            return AttemptOutcome(succeeded=False, duration_ms=0, error="SMTP_URL is not set")
        rendered = render(row, messages.email_context(row, settings.links_base, token_secret=settings.token_secret))
        email = Email(to=row["recipient"], subject=rendered.subject, text=rendered.text, html=rendered.html,
                      message_id=str(row["id"]))
        return send_email(settings.smtp_url, settings.mail_from, email, timeout=settings.webhook_timeout_seconds)
    if row["endpoint_status"] != "active":
        return AttemptOutcome(succeeded=False, duration_ms=0, error=f"the endpoint is {row['endpoint_status']}",
                              gone=True)
    secrets = [row["secret"], *([row["previous_secret"]] if row["previous_secret"] else [])]
    return post_webhook(row["url"], secrets=secrets, msg_id=str(row["id"]), body=messages.webhook_body(row),
                        timeout=settings.webhook_timeout_seconds,
                        allow_private=settings.webhook_allow_private_targets)


def prepare_delivery(conn: psycopg.Connection[Any], job: ClaimedJob) -> Handler:
    delivery_id = msgspec.convert(job.payload, DeliveryJob).delivery_id
    row = conn.execute(QUERIES["delivery_to_send"], {"id": delivery_id}).fetchone()
    if row is None:
        return lambda conn, job: NotFound(f"delivery {delivery_id} does not exist")
    if row["status"] not in ("pending", "failed"):  # delivered or dead already (a redelivered message)
        return lambda conn, job: DeliverySent(delivery_id=delivery_id, status=row["status"],
                                              attempts=row["attempts"])
    started = time.monotonic()
    failure: DomainError | None = None
    try:
        outcome = _send(row)
    except NotificationTemplateInvalid as exc:  # retrying cannot fix it: dead, with the code on the job
        failure = exc
        outcome = AttemptOutcome(succeeded=False, duration_ms=int((time.monotonic() - started) * 1000),
                                 error=exc.detail, gone=True)
    except Exception as exc:
        log.exception("delivery attempt raised", extra={"delivery_id": str(delivery_id)})
        outcome = AttemptOutcome(succeeded=False, duration_ms=int((time.monotonic() - started) * 1000),
                                 error=f"internal error: {type(exc).__name__}")

    def record(conn: psycopg.Connection[Any], job: ClaimedJob) -> DeliverySent | DomainError:
        if row["channel"] == "webhook":  # lock order everywhere: endpoint, then its deliveries
            conn.execute(QUERIES["lock_webhook_endpoint"], {"id": row["recipient"]})
        recorded = notifications.record_attempt(conn, delivery_id, row["attempts"], outcome,
                                                settings.retry_schedule)
        if recorded is None:  # another attempt settled it meanwhile (delivered or dead)
            return DeliverySent(delivery_id=delivery_id, status="pending", attempts=row["attempts"])
        if row["channel"] == "webhook" and failure is None:
            _endpoint_health(conn, row, outcome)
        log.info("delivery attempt", extra={"delivery_id": str(delivery_id), "channel": row["channel"],
                                            "succeeded": outcome.succeeded, "status": recorded["status"]})
        return failure or DeliverySent(delivery_id=delivery_id, status=recorded["status"],
                                       attempts=recorded["attempts"], next_attempt_at=recorded["next_attempt_at"])

    return record


def _endpoint_health(conn: psycopg.Connection[Any], row: dict[str, Any], outcome: AttemptOutcome) -> None:
    """A success clears the endpoint's failing streak; a 410, or failing for too long, disables it, and
    the provider is told once (an event of its own, by email and in the feed)."""
    if outcome.succeeded:
        conn.execute(QUERIES["mark_endpoint_healthy"], {"id": row["recipient"]})
        return
    if row["endpoint_status"] != "active":
        return
    changed = conn.execute(QUERIES["mark_endpoint_failing"], {
        "id": row["recipient"], "gone": outcome.gone,
        "disable_after_seconds": settings.notify_endpoint_disable_after_seconds}).fetchone()
    if changed is not None and changed["disabled_now"]:
        notifications.emit(conn, "webhook_endpoint_disabled", changed["id"], {
            "provider_id": str(changed["provider_id"]), "endpoint_id": str(changed["id"]),
            "url": changed["url"], "reason": changed["disabled_reason"]})


deliver_notification = job_actor(NOTIFICATION_DELIVER, prepare=prepare_delivery)
