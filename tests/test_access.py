"""Who may call what, proven route by route from the app's own route table: every route declares its
callers; every route refuses the wrong ones (no credential, another provider's public token, another
booking's customer token, another provider's owner, staff where an owner is needed, a wrong system token)
with 401/403/404 as problem+json, and nothing changes in the database; the right credential gets through.
Then the credentials themselves: customer tokens, a widget's own bookings, the verified audit actor."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from litestar.handlers.http_handlers import HTTPRouteHandler
from psycopg.rows import dict_row

from gateway.access import MEMBERS, Access, declared_access, is_automatic_options
from gateway.app import create_app
from shared.config import Settings
from tests.support import (
    NO_CREDENTIAL,
    SYSTEM,
    Catalog,
    future,
    issue_public_token,
    make_catalog,
    member_session,
    new_key,
    wait_for,
    wait_job,
)

PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # the template, e.g. /v1/providers/{provider_id:uuid}
    access: Access

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def routes() -> list[Route]:
    """Every (method, path) the app serves, with its declared access; fails on a route without one."""
    app = create_app(Settings(database_url="postgresql://unused", redis_url="redis://unused"))
    found, undeclared = [], []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if not isinstance(handler, HTTPRouteHandler) or is_automatic_options(handler):
                continue
            access = declared_access(handler)
            for method in sorted(handler.http_methods):
                if access is None:
                    undeclared.append(f"{method} {route.path}")
                else:
                    found.append(Route(method, route.path, access))
    assert not undeclared, f"routes without an access declaration: {undeclared}"
    return found


def test_every_route_declares_who_may_call_it() -> None:
    table = routes()
    assert len(table) > 40
    public = {str(r) for r in table if Access.PUBLIC in r.access}
    assert public >= {"POST /v1/webhooks/stripe", "GET /healthz", "POST /v1/auth/magic-links"}
    assert not any(r.path.startswith("/v1/providers/{provider_id") for r in table if Access.PUBLIC in r.access)


@dataclass(frozen=True)
class World:
    a: Catalog  # the provider under test
    b: Catalog  # another provider
    booking_a: str  # a booking of A, made by A's widget
    job_a: str
    customer_a: str  # its customer token
    customer_b: str  # the customer token of a booking of B
    ids: dict[str, str]  # A's rows of every other kind a path can name (a block, an endpoint, a member, ...)


def _book(client: httpx.Client, catalog: Catalog, days: int) -> tuple[str, str, str]:
    accepted = client.post("/v1/bookings", json=catalog.slot_body(future(days=days)),
                           headers={"Idempotency-Key": new_key(), **catalog.widget})
    assert accepted.status_code == 202, accepted.text
    job = wait_job(client, accepted.json()["job_id"], headers=catalog.widget)
    assert job["status"] == "succeeded", job
    return job["result"]["booking_id"], job["id"], job["result"]["customer_token"]


@pytest.fixture(scope="module")
def world(fleet: Any, database_url: str) -> World:
    a, b = make_catalog(database_url), make_catalog(database_url)
    with httpx.Client(base_url=fleet.base_url, timeout=10) as client:
        booking_a, job_a, customer_a = _book(client, a, days=200)
        _, _, customer_b = _book(client, b, days=201)
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as db:
        one = lambda query, *args: str(db.execute(query, args).fetchone()["id"])  # noqa: E731
        ids = {
            "block_id": one("INSERT INTO resource_blocks (resource_id, period) VALUES (%s, tstzrange(%s, %s)) "
                            "RETURNING id", a.resource_id, future(days=400), future(days=401)),
            # disabled: no event fans out to it (its host does not resolve here), so A's mail settles
            "endpoint_id": one("INSERT INTO webhook_endpoints (provider_id, url, secret, status, disabled_reason) "
                               "VALUES (%s, 'https://hooks.example.com/a', 'whsec_dGVzdHNlY3JldHRlc3RzZWNyZXQ=', "
                               "'disabled', 'a test endpoint') RETURNING id", a.provider_id),
            "token_id": one("SELECT id FROM public_tokens WHERE provider_id = %s LIMIT 1", a.provider_id),
            "user_id": one("SELECT user_id AS id FROM memberships WHERE provider_id = %s AND role = 'staff'",
                           a.provider_id),
            "notification_id": str(wait_for(lambda: db.execute(
                "SELECT id FROM notifications WHERE booking_id = %s", (booking_a,)).fetchone(), 30,
                "the booking's in-app notification")["id"]),
            "delivery_id": str(wait_for(lambda: db.execute(
                "SELECT d.id FROM deliveries d JOIN outbox o ON o.id = d.event_id WHERE o.aggregate_id = %s "
                "AND d.status = 'delivered'", (booking_a,)).fetchone(), 30, "the booking's email sent")["id"]),
            "session_id": one("SELECT s.id FROM sessions s JOIN memberships m ON m.user_id = s.user_id "
                              "WHERE m.provider_id = %s AND m.role = 'owner'", a.provider_id),
        }
    return World(a, b, booking_a, job_a, customer_a, customer_b, ids)


def _path(route: Route, world: World) -> str:
    values = {"provider_id": world.a.provider_id, "resource_id": world.a.resource_id,
              "service_id": world.a.service_id, "booking_id": world.booking_a, "job_id": world.job_a,
              "event": "booking_paid", "audience": "customer", "event_id": "evt_unknown", **world.ids}
    return PARAM.sub(lambda m: values.get(m.group(1), str(uuid.uuid4())), route.path)


# Lists with no id in their path answer every member with their own rows: refused there means none of A's.
LISTS = {"GET /v1/bookings", "GET /v1/providers", "GET /v1/resources", "GET /v1/services"}


def _request(route: Route, world: World) -> dict[str, Any]:
    """A request that would be valid for the right caller, so a refusal is about the caller, not the body."""
    start = future(days=300)
    samples: dict[str, dict[str, Any]] = {
        "POST /v1/bookings": {"json": world.a.slot_body(start)},
        "GET /v1/resources/{resource_id:uuid}/availability": {
            "params": {"from": start.date().isoformat(), "to": start.date().isoformat(),
                       "service_id": world.a.service_id}},
        "PUT /v1/resources/{resource_id:uuid}/hours": {"json": {"hours": []}},
        "POST /v1/resources/{resource_id:uuid}/blocks": {
            "json": {"start_at": start.isoformat(), "end_at": future(days=301).isoformat()}},
        "POST /v1/bookings/{booking_id:uuid}/deposit/claim": {"json": {"amount": 100, "reason": "a broken lamp"}},
        "GET /v1/payouts": {"params": {"provider": world.a.provider_id}},
        "GET /v1/bookings": {"params": {"provider": world.a.provider_id}},
        "GET /v1/resources": {"params": {"provider": world.a.provider_id}},
        "GET /v1/services": {"params": {"provider": world.a.provider_id}},
        "GET /v1/providers/{provider_id:uuid}/statement": {"params": {"from": "2030-01-01", "to": "2030-01-31"}},
    }
    default = {"json": {}} if route.method in ("POST", "PUT", "PATCH") else {}
    return samples.get(str(route), default)


def _refused(route: Route, world: World, response: httpx.Response) -> bool:
    if str(route) in LISTS and response.status_code == 200:
        return world.a.provider_id not in response.text
    return response.status_code in (401, 403, 404) and \
        response.headers.get("content-type") == "application/problem+json"


def _wrong_credentials(route: Route, world: World) -> dict[str, dict[str, str]]:
    """The credentials this route must refuse, by name."""
    wrong = {"none": NO_CREDENTIAL, "wrong system token": {"X-System-Token": "not-the-token"},
             "owner of another provider": world.b.owner,
             "public token of another provider": world.b.widget,
             "customer token of another booking": {"Authorization": f"Bearer {world.customer_b}"}}
    if Access.OWNER in route.access and Access.STAFF not in route.access:
        wrong["staff where an owner is needed"] = world.a.staff
    if Access.PUBLIC_TOKEN not in route.access:
        wrong["public token of this provider"] = world.a.widget
    if Access.SYSTEM in route.access and not route.access & (MEMBERS & ~Access.SYSTEM & ~Access.ADMIN):
        wrong["owner of this provider"] = world.a.owner  # a platform route
    if Access.USER in route.access:  # a user's own routes: any signed-in user; only the credential-less fail
        wrong = {k: v for k, v in wrong.items() if k in ("none", "wrong system token", "public token of another "
                                                         "provider", "customer token of another booking")}
    return wrong


def _right_credential(route: Route, world: World) -> dict[str, str]:
    if Access.OWNER in route.access or Access.USER in route.access:
        return world.a.owner
    if Access.STAFF in route.access:
        return world.a.staff
    if Access.PUBLIC_TOKEN in route.access:
        return world.a.widget
    if Access.CUSTOMER in route.access:
        return {"Authorization": f"Bearer {world.customer_a}"}
    return SYSTEM


# What a refused call must not have changed (rows a background process never touches meanwhile).
SNAPSHOT = """
SELECT (SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM
          (SELECT id, name, time_zone, commission_bps, contact_email, deleted_at FROM providers) t) AS providers,
       (SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM resources t) AS resources,
       (SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM services t) AS services,
       (SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM resource_services t) AS offers,
       (SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM resource_hours t) AS hours,
       (SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM resource_blocks t) AS blocks,
       (SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM
          (SELECT id, provider_id, revoked_at FROM public_tokens) t) AS public_tokens,
       (SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM
          (SELECT id, url, status, secret, deleted_at FROM webhook_endpoints) t) AS endpoints,
       (SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM notification_templates t) AS templates,
       (SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM memberships t) AS memberships,
       (SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM
          (SELECT id, status FROM bookings) t) AS bookings,
       (SELECT count(*) FROM jobs WHERE caller IS NOT NULL) AS accepted_jobs,
       (SELECT count(*) FROM idempotency_keys) AS keys,
       (SELECT count(*) FROM owner_audit_log) AS audit, (SELECT count(*) FROM booking_audit_log) AS booking_audit,
       (SELECT count(*) FROM sessions WHERE revoked_at IS NULL) AS sessions,
       (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM magic_links) AS magic_links,
       (SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM
          (SELECT id, status, next_attempt_at FROM deliveries WHERE provider_id IN (%(a)s, %(b)s)) t) AS deliveries,
       (SELECT count(*) FROM notifications WHERE read_at IS NOT NULL) AS read_notifications
