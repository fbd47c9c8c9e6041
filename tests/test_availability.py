"""Slot availability: computed in SQL inside opening hours in the provider's time zone (DST days
included), minus bookings that hold time, blocks and the past."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from tests.support import make_catalog, new_key, wait_job


def slots(client: httpx.Client, catalog: Any, day: date, last: date | None = None) -> list[tuple[datetime, datetime]]:
    response = client.get(f"/v1/resources/{catalog.resource_id}/availability",
                          params={"from": day.isoformat(), "to": (last or day).isoformat(),
                                  "service_id": catalog.service_id})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["time_zone"] == "Europe/Berlin"
    return [(datetime.fromisoformat(s["start_at"]), datetime.fromisoformat(s["end_at"])) for s in body["slots"]]


def test_slots_follow_opening_hours_across_both_dst_shifts(client: httpx.Client, database_url: str) -> None:
    catalog = make_catalog(database_url, hours=("08:00", "20:00"))
    # Europe/Berlin: 2027-03-28 springs forward (CET -> CEST), 2027-10-31 falls back (CEST -> CET).
    expected_first_utc = {date(2027, 3, 27): 7, date(2027, 3, 28): 6, date(2027, 10, 30): 6, date(2027, 10, 31): 7}
    for day, first_hour_utc in expected_first_utc.items():
        free = slots(client, catalog, day)
        assert len(free) == (12 * 60 - 30) // 15 + 1  # every 15 min, a 30-min service ending by 20:00 local
        assert free[0][0] == datetime(day.year, day.month, day.day, first_hour_utc, tzinfo=UTC)
        assert free[-1][1] == free[0][0] + timedelta(hours=12)  # 08:00 -> 20:00 local is 12 h on these days
        assert all(end - start == timedelta(minutes=30) for start, end in free)


def test_booked_and_blocked_time_is_not_offered(client: httpx.Client, db: Any, database_url: str) -> None:
    catalog = make_catalog(database_url, hours=("08:00", "20:00"))
    day = date(2027, 6, 1)  # CEST: 08:00 local = 06:00Z
    booked = datetime(2027, 6, 1, 8, 0, tzinfo=UTC)  # 10:00 local, 30 min
    job = wait_job(client, client.post("/v1/bookings", json=catalog.slot_body(booked),
                                       headers={"Idempotency-Key": new_key()}).json()["job_id"])
    assert job["status"] == "succeeded"
    db.execute("INSERT INTO resource_blocks (resource_id, period) VALUES (%s, tstzrange(%s, %s))",
               (catalog.resource_id, datetime(2027, 6, 1, 12, tzinfo=UTC), datetime(2027, 6, 1, 13, tzinfo=UTC)))
    starts = {start for start, _ in slots(client, catalog, day)}
    for minutes in (-15, 0, 15):  # every 30-min candidate overlapping 08:00-08:30Z is gone
        assert booked + timedelta(minutes=minutes) not in starts
    assert booked - timedelta(minutes=30) in starts and booked + timedelta(minutes=30) in starts
    assert not any(datetime(2027, 6, 1, 11, 45, tzinfo=UTC) <= s < datetime(2027, 6, 1, 13, tzinfo=UTC) for s in starts)
    # a cancelled booking frees its time
    cancel = client.post(f"/v1/bookings/{job['result']['booking_id']}/cancel", json={},
                         headers={"Idempotency-Key": new_key()})
    assert wait_job(client, cancel.json()["job_id"])["status"] == "succeeded"
    assert booked in {start for start, _ in slots(client, catalog, day)}


def test_past_slots_are_never_offered(client: httpx.Client, database_url: str) -> None:
    catalog = make_catalog(database_url)
    today = datetime.now(UTC).date()
    free = slots(client, catalog, today - timedelta(days=2), today)
    assert free and all(start > datetime.now(UTC) - timedelta(seconds=5) for start, _ in free)


def test_availability_input_errors(client: httpx.Client, database_url: str) -> None:
    catalog = make_catalog(database_url)
    base = f"/v1/resources/{catalog.resource_id}/availability"
    # well formed but refused by a rule no schema states: 422 (a malformed date is 400, below)
    assert client.get(base, params={"from": "2027-01-01", "to": "2027-01-02"}).json()["code"] == "REQUEST_UNPROCESSABLE"
    assert client.get(base, params={"from": "2027-01-05", "to": "2027-01-01",
                                    "service_id": catalog.service_id}).status_code == 422
    assert client.get(base, params={"from": "2027-01-01", "to": "2027-06-01",
                                    "service_id": catalog.service_id}).status_code == 422
    assert client.get(base, params={"from": "soon", "to": "2027-01-01",
                                    "service_id": catalog.service_id}).status_code == 400
    missing = client.get(f"/v1/resources/{uuid.uuid4()}/availability",
                         params={"from": "2027-01-01", "to": "2027-01-01", "service_id": catalog.service_id})
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
    # `service` is accepted as an alias of service_id
    alias = client.get(base, params={"from": "2027-01-01", "to": "2027-01-01", "service": catalog.service_id})
    assert alias.status_code == 200
