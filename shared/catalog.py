"""The catalog owners manage: providers, resources, services, what each resource offers, its weekly
hours and blocked periods. Request and view Structs, and the few writes that need more than one statement."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID
from zoneinfo import available_timezones

import msgspec
import psycopg

from shared.connect import StripeAccountView
from shared.db import QUERIES
from shared.schemas import Email

Slug = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
Bps = Annotated[int, msgspec.Meta(ge=0, le=10_000)]
HoldTtl = Annotated[int, msgspec.Meta(ge=30, le=86_400)]
Money = Annotated[int, msgspec.Meta(ge=0, le=10**12)]
Minutes = Annotated[int, msgspec.Meta(ge=5, le=1440)]
Weekday = Annotated[int, msgspec.Meta(ge=1, le=7)]


class RefundWindow(msgspec.Struct, forbid_unknown_fields=True):
    """Cancelled at least ``min_hours_before_start`` hours ahead: refund ``refund_percent`` of the price."""

    min_hours_before_start: Annotated[int, msgspec.Meta(ge=0, le=8760)]
    refund_percent: Annotated[int, msgspec.Meta(ge=0, le=100)]


# The shape of an IANA name; whether this server knows the zone is checked on use (REQUEST_UNPROCESSABLE).
TimeZone = Annotated[str, msgspec.Meta(min_length=1, max_length=64,
                                       pattern=r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$",
                                       description="an IANA time zone name", examples=["Europe/Berlin"])]
DisputeLiability = Literal["provider", "platform"]


class ProviderCreate(msgspec.Struct, forbid_unknown_fields=True):
    slug: Slug
    name: Name
    time_zone: TimeZone
    currency: Currency
    commission_bps: Bps = 1000
    hold_ttl_seconds: HoldTtl | None = None
    cancellation_policy: list[RefundWindow] = []
    # request-mode bookings' policy (seed 004: a policy per booking mode); unset, the same as instant ones'
    request_cancellation_policy: list[RefundWindow] | None = None
    payout_account: str | None = None
    contact_email: Email | None = None  # where the provider's own notifications are mailed
    # who bears a lost chargeback and Stripe's dispute fee: the provider (up to what the booking still owes
    # them; the platform the rest) or the platform alone. Set by the platform, like the commission.
    dispute_liability: DisputeLiability = "provider"


class ProviderUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | None = None
    time_zone: TimeZone | None = None
    commission_bps: Bps | None = None
    hold_ttl_seconds: HoldTtl | None = None
    cancellation_policy: list[RefundWindow] | None = None
    request_cancellation_policy: list[RefundWindow] | None = None
    payout_account: str | None = None
    contact_email: Email | None = None
    dispute_liability: DisputeLiability | None = None  # the platform only


class ProviderView(msgspec.Struct):
    id: UUID
    slug: str
    name: str
    time_zone: str
    currency: str
    commission_bps: int
    hold_ttl_seconds: int | None
    cancellation_policy: list[RefundWindow]
    payout_account: str | None
    contact_email: str | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    request_cancellation_policy: list[RefundWindow] | None = None
    stripe_account: StripeAccountView | None = None  # its Connect account, once onboarding began
    dispute_liability: str = "provider"


class ProviderPublicView(msgspec.Struct):
    """A provider as its booking widget and its staff see it: no commission, payout account or contact."""

    id: UUID
    slug: str
    name: str
    time_zone: str
    currency: str
    hold_ttl_seconds: int | None
    cancellation_policy: list[RefundWindow]
    deleted_at: datetime | None
    request_cancellation_policy: list[RefundWindow] | None = None


BookingMode = Literal["instant", "request"]
RequestTtlHours = Annotated[int, msgspec.Meta(ge=1, le=720)]
Deposit = Annotated[int, msgspec.Meta(ge=1, le=10**12)]


class ResourceCreate(msgspec.Struct, forbid_unknown_fields=True):
    kind: Literal["slot", "stay"]
    name: Name
    nightly_price: Money | None = None
    # instant: a booking is held for payment at once; request: it waits for an owner's approval (seed 004)
    booking_mode: BookingMode = "instant"
    request_ttl_hours: RequestTtlHours = 24  # how long a request holds its time unanswered
    security_deposit: Deposit | None = None  # stays only: held on the guest's card before arrival


class ResourceUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | None = None
    nightly_price: Money | None = None
    booking_mode: BookingMode | None = None
    request_ttl_hours: RequestTtlHours | None = None
    security_deposit: Deposit | None = None


LocalTime = Annotated[str, msgspec.Meta(pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?|24:00(:00)?)$")]


class OpeningHours(msgspec.Struct, forbid_unknown_fields=True):
    """One opening window on a weekday (1 = Monday), local wall-clock time; "24:00" closes at midnight."""

    weekday: Weekday
    opens_at: LocalTime
    closes_at: LocalTime


class HoursUpdate(msgspec.Struct, forbid_unknown_fields=True):
    hours: list[OpeningHours]


class ResourceView(msgspec.Struct):
    id: UUID
    provider_id: UUID
    kind: Literal["slot", "stay"]
    name: str
    nightly_price: int | None
    booking_mode: BookingMode
    request_ttl_hours: int
    security_deposit: int | None
    service_ids: list[UUID]
    hours: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


class ServiceCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    duration_minutes: Minutes
    price: Money


class ServiceUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | None = None
    duration_minutes: Minutes | None = None
    price: Money | None = None


class ServiceView(msgspec.Struct):
    id: UUID
    provider_id: UUID
    name: str
    duration_minutes: int
    price: int
    currency: str
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


class BlockCreate(msgspec.Struct, forbid_unknown_fields=True):
    start_at: Annotated[datetime, msgspec.Meta(tz=True)]
    end_at: Annotated[datetime, msgspec.Meta(tz=True)]
    reason: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class BlockView(msgspec.Struct):
    id: UUID
    resource_id: UUID
    start_at: datetime
    end_at: datetime
    reason: str | None
    created_at: datetime


class Page(msgspec.Struct):
    items: list[Any]
    next_cursor: str | None


def is_time_zone(name: str) -> bool:
    return name in _ZONES


_ZONES = frozenset(available_timezones()) | {"UTC"}


async def replace_hours(conn: psycopg.AsyncConnection[Any], resource_id: UUID, hours: list[OpeningHours]) -> None:
    """A resource's weekly hours are replaced whole, in one transaction."""
    async with conn.transaction():
        await conn.execute(QUERIES["clear_resource_hours"], {"resource_id": resource_id})
        for entry in hours:
            await conn.execute(QUERIES["insert_resource_hours"], {
                "resource_id": resource_id, "weekday": entry.weekday, "opens_at": entry.opens_at,
                "closes_at": entry.closes_at})