"""


def test_every_route_refuses_every_wrong_credential_and_changes_nothing(
        client: httpx.Client, world: World, db: psycopg.Connection[dict[str, Any]]) -> None:
    table = [r for r in routes() if Access.PUBLIC not in r.access]
    providers = {"a": world.a.provider_id, "b": world.b.provider_id}
    wait_for(lambda: not db.execute("SELECT 1 FROM jobs WHERE status IN ('queued', 'running')").fetchone(), 30,
             "earlier jobs to settle")
    wait_for(lambda: not db.execute("SELECT 1 FROM outbox WHERE published_at IS NULL AND payload->>'provider_id' "
                                    "IN (%(a)s, %(b)s)", providers).fetchone(), 30, "A's and B's events published")
    wait_for(lambda: not db.execute("SELECT 1 FROM deliveries WHERE provider_id IN (%(a)s, %(b)s) "
                                    "AND status <> 'delivered'", providers).fetchone(), 30, "A's and B's mail out")
    before = db.execute(SNAPSHOT, providers).fetchone()
    failures = []
    for route in table:
        path = _path(route, world)
        for name, headers in _wrong_credentials(route, world).items():
            response = client.request(route.method, path, **_request(route, world),
                                      headers={"Idempotency-Key": new_key(), **headers})
            if not _refused(route, world, response):
                failures.append(f"{route} with {name}: {response.status_code} {response.text[:120]}")
    assert not failures, "\n".join(failures)
    assert db.execute(SNAPSHOT, providers).fetchone() == before


def test_the_right_credential_gets_through_every_route(client: httpx.Client, world: World) -> None:
    """Not refused, and every read of A's own rows answers 200 (writes may refuse the sample body)."""
    table = [r for r in routes() if Access.PUBLIC not in r.access]
    # what ends the credential or the provider itself goes last
    table.sort(key=lambda r: (r.path.startswith("/v1/auth/sessions"), r.method == "DELETE",
                              r.path == "/v1/providers/{provider_id:uuid}"))
    refused = []
    for route in table:
        headers = _right_credential(route, world)
        response = client.request(route.method, _path(route, world), **_request(route, world),
                                  headers={"Idempotency-Key": new_key(), **headers})
        reads_own_rows = route.method == "GET" and "event_id" not in route.path
        if response.status_code in (401, 403) or response.status_code >= 500 or \
                (reads_own_rows and response.status_code != 200):
            refused.append(f"{route}: {response.status_code} {response.text[:160]}")
    assert not refused, "\n".join(refused)


