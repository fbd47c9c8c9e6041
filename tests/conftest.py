"""Fixtures: each test run gets its own freshly created database and Redis namespace on real servers.

TOTEM_TEST_ADMIN_URL / TOTEM_TEST_REDIS_URL name the servers to use. Without them, the machine's
PostgreSQL (127.0.0.1:5432, user postgres) and Redis (127.0.0.1:6379) are used only if the run can really
log in there (a fresh Debian's own cluster asks for a password over TCP); otherwise the run starts private
servers from the system binaries, as `totem up` does. Nothing is ever skipped: a server that cannot be had
fails the run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from psycopg.rows import dict_row

from tests.support import FAST_TIMINGS, Catalog, api_client, inherited_env, make_catalog
from totem.embedded import PrivatePostgres, PrivateRedis
from totem.fleet import Fleet
from totem.migrate import create_database, drop_database, migrate


@pytest.fixture(scope="session")
def server_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    admin_url = os.environ.get("TOTEM_TEST_ADMIN_URL")
    redis_url = os.environ.get("TOTEM_TEST_REDIS_URL")
    private: list[PrivatePostgres | PrivateRedis] = []
    if admin_url is None:
        admin_url = "postgresql://postgres@127.0.0.1:5432/postgres"
        refused = _postgres_login_refused(admin_url)
        if refused:
            pg = PrivatePostgres(tmp_path_factory.mktemp("pg")).start()
            private.append(pg)
            admin_url = pg.url()
            print(f"\ncannot use PostgreSQL on 127.0.0.1:5432 ({refused}): started a private one on port {pg.port}")
    if redis_url is None:
        redis_url = "redis://127.0.0.1:6379/0"
        refused = _redis_refused(redis_url)
        if refused:
            rd = PrivateRedis(tmp_path_factory.mktemp("redis")).start()
            private.append(rd)
            redis_url = rd.url()
            print(f"\ncannot use Redis on 127.0.0.1:6379 ({refused}): started a private one on port {rd.port}")
    try:
        yield admin_url, redis_url
    finally:
        for server in private:
            server.stop()


def _postgres_login_refused(url: str) -> str | None:
    """Why the run cannot log in to ``url`` (not listening, password asked, role missing), or None."""
    try:
        with psycopg.connect(url, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:160]


def _redis_refused(url: str) -> str | None:
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
        return None
    except redis.RedisError as exc:
        return str(exc)[:160] or type(exc).__name__
    finally:
        client.close()


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:10]


def _fresh_database(admin_url: str, name: str) -> Iterator[str]:
    create_database(admin_url, name)
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    migrate(url)
    yield url
    drop_database(admin_url, name)


@pytest.fixture(scope="session")
def database_url(server_urls: tuple[str, str], run_id: str) -> Iterator[str]:
    yield from _fresh_database(server_urls[0], f"totem_test_{run_id}")


@pytest.fixture(scope="module")
def isolated_database_url(server_urls: tuple[str, str], run_id: str) -> Iterator[str]:
    """A database no shared fleet process touches (its scheduler would sweep this module's jobs)."""
    yield from _fresh_database(server_urls[0], f"totem_test_{run_id}_{uuid.uuid4().hex[:6]}")


@pytest.fixture(scope="session")
def redis_url(server_urls: tuple[str, str]) -> str:
    return server_urls[1]


@pytest.fixture(scope="session")
def redis_namespace(redis_url: str, run_id: str) -> Iterator[str]:
    namespace = f"totem-test-{run_id}"
    yield namespace
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{namespace}:*", count=1000):
        client.delete(key)


@pytest.fixture(scope="session")
def fleet_env(database_url: str, redis_url: str, redis_namespace: str) -> dict[str, str]:
    env = inherited_env()
    env.update(FAST_TIMINGS, DATABASE_URL=database_url, REDIS_URL=redis_url, REDIS_NAMESPACE=redis_namespace)
    return env


@pytest.fixture(scope="session")
def fleet(fleet_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """The shared fleet: the fake Stripe, one gateway, one worker per pool, one scheduler."""
    fleet = Fleet(env=fleet_env, log_dir=tmp_path_factory.mktemp("fleet-logs"),
                  mail_dir=tmp_path_factory.mktemp("mail"))
    try:
        fleet.start_all()
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture
def client(fleet: Fleet) -> Iterator[httpx.Client]:
    with api_client(fleet.base_url) as client:
        yield client


@pytest.fixture
def fake(fleet: Fleet) -> Iterator[httpx.Client]:
    """The shared fleet's fake Stripe, left as the next test expects it whatever this one armed: webhooks
    sent at once and once each, any it held delivered, every fault disarmed."""
    with httpx.Client(base_url=fleet.stripe_url, timeout=10) as client:
        yield client
        client.post("/_fake/webhooks", json={"hold": False, "copies": 1, "delay_seconds": 0}).raise_for_status()
        client.post("/_fake/webhooks/release", json={"order": "in_order"}).raise_for_status()
        client.delete("/_fake/faults").raise_for_status()


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[dict]]:  # type: ignore[type-arg]
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as conn:
        yield conn


@pytest.fixture
def catalog(database_url: str) -> Catalog:
    return make_catalog(database_url)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path
