"""What the console's browser tests share: a provider with an owner whose address receives its mail, a
request-mode listing with a security deposit and a slot service, the sink's mail, and a browser tab signed in
with a session (the sign-in itself is proven once, through the emailed link, in test_console.py)."""

from __future__ import annotations

import email
import email.policy
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import psycopg
import stripe
from playwright.sync_api import Page
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from shared.db import QUERIES
from tests.support import STANDARD_POLICY, issue_public_token, member_session, new_key, wait_for, wait_job
from totem.fleet import Fleet

DEPOSIT = 20_000
NIGHTLY = 12_000
SLOT_PRICE = 2_500


@dataclass(frozen=True)
class Shop:
    provider_id: str
    owner_email: str
    listing_id: str  # a stay, on request, with a deposit
    master_id: str  # a slot resource
    service_id: str
    public_token: str
    owner_token: str
    staff_token: str

    @property
    def widget(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.public_token}"}


def make_shop(database_url: str, client: httpx.Client) -> Shop:
    owner_email = f"owner-{uuid.uuid4().hex[:10]}@salon.example"
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as conn:
        provider = conn.execute(QUERIES["insert_provider"], {
            "slug": f"c-{uuid.uuid4().hex[:12]}", "name": "Alfama Rooms", "time_zone": "Europe/Lisbon",
            "currency": "EUR", "commission_bps": 1000, "hold_ttl_seconds": None,
            "cancellation_policy": Jsonb(STANDARD_POLICY)}).fetchone()
        assert provider
        pid = provider["id"]
        conn.execute("UPDATE providers SET contact_email = %s WHERE id = %s", (owner_email, pid))
        user = conn.execute(QUERIES["upsert_user"], {"email": owner_email, "platform_role": None}).fetchone()
        assert user
        conn.execute("INSERT INTO memberships (user_id, provider_id, role, accepted_at) "
                     "VALUES (%s, %s, 'owner', now())", (user["id"], pid))
        listing = conn.execute(QUERIES["insert_resource"], {
            "provider_id": pid, "kind": "stay", "name": "Loft", "nightly_price": NIGHTLY}).fetchone()
        master = conn.execute(QUERIES["insert_resource"], {
            "provider_id": pid, "kind": "slot", "name": "Master Rui", "nightly_price": None}).fetchone()
        service = conn.execute(QUERIES["insert_service"], {
            "provider_id": pid, "name": "Haircut", "duration_minutes": 30, "price": SLOT_PRICE,
            "currency": "EUR"}).fetchone()
        assert listing and master and service
        conn.execute(QUERIES["offer_service"], {"resource_id": master["id"], "service_id": service["id"]})
        for weekday in range(1, 8):
            conn.execute(QUERIES["insert_resource_hours"], {"resource_id": master["id"], "weekday": weekday,
                                                            "opens_at": "00:00", "closes_at": "24:00"})
        public = issue_public_token(conn, pid)
        owner = member_session(conn, pid, "owner")
        staff = member_session(conn, pid, "staff")
    changed = client.patch(f"/v1/resources/{listing['id']}", json={
        "booking_mode": "request", "request_ttl_hours": 12, "security_deposit": DEPOSIT})
    assert changed.status_code == 200, changed.text
    return Shop(str(pid), owner_email, str(listing["id"]), str(master["id"]), str(service["id"]), public, owner,
                staff)


def stripe_customer(fleet: Fleet) -> stripe.StripeClient:
    """The guest's side of Stripe (what Stripe.js does in a browser), via the SDK against the fake."""
    return stripe.StripeClient("sk_test_customer", base_addresses={"api": fleet.stripe_url}, max_network_retries=0)


def request_stay(client: httpx.Client, shop: Shop, check_in: date, nights: int = 2) -> str:
    body = {"kind": "stay", "resource_id": shop.listing_id, "check_in": check_in.isoformat(),
            "check_out": (check_in + timedelta(days=nights)).isoformat(), "guests": 2,
            "customer": {"name": "Ada Lovelace", "email": "ada@example.com"}}
    accepted = client.post("/v1/bookings", json=body, headers={"Idempotency-Key": new_key(), **shop.widget})
    assert accepted.status_code == 202, accepted.text
    job = wait_job(client, accepted.json()["job_id"], headers=shop.widget)
    assert job["status"] == "succeeded", job
    return str(job["result"]["booking_id"])


def book_slot(client: httpx.Client, shop: Shop, days: int, name: str = "Grace Hopper") -> dict[str, Any]:
    start = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0) + timedelta(days=days)
    body = {"kind": "slot", "resource_id": shop.master_id, "service_id": shop.service_id,
            "start_at": start.isoformat(), "customer": {"name": name, "email": "grace@example.com"}}
    accepted = client.post("/v1/bookings", json=body, headers={"Idempotency-Key": new_key(), **shop.widget})
    assert accepted.status_code == 202, accepted.text
    job = wait_job(client, accepted.json()["job_id"], headers=shop.widget)
    assert job["status"] == "succeeded", job
    return job["result"]  # type: ignore[no-any-return]


def booking(client: httpx.Client, booking_id: str) -> dict[str, Any]:
    return client.get(f"/v1/bookings/{booking_id}").json()  # type: ignore[no-any-return]


def wait_booking(client: httpx.Client, booking_id: str, what: str, predicate: Any) -> dict[str, Any]:
    return wait_for(lambda: (b := booking(client, booking_id)) and predicate(b) and b, 30, what)  # type: ignore[no-any-return]


def mails_to(fleet: Fleet, address: str) -> list[str]:
    """The plain-text bodies of every mail the sink holds for ``address``."""
    assert fleet.mail_dir is not None
    bodies = []
    for path in sorted(Path(fleet.mail_dir).glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        if str(message["To"]).lower() == address.lower():
            part = message.get_body(("plain",))
            assert part is not None
            bodies.append(part.get_content())  # type: ignore[attr-defined]
    return bodies


def link_in_mail(fleet: Fleet, address: str, pattern: str, seen: tuple[str, ...] = ()) -> str:
    """Wait for a mail to ``address`` with a link matching ``pattern`` (a path regex) not in ``seen``; its path."""
    found = re.compile(rf"(?:https?://[^\s/]+)?({pattern})")

    def fresh() -> str | None:
        for body in mails_to(fleet, address):
            for match in found.finditer(body):
                if match.group(1) not in seen:
                    return match.group(1)
        return None

    return str(wait_for(fresh, 30, f"a mail to {address} with a link {pattern}"))


def sign_in_tab(page: Page, fleet: Fleet, shop: Shop, role: str = "owner", base: str | None = None) -> None:
    """This tab holds a session of the shop's owner (or staff), as the emailed link's page would have left it,
    on the gateway's origin ``base`` (by default the fleet's address)."""
    token = shop.owner_token if role == "owner" else shop.staff_token
    session = {"token": token, "expires_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
               "user": {"id": str(uuid.uuid4()), "email": f"{role}@salon.example", "platform_role": None},
               "memberships": [{"provider_id": shop.provider_id, "role": role}]}
    page.goto(f"{base or fleet.base_url}/static/console/console.css")  # the origin, before any console page runs
    page.evaluate("s => sessionStorage.setItem('totem.console.session', s)", json.dumps(session))
