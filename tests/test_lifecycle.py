"""The booking lifecycle through the API: every legal transition, illegal ones refused (409 at once, or
the job fails with BOOKING_INVALID_TRANSITION when the state changed meanwhile), audit and outbox rows."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.support import NO_CREDENTIAL, Catalog, future, make_catalog, new_key, wait_for, wait_job

SYSTEM = {"X-System-Token": "test-system-token"}


def create(client: httpx.Client, catalog: Catalog, days: int = 60, hour: int = 10) -> str:
    job = wait_job(client, client.post("/v1/bookings", json=catalog.slot_body(future(days=days, hour=hour)),
                                       headers={"Idempotency-Key": new_key()}).json()["job_id"])
    assert job["status"] == "succeeded", job
    return str(job["result"]["booking_id"])


def command(client: httpx.Client, booking_id: str, action: str, body: Any = None, key: str | None = None,
            **headers: str) -> httpx.Response:
    path = (f"/v1/system/bookings/{booking_id}/mark-paid" if action == "mark-paid"
            else f"/v1/bookings/{booking_id}/{action}")
    return client.post(path, json=body, headers={"Idempotency-Key": key or new_key(), **SYSTEM, **headers})


def run(client: httpx.Client, booking_id: str, action: str, body: Any = None) -> dict[str, Any]:
    response = command(client, booking_id, action, body)
    assert response.status_code == 202, response.text
    return wait_job(client, response.json()["job_id"])


def trail(client: httpx.Client, booking_id: str) -> list[tuple[str | None, str]]:
    return [(a["from_status"], a["to_status"]) for a in client.get(f"/v1/bookings/{booking_id}").json()["audit"]]


def test_pending_paid_completed(client: httpx.Client, db: Any, catalog: Catalog) -> None:
    booking_id = create(client, catalog)
    paid = run(client, booking_id, "mark-paid")
    assert paid["status"] == "succeeded" and paid["result"] == {"booking_id": booking_id,
                                                               "from_status": "pending_payment", "status": "paid"}
    assert run(client, booking_id, "complete", {})["status"] == "succeeded"
    assert trail(client, booking_id) == [(None, "pending_payment"), ("pending_payment", "paid"), ("paid", "completed")]
    topics = [r["topic"] for r in db.execute("SELECT topic FROM outbox WHERE aggregate_id = %s ORDER BY id",
                                             (booking_id,))]
    assert topics == ["booking_created", "booking_paid", "booking_completed"]


@pytest.mark.parametrize("paid_first", [False, True])
def test_cancel_from_pending_or_paid_records_the_reason(
    client: httpx.Client, catalog: Catalog, paid_first: bool,
) -> None:
    booking_id = create(client, catalog, days=61)
    if paid_first:
        run(client, booking_id, "mark-paid")
    job = run(client, booking_id, "cancel", {"reason": "changed my mind"})
    assert job["status"] == "succeeded" and job["result"]["status"] == "cancelled"
    booking = client.get(f"/v1/bookings/{booking_id}").json()
    assert booking["status"] == "cancelled"
    assert booking["audit"][-1]["reason"] == "changed my mind"
    assert booking["audit"][-1]["from_status"] == ("paid" if paid_first else "pending_payment")


@pytest.mark.parametrize("setup, action", [
    ([], "complete"),                        # completed only from paid
    (["cancel"], "cancel"),                  # cancelled is terminal
    (["cancel"], "mark-paid"),
    (["mark-paid", "complete"], "cancel"),   # completed is terminal
    (["mark-paid"], "mark-paid"),
])
def test_illegal_commands_are_refused_with_409_and_change_nothing(
    client: httpx.Client, catalog: Catalog, setup: list[str], action: str,
) -> None:
    booking_id = create(client, catalog, days=62)
    for step in setup:
        assert run(client, booking_id, step, {} if step != "mark-paid" else None)["status"] == "succeeded"
    before = trail(client, booking_id)
    response = command(client, booking_id, action, {} if action != "mark-paid" else None)
    assert response.status_code == 409
    assert response.json()["code"] == "BOOKING_INVALID_TRANSITION"
    assert trail(client, booking_id) == before


def test_an_expired_hold_cannot_be_paid_or_cancelled(client: httpx.Client, db: Any, catalog: Catalog) -> None:
    booking_id = create(client, catalog, days=63)
    db.execute("UPDATE bookings SET hold_expires_at = now() - interval '1 second' WHERE id = %s", (booking_id,))
    wait_for(lambda: client.get(f"/v1/bookings/{booking_id}").json()["status"] == "expired", 10, "expiry")
    for action in ("mark-paid", "cancel"):
        assert command(client, booking_id, action, {} if action == "cancel" else None).status_code == 409


def test_commands_on_an_unknown_booking_are_404(client: httpx.Client) -> None:
    import uuid

    response = command(client, str(uuid.uuid4()), "cancel", {})
    assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND"


def test_a_repeated_cancel_replays_even_after_the_booking_changed(client: httpx.Client, catalog: Catalog) -> None:
    booking_id, key = create(client, catalog, days=64), new_key()
    first = command(client, booking_id, "cancel", {"reason": "r"}, key=key)
    assert wait_job(client, first.json()["job_id"])["status"] == "succeeded"
    again = command(client, booking_id, "cancel", {"reason": "r"}, key=key)
    assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()


def test_concurrent_cancels_cancel_once(client: httpx.Client, catalog: Catalog) -> None:
    booking_id = create(client, catalog, days=65)
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: command(client, booking_id, "cancel", {}), range(8)))
    accepted = [r for r in responses if r.status_code == 202]
    assert all(r.status_code in (202, 409) for r in responses)
    jobs = [wait_job(client, r.json()["job_id"]) for r in accepted]
    assert sum(j["status"] == "succeeded" for j in jobs) == 1
    assert all(j["error"]["code"] == "BOOKING_INVALID_TRANSITION" for j in jobs if j["status"] == "failed")
    assert trail(client, booking_id).count(("pending_payment", "cancelled")) == 1


def test_complete_and_mark_paid_need_the_system_token(client: httpx.Client, catalog: Catalog) -> None:
    booking_id = create(client, catalog, days=66)
    missing = client.post(f"/v1/bookings/{booking_id}/complete", json={},
                          headers={"Idempotency-Key": new_key(), **NO_CREDENTIAL})
    assert missing.status_code == 401 and missing.json()["code"] == "UNAUTHORIZED"
    wrong = command(client, booking_id, "mark-paid", None, **{"X-System-Token": "nope"})
    assert wrong.status_code == 403 and wrong.json()["code"] == "FORBIDDEN"


def test_cancel_needs_an_idempotency_key(client: httpx.Client, catalog: Catalog) -> None:
    booking_id = create(client, catalog, days=67)
    response = client.post(f"/v1/bookings/{booking_id}/cancel", json={})
    assert response.status_code == 400 and response.json()["code"] == "IDEMPOTENCY_KEY_MISSING"


def test_slots_outside_opening_hours_or_in_a_block_are_refused(
    client: httpx.Client, database_url: str, db: Any,
) -> None:
    catalog = make_catalog(database_url, hours=("08:00", "20:00"))
    def attempt(start: Any) -> dict[str, Any]:
        return wait_job(client, client.post("/v1/bookings", json=catalog.slot_body(start),
                                            headers={"Idempotency-Key": new_key()}).json()["job_id"])
    day = future(days=70, hour=0)  # midnight UTC = 01:00 or 02:00 in Berlin
    assert attempt(day)["error"]["code"] == "BOOKING_OUTSIDE_AVAILABILITY"
    # starts inside opening hours but ends after 20:00
    assert attempt(day.replace(hour=18, minute=45))["error"]["code"] == "BOOKING_OUTSIDE_AVAILABILITY"
    db.execute("INSERT INTO resource_blocks (resource_id, period) VALUES (%s, tstzrange(%s, %s))",
               (catalog.resource_id, day.replace(hour=9), day.replace(hour=12)))
    assert attempt(day.replace(hour=10))["error"]["code"] == "BOOKING_OUTSIDE_AVAILABILITY"
    assert attempt(day.replace(hour=13))["status"] == "succeeded"


def test_a_soft_deleted_service_takes_no_booking_but_old_bookings_keep_their_snapshot(
    client: httpx.Client, db: Any, catalog: Catalog,
) -> None:
    booking_id = create(client, catalog, days=68)
    db.execute("UPDATE services SET deleted_at = now(), name = 'Renamed', price = 9999 WHERE id = %s",
               (catalog.service_id,))
    refused = client.post("/v1/bookings", json=catalog.slot_body(future(days=69)),
                          headers={"Idempotency-Key": new_key()})
    assert refused.status_code == 404
    booking = client.get(f"/v1/bookings/{booking_id}").json()
    assert booking["service_snapshot"]["name"] == "Cut" and booking["amount"] == 2500


def test_bookings_list_filters_and_paginates(client: httpx.Client, database_url: str) -> None:
    catalog = make_catalog(database_url)
    ids = [create(client, catalog, days=80, hour=h) for h in range(8, 13)]
    run(client, ids[0], "mark-paid")
    seen, cursor = [], None
    while True:
        page = client.get("/v1/bookings", params={"provider": catalog.provider_id, "limit": 2,
                                                  **({"cursor": cursor} if cursor else {})}).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    paid = client.get("/v1/bookings", params={"provider": catalog.provider_id, "status": "paid"}).json()["items"]
    assert [b["id"] for b in paid] == [ids[0]]
    window = client.get("/v1/bookings", params={"provider": catalog.provider_id,
                                                "from": future(days=80, hour=10).isoformat(),
                                                "to": future(days=80, hour=12).isoformat()}).json()["items"]
    assert [b["id"] for b in window] == ids[2:4]
    assert client.get("/v1/bookings", params={"cursor": "garbage!"}).json()["code"] == "VALIDATION_FAILED"
    assert client.get("/v1/bookings", params={"status": "nope"}).status_code == 400


def test_expiry_racing_payment_lets_exactly_one_win(client: httpx.Client, db: Any, database_url: str) -> None:
    """Holds expire while payments for them arrive: each booking ends paid XOR expired, audited once."""
    catalog = make_catalog(database_url)
    ids = [create(client, catalog, days=120, hour=h) for h in range(0, 24, 2)]
    db.execute("UPDATE bookings SET hold_expires_at = now() + interval '300 milliseconds' WHERE id = ANY(%s::uuid[])",
               (ids,))
    import time

    time.sleep(0.25)
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda b: command(client, b, "mark-paid"), ids))
    jobs = [wait_job(client, r.json()["job_id"]) for r in responses if r.status_code == 202]
    assert all(j["status"] == "succeeded" or j["error"]["code"] == "BOOKING_INVALID_TRANSITION" for j in jobs)
    wait_for(lambda: all(client.get(f"/v1/bookings/{b}").json()["status"] in ("paid", "expired") for b in ids), 15,
             "every hold to be paid or expired")
    for booking_id in ids:
        steps = trail(client, booking_id)[1:]
        assert steps in ([("pending_payment", "paid")], [("pending_payment", "expired")]), steps


def test_a_provider_hold_ttl_overrides_the_default(client: httpx.Client, db: Any, database_url: str) -> None:
    catalog = make_catalog(database_url, hold_ttl_seconds=120)
    booking_id = create(client, catalog, days=121)
    row = db.execute("SELECT hold_expires_at - created_at AS ttl FROM bookings WHERE id = %s", (booking_id,)).fetchone()
    assert row["ttl"].total_seconds() == pytest.approx(120, abs=3)