# --- the credentials, one by one --------------------------------------------------------------------------

def test_a_customer_token_reads_and_cancels_its_one_booking(client: httpx.Client, database_url: str) -> None:
    catalog = make_catalog(database_url)
    booking_id, _, token = _book(client, catalog, days=210)
    other_id, _, _ = _book(client, catalog, days=211)
    customer = {"Authorization": f"Bearer {token}"}

    assert client.get(f"/v1/bookings/{booking_id}", headers=customer).json()["id"] == booking_id
    assert client.get(f"/v1/bookings/{other_id}", headers=customer).status_code == 404
    assert client.get("/v1/bookings", headers=customer).status_code == 403
    assert client.post(f"/v1/bookings/{other_id}/cancel", json={},
                       headers={"Idempotency-Key": new_key(), **customer}).status_code == 404
    cancelled = client.post(f"/v1/bookings/{booking_id}/cancel", json={},
                            headers={"Idempotency-Key": new_key(), **customer})
    assert cancelled.status_code == 202, cancelled.text
    job = wait_job(client, cancelled.json()["job_id"], headers=customer)
    assert job["status"] == "succeeded", job
    audit = client.get(f"/v1/bookings/{booking_id}", headers=customer).json()["audit"]
    assert audit[-1]["to_status"] == "cancelled"
    assert audit[-1]["actor"] == "customer" and audit[-1]["actor_id"] == booking_id
    assert audit[0]["actor"] == "public_token"  # created by the widget


