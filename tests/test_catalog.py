"""Catalog management through the API: create, read, update, soft-delete, list with cursors; bad input
refused; soft-deleted rows take no new bookings while existing bookings keep their snapshots."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.support import NO_CREDENTIAL, future, new_key, wait_job

SYSTEM = {"X-System-Token": "test-system-token"}


def api(client: httpx.Client, method: str, path: str, body: Any = None, **params: Any) -> httpx.Response:
    return client.request(method, f"/v1{path}", json=body, params=params or None, headers=SYSTEM)


def provider_body(**overrides: Any) -> dict[str, Any]:
    return {"slug": f"salon-{uuid.uuid4().hex[:10]}", "name": "Salon", "time_zone": "Europe/Berlin",
            "currency": "EUR", "commission_bps": 1200, "cancellation_policy": [
                {"min_hours_before_start": 24, "refund_percent": 100},
                {"min_hours_before_start": 0, "refund_percent": 50}],
            **overrides}


@pytest.fixture
def salon(client: httpx.Client) -> dict[str, Any]:
    provider = api(client, "POST", "/providers", provider_body()).json()
    service = api(client, "POST", f"/providers/{provider['id']}/services",
                  {"name": "Cut", "duration_minutes": 45, "price": 3500}).json()
    resource = api(client, "POST", f"/providers/{provider['id']}/resources", {"kind": "slot", "name": "Anna"}).json()
    api(client, "PUT", f"/resources/{resource['id']}/services/{service['id']}")
    hours = [{"weekday": d, "opens_at": "00:00", "closes_at": "24:00"} for d in range(1, 8)]
    resource = api(client, "PUT", f"/resources/{resource['id']}/hours", {"hours": hours}).json()
    return {"provider": provider, "service": service, "resource": resource}


def book(client: httpx.Client, salon: dict[str, Any], days: int) -> dict[str, Any]:
    body = {"kind": "slot", "resource_id": salon["resource"]["id"], "service_id": salon["service"]["id"],
            "start_at": future(days=days).isoformat(), "customer": {"name": "Ada", "email": "ada@example.com"}}
    response = client.post("/v1/bookings", json=body, headers={"Idempotency-Key": new_key()})
    return {"status_code": response.status_code, **(wait_job(client, response.json()["job_id"])
                                                    if response.status_code == 202 else response.json())}


def test_a_salon_is_set_up_through_the_api_and_takes_bookings(client: httpx.Client, salon: dict[str, Any]) -> None:
    provider, resource, service = salon["provider"], salon["resource"], salon["service"]
    assert provider["cancellation_policy"][0] == {"min_hours_before_start": 24, "refund_percent": 100}
    assert service["currency"] == "EUR" and service["price"] == 3500
    assert resource["service_ids"] == [service["id"]] and len(resource["hours"]) == 7
    assert book(client, salon, days=100)["status"] == "succeeded"
    assert api(client, "GET", f"/providers/{provider['id']}").json()["slug"] == provider["slug"]


def test_catalog_needs_the_system_token(client: httpx.Client) -> None:
    assert client.post("/v1/providers", json=provider_body(), headers=NO_CREDENTIAL).json()["code"] == "UNAUTHORIZED"
    wrong = client.get("/v1/providers", headers={"X-System-Token": "guess"})
    assert wrong.status_code == 403 and wrong.json()["code"] == "FORBIDDEN"


@pytest.mark.parametrize("overrides, code", [
    ({"time_zone": "Mars/Olympus"}, "REQUEST_UNPROCESSABLE"),  # the shape of a zone name, but no zone
    ({"time_zone": ""}, "VALIDATION_FAILED"),
    ({"currency": "euro"}, "VALIDATION_FAILED"),
    ({"commission_bps": 10001}, "VALIDATION_FAILED"),
    ({"slug": "Not A Slug"}, "VALIDATION_FAILED"),
    ({"colour": "red"}, "VALIDATION_FAILED"),
    ({"cancellation_policy": [{"min_hours_before_start": 1, "refund_percent": 101}]}, "VALIDATION_FAILED"),
])
def test_bad_providers_are_refused(client: httpx.Client, overrides: dict[str, Any], code: str) -> None:
    response = api(client, "POST", "/providers", provider_body(**overrides))
    assert response.status_code == {"VALIDATION_FAILED": 400, "REQUEST_UNPROCESSABLE": 422}[code]
    assert response.json()["code"] == code


def test_a_slug_is_taken_once(client: httpx.Client) -> None:
    body = provider_body()
    assert api(client, "POST", "/providers", body).status_code == 201
    again = api(client, "POST", "/providers", body)
    assert again.status_code == 409 and again.json()["code"] == "PROVIDER_SLUG_TAKEN"


def test_updating_a_service_leaves_existing_bookings_snapshots_alone(
    client: httpx.Client, salon: dict[str, Any],
) -> None:
    before = book(client, salon, days=101)
    updated = api(client, "PATCH", f"/services/{salon['service']['id']}", {"price": 4000, "name": "Premium cut"})
    assert updated.json()["price"] == 4000
    after = book(client, salon, days=102)
    old = client.get(f"/v1/bookings/{before['result']['booking_id']}").json()
    new = client.get(f"/v1/bookings/{after['result']['booking_id']}").json()
    assert (old["amount"], old["service_snapshot"]["name"]) == (3500, "Cut")
    assert (new["amount"], new["service_snapshot"]["name"]) == (4000, "Premium cut")


def test_a_soft_deleted_resource_stays_readable_and_takes_no_bookings(
    client: httpx.Client, salon: dict[str, Any],
) -> None:
    existing = book(client, salon, days=103)
    deleted = api(client, "DELETE", f"/resources/{salon['resource']['id']}").json()
    assert deleted["deleted_at"] is not None
    assert api(client, "GET", f"/resources/{salon['resource']['id']}").json()["deleted_at"] is not None
    assert book(client, salon, days=104)["status_code"] == 404
    listed = api(client, "GET", "/resources", provider=salon["provider"]["id"]).json()["items"]
    assert salon["resource"]["id"] not in [r["id"] for r in listed]
    assert client.get(f"/v1/bookings/{existing['result']['booking_id']}").status_code == 200
    assert api(client, "DELETE", f"/resources/{salon['resource']['id']}").status_code == 404  # already deleted


def test_lists_paginate_with_cursors(client: httpx.Client) -> None:
    provider = api(client, "POST", "/providers", provider_body()).json()
    created = [api(client, "POST", f"/providers/{provider['id']}/services",
                   {"name": f"S{i}", "duration_minutes": 30, "price": 1000 + i}).json()["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        page = api(client, "GET", "/services", provider=provider["id"], limit=2,
                   **({"cursor": cursor} if cursor else {})).json()
        seen += [s["id"] for s in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == created
    assert len(api(client, "GET", "/providers", limit=1).json()["items"]) == 1


def test_blocks_hours_and_offerings_are_checked(client: httpx.Client, salon: dict[str, Any]) -> None:
    resource_id = salon["resource"]["id"]
    start = future(days=105)
    block = api(client, "POST", f"/resources/{resource_id}/blocks",
                {"start_at": start.isoformat(), "end_at": future(days=106).isoformat(), "reason": "holiday"}).json()
    assert [b["id"] for b in api(client, "GET", f"/resources/{resource_id}/blocks").json()] == [block["id"]]
    assert book(client, salon, days=105)["error"]["code"] == "BOOKING_OUTSIDE_AVAILABILITY"
    assert api(client, "DELETE", f"/resources/{resource_id}/blocks/{block['id']}").status_code == 204
    assert book(client, salon, days=105)["status"] == "succeeded"

    bad_hours = api(client, "PUT", f"/resources/{resource_id}/hours",
                    {"hours": [{"weekday": 1, "opens_at": "18:00", "closes_at": "09:00"}]})
    assert bad_hours.status_code == 422 and bad_hours.json()["code"] == "REQUEST_UNPROCESSABLE"
    other = api(client, "POST", "/providers", provider_body()).json()
    foreign = api(client, "POST", f"/providers/{other['id']}/services",
                  {"name": "X", "duration_minutes": 30, "price": 1}).json()
    assert api(client, "PUT", f"/resources/{resource_id}/services/{foreign['id']}").status_code == 404
    stay_without_price = api(client, "POST", f"/providers/{other['id']}/resources", {"kind": "stay", "name": "Loft"})
    assert stay_without_price.status_code == 422  # well formed: the rule joins two fields


def test_catalog_creates_honour_an_idempotency_key(client: httpx.Client, db: Any) -> None:
    body, key = provider_body(), new_key()
    headers = {**SYSTEM, "Idempotency-Key": key}
    first = client.post("/v1/providers", json=body, headers=headers)
    again = client.post("/v1/providers", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true" and again.json()["id"] == first.json()["id"]
    assert db.execute("SELECT count(*) AS n FROM providers WHERE slug = %s", (body["slug"],)).fetchone()["n"] == 1
    reused = client.post("/v1/providers", json=provider_body(), headers=headers)
    assert reused.status_code == 422 and reused.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    service_key = {**SYSTEM, "Idempotency-Key": new_key()}
    service = {"name": "Cut", "duration_minutes": 30, "price": 100}
    ids = {client.post(f"/v1/providers/{first.json()['id']}/services", json=service, headers=service_key).json()["id"]
           for _ in range(3)}
    assert len(ids) == 1


def test_a_refused_catalog_create_is_not_stored_under_its_key(client: httpx.Client) -> None:
    taken = api(client, "POST", "/providers", provider_body()).json()["slug"]
    headers = {**SYSTEM, "Idempotency-Key": new_key()}
    refused = client.post("/v1/providers", json=provider_body(slug=taken), headers=headers)
    assert refused.status_code == 409
    corrected = client.post("/v1/providers", json=provider_body(), headers=headers)
    assert corrected.status_code == 201 and "idempotent-replayed" not in corrected.headers
