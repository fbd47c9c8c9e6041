"""Booking creation end to end, and the guarantee it rests on: no double booking, ever."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest

from tests.support import Catalog, future, new_key, wait_job


def book(client: httpx.Client, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    return client.post("/v1/bookings", json=body, headers={"Idempotency-Key": key or new_key()})


def test_a_booking_request_becomes_a_held_booking(client: httpx.Client, catalog: Catalog) -> None:
    start = future(days=10)
    accepted = book(client, catalog.slot_body(start))
    assert accepted.status_code == 202
    job = wait_job(client, accepted.json()["job_id"])
    assert job["status"] == "succeeded", job
    assert job["type"] == "booking.create" and job["attempts"] == 1 and job["error"] is None
    result = job["result"]
    assert result["status"] == "pending_payment" and result["hold_expires_at"]

    booking = client.get(f"/v1/bookings/{result['booking_id']}").json()
    assert booking["status"] == "pending_payment"
    assert booking["kind"] == "slot" and booking["resource_id"] == catalog.resource_id
    assert booking["provider_id"] == catalog.provider_id
    assert booking["amount"] == 2500 and booking["currency"] == "EUR"
    assert booking["service_snapshot"] == {"service_id": catalog.service_id, "name": "Cut",
                                           "duration_minutes": 30, "price": 2500, "currency": "EUR"}
    assert booking["customer"]["email"] == "grace@example.com"
    assert booking["start_at"].startswith(start.strftime("%Y-%m-%dT%H:%M"))
    assert [(a["from_status"], a["to_status"]) for a in booking["audit"]] == [(None, "pending_payment")]
    assert booking["audit"][0]["job_id"] == job["id"]


def test_hold_uses_the_default_ttl(client: httpx.Client, db: Any, catalog: Catalog) -> None:
    job = wait_job(client, book(client, catalog.slot_body(future(days=11))).json()["job_id"])
    row = db.execute("SELECT hold_expires_at - created_at AS ttl FROM bookings WHERE id = %s",
                     (job["result"]["booking_id"],)).fetchone()
    assert row["ttl"].total_seconds() == pytest.approx(900, abs=5)


def test_creation_writes_audit_and_outbox_in_the_same_transaction(client: httpx.Client, db: Any,
                                                                   catalog: Catalog) -> None:
    job = wait_job(client, book(client, catalog.slot_body(future(days=12))).json()["job_id"])
    booking_id = job["result"]["booking_id"]
    event = db.execute("SELECT topic, payload FROM outbox WHERE aggregate_id = %s", (booking_id,)).fetchone()
    assert event["topic"] == "booking_created"
    assert event["payload"]["link"] == f"/booking/{booking_id}" and event["payload"]["amount"] == 2500
    stamps = db.execute("""SELECT b.created_at = a.created_at AND a.created_at = o.created_at AS same_tx
                           FROM bookings b JOIN booking_audit_log a ON a.booking_id = b.id
                           JOIN outbox o ON o.aggregate_id = b.id WHERE b.id = %s""", (booking_id,)).fetchone()
    assert stamps["same_tx"]  # now() is the transaction's start time: one transaction wrote all three


def test_an_overlapping_request_fails_with_slot_taken(client: httpx.Client, catalog: Catalog) -> None:
    start = future(days=13)
    first = wait_job(client, book(client, catalog.slot_body(start)).json()["job_id"])
    assert first["status"] == "succeeded"
    overlapping = wait_job(client, book(client, catalog.slot_body(start + timedelta(minutes=15))).json()["job_id"])
    assert overlapping["status"] == "failed"
    assert overlapping["error"]["code"] == "BOOKING_SLOT_TAKEN"
    adjacent = wait_job(client, book(client, catalog.slot_body(start + timedelta(minutes=30))).json()["job_id"])
    assert adjacent["status"] == "succeeded"  # [start, end) ranges: back-to-back is fine


def test_fifty_concurrent_requests_book_the_slot_once(client: httpx.Client, db: Any, catalog: Catalog) -> None:
    start = future(days=14)
    bodies = [catalog.slot_body(start + timedelta(minutes=i % 3 * 10)) for i in range(50)]
    with ThreadPoolExecutor(max_workers=25) as pool:
        responses = list(pool.map(lambda b: book(client, b), bodies))
    assert all(r.status_code == 202 for r in responses)
    jobs = [wait_job(client, r.json()["job_id"]) for r in responses]
    succeeded = [j for j in jobs if j["status"] == "succeeded"]
    assert len(succeeded) == 1
    assert {j["error"]["code"] for j in jobs if j["status"] == "failed"} == {"BOOKING_SLOT_TAKEN"}
    held = db.execute("SELECT count(*) AS n FROM bookings WHERE resource_id = %s", (catalog.resource_id,)).fetchone()
    assert held["n"] == 1


def test_the_database_itself_refuses_an_overlap(db: Any, catalog: Catalog) -> None:
    insert = """INSERT INTO bookings (id, kind, status, resource_id, provider_id, period, amount, currency,
                  service_snapshot, customer, hold_expires_at, created_by_job)
                VALUES (%s, 'slot', 'pending_payment', %s, %s, tstzrange(%s, %s, '[)'), 100, 'EUR', '{}', '{}',
                        now() + interval '5 minutes', %s)"""
    start = future(days=15)
    db.execute(insert, (uuid.uuid4(), catalog.resource_id, catalog.provider_id, start, start + timedelta(hours=1),
                        uuid.uuid4()))
    with pytest.raises(psycopg.errors.ExclusionViolation) as refused:
        db.execute(insert, (uuid.uuid4(), catalog.resource_id, catalog.provider_id, start + timedelta(minutes=59),
                            start + timedelta(hours=2), uuid.uuid4()))
    assert refused.value.diag.constraint_name == "bookings_no_overlap"


@pytest.mark.parametrize("path, legal", [
    (["paid", "completed"], True),
    (["paid", "cancelled"], True),
    (["cancelled"], True),
    (["expired"], True),
    (["completed"], False),
    (["expired", "paid"], False),
    (["cancelled", "paid"], False),
    (["paid", "completed", "cancelled"], False),
    (["paid", "pending_payment"], False),
])
def test_transitions_are_enforced_by_the_database(client: httpx.Client, db: Any, catalog: Catalog,
                                                  path: list[str], legal: bool) -> None:
    job = wait_job(client, book(client, catalog.slot_body(future(days=16))).json()["job_id"])
    booking_id = job["result"]["booking_id"]
    update = "UPDATE bookings SET status = %s WHERE id = %s"
    if legal:
        for status in path:
            db.execute(update, (status, booking_id))
        return
    with pytest.raises(psycopg.errors.CheckViolation) as refused:
        for status in path:
            db.execute(update, (status, booking_id))
    assert refused.value.diag.constraint_name == "bookings_valid_transition"


def test_expired_hold_frees_the_slot(client: httpx.Client, db: Any, catalog: Catalog) -> None:
    start = future(days=17)
    first = wait_job(client, book(client, catalog.slot_body(start)).json()["job_id"])
    booking_id = first["result"]["booking_id"]
    db.execute("UPDATE bookings SET hold_expires_at = now() - interval '1 second' WHERE id = %s", (booking_id,))
    from tests.support import wait_for

    wait_for(lambda: client.get(f"/v1/bookings/{booking_id}").json()["status"] == "expired", 10, "hold expiry")
    audit = client.get(f"/v1/bookings/{booking_id}").json()["audit"]
    assert audit[-1]["actor"] == "scheduler" and audit[-1]["to_status"] == "expired"
    again = wait_job(client, book(client, catalog.slot_body(start)).json()["job_id"])
    assert again["status"] == "succeeded"


def test_a_lapsed_hold_never_blocks_a_new_booking_even_before_the_scheduler_runs(
    isolated_database_url: str,
) -> None:
    """No scheduler touches this database: the new booking itself expires the lapsed hold it overlaps."""
    import psycopg
    from psycopg.rows import dict_row

    from shared.booking import create_slot_booking, creation_params
    from shared.db import use_msgspec_json
    from shared.schemas import Customer, SlotBookingRequest
    from tests.support import make_catalog

    use_msgspec_json()  # what open_pool does for workers
    catalog = make_catalog(isolated_database_url)
    start = future(days=18)
    request = SlotBookingRequest(resource_id=uuid.UUID(catalog.resource_id), service_id=uuid.UUID(catalog.service_id),
                                 start_at=start, customer=Customer(name="Ada", email="ada@example.com"))
    with psycopg.connect(isolated_database_url, row_factory=dict_row, autocommit=True) as conn:
        with conn.transaction():
            first = create_slot_booking(conn, request, job_id=uuid.uuid4(), default_hold_ttl_seconds=900,
                                        max_attempts=5, created=creation_params(None, "s"))
        conn.execute("UPDATE bookings SET hold_expires_at = now() - interval '1 second' WHERE id = %s",
                     (first.booking_id,))
        with conn.transaction():
            second = create_slot_booking(conn, request, job_id=uuid.uuid4(), default_hold_ttl_seconds=900,
                                         max_attempts=5, created=creation_params(None, "s"))
        statuses = {r["id"]: r["status"] for r in conn.execute("SELECT id, status FROM bookings WHERE resource_id = %s",
                                                                (catalog.resource_id,))}
        assert statuses == {first.booking_id: "expired", second.booking_id: "pending_payment"}
        audit = conn.execute("SELECT actor, from_status, to_status FROM booking_audit_log WHERE booking_id = %s "
                             "ORDER BY id", (first.booking_id,)).fetchall()
        assert audit[-1] == {"actor": "system", "from_status": "pending_payment", "to_status": "expired"}
        # a hold that has NOT lapsed still blocks
        with pytest.raises(Exception) as taken, conn.transaction():
            create_slot_booking(conn, request, job_id=uuid.uuid4(), default_hold_ttl_seconds=900, max_attempts=5,
                                created=creation_params(None, "s"))
        assert getattr(taken.value, "code", "") == "BOOKING_SLOT_TAKEN"


def test_holds_racing_on_a_resource_with_lapsed_holds_neither_deadlock_nor_expire_twice(
    isolated_database_url: str,
) -> None:
    """A hold is one statement: the resource's lock, the sweep of its lapsed holds, then the insert. Many at once
    on one resource, each overlapping a lapsed hold: every hold either lands or is refused as taken (no
    deadlock, which two sweeps and inserts without the lock meet: the test fails so when the lock is taken
    out), the holds that land never overlap, and each lapsed hold is expired once."""
    import threading

    from psycopg.rows import dict_row

    from shared.booking import create_slot_booking, creation_params
    from shared.db import use_msgspec_json
    from shared.errors import DomainError
    from shared.schemas import Customer, SlotBookingRequest
    from tests.support import make_catalog

    use_msgspec_json()
    catalog = make_catalog(isolated_database_url)
    slots = [future(days=19) + timedelta(minutes=30 * i) for i in range(6)]

    def request(start: Any) -> SlotBookingRequest:
        return SlotBookingRequest(resource_id=uuid.UUID(catalog.resource_id),
                                  service_id=uuid.UUID(catalog.service_id), start_at=start,
                                  customer=Customer(name="Ada", email="ada@example.com"))

    def hold(conn: psycopg.Connection[Any], start: Any) -> uuid.UUID:
        return create_slot_booking(conn, request(start), job_id=uuid.uuid4(), default_hold_ttl_seconds=900,
                                   max_attempts=5, created=creation_params(None, "s")).booking_id

    with psycopg.connect(isolated_database_url, row_factory=dict_row, autocommit=True) as conn:
        lapsed = [hold(conn, start) for start in slots]
        conn.execute("UPDATE bookings SET hold_expires_at = now() - interval '1 second' WHERE id = ANY(%s)", (lapsed,))

    racers = 4 * len(slots)
    start_together = threading.Barrier(racers)

    def race(i: int) -> str:
        with psycopg.connect(isolated_database_url, row_factory=dict_row, autocommit=True) as conn:
            start_together.wait(timeout=30)
            try:
                hold(conn, slots[i % len(slots)] + timedelta(minutes=10 * (i // len(slots) % 2)))
                return "held"
            except DomainError as exc:
                return exc.code

    with ThreadPoolExecutor(max_workers=racers) as pool:
        outcomes = list(pool.map(race, range(racers)))
    assert set(outcomes) <= {"held", "BOOKING_SLOT_TAKEN"}, outcomes  # a deadlock would raise DeadlockDetected
    with psycopg.connect(isolated_database_url, row_factory=dict_row) as conn:
        live = conn.execute("SELECT count(*) AS n FROM bookings WHERE resource_id = %s AND status = 'pending_payment'",
                            (catalog.resource_id,)).fetchone()
        expiries = conn.execute("SELECT a.booking_id, count(*) AS n FROM booking_audit_log a JOIN bookings b "
                                "ON b.id = a.booking_id WHERE b.resource_id = %s AND a.to_status = 'expired' "
                                "GROUP BY a.booking_id", (catalog.resource_id,)).fetchall()
    assert outcomes.count("held") == live["n"] >= len(slots) // 2  # slots 10 minutes apart overlap their neighbours
    with psycopg.connect(isolated_database_url, row_factory=dict_row) as conn:
        overlapping = conn.execute(
            "SELECT count(*) AS n FROM bookings a JOIN bookings b ON a.resource_id = b.resource_id AND a.id < b.id "
            "AND a.period && b.period WHERE a.resource_id = %s AND a.status = 'pending_payment' "
            "AND b.status = 'pending_payment'", (catalog.resource_id,)).fetchone()
    assert overlapping["n"] == 0
    assert {row["booking_id"]: row["n"] for row in expiries} == dict.fromkeys(lapsed, 1)
