"""What a delivery says: an email's template context, a webhook's body. Built from the delivery's row
(``delivery_to_send``: the event, the booking now, its provider, the endpoint, the template)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import msgspec

from shared import tokens
from shared.accounts import USER_TOPICS
from shared.booking import customer_token
from shared.notifications import event_link
from shared.templates import amount_display


def _local(moment: datetime | None, time_zone: str) -> str | None:
    return moment.astimezone(ZoneInfo(time_zone)).strftime("%a %d %b %Y, %H:%M") if moment else None


def link_of(row: dict[str, Any]) -> str:
    """The deep link by the status the event reports (the message is about that moment: a confirmation links
    to the confirmation page even if the booking has completed since); a payout or endpoint event links to its
    own page."""
    return event_link(row["booking_id"], row["event"])


def email_link(row: dict[str, Any], links_base: str, token_secret: str | None) -> str:
    """Where an email takes its reader, by audience: the customer to the booking's own page in the booking
    widget, signed in by the booking's customer token (in the URL's fragment, which no server or Referer
    sees); the provider's people to the owner console's page of it (payouts and webhook endpoints to theirs).
    Without what that needs (a preview has no token secret), the app's deep link (seed 004 §16)."""
    booking_id, audience, event = row["booking_id"], row.get("audience"), row["event"]
    if audience == "provider":
        if "payout_id" in event:
            return f"{links_base}/console/money"
        if "endpoint_id" in event:
            return f"{links_base}/console/settings"
        if booking_id is not None:
            return f"{links_base}/console/bookings/{booking_id}"
    if audience == "customer" and booking_id is not None and token_secret and row.get("provider_slug"):
        token = customer_token(token_secret, booking_id)
        return f"{links_base}/widget/{quote(row['provider_slug'])}?booking={booking_id}#ct={token}"
    return links_base + link_of(row)


def magic_link(links_base: str, token_secret: str, magic_link_id: str) -> str:
    """A sign-in or invitation link: its token is derived again here from the link's id (it is stored
    nowhere, the event carries only the id)."""
    return f"{links_base}/auth/magic?token={tokens.derive(token_secret, tokens.MAGIC_LINK, magic_link_id)}"


def email_context(row: dict[str, Any], links_base: str, *, token_secret: str | None = None) -> dict[str, Any]:
    """``token_secret`` (TOKEN_SECRET) is needed for the mail to a user (``USER_TOPICS``): its magic link."""
    event = dict(row["event"])
    if row.get("topic") in USER_TOPICS:
        if token_secret is None:
            raise ValueError(f"a {row['topic']} email needs the token secret for its link")
        return {"event": event, "booking": None, "provider": {"name": event.get("provider_name")},
                "customer": {"name": ""}, "link": magic_link(links_base, token_secret, event["magic_link_id"])}
    if "amount" in event and "currency" in event:
        event["amount_display"] = amount_display(int(event["amount"]), str(event["currency"]))
    for name in ("approve_link", "decline_link"):  # a request's answer links, into the owner console
        if isinstance(event.get(name), str) and event[name].startswith("/"):
            event[name] = links_base + event[name]
    if isinstance(event.get("respond_by"), str) and row.get("time_zone"):
        event["respond_by"] = _local(datetime.fromisoformat(event["respond_by"]), row["time_zone"])
    snapshot = row["service_snapshot"] or {}
    booking = None
    if row["booking_id"] is not None:
        booking = {
            "id": str(row["booking_id"]), "status": row["booking_status"], "kind": row["booking_kind"],
            "start_at": _local(row["start_at"], row["time_zone"]), "end_at": _local(row["end_at"], row["time_zone"]),
            "amount": row["amount"], "currency": row["currency"],
            "amount_display": amount_display(row["amount"], row["currency"]),
            "service_name": snapshot.get("name") or snapshot.get("listing_name") or "your booking",
            "resource_name": row["resource_name"],
        }
    return {"event": event, "booking": booking, "provider": {"name": row["provider_name"]},
            "customer": {"name": (row["customer"] or {}).get("name", "")},
            "link": email_link(row, links_base, token_secret)}


class WebhookData(msgspec.Struct, omit_defaults=True):
    sequence: int  # the event's id: grows with every event of a booking, so a stale one can be dropped
    provider_id: str
    booking_id: str | None = None
    status: str | None = None  # the booking's status now, whatever the event said then
    link: str | None = None  # where the provider's app opens it (seed 004 §16)
    event: dict[str, Any] = {}


class WebhookBody(msgspec.Struct):
    type: str
    timestamp: datetime
    data: WebhookData


def webhook_body(row: dict[str, Any]) -> bytes:
    """``{type, timestamp, data}`` (Standard Webhooks); delivery order is not guaranteed, so ``data``
    carries the booking's current status and the event's sequence number."""
    return msgspec.json.encode(WebhookBody(
        type=row["topic"], timestamp=row["event_created_at"],
        data=WebhookData(sequence=int(row["event_id"]), provider_id=str(row["provider_id"]),
                         booking_id=str(row["booking_id"]) if row["booking_id"] else None,
                         status=row["booking_status"], link=link_of(row), event=row["event"])))
