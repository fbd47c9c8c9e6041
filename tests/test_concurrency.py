"""100 concurrent mixed operations on a handful of slots: creates, cancels, payments and hold expiries
race; afterwards no two active bookings overlap and every transition has exactly one audit row."""

from __future__ import annotations

import itertools
import random
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx

from tests.support import api_client, future, make_catalog, new_key, wait_for, wait_job
from totem.fleet import Fleet

SYSTEM = {"X-System-Token": "test-system-token"}


def test_a_hundred_concurrent_mixed_operations_never_overlap_and_are_all_audited(
    fleet: Fleet, db: Any, database_url: str,
) -> None:
    # a refused command may wait for a pooled connection twice (DB_POOL_WAIT_SECONDS each) on a loaded box:
    # this test is about correctness under contention, not latency, so its client waits longer than 10 s
    with api_client(fleet.base_url, timeout=30) as client:
        _race(client, db, database_url)


def _race(client: httpx.Client, db: Any, database_url: str) -> None:
    catalog = make_catalog(database_url)
    slots = [future(days=90, hour=9) + timedelta(minutes=30 * i) for i in range(4)]
    seeded = []
    for start in slots:
        job = wait_job(client, client.post("/v1/bookings", json=catalog.slot_body(start),
                                           headers={"Idempotency-Key": new_key()}).json()["job_id"])
        seeded.append(job["result"]["booking_id"])

    def create(i: int) -> str | None:
        start = slots[i % 4] + timedelta(minutes=(i % 3) * 10)  # also straddling neighbouring slots
        return _job(_post(client, "/v1/bookings", catalog.slot_body(start), {}))

    def cancel(i: int) -> str | None:
        return _job(_post(client, f"/v1/bookings/{seeded[i % 4]}/cancel", {"reason": f"op {i}"}, {}))

    def pay(i: int) -> str | None:
        return _job(_post(client, f"/v1/system/bookings/{seeded[i % 4]}/mark-paid", None, SYSTEM))

    def expire(i: int) -> str | None:
        db_conn = __import__("psycopg").connect(database_url, autocommit=True)
        with db_conn:
            db_conn.execute("UPDATE bookings SET hold_expires_at = now() WHERE id = %s AND status = 'pending_payment'",
                            (seeded[i % 4],))
        return None

    operations = [create] * 50 + [cancel] * 25 + [pay] * 15 + [expire] * 10
    random.Random(7).shuffle(operations)
    with ThreadPoolExecutor(max_workers=20) as pool:
        job_ids = [j for j in pool.map(lambda pair: pair[1](pair[0]), enumerate(operations)) if j]
    jobs = [wait_job(client, job_id, timeout=60) for job_id in job_ids]
    assert all(job["status"] in ("succeeded", "failed") for job in jobs)
    assert {job["error"]["code"] for job in jobs if job["status"] == "failed"} <= {
        "BOOKING_SLOT_TAKEN", "BOOKING_INVALID_TRANSITION"}
    wait_for(lambda: db.execute("SELECT count(*) AS n FROM bookings WHERE resource_id = %s AND status = "
                                "'pending_payment' AND hold_expires_at <= now()", (catalog.resource_id,)
                                ).fetchone()["n"] == 0, 15, "the scheduler to expire every overdue hold")

    overlaps = db.execute(
        """SELECT count(*) AS n FROM bookings a JOIN bookings b
             ON a.resource_id = b.resource_id AND a.id < b.id AND a.period && b.period
           WHERE a.resource_id = %s AND a.status IN ('pending_payment', 'paid', 'completed')
             AND b.status IN ('pending_payment', 'paid', 'completed')""", (catalog.resource_id,)).fetchone()
    assert overlaps["n"] == 0

    bookings = db.execute("SELECT id, status FROM bookings WHERE resource_id = %s", (catalog.resource_id,)).fetchall()
    for booking in bookings:
        chain = db.execute("SELECT from_status, to_status FROM booking_audit_log WHERE booking_id = %s ORDER BY id",
                           (booking["id"],)).fetchall()
        assert chain[0]["from_status"] is None and chain[0]["to_status"] == "pending_payment"
        for before, after in itertools.pairwise(chain):
            assert after["from_status"] == before["to_status"]  # no lost or doubled transition
        assert chain[-1]["to_status"] == booking["status"]
    for job in jobs:
        if job["type"] != "booking.create" and job["status"] == "succeeded":
            rows = db.execute("SELECT count(*) AS n FROM booking_audit_log WHERE job_id = %s", (job["id"],)).fetchone()
            assert rows["n"] == 1
    assert any(j["type"] == "booking.cancel" and j["status"] == "succeeded" for j in jobs)


def _post(client: httpx.Client, path: str, body: dict[str, Any] | None, headers: dict[str, str]) -> httpx.Response:
    """As a client should: a 503 (every pooled connection busy on a loaded box) is retried with the same
    Idempotency-Key, so a retry can never act twice. No pause is needed: the gateway itself waits up to
    DB_POOL_WAIT_SECONDS for a connection before it answers 503."""
    headers = {**headers, "Idempotency-Key": new_key()}
    for _ in range(10):
        response = client.post(path, json=body, headers=headers)
        if response.status_code != 503:
            return response
    return response


def _job(response: httpx.Response) -> str | None:
    if response.status_code == 409:  # refused at the gateway: the transition was already impossible
        assert response.json()["code"] == "BOOKING_INVALID_TRANSITION"
        return None
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])
