"""msgspec Structs for every request, job payload and response that crosses a process boundary."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

Email = Annotated[str, msgspec.Meta(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Phone = Annotated[str, msgspec.Meta(pattern=r"^\+?[0-9 ()-]{4,32}$")]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
JobStatus = Literal["queued", "running", "succeeded", "failed"]
BookingStatus = Literal["requested", "pending_payment", "paid", "checked_in", "checked_out", "completed", "declined",
                        "expired", "cancelled"]
DepositStatus = Literal["pending", "authorized", "claimed", "released", "failed"]


class Customer(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    email: Email
    phone: Phone | None = None


class SlotBookingRequest(msgspec.Struct, tag_field="kind", tag="slot", forbid_unknown_fields=True):
    """Book a resource's slot: start_at plus the service's duration."""

    resource_id: UUID
    service_id: UUID
    start_at: AwareDatetime
    customer: Customer


class StayBookingRequest(msgspec.Struct, tag_field="kind", tag="stay", forbid_unknown_fields=True):
    """Book a listing's nights: check_in to check_out (dates in the listing's time zone)."""

    resource_id: UUID
    check_in: date
    check_out: date
    guests: Annotated[int, msgspec.Meta(ge=1, le=50)]
    customer: Customer


BookingRequest = SlotBookingRequest | StayBookingRequest


class Accepted(msgspec.Struct):
    """202 body: the job that will carry the request out, and where to poll it."""

    job_id: UUID
    status_url: str


class JobError(msgspec.Struct):
    code: str
    detail: str


class JobView(msgspec.Struct):
    id: UUID
    type: str
    status: JobStatus
    attempts: int
    result: dict[str, Any] | None
    error: JobError | None
    created_at: datetime
    updated_at: datetime


class AuditEntry(msgspec.Struct):
    actor: str
    actor_id: str | None
    actor_role: str | None
    from_status: BookingStatus | None
    to_status: BookingStatus
    reason: str | None
    job_id: UUID | None
    created_at: datetime
    detail: dict[str, Any] | None = None


class PaymentView(msgspec.Struct):
    id: UUID
    payment_intent_id: str
    amount: int
    currency: str
    status: Literal["requires_payment", "failed", "succeeded", "canceled"]
    amount_refunded: int
    failure_code: str | None
    succeeded_at: datetime | None
    created_at: datetime


class RefundView(msgspec.Struct):
    id: UUID
    kind: Literal["cancellation", "late_payment", "external"]
    amount: int
    currency: str
    status: Literal["pending", "succeeded", "failed"]
    stripe_refund_id: str | None
    policy: dict[str, Any] | None
    failure_reason: str | None
    created_at: datetime


class DisputeView(msgspec.Struct):
    """A chargeback on the booking's payment: Stripe's dispute id, status and reason; ``fee`` is Stripe's
    dispute fee once the funds were withdrawn; ``provider_share`` what the provider bore of amount + fee."""

    id: str
    amount: int
    currency: str
    status: str
    reason: str
    fee: int
    provider_share: int
    evidence_due_by: datetime | None
    funds_withdrawn_at: datetime | None
    funds_reinstated_at: datetime | None
    closed_at: datetime | None
    created_at: datetime


class BookingSummary(msgspec.Struct):
    id: UUID
    kind: Literal["slot", "stay"]
    status: BookingStatus
    resource_id: UUID
    provider_id: UUID
    start_at: datetime
    end_at: datetime
    amount: int
    currency: str
    service_snapshot: dict[str, Any]
    customer: dict[str, Any]
    hold_expires_at: datetime | None  # when an unanswered request or an unpaid hold lapses
    created_at: datetime
    updated_at: datetime
    booking_mode: Literal["instant", "request"] = "instant"


class BookingView(BookingSummary):
    """A booking with its audit trail, its payments, its refunds, (a stay's) its security deposit and the
    disputes (chargebacks) of its payment."""

    cancellation_policy: list[dict[str, Any]] = []
    audit: list[AuditEntry] = []
    payments: list[PaymentView] = []
    refunds: list[RefundView] = []
    deposit: DepositView | None = None
    disputes: list[DisputeView] = []


class BookingPage(msgspec.Struct):
    items: list[BookingSummary]
    next_cursor: str | None


class Slot(msgspec.Struct):
    start_at: datetime
    end_at: datetime


class NightAvailability(msgspec.Struct):
    resource_id: UUID
    time_zone: str
    nights: list[date]


class SlotAvailability(msgspec.Struct):
    resource_id: UUID
    service_id: UUID
    time_zone: str
    slots: list[Slot]


class CancelRequest(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class CompleteRequest(msgspec.Struct, forbid_unknown_fields=True):
    note: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class NoteRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Approve, check in or check out, with an optional note (an approval's is told to the customer)."""

    note: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class DeclineRequest(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class DepositClaimRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Claim ``amount`` (minor units, at most the deposit) of a checked-out stay's held deposit."""

    amount: Annotated[int, msgspec.Meta(ge=1, le=10**12)]
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class DepositReleaseRequest(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class DepositView(msgspec.Struct):
    """A stay's security deposit: held on the guest's card before arrival, claimed or released after."""

    amount: int
    currency: str
    status: DepositStatus
    claimed_amount: int | None
    payment_intent_id: str | None
    claim_reason: str | None = None
    authorized_at: datetime | None = None
    claim_deadline: datetime | None = None
    failure_code: str | None = None


class DepositCommand(msgspec.Struct):
    """Payload of a deposit.authorize, deposit.claim or deposit.release job."""

    booking_id: UUID
    actor: str  # user (an owner or staff member), system, scheduler
    amount: int | None = None  # a claim's
    reason: str | None = None
    actor_id: str | None = None
    actor_role: str | None = None
    request_id: str | None = None
    ip: str | None = None


class DepositSettled(msgspec.Struct, omit_defaults=True):
    """Result of a deposit job: where the deposit and its booking stand now."""

    booking_id: UUID
    deposit_status: DepositStatus
    booking_status: BookingStatus | None = None
    claimed_amount: int | None = None
    payment_intent_id: str | None = None
    failure_code: str | None = None


class BookingCommand(msgspec.Struct):
    """Payload of a lifecycle job: move one booking to another status."""

    booking_id: UUID
    to_status: BookingStatus
    actor: str  # the verified caller's kind: customer, public_token, user, system (or stripe, scheduler)
    reason: str | None = None
    actor_id: str | None = None  # the user, public token or booking (customer) id
    actor_role: str | None = None  # the user's role in the booking's provider then: owner, staff, admin
    request_id: str | None = None
    ip: str | None = None


class RefundPlanned(msgspec.Struct):
    """The refund a cancellation computed by the booking's policy (issued by a refund.issue job)."""

    refund_id: UUID | None
    amount: int
    currency: str
    refund_percent: int
    window: dict[str, Any] | None
    hours_before_start: float
    status: Literal["pending", "none"]


class BookingTransitioned(msgspec.Struct, omit_defaults=True):
    booking_id: UUID
    from_status: BookingStatus
    status: BookingStatus
    refund: RefundPlanned | None = None


class BookingCreated(msgspec.Struct, omit_defaults=True):
    """Result of a booking.create job: the hold, and the PaymentIntent to pay it with."""

    booking_id: UUID
    status: BookingStatus
    hold_expires_at: datetime | None
    payment_intent_id: str | None = None
    client_secret: str | None = None


class StripeEventJob(msgspec.Struct):
    """Payload of a stripe.apply_event job."""

    event_id: str


class RefundJob(msgspec.Struct):
    """Payload of a refund.issue job."""

    refund_id: UUID


class RefundIssued(msgspec.Struct):
    refund_id: UUID
    status: Literal["pending", "succeeded", "failed"]
    stripe_refund_id: str | None
    amount: int


class JobMessage(msgspec.Struct, frozen=True):
    """What a worker needs to find its job: the id. Everything else is re-read from Postgres."""

    job_id: UUID


class PayoutJob(msgspec.Struct):
    """Payload of a payout.send job."""

    payout_id: UUID


class PayoutSent(msgspec.Struct):
    payout_id: UUID
    status: Literal["pending", "paid", "failed"]
    stripe_transfer_id: str | None
    amount: int


class CancelIntentJob(msgspec.Struct):
    """Payload of a payment.cancel_intent job: the booking stopped waiting for this payment."""

    payment_intent_id: str


class IntentCanceled(msgspec.Struct):
    payment_intent_id: str
    status: Literal["canceled", "not_canceled"]
    detail: str | None = None


class DeliveryJob(msgspec.Struct):
    delivery_id: UUID


class DeliverySent(msgspec.Struct, omit_defaults=True):
    """Result of a notification.deliver job: where the delivery stands after this attempt."""

    delivery_id: UUID
    status: Literal["pending", "delivered", "failed", "dead"]
    attempts: int
    next_attempt_at: datetime | None = None