def test_a_public_token_sees_the_bookings_it_made_not_its_siblings(
        client: httpx.Client, database_url: str, db: psycopg.Connection[dict[str, Any]]) -> None:
    catalog = make_catalog(database_url)
    sibling = {"Authorization": f"Bearer {issue_public_token(db, catalog.provider_id)}"}
    booking_id, job_id, _ = _book(client, catalog, days=212)

    assert client.get(f"/v1/bookings/{booking_id}", headers=catalog.widget).status_code == 200
    assert client.get(f"/v1/bookings/{booking_id}", headers=sibling).status_code == 404
    assert client.get(f"/v1/jobs/{job_id}", headers=sibling).status_code == 404
    owner_view = client.get(f"/v1/jobs/{job_id}", headers=catalog.owner).json()
    assert "customer_token" not in owner_view["result"]  # only its creator is shown the customer's token
    assert client.get("/v1/bookings", headers=catalog.widget).status_code == 403


def test_a_revoked_public_token_fails_at_once_and_a_wrong_origin_is_refused(
        client: httpx.Client, database_url: str, db: psycopg.Connection[dict[str, Any]]) -> None:
    catalog = make_catalog(database_url)
    pinned = issue_public_token(db, catalog.provider_id, origins=["https://salon.example"])
    read = f"/v1/resources/{catalog.resource_id}"
    bearer = {"Authorization": f"Bearer {pinned}"}
    assert client.get(read, headers={**bearer, "Origin": "https://salon.example"}).status_code == 200
    assert client.get(read, headers={**bearer, "Origin": "https://evil.example"}).status_code == 403

    created = client.post(f"/v1/providers/{catalog.provider_id}/public-tokens", json={"name": "site"},
                          headers=catalog.owner)
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert token.startswith("pk_") and len(token) >= 40
    listed = client.get(f"/v1/providers/{catalog.provider_id}/public-tokens", headers=catalog.owner).json()
    assert token not in str(listed) and any(t["prefix"] == token[:10] for t in listed)
    assert client.get(read, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    revoked = client.delete(f"/v1/providers/{catalog.provider_id}/public-tokens/{created.json()['id']}",
                            headers=catalog.owner)
    assert revoked.status_code == 204
    assert client.get(read, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert client.post(f"/v1/providers/{catalog.provider_id}/public-tokens", json={},
                       headers=catalog.staff).status_code == 403


def test_an_owners_catalog_change_and_cancel_are_audited_with_the_verified_actor(
        client: httpx.Client, database_url: str, db: psycopg.Connection[dict[str, Any]]) -> None:
    catalog = make_catalog(database_url)
    changed = client.patch(f"/v1/resources/{catalog.resource_id}", json={"name": "Chair 2"}, headers=catalog.owner)
    assert changed.status_code == 200, changed.text
    booking_id, _, _ = _book(client, catalog, days=214)
    cancel = client.post(f"/v1/bookings/{booking_id}/cancel", json={},
                         headers={"Idempotency-Key": new_key(), **catalog.staff})
    assert wait_job(client, cancel.json()["job_id"], headers=catalog.staff)["status"] == "succeeded"

    log = client.get(f"/v1/providers/{catalog.provider_id}/audit-log", headers=catalog.owner).json()["items"]
    actions = {entry["action"]: entry for entry in log}
    assert actions["resource.update"]["actor_role"] == "owner"
    assert actions["resource.update"]["after"]["name"] == "Chair 2"
    assert actions["booking.cancelled"]["actor_role"] == "staff"
    booking = client.get(f"/v1/bookings/{booking_id}", headers=catalog.owner).json()
    assert booking["audit"][-1]["actor"] == "user" and booking["audit"][-1]["actor_role"] == "staff"
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("DELETE FROM owner_audit_log WHERE provider_id = %s", (catalog.provider_id,))


def test_a_header_cannot_make_a_caller_the_system(client: httpx.Client, database_url: str) -> None:
    catalog = make_catalog(database_url)
    booking_id, _, token = _book(client, catalog, days=215)
    forged = client.post(f"/v1/bookings/{booking_id}/cancel", json={},
                         headers={"Idempotency-Key": new_key(), "X-System-Token": "anything",
                                  "Authorization": f"Bearer {token}"})
    assert forged.status_code == 403 and forged.json()["code"] == "FORBIDDEN"


def test_a_platform_admin_acts_on_any_provider_and_its_widget_sees_no_money(
        client: httpx.Client, database_url: str, db: psycopg.Connection[dict[str, Any]]) -> None:
    catalog = make_catalog(database_url)
    admin = {"Authorization": f"Bearer {member_session(db, None, None, platform_role='admin')}"}
    assert client.get(f"/v1/providers/{catalog.provider_id}/balance", headers=admin).status_code == 200
    assert client.get(f"/v1/providers/{catalog.provider_id}", headers=admin).json()["commission_bps"] == 1000
    seen_by_widget = client.get(f"/v1/providers/{catalog.provider_id}", headers=catalog.widget).json()
    seen_by_staff = client.get(f"/v1/providers/{catalog.provider_id}", headers=catalog.staff).json()
    for view in (seen_by_widget, seen_by_staff):
        assert view["id"] == catalog.provider_id
        assert not {"commission_bps", "payout_account", "contact_email"} & set(view)
    changed = client.patch(f"/v1/providers/{catalog.provider_id}", json={"commission_bps": 500},
                           headers=catalog.owner)
    assert changed.status_code == 403  # the commission is the platform's
    assert client.patch(f"/v1/providers/{catalog.provider_id}", json={"commission_bps": 500},
                        headers=admin).json()["commission_bps"] == 500


def test_a_preflight_is_answered_without_a_credential(client: httpx.Client, database_url: str) -> None:
    catalog = make_catalog(database_url)
    for path in (f"/v1/providers/{catalog.provider_id}/webhook-endpoints", "/v1/bookings"):
        response = client.options(path, headers=NO_CREDENTIAL)
        assert response.status_code in (200, 204), (path, response.status_code, response.text)


def test_the_statement_takes_the_providers_local_dates_and_errors_name_the_public_parameter(
        client: httpx.Client, database_url: str) -> None:
    catalog = make_catalog(database_url)  # (the world's provider is deleted by the right-credential walk)
    path = f"/v1/providers/{catalog.provider_id}/statement"
    by_dates = client.get(path, params={"from": "2030-07-01", "to": "2030-07-31"}, headers=catalog.owner)
    assert by_dates.status_code == 200, by_dates.text
    body = by_dates.json()  # Europe/Berlin in summer: local midnight is 22:00 UTC the day before; `to` inclusive
    assert (body["from"], body["to"]) == ("2030-07-01T00:00:00+02:00", "2030-08-01T00:00:00+02:00")
    missing = client.get(path, params={"to": "2030-07-31"}, headers=catalog.owner)
    assert missing.status_code == 400 and "'from'" in missing.json()["detail"]
    assert "from_" not in missing.text
    naive = client.get(path, params={"from": "2030-07-01T00:00:00", "to": "2030-07-31"}, headers=catalog.owner)
    assert naive.status_code == 400 and naive.json()["errors"][0]["field"] == "from"
