"""The rate limiter through the real gateway: two gateway processes sharing Redis admit no more than the
token's budget, a refusal says when to come back and that moment is honoured, and with Redis down requests
are served (fail open) and counted."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support import make_catalog, wait_for
from totem.embedded import PrivateRedis
from totem.fleet import Fleet

RATE, BURST = 2, 10


def _limited(fleet: Fleet) -> None:
    fleet.env.update(RATE_LIMIT_TOKEN_RPS=str(RATE), RATE_LIMIT_TOKEN_BURST=str(BURST), RATE_LIMIT_IP_RPS="0")


def test_two_gateways_sharing_redis_never_admit_more_than_the_budget(
        fault_fleet: Fleet, isolated_database_url: str) -> None:
    catalog = make_catalog(isolated_database_url)
    _limited(fault_fleet)
    base = fault_fleet.start_gateway(workers=2)
    path = f"/v1/resources/{catalog.resource_id}"
    with httpx.Client(base_url=base, timeout=10, headers=catalog.widget,
                      limits=httpx.Limits(max_keepalive_connections=0)) as client:  # new connections: both workers
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: client.get(path), range(80)))
        elapsed = time.monotonic() - started
    admitted = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert len(admitted) + len(refused) == len(answers)
    assert BURST <= len(admitted) <= BURST + RATE * elapsed + 1, (len(admitted), elapsed)
    assert "ratelimit-policy" in admitted[0].headers and "ratelimit" in admitted[0].headers
    problem = refused[0]
    assert problem.headers["content-type"] == "application/problem+json"
    assert problem.json()["code"] == "RATE_LIMITED"
    assert int(problem.headers["retry-after"]) >= 1

    # honour Retry-After: after exactly that long the token is admitted again
    with httpx.Client(base_url=base, timeout=10, headers=catalog.widget) as client:
        refusal = wait_for(lambda: (r := client.get(path)).status_code == 429 and r, 10, "a refusal")
        # refused calls charge nothing, so asking again meanwhile does not push the moment back
        wait_for(lambda: client.get(path).status_code == 200, int(refusal.headers["retry-after"]) + 1,
                 "admission again once Retry-After has passed", interval=0.2)


def test_with_redis_down_requests_are_served_and_counted(
        fault_fleet: Fleet, isolated_database_url: str, private_redis: PrivateRedis) -> None:
    catalog = make_catalog(isolated_database_url)
    _limited(fault_fleet)
    base = fault_fleet.start_gateway()
    private_redis.stop()
    with httpx.Client(base_url=base, timeout=10, headers=catalog.widget) as client:
        answers = [client.get(f"/v1/resources/{catalog.resource_id}") for _ in range(BURST + 5)]
        assert [a.status_code for a in answers] == [200] * len(answers)  # more than the burst: no limit held
        metrics = client.get("/metrics").text
    counted = [line for line in metrics.splitlines() if line.startswith("totem_rate_limit_fail_open_total")]
    assert counted and float(counted[0].split()[-1]) >= len(answers)
