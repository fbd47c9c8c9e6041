"""Test support: timings, waiting for what a test asserts, and a catalog. Processes are started by the one
launcher, ``totem.fleet.Fleet`` (re-exported here for the tests)."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from shared import tokens
from shared.db import QUERIES

ROOT = Path(__file__).resolve().parent.parent

# Short timings so recovery paths are exercised in seconds, not minutes.
FAST_TIMINGS = {
    "SCHEDULER_INTERVAL_SECONDS": "0.5",
    "SCHEDULER_LEASE_SECONDS": "3",
    "JOB_LEASE_SECONDS": "4",
    "JOB_REQUEUE_AFTER_SECONDS": "2",
    "IDEMPOTENCY_LEASE_SECONDS": "3",
    "SYSTEM_TOKEN": "test-system-token",
    "PAYOUT_MATURITY_SECONDS": "0",
    "RECONCILE_INTERVAL_SECONDS": "0",
    "LOG_LEVEL": "INFO",
    "WORKER_THREADS": "4",  # each test pool: 4 threads (the registry's sizes are for production)
    "NOTIFY_RETRY_SCHEDULE": "0,1,1,1",  # four attempts a second apart, then dead
    "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",  # test receivers listen on 127.0.0.1
    "RELAY_POLL_SECONDS": "0.2",
    "TOKEN_SECRET": "test-token-secret",
    # the limiter is proven by its own tests (tests/test_rate_limit.py, tests/test_access.py); elsewhere off
    "RATE_LIMIT_TOKEN_RPS": "0",
    "RATE_LIMIT_IP_RPS": "0",
}
SYSTEM_TOKEN = FAST_TIMINGS["SYSTEM_TOKEN"]
SYSTEM = {"X-System-Token": SYSTEM_TOKEN}


class SystemByDefault(httpx.Auth):
    """A test client's default credential: the system token, unless the request carries a credential of its
    own (or ``X-Test-No-Credential``, dropped before sending, to call as nobody). Tests of who may call what
    (tests/test_access.py) choose every credential explicitly."""

    def auth_flow(self, request: httpx.Request) -> Any:
        if request.headers.pop("x-test-no-credential", None) is None and not (
                "authorization" in request.headers or "x-system-token" in request.headers):
            request.headers["X-System-Token"] = SYSTEM_TOKEN
        yield request


NO_CREDENTIAL = {"X-Test-No-Credential": "1"}


def api_client(base_url: str, timeout: float = 10) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=timeout, auth=SystemByDefault())


# A developer's shell may point these at servers or sizes of its own; the test fleets set their own.
_NOT_INHERITED = ("PROMETHEUS_", "dramatiq_", "FAKE_STRIPE_", "STRIPE_API_BASE", "WORKER_", "PORT")


def inherited_env() -> dict[str, str]:
    """This process's environment, less what a test fleet must decide for itself."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)}


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_job(client: httpx.Client, job_id: str, timeout: float = 30,
             headers: dict[str, str] | None = None) -> dict[str, Any]:
    def terminal() -> dict[str, Any] | None:
        job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        return job if job["status"] in ("succeeded", "failed") else None

    return wait_for(terminal, timeout, f"job {job_id} terminal", interval=0.05)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Catalog:
    provider_id: str
    resource_id: str
    service_id: str
    duration_minutes: int = 30
    price: int = 2500
    public_token: str = ""  # the provider's widget token (pk_...)
    owner_token: str = ""  # a session of the provider's owner (st_...)
    staff_token: str = ""  # a session of a staff member (st_...)

    @property
    def widget(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.public_token}"}

    @property
    def owner(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.owner_token}"}

    @property
    def staff(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.staff_token}"}

    def slot_body(self, start_at: datetime, **overrides: Any) -> dict[str, Any]:
        body = {"kind": "slot", "resource_id": self.resource_id, "service_id": self.service_id,
                "start_at": start_at.isoformat(),
                "customer": {"name": "Grace Hopper", "email": "grace@example.com"}}
        return {**body, **overrides}


ALL_DAY = ("00:00", "24:00")


