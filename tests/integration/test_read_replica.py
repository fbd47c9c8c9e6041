"""DATABASE_READ_URL: the owners' reads that tolerate a replica's lag go to the read pool, everything else to the
primary. Proven without timing: the "replica" is a copy of the primary frozen at one instant (a replica whose lag
never ends), read-only like a hot standby, holding a provider the primary never had. What a route answers then
says which database it read: the replica-only provider's balance, statement, payouts and availability are found,
a booking made after the copy is missing from the list but read back by id, and a slot the stale availability
shows free is still refused by the primary (no double booking)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
import redis
from litestar.testing import TestClient
from psycopg import sql
from psycopg.rows import dict_row

from gateway.app import create_app
from shared.booking import create_slot_booking, creation_params
from shared.config import Settings
from shared.db import use_msgspec_json
from shared.ledger import Entry, post
from shared.schemas import Customer, SlotBookingRequest
from tests.support import (
    FAST_TIMINGS,
    Catalog,
    api_client,
    future,
    inherited_env,
    make_catalog,
    new_key,
    wait_for,
    wait_job,
)
from totem.fleet import Fleet

REPLICA_ONLY_PENDING = 2250  # what the replica-only provider is owed (a capture of 2500 less 10 % commission)


@dataclass(frozen=True)
class Replicated:
    client: httpx.Client
    primary_url: str
    replica_url: str
    catalog: Catalog  # on both: made before the copy
    ghost: Catalog  # on the replica only: made after the copy
    before_copy: tuple[str, datetime]  # booking id and start of the booking the copy holds
    after_copy: tuple[str, datetime]  # booking id and start of one made through the gateway after the copy


def _url(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def _hold(database_url: str, catalog: Catalog, start: datetime) -> str:
    """A booking on hold, written straight to the database (as the bookings worker would)."""
    use_msgspec_json()  # what the workers' pools do: Structs into jsonb
    request = SlotBookingRequest(resource_id=uuid.UUID(catalog.resource_id), service_id=uuid.UUID(catalog.service_id),
                                 start_at=start, customer=Customer(name="Ada", email="ada@example.com"))
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as conn, conn.transaction():
        hold = create_slot_booking(conn, request, job_id=uuid.uuid4(), default_hold_ttl_seconds=3600,
                                   max_attempts=5, created=creation_params(None, FAST_TIMINGS["TOKEN_SECRET"]))
    return str(hold.booking_id)


def _money_only_on(replica_url: str, ghost: Catalog) -> None:
    """A capture owed to the ghost provider, and a payout batch of it, written to the replica alone."""
    provider = uuid.UUID(ghost.provider_id)
    with psycopg.connect(replica_url, row_factory=dict_row, autocommit=True) as conn, conn.transaction():
        post(conn, key=f"replica-only:{provider}", kind="capture", description="replica-only capture", entries=[
            Entry("platform_cash", None, "EUR", 2500),
            Entry("provider_pending", provider, "EUR", -REPLICA_ONLY_PENDING),
            Entry("platform_commission", None, "EUR", -(2500 - REPLICA_ONLY_PENDING))])
        period = conn.execute("INSERT INTO settlement_periods (provider_id, schedule, period) VALUES "
                              "(%s, 'daily', tstzrange(now() - interval '1 day', now(), '[)')) RETURNING id",
                              (provider,)).fetchone()
        assert period
        conn.execute("INSERT INTO payout_batches (provider_id, period_id, currency, total, destination) "
                     "VALUES (%s, %s, 'EUR', %s, 'acct_replica_only')", (provider, period["id"], REPLICA_ONLY_PENDING))


@pytest.fixture(scope="module")
def replicated(isolated_database_url: str, server_urls: tuple[str, str], redis_url: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicated]:
    admin_url = server_urls[0]
    primary_url = isolated_database_url
    catalog = make_catalog(primary_url)
    before = future(days=20)
    before_id = _hold(primary_url, catalog, before)

    primary = primary_url.rsplit("/", 1)[1]
    replica = f"{primary}_replica"
    replica_url = _url(admin_url, replica)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        # a copy needs its template to itself: no fleet has started, but the migration's connection (yoyo's) may
        # linger until it is garbage-collected
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                     "AND pid <> pg_backend_pid()", (primary,))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(replica),
                                                                      sql.Identifier(primary)))
    ghost = make_catalog(replica_url)
    _money_only_on(replica_url, ghost)
    with psycopg.connect(admin_url, autocommit=True) as conn:  # like a hot standby: it refuses every write
        conn.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(
            sql.Identifier(replica)))

    namespace = f"totem-replica-{uuid.uuid4().hex[:8]}"
    env = inherited_env()
    env.update(FAST_TIMINGS, DATABASE_URL=primary_url, DATABASE_READ_URL=replica_url, REDIS_URL=redis_url,
               REDIS_NAMESPACE=namespace)
    fleet = Fleet(env=env, log_dir=tmp_path_factory.mktemp("replica-logs"))
    try:
        base = fleet.start_gateway(ready="/readyz")
        fleet.start_worker("bookings")
        with api_client(base) as client:
            after = future(days=21)
            accepted = client.post("/v1/bookings", json=catalog.slot_body(after),
                                   headers={"Idempotency-Key": new_key(), **catalog.widget})
            assert accepted.status_code == 202, accepted.text  # accepted on the primary: the read pool refuses writes
            job = wait_job(client, accepted.json()["job_id"], headers=catalog.widget)
            assert job["status"] == "succeeded", job
            yield Replicated(client, primary_url, replica_url, catalog, ghost, (before_id, before),
                             (str(job["result"]["booking_id"]), after))
    finally:
        fleet.stop()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(replica)))
        keys = redis.Redis.from_url(redis_url)
        for key in keys.scan_iter(f"{namespace}:*", count=1000):
            keys.delete(key)
        keys.close()


def _in(database_url: str, query: str, *params: Any) -> bool:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, params).fetchone() is not None


def test_the_setup_is_a_frozen_read_only_copy_and_a_provider_the_primary_never_had(replicated: Replicated) -> None:
    r = replicated
    provider = "SELECT 1 FROM providers WHERE id = %s"
    assert _in(r.replica_url, provider, r.ghost.provider_id) and not _in(r.primary_url, provider, r.ghost.provider_id)
    booking = "SELECT 1 FROM bookings WHERE id = %s"
    assert _in(r.primary_url, booking, r.after_copy[0]) and not _in(r.replica_url, booking, r.after_copy[0])
    with psycopg.connect(r.replica_url, autocommit=True) as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("DELETE FROM idempotency_keys")


def test_a_write_goes_to_the_primary_and_a_booking_by_id_is_read_back_from_it(replicated: Replicated) -> None:
    r = replicated
    booking_id, _ = r.after_copy  # made through the gateway while the read pool refuses writes (the fixture)
    read = r.client.get(f"/v1/bookings/{booking_id}", headers=r.catalog.owner)
    assert read.status_code == 200 and read.json()["id"] == booking_id


def test_the_bookings_list_is_read_from_the_replica(replicated: Replicated) -> None:
    r = replicated
    page = r.client.get("/v1/bookings", params={"provider": r.catalog.provider_id}, headers=r.catalog.owner)
    assert page.status_code == 200, page.text
    # the copy's booking is listed; the one made after the copy is not there yet (the replica's lag)
    assert [b["id"] for b in page.json()["items"]] == [r.before_copy[0]]


def _slot_starts(client: httpx.Client, catalog: Catalog, day: datetime, **headers: str) -> set[datetime]:
    answer = client.get(f"/v1/resources/{catalog.resource_id}/availability", headers=headers,
                        params={"from": (day - timedelta(days=1)).date().isoformat(),
                                "to": (day + timedelta(days=1)).date().isoformat(), "service_id": catalog.service_id})
    assert answer.status_code == 200, answer.text
    return {datetime.fromisoformat(slot["start_at"]) for slot in answer.json()["slots"]}


def test_availability_is_read_from_the_replica_and_the_primary_still_refuses_a_double_booking(
        replicated: Replicated) -> None:
    r = replicated
    (_, held_in_copy), (_, held_after) = r.before_copy, r.after_copy
    assert held_in_copy not in _slot_starts(r.client, r.catalog, held_in_copy, **r.catalog.widget)
    # stale: the slot booked after the copy still shows free...
    assert held_after in _slot_starts(r.client, r.catalog, held_after, **r.catalog.widget)
    # ...and asking for it is accepted, then refused by the primary, where the booking is decided
    accepted = r.client.post("/v1/bookings", json=r.catalog.slot_body(held_after),
                             headers={"Idempotency-Key": new_key(), **r.catalog.widget})
    job = wait_job(r.client, accepted.json()["job_id"], headers=r.catalog.widget)
    assert job["status"] == "failed" and job["error"]["code"] == "BOOKING_SLOT_TAKEN", job
    with psycopg.connect(r.primary_url) as conn:
        held = conn.execute("SELECT count(*) FROM bookings WHERE resource_id = %s", (r.catalog.resource_id,)).fetchone()
    assert held == (2,)
    # and a resource only the replica has answers with its slots
    assert _slot_starts(r.client, r.ghost, future(days=5))


def test_balance_statement_and_payouts_are_read_from_the_replica(replicated: Replicated) -> None:
    r, provider = replicated, replicated.ghost.provider_id
    balance = r.client.get(f"/v1/providers/{provider}/balance")
    assert balance.status_code == 200, balance.text
    assert [(b["currency"], b["pending"]) for b in balance.json()["balances"]] == [("EUR", REPLICA_ONLY_PENDING)]
    today = datetime.now().date()
    statement = r.client.get(f"/v1/providers/{provider}/statement",
                             params={"from": (today - timedelta(days=1)).isoformat(),
                                     "to": (today + timedelta(days=1)).isoformat()})
    assert statement.status_code == 200, statement.text
    assert [e["description"] for e in statement.json()["entries"]] == ["replica-only capture"]
    payouts = r.client.get("/v1/payouts", params={"provider": provider})
    assert payouts.status_code == 200, payouts.text
    assert [(p["total"], p["destination"]) for p in payouts.json()["items"]] == [
        (REPLICA_ONLY_PENDING, "acct_replica_only")]


def test_credentials_are_looked_up_on_the_primary(replicated: Replicated) -> None:
    r = replicated
    # the replica-only provider's owner has a session in the replica alone: the gateway does not know it
    refused = r.client.get(f"/v1/providers/{r.ghost.provider_id}/balance", headers=r.ghost.owner)
    assert refused.status_code == 401, refused.text


def test_readiness_and_the_pool_gauges_cover_the_read_pool(replicated: Replicated) -> None:
    r = replicated
    ready = r.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["postgres_read"] == "ok", ready.text

    def sampled() -> bool:
        text = r.client.get("/metrics").text
        return all(f'{gauge}{{pool="{pool}"}}' in text for pool in ("primary", "read")
                   for gauge in ("totem_gateway_db_connections_in_use", "totem_gateway_db_requests_waiting"))

    wait_for(sampled, 10, "both pools' gauges on /metrics")


def test_without_a_read_url_the_read_pool_is_the_primary(database_url: str, redis_url: str) -> None:
    env = {**FAST_TIMINGS, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "DATABASE_READ_URL": ""}
    settings = Settings.from_env(env)
    assert settings.database_read_url is None
    app = create_app(settings)
    with TestClient(app) as client:  # runs the lifespan: the pools open
        assert app.state.read_pool is app.state.pool
        ready = client.get("/readyz")
        assert ready.status_code == 200 and "postgres_read" not in ready.json(), ready.text
