"""The Idempotency-Key protocol, through the real gateway: replay, reuse, in flight, take-over, expiry."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import psycopg
import pytest

from tests.support import Catalog, future, issue_public_token, new_key, wait_for

SYSTEM_SCOPE = "caller:system:system"  # the idempotency scope of the test client's default caller


def post(client: httpx.Client, body: Any, key: str | None, **headers: str) -> httpx.Response:
    if key is not None:
        headers["Idempotency-Key"] = key
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/v1/bookings", content=content, headers={"Content-Type": "application/json", **headers})


def jobs_under_key(db: psycopg.Connection[Any], key: str) -> int:
    row = db.execute("SELECT count(*) AS n FROM idempotency_keys WHERE key = %s", (key,)).fetchone()
    return int(row["n"])


def test_missing_key_is_refused_and_nothing_is_stored(client: httpx.Client, db: Any, catalog: Catalog) -> None:
    before = db.execute("SELECT count(*) AS n FROM jobs").fetchone()["n"]
    response = post(client, catalog.slot_body(future()), key=None)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "IDEMPOTENCY_KEY_MISSING"
    assert db.execute("SELECT count(*) AS n FROM jobs").fetchone()["n"] == before


@pytest.mark.parametrize("key", ["x" * 256, ""])
def test_key_longer_than_255_or_empty_is_refused(client: httpx.Client, catalog: Catalog, key: str) -> None:
    response = post(client, catalog.slot_body(future()), key=key)
    assert response.status_code == 400
    assert response.json()["code"] == "IDEMPOTENCY_KEY_INVALID"


def test_repeat_with_same_payload_replays_without_a_new_job(client: httpx.Client, db: Any, catalog: Catalog) -> None:
    key, body = new_key(), catalog.slot_body(future())
    first = post(client, body, key)
    assert first.status_code == 202
    assert first.headers["location"] == first.json()["status_url"]
    assert "idempotent-replayed" not in first.headers
    # Same JSON, other key order and whitespace: the fingerprint is over the canonical body.
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=3)
    for again in (post(client, body, key), post(client, reordered, key)):
        assert again.status_code == 202
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
        assert again.headers["location"] == first.headers["location"]
    count = db.execute("SELECT count(*) AS n FROM jobs WHERE id = %s", (first.json()["job_id"],)).fetchone()["n"]
    assert count == 1
    assert jobs_under_key(db, key) == 1


def test_same_key_with_a_different_payload_is_422(client: httpx.Client, db: Any, catalog: Catalog) -> None:
    key = new_key()
    assert post(client, catalog.slot_body(future(days=40)), key).status_code == 202
    response = post(client, catalog.slot_body(future(days=41)), key)
    assert response.status_code == 422
    assert response.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert jobs_under_key(db, key) == 1


def test_keys_are_scoped_to_the_caller(client: httpx.Client, db: Any, catalog: Catalog) -> None:
    key, body = new_key(), catalog.slot_body(future(days=42))
    other_widget = issue_public_token(db, catalog.provider_id)  # two callers of one provider
    alice = post(client, body, key, **catalog.widget)
    bob = post(client, body, key, Authorization=f"Bearer {other_widget}")
    assert alice.status_code == bob.status_code == 202
    assert alice.json()["job_id"] != bob.json()["job_id"]
    assert "idempotent-replayed" not in bob.headers


def test_a_request_rejected_by_validation_is_not_stored_under_its_key(
    client: httpx.Client, db: Any, catalog: Catalog,
) -> None:
    key = new_key()
    bad = post(client, {**catalog.slot_body(future(days=43)), "start_at": "tomorrow"}, key)
    assert bad.status_code == 400
    unknown = post(client, {**catalog.slot_body(future(days=43)), "resource_id": new_uuid()}, key)
    assert unknown.status_code == 404
    assert jobs_under_key(db, key) == 0
    corrected = post(client, catalog.slot_body(future(days=43)), key)
    assert corrected.status_code == 202
    assert "idempotent-replayed" not in corrected.headers


def new_uuid() -> str:
    import uuid

    return str(uuid.uuid4())


def _hold_key_lock(database_url: str, key: str, holding: threading.Event, release: threading.Event,
                   scope: str = SYSTEM_SCOPE) -> None:
    with psycopg.connect(database_url) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s || E'\\n' || %s, 7))", (scope, key))
        holding.set()
        release.wait(20)


def test_same_key_while_the_first_is_in_flight_is_409(
    client: httpx.Client, db: Any, database_url: str, catalog: Catalog,
) -> None:
    key, body = new_key(), catalog.slot_body(future(days=44))
    holding, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_key_lock, args=(database_url, key, holding, release))
    holder.start()
    try:
        assert holding.wait(10)
        response = post(client, body, key)
        assert response.status_code == 409
        assert response.json()["code"] == "IDEMPOTENCY_KEY_IN_FLIGHT"
        assert response.headers["retry-after"] == "1"
    finally:
        release.set()
        holder.join()
    assert post(client, body, key).status_code == 202


def test_a_crashed_requests_key_is_taken_over(
    client: httpx.Client, db: Any, database_url: str, catalog: Catalog,
) -> None:
    """A gateway that dies mid-request leaves nothing: its transaction (the lease) dies with its connection."""
    key, body = new_key(), catalog.slot_body(future(days=45))
    crashed = psycopg.connect(database_url)
    crashed.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s || E'\\n' || %s, 7))", (SYSTEM_SCOPE, key))
    assert post(client, body, key).status_code == 409
    db.execute("SELECT pg_terminate_backend(%s)", (crashed.info.backend_pid,))
    response = wait_for(lambda: (r := post(client, body, key)).status_code == 202 and r, 10, "take-over")
    assert "idempotent-replayed" not in response.headers
    crashed.close()


def test_an_expired_key_is_free_again_and_purged_by_the_scheduler(
    client: httpx.Client, db: Any, catalog: Catalog,
) -> None:
    key = new_key()
    first = post(client, catalog.slot_body(future(days=46)), key)
    assert first.status_code == 202
    db.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = %s", (key,))
    second = post(client, catalog.slot_body(future(days=47)), key)
    assert second.status_code == 202, second.text
    assert second.json()["job_id"] != first.json()["job_id"]
    db.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = %s", (key,))
    wait_for(lambda: jobs_under_key(db, key) == 0, 10, "the scheduler to purge the expired key")


def test_expiry_is_24_hours(client: httpx.Client, db: Any, catalog: Catalog) -> None:
    key = new_key()
    assert post(client, catalog.slot_body(future(days=48)), key).status_code == 202
    row = db.execute("SELECT expires_at - created_at AS ttl FROM idempotency_keys WHERE key = %s", (key,)).fetchone()
    assert row["ttl"].total_seconds() == pytest.approx(86_400, abs=5)