# Full refund a day ahead, half until the start, nothing after.
STANDARD_POLICY = [{"min_hours_before_start": 24, "refund_percent": 100},
                   {"min_hours_before_start": 0, "refund_percent": 50}]


def make_catalog(database_url: str, *, hold_ttl_seconds: int | None = None, time_zone: str = "Europe/Berlin",
                 hours: tuple[str, str] | None = ALL_DAY, price: int = 2500,
                 policy: list[dict[str, int]] | None = None) -> Catalog:
    """A provider with one slot resource offering one 30-minute service, open ``hours`` every day."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        provider = conn.execute(QUERIES["insert_provider"], {
            "slug": f"p-{uuid.uuid4().hex[:12]}", "name": "Test Salon", "time_zone": time_zone,
            "currency": "EUR", "commission_bps": 1000, "hold_ttl_seconds": hold_ttl_seconds,
            "cancellation_policy": Jsonb(STANDARD_POLICY if policy is None else policy)}).fetchone()
        assert provider
        resource = conn.execute(QUERIES["insert_resource"], {
            "provider_id": provider["id"], "kind": "slot", "name": "Master", "nightly_price": None}).fetchone()
        service = conn.execute(QUERIES["insert_service"], {
            "provider_id": provider["id"], "name": "Cut", "duration_minutes": 30, "price": price,
            "currency": "EUR"}).fetchone()
        assert resource and service
        conn.execute(QUERIES["offer_service"], {"resource_id": resource["id"], "service_id": service["id"]})
        for weekday in range(1, 8) if hours else ():
            conn.execute(QUERIES["insert_resource_hours"], {"resource_id": resource["id"], "weekday": weekday,
                                                            "opens_at": hours[0], "closes_at": hours[1]})
        public = issue_public_token(conn, provider["id"])
        owner = member_session(conn, provider["id"], "owner")
        staff = member_session(conn, provider["id"], "staff")
    return Catalog(str(provider["id"]), str(resource["id"]), str(service["id"]), price=price, public_token=public,
                   owner_token=owner, staff_token=staff)


def issue_public_token(conn: psycopg.Connection[Any], provider_id: Any, origins: list[str] | None = None) -> str:
    token = tokens.new_token(tokens.PUBLIC)
    conn.execute(QUERIES["insert_public_token"], {"digest": tokens.digest(token), "provider_id": provider_id,
                                                  "prefix": token[:tokens.SHOWN_PREFIX_LENGTH], "name": "test widget",
                                                  "allowed_origins": origins or []})
    return token


def member_session(conn: psycopg.Connection[Any], provider_id: Any, role: str | None,
                   platform_role: str | None = None) -> str:
    """A user (a member of ``provider_id`` with ``role``, or none) signed in: a session token, as a magic link
    would have given (the sign-in itself is proven in tests/test_sessions.py)."""
    user = conn.execute("INSERT INTO users (email, platform_role) VALUES (%s, %s) RETURNING id",
                        (f"{role or platform_role or 'user'}-{uuid.uuid4().hex[:10]}@example.com",
                         platform_role)).fetchone()
    assert user
    if role is not None:
        conn.execute("INSERT INTO memberships (user_id, provider_id, role, accepted_at) VALUES (%s, %s, %s, now())",
                     (user["id"], provider_id, role))
    token = tokens.new_token(tokens.SESSION)
    conn.execute("INSERT INTO sessions (user_id, token_sha256, expires_at) VALUES (%s, %s, now() + interval '1 day')",
                 (user["id"], tokens.digest(token)))
    return token


def book_slot(client: httpx.Client, catalog: Catalog, days: int) -> str:
    """Book the catalog's slot ``days`` ahead and wait for the hold; returns the booking id."""
    accepted = client.post("/v1/bookings", json=catalog.slot_body(future(days=days)),
                           headers={"Idempotency-Key": new_key(), **catalog.widget})
    job = wait_job(client, accepted.json()["job_id"], headers=catalog.widget)
    assert job["status"] == "succeeded", job
    return str(job["result"]["booking_id"])


def future(days: int = 30, hour: int = 10) -> datetime:
    base = datetime.now(UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    return base + timedelta(days=days)


def new_key() -> str:
    return uuid.uuid4().hex
