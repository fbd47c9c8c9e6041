"""The error vocabulary: every stable code, declared once with its HTTP status and what it means.

Clients branch on ``code``; the gateway answers with it as RFC 9457 problem+json (``gateway/problems.py``
maps a DomainError to a response in one place), and a worker records a failed job's ``error.code`` from
the same list. The README's table of codes is generated from ``VOCABULARY`` (``totem generate``) and a
test fails when they differ. A code that is only ever a job's error still has the status a client would
see were it answered directly.

Domain errors are values with a code: raise (or return, see ``shared/jobs.py``) one of the subclasses
below. Each is permanent: a job failed with it is not retried. Anything else a job raises is transient
and retried until ``JOB_ATTEMPTS_EXHAUSTED``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar


class Code(StrEnum):
    VALIDATION_FAILED = "VALIDATION_FAILED"
    REQUEST_UNPROCESSABLE = "REQUEST_UNPROCESSABLE"
    IDEMPOTENCY_KEY_MISSING = "IDEMPOTENCY_KEY_MISSING"
    IDEMPOTENCY_KEY_INVALID = "IDEMPOTENCY_KEY_INVALID"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    IDEMPOTENCY_KEY_IN_FLIGHT = "IDEMPOTENCY_KEY_IN_FLIGHT"
    WEBHOOK_SIGNATURE_INVALID = "WEBHOOK_SIGNATURE_INVALID"
    WEBHOOK_PAYLOAD_INVALID = "WEBHOOK_PAYLOAD_INVALID"
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    BOOKING_SLOT_TAKEN = "BOOKING_SLOT_TAKEN"
    BOOKING_INVALID_TRANSITION = "BOOKING_INVALID_TRANSITION"
    BOOKING_OUTSIDE_AVAILABILITY = "BOOKING_OUTSIDE_AVAILABILITY"
    BOOKING_CHECK_IN_TOO_EARLY = "BOOKING_CHECK_IN_TOO_EARLY"
    DEPOSIT_NOT_SETTLEABLE = "DEPOSIT_NOT_SETTLEABLE"
    PROVIDER_SLUG_TAKEN = "PROVIDER_SLUG_TAKEN"
    MEMBER_CONFLICT = "MEMBER_CONFLICT"
    PAYMENT_PROVIDER_REFUSED = "PAYMENT_PROVIDER_REFUSED"
    PAYMENT_NOT_CAPTURED = "PAYMENT_NOT_CAPTURED"
    STRIPE_EVENT_MALFORMED = "STRIPE_EVENT_MALFORMED"
    WEBHOOK_TARGET_REFUSED = "WEBHOOK_TARGET_REFUSED"
    NOTIFICATION_TEMPLATE_INVALID = "NOTIFICATION_TEMPLATE_INVALID"
    RATE_LIMITED = "RATE_LIMITED"
    JOB_ATTEMPTS_EXHAUSTED = "JOB_ATTEMPTS_EXHAUSTED"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class CodeSpec:
    status: int
    meaning: str


VOCABULARY: dict[Code, CodeSpec] = {
    Code.VALIDATION_FAILED: CodeSpec(400, "The body, a query parameter or a path parameter is malformed or "
                                          "out of range; `errors` says where. Nothing was changed."),
    Code.REQUEST_UNPROCESSABLE: CodeSpec(422, "The request is well formed (the OpenAPI document admits it) but "
                                              "breaks a rule no schema can state: a date in the past, a window "
                                              "reversed or too long, an unknown time zone, a cursor this server "
                                              "did not issue. `errors` says where. Nothing was changed."),
    Code.IDEMPOTENCY_KEY_MISSING: CodeSpec(400, "This call changes state and needs an `Idempotency-Key` header."),
    Code.IDEMPOTENCY_KEY_INVALID: CodeSpec(400, "The `Idempotency-Key` header is empty, too long (255) or "
                                                "not printable ASCII."),
    Code.IDEMPOTENCY_KEY_REUSED: CodeSpec(422, "This key was used with a different request (method, path or "
                                               "body); use a new key for a new request."),
    Code.IDEMPOTENCY_KEY_IN_FLIGHT: CodeSpec(409, "A request with this key is still being processed; retry "
                                                  "shortly with the same key."),
    Code.WEBHOOK_SIGNATURE_INVALID: CodeSpec(400, "The `Stripe-Signature` does not verify the payload (wrong "
                                                  "secret, altered body, or older than the tolerance)."),
    Code.WEBHOOK_PAYLOAD_INVALID: CodeSpec(400, "A correctly signed payload that is not a Stripe event."),
    Code.UNAUTHORIZED: CodeSpec(401, "No credential, or one we do not recognise."),
    Code.FORBIDDEN: CodeSpec(403, "The credential is valid but may not do this."),
    Code.NOT_FOUND: CodeSpec(404, "No such resource (or route), or not one the caller may see."),
    Code.METHOD_NOT_ALLOWED: CodeSpec(405, "The route exists but not with this HTTP method."),
    Code.UNSUPPORTED_MEDIA_TYPE: CodeSpec(415, "The body is not in a media type this route reads."),
    Code.BOOKING_SLOT_TAKEN: CodeSpec(409, "The requested time overlaps a booking that holds it (job error)."),
    Code.BOOKING_INVALID_TRANSITION: CodeSpec(409, "The booking's status does not allow that change (e.g. "
                                                   "completing a cancelled booking)."),
    Code.BOOKING_OUTSIDE_AVAILABILITY: CodeSpec(422, "The time is outside the resource's opening hours, "
                                                     "blocked, or in the past (job error)."),
    Code.BOOKING_CHECK_IN_TOO_EARLY: CodeSpec(409, "A stay cannot be checked in before its first day (in the "
                                                   "provider's time zone)."),
    Code.DEPOSIT_NOT_SETTLEABLE: CodeSpec(409, "The booking has no security deposit held that can be claimed or "
                                               "released now: none was authorised, it is settled already, the "
                                               "guest has not checked out, the claim window has passed, or the "
                                               "amount is more than the deposit."),
    Code.PROVIDER_SLUG_TAKEN: CodeSpec(409, "Another provider already uses that slug."),
    Code.MEMBER_CONFLICT: CodeSpec(409, "The user is already a member of this provider, or the change would "
                                        "leave the provider without an owner."),
    Code.PAYMENT_PROVIDER_REFUSED: CodeSpec(402, "Stripe refused the call for good (card declined, invalid "
                                                 "request); `detail` has Stripe's message (job error)."),
    Code.PAYMENT_NOT_CAPTURED: CodeSpec(409, "Money was to be moved for a booking whose payment was never "
                                             "captured (job error)."),
    Code.STRIPE_EVENT_MALFORMED: CodeSpec(422, "A stored Stripe event lacks a field its type must carry; it "
                                               "is not retried (job error)."),
    Code.WEBHOOK_TARGET_REFUSED: CodeSpec(422, "A webhook endpoint's URL is not allowed: not http(s), or its host "
                                               "is a private, loopback or link-local address (SSRF)."),
    Code.NOTIFICATION_TEMPLATE_INVALID: CodeSpec(422, "A notification template does not render (syntax, or a "
                                                      "variable it may not use); that delivery fails, nothing else."),
    Code.RATE_LIMITED: CodeSpec(429, "Too many requests; wait for `Retry-After` seconds."),
    Code.JOB_ATTEMPTS_EXHAUSTED: CodeSpec(503, "The job failed on transient errors (a database, Redis or "
                                               "Stripe outage) every time it was tried (job error)."),
    Code.INTERNAL_ERROR: CodeSpec(500, "An unexpected error; the request id finds it in the logs."),
    Code.SERVICE_UNAVAILABLE: CodeSpec(503, "The database is unreachable or saturated; retry after "
                                            "`Retry-After` seconds."),
}
if set(VOCABULARY) != set(Code):
    raise RuntimeError(f"codes without a declaration: {sorted(set(Code) - set(VOCABULARY))}")


def status_of(code: Code) -> int:
    return VOCABULARY[code].status


class DomainError(Exception):
    """A refusal with a stable code. Subclasses fix the code; ``detail`` says what happened this time."""

    code: ClassVar[Code]

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        if not isinstance(getattr(cls, "code", None), Code):
            raise TypeError(f"{cls.__name__} must declare a code from shared.errors.Code")

    def as_dict(self) -> dict[str, str]:
        return {"code": str(self.code), "detail": self.detail}


class NotFound(DomainError):
    code = Code.NOT_FOUND


class BookingSlotTaken(DomainError):
    code = Code.BOOKING_SLOT_TAKEN


class BookingOutsideAvailability(DomainError):
    code = Code.BOOKING_OUTSIDE_AVAILABILITY


class BookingInvalidTransition(DomainError):
    code = Code.BOOKING_INVALID_TRANSITION


class BookingCheckInTooEarly(DomainError):
    code = Code.BOOKING_CHECK_IN_TOO_EARLY


class DepositNotSettleable(DomainError):
    code = Code.DEPOSIT_NOT_SETTLEABLE


class ProviderSlugTaken(DomainError):
    code = Code.PROVIDER_SLUG_TAKEN


class InvalidValue(DomainError):
    """A well-formed value the database's CHECK constraints refuse (the gateway validates most before)."""

    code = Code.REQUEST_UNPROCESSABLE


class PaymentProviderRefused(DomainError):
    code = Code.PAYMENT_PROVIDER_REFUSED


class PaymentNotCaptured(DomainError):
    code = Code.PAYMENT_NOT_CAPTURED


class StripeEventMalformed(DomainError):
    code = Code.STRIPE_EVENT_MALFORMED


class WebhookTargetRefused(DomainError):
    code = Code.WEBHOOK_TARGET_REFUSED


class NotificationTemplateInvalid(DomainError):
    code = Code.NOTIFICATION_TEMPLATE_INVALID


class JobAttemptsExhausted(DomainError):
    code = Code.JOB_ATTEMPTS_EXHAUSTED
