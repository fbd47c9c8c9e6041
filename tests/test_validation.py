"""Bad input gets a precise RFC 9457 problem with a stable code; never a 500, never a stack trace."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from tests.support import Catalog, future, new_key


def post_raw(client: httpx.Client, content: str | bytes, **headers: str) -> httpx.Response:
    return client.post("/v1/bookings", content=content,
                       headers={"Content-Type": "application/json", "Idempotency-Key": new_key(), **headers})


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    doc = response.json()
    assert doc["code"] == code and doc["status"] == status
    assert doc["request_id"] == response.headers["x-request-id"]
    assert {"type", "title", "detail"} <= doc.keys()
    assert "Traceback" not in response.text and "psycopg" not in response.text
    return doc


@pytest.mark.parametrize("mutate, fragment", [
    (lambda b: {**b, "surprise": 1}, "surprise"),
    (lambda b: {**b, "start_at": "2031-06-02T10:00:00"}, "timezone"),
    (lambda b: {**b, "start_at": "not a date"}, "start_at"),
    (lambda b: {**b, "resource_id": "42"}, "resource_id"),
    (lambda b: {**b, "service_id": 7}, "service_id"),
    (lambda b: {**b, "customer": {"name": "A", "email": "nope"}}, "email"),
    (lambda b: {**b, "customer": {"name": "", "email": "a@b.co"}}, "name"),
    (lambda b: {**b, "customer": {"name": "A", "email": "a@b.co", "age": 3}}, "age"),
    (lambda b: {**b, "kind": "teleport"}, "kind"),
    (lambda b: {k: v for k, v in b.items() if k != "customer"}, "customer"),
])
def test_invalid_bodies_are_400_with_a_precise_message(client: httpx.Client, catalog: Catalog,
                                                       mutate: Any, fragment: str) -> None:
    doc = assert_problem(post_raw(client, json.dumps(mutate(catalog.slot_body(future())))), 400, "VALIDATION_FAILED")
    assert fragment in doc["detail"]


@pytest.mark.parametrize("content", [b"{bad", b"", b"[]", b"null", "\u00ff".encode("latin-1")])
def test_malformed_json_is_400(client: httpx.Client, content: bytes) -> None:
    assert_problem(post_raw(client, content), 400, "VALIDATION_FAILED")


def test_a_missing_body_is_named_as_such(client: httpx.Client) -> None:
    doc = assert_problem(post_raw(client, b""), 400, "VALIDATION_FAILED")
    assert doc["detail"] == "this request needs a JSON body"


def test_start_in_the_past_is_refused(client: httpx.Client, catalog: Catalog) -> None:
    # well formed (the schema cannot say "future"), so unprocessable rather than malformed
    doc = assert_problem(post_raw(client, json.dumps(catalog.slot_body(future(days=-2)))), 422,
                         "REQUEST_UNPROCESSABLE")
    assert "future" in doc["detail"]


def test_unknown_resource_or_service_is_404(client: httpx.Client, catalog: Catalog) -> None:
    body = catalog.slot_body(future(), resource_id=str(uuid.uuid4()))
    assert_problem(post_raw(client, json.dumps(body)), 404, "NOT_FOUND")
    body = catalog.slot_body(future(), service_id=str(uuid.uuid4()))
    assert_problem(post_raw(client, json.dumps(body)), 404, "NOT_FOUND")


def test_unknown_ids_and_routes(client: httpx.Client) -> None:
    assert_problem(client.get(f"/v1/jobs/{uuid.uuid4()}"), 404, "NOT_FOUND")
    assert_problem(client.get(f"/v1/bookings/{uuid.uuid4()}"), 404, "NOT_FOUND")
    assert_problem(client.get("/v1/jobs/not-a-uuid"), 404, "NOT_FOUND")
    assert_problem(client.get("/v1/nothing-here"), 404, "NOT_FOUND")
    assert_problem(client.delete("/v1/bookings"), 405, "METHOD_NOT_ALLOWED")


def test_request_id_is_carried_from_the_caller(client: httpx.Client) -> None:
    response = client.get(f"/v1/jobs/{uuid.uuid4()}", headers={"X-Request-Id": "trace-abc-123"})
    assert response.headers["x-request-id"] == "trace-abc-123"
    assert response.json()["request_id"] == "trace-abc-123"


def test_probes_metrics_and_openapi(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ok", "postgres": "ok", "redis": "ok"}
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "totem_http_requests_total{" in metrics.text
    spec = client.get("/schema/openapi.json").json()
    assert {"/v1/bookings", "/v1/jobs/{job_id}", "/v1/bookings/{booking_id}", "/healthz", "/readyz",
            "/v1/bookings/{booking_id}/cancel", "/v1/bookings/{booking_id}/complete",
            "/v1/resources/{resource_id}/availability", "/v1/providers", "/v1/resources/{resource_id}/hours",
            } <= set(spec["paths"])
    post = spec["paths"]["/v1/bookings"]["post"]
    assert {"202", "400", "404", "409", "422"} <= set(post["responses"])
    assert "application/problem+json" in post["responses"]["409"]["content"]
    assert post["requestBody"]["content"]["application/json"]["schema"]
