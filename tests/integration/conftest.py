"""Fault-test fixtures: a private Redis server and a fresh database per module, and a fleet on them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import FAST_TIMINGS, inherited_env
from totem.embedded import PrivateRedis
from totem.fleet import Fleet


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def fault_fleet(isolated_database_url: str, private_redis: PrivateRedis, tmp_path: Path) -> Iterator[Fleet]:

    env = inherited_env()
    env.update(FAST_TIMINGS, DATABASE_URL=isolated_database_url, REDIS_URL=private_redis.url(),
               REDIS_NAMESPACE="totem-fault")
    logs = tmp_path / "logs"
    logs.mkdir()
    fleet = Fleet(env=env, log_dir=logs, mail_dir=tmp_path / "mail")
    try:
        yield fleet
    finally:
        fleet.stop()
