"""Stay bookings (nights of a listing): priced nights x nightly price and snapshotted, refused when they
overlap a held stay or a block, free nights computed in the listing's time zone."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from shared.db import QUERIES
from tests.support import STANDARD_POLICY, new_key, wait_job

LISBON = ZoneInfo("Europe/Lisbon")


@pytest.fixture
def listing(database_url: str) -> str:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        provider = conn.execute(QUERIES["insert_provider"], {
            "slug": f"l-{uuid.uuid4().hex[:12]}", "name": "Lofts", "time_zone": "Europe/Lisbon", "currency": "EUR",
            "commission_bps": 1500, "hold_ttl_seconds": None,
            "cancellation_policy": Jsonb(STANDARD_POLICY)}).fetchone()
        assert provider
        resource = conn.execute(QUERIES["insert_resource"], {
            "provider_id": provider["id"], "kind": "stay", "name": "Alfama loft", "nightly_price": 12000}).fetchone()
        assert resource
    return str(resource["id"])


def stay(listing: str, check_in: date, nights: int, **overrides: Any) -> dict[str, Any]:
    return {"kind": "stay", "resource_id": listing, "check_in": check_in.isoformat(),
            "check_out": (check_in + timedelta(days=nights)).isoformat(), "guests": 2,
            "customer": {"name": "Ada", "email": "ada@example.com"}, **overrides}


def book(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/bookings", json=body, headers={"Idempotency-Key": new_key()})
    assert response.status_code == 202, response.text
    return wait_job(client, response.json()["job_id"])


def first_day() -> date:
    return datetime.now(UTC).date() + timedelta(days=40)


def test_a_stay_is_priced_by_nights_and_spans_local_midnights(client: httpx.Client, listing: str) -> None:
    check_in = first_day()
    job = book(client, stay(listing, check_in, 3))
    assert job["status"] == "succeeded", job
    booking = client.get(f"/v1/bookings/{job['result']['booking_id']}").json()
    assert booking["kind"] == "stay" and booking["status"] == "pending_payment"
    assert booking["amount"] == 36000 and booking["currency"] == "EUR"
    assert booking["service_snapshot"]["nights"] == 3 and booking["service_snapshot"]["nightly_price"] == 12000
    start = datetime.fromisoformat(booking["start_at"]).astimezone(LISBON)
    end = datetime.fromisoformat(booking["end_at"]).astimezone(LISBON)
    assert (start.date(), start.hour, end.date(), end.hour) == (check_in, 0, check_in + timedelta(days=3), 0)


def test_overlapping_stays_are_refused_and_back_to_back_ones_are_not(client: httpx.Client, listing: str) -> None:
    check_in = first_day() + timedelta(days=10)
    assert book(client, stay(listing, check_in, 3))["status"] == "succeeded"
    overlapping = book(client, stay(listing, check_in + timedelta(days=2), 2))
    assert overlapping["status"] == "failed" and overlapping["error"]["code"] == "BOOKING_SLOT_TAKEN"
    assert book(client, stay(listing, check_in + timedelta(days=3), 2))["status"] == "succeeded"


def test_twenty_concurrent_overlapping_stays_book_once(client: httpx.Client, listing: str) -> None:
    check_in = first_day() + timedelta(days=20)
    bodies = [stay(listing, check_in + timedelta(days=i % 3), 3) for i in range(20)]
    with ThreadPoolExecutor(10) as pool:
        jobs = list(pool.map(lambda b: book(client, b), bodies))
    assert sum(job["status"] == "succeeded" for job in jobs) == 1


def test_free_nights_exclude_held_and_blocked_nights(client: httpx.Client, db: Any, listing: str) -> None:
    check_in = first_day() + timedelta(days=30)
    assert book(client, stay(listing, check_in, 2))["status"] == "succeeded"
    blocked_night = check_in + timedelta(days=4)
    db.execute("INSERT INTO resource_blocks (resource_id, period) VALUES (%s, tstzrange(%s, %s))",
               (listing, datetime.combine(blocked_night, datetime.min.time(), LISBON),
                datetime.combine(blocked_night + timedelta(days=1), datetime.min.time(), LISBON)))
    response = client.get(f"/v1/resources/{listing}/availability",
                          params={"from": check_in.isoformat(), "to": (check_in + timedelta(days=6)).isoformat()})
    assert response.status_code == 200, response.text
    nights = [date.fromisoformat(n) for n in response.json()["nights"]]
    assert nights == [check_in + timedelta(days=d) for d in (2, 3, 5, 6)]
    refused = book(client, stay(listing, check_in + timedelta(days=3), 2))
    assert refused["status"] == "failed" and refused["error"]["code"] == "BOOKING_OUTSIDE_AVAILABILITY"


@pytest.mark.parametrize("overrides, status", [
    ({"check_out": "2020-01-01"}, 422),
    ({"guests": 0}, 400),
    ({"start_at": "2031-01-01T10:00:00+00:00"}, 400),
    ({"resource_id": "00000000-0000-4000-8000-000000000000"}, 404),
])
def test_invalid_stay_requests(client: httpx.Client, listing: str, overrides: dict[str, Any], status: int) -> None:
    response = client.post("/v1/bookings", json=stay(listing, first_day(), 2, **overrides),
                           headers={"Idempotency-Key": new_key()})
    assert response.status_code == status, response.text


def test_too_long_a_stay_is_refused(client: httpx.Client, listing: str) -> None:
    response = client.post("/v1/bookings", json=stay(listing, first_day(), 120), headers={"Idempotency-Key": new_key()})
    assert response.status_code == 422 and "nights" in response.json()["detail"]
