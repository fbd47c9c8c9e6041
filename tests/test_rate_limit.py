"""The rate limiter against real Redis: GCRA over several buckets, all or nothing, on Redis's clock, safe
across processes, open when Redis is gone; the client address behind trusted proxies; the draft's headers."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis
from prometheus_client import REGISTRY

from gateway.ratelimit import Bucket, RateLimiter, Verdict, client_ip, parse_networks
from tests.support import ROOT, wait_for

T = TypeVar("T")


def with_limiter(url: str, namespace: str, use: Callable[[RateLimiter], Awaitable[T]], **kwargs: Any) -> T:
    async def run() -> T:
        limiter = RateLimiter(url, namespace, **kwargs)
        try:
            return await use(limiter)
        finally:
            await limiter.close()

    return asyncio.run(run())


def admit_all(url: str, namespace: str, requests: list[list[Bucket]]) -> list[Verdict]:
    """Admit each request in turn, one after the other, on one limiter."""
    async def use(limiter: RateLimiter) -> list[Verdict]:
        return [await limiter.admit(buckets) for buckets in requests]

    return with_limiter(url, namespace, use)


def fresh(name: str = "token", rate: float = 1.0, burst: int = 3) -> Bucket:
    return Bucket(name, uuid.uuid4().hex, rate, burst)


def test_the_burst_is_admitted_then_refused_until_the_retry_after_redis_gave(redis_url: str,
                                                                             redis_namespace: str) -> None:
    bucket = fresh(rate=4, burst=3)  # one request every 250 ms
    verdicts = admit_all(redis_url, redis_namespace, [[bucket]] * 5)
    assert [v.admitted for v in verdicts] == [True, True, True, False, False]
    assert [v.remaining for v in verdicts[:3]] == [2, 1, 0]
    refused = verdicts[3]
    assert refused.refused == ("token",) and refused.remaining == 0
    assert 0 < refused.retry_after <= 0.25
    assert verdicts[4].retry_after <= refused.retry_after  # asking again does not push the time back

    # asking meanwhile charges nothing: poll until admitted, which must be within the retry_after given
    after = wait_for(lambda: (v := admit_all(redis_url, redis_namespace, [[bucket]])[0]).admitted and v,
                     verdicts[4].retry_after + 1, "admission once retry_after has passed", interval=0.02)
    assert after.remaining == 0
    [again] = admit_all(redis_url, redis_namespace, [[bucket]])
    assert not again.admitted  # one emission interval bought one request, no more


def test_an_idle_bucket_vanishes_from_redis_once_it_is_full_again(redis_url: str, redis_namespace: str) -> None:
    bucket = fresh(rate=2, burst=5)
    verdict, = admit_all(redis_url, redis_namespace, [[bucket]])
    ttl_ms = redis.Redis.from_url(redis_url).pttl(f"{redis_namespace}:rl:token:{bucket.key}")
    assert 0 < ttl_ms <= verdict.reset * 1000 + 1
    assert verdict.reset == pytest.approx(0.5, abs=0.01)


def test_two_buckets_refuse_when_either_is_exhausted_and_a_refusal_charges_neither(
        redis_url: str, redis_namespace: str) -> None:
    # One request per 10 s: nothing refills while the test runs.
    small, large = fresh("ip", rate=0.1, burst=2), fresh("token", rate=0.1, burst=5)
    verdicts = admit_all(redis_url, redis_namespace, [[small, large]] * 6)
    assert [v.admitted for v in verdicts] == [True, True, False, False, False, False]
    assert all(v.refused == ("ip",) for v in verdicts[2:])
    assert verdicts[1].bucket == "ip" and verdicts[1].remaining == 0
    # The four refusals took nothing from the large bucket: of its 5, 2 were charged and this is the 3rd.
    alone, = admit_all(redis_url, redis_namespace, [[large]])
    assert alone.admitted and alone.remaining == 2

    # The other way round: the large bucket exhausted refuses a request the fresh small one would admit.
    other = fresh("ip", rate=0.1, burst=2)
    verdicts = admit_all(redis_url, redis_namespace, [[large]] * 2 + [[other, large]] * 3 + [[other]])
    assert [v.admitted for v in verdicts] == [True, True, False, False, False, True]
    assert all(v.refused == ("token",) and v.bucket == "token" for v in verdicts[2:5])
    assert verdicts[5].remaining == 1  # the three refusals charged nothing to `other`


def test_a_refusal_counts_in_the_rejections_metric_by_refusing_bucket(redis_url: str, redis_namespace: str) -> None:
    def rejected(bucket: str) -> float:
        return REGISTRY.get_sample_value("totem_rate_limit_rejections_total", {"bucket": bucket}) or 0.0

    before = rejected("email"), rejected("ip")
    email, ip = fresh("email", rate=0.1, burst=1), fresh("ip", rate=0.1, burst=1)
    admit_all(redis_url, redis_namespace, [[email, ip]] * 3)
    assert (rejected("email"), rejected("ip")) == (before[0] + 2, before[1] + 2)


def test_rate_zero_is_unlimited_and_never_reaches_redis(redis_url: str, redis_namespace: str) -> None:
    unlimited, limited = fresh("token", rate=0, burst=1), fresh("ip", rate=0.1, burst=50)
    verdicts = admit_all(redis_url, redis_namespace, [[unlimited]] * 50 + [[unlimited, limited]] * 50)
    assert all(v.admitted for v in verdicts)
    assert verdicts[0].headers() == {}
    assert verdicts[-1].policy == '"ip";q=50;w=500' and verdicts[-1].remaining == 0
    assert not redis.Redis.from_url(redis_url).exists(f"{redis_namespace}:rl:token:{unlimited.key}")


# Two OS processes, each with its own limiter and many requests in flight, race for one bucket.
RACER = """
import asyncio, json, sys, time
from gateway.ratelimit import Bucket, RateLimiter

async def main(url, namespace, key, seconds):
    limiter = RateLimiter(url, namespace, timeout=5)
    bucket = Bucket("token", key, 5, 10)
    await limiter.client.ping()
    print("ready", flush=True)
    sys.stdin.readline()
    start = await limiter.client.time()
    admitted = refused = 0
    deadline = time.monotonic() + seconds

    async def fire():
        nonlocal admitted, refused
        while time.monotonic() < deadline:
            verdict = await limiter.admit([bucket])
            assert not verdict.fail_open
            admitted += verdict.admitted
            refused += not verdict.admitted

    await asyncio.gather(*(fire() for _ in range(20)))
    end = await limiter.client.time()
    await limiter.close()
    print(json.dumps({"admitted": admitted, "refused": refused,
                      "start_us": start[0] * 1_000_000 + start[1], "end_us": end[0] * 1_000_000 + end[1]}))

asyncio.run(main(*sys.argv[1:4], float(sys.argv[4])))
"""


@pytest.fixture
def racers(redis_url: str, redis_namespace: str) -> Iterator[tuple[str, list[subprocess.Popen[str]]]]:
    key = uuid.uuid4().hex
    procs = [subprocess.Popen([sys.executable, "-c", RACER, redis_url, redis_namespace, key, "1.0"], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        yield key, procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def test_two_processes_racing_never_admit_more_than_burst_plus_rate_times_elapsed(
        racers: tuple[str, list[subprocess.Popen[str]]]) -> None:
    _, procs = racers
    for proc in procs:
        assert proc.stdout and proc.stdout.readline().strip() == "ready"
    for proc in procs:
        assert proc.stdin
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = [json.loads(proc.communicate(timeout=60)[0]) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)

    admitted = sum(r["admitted"] for r in results)
    elapsed = (max(r["end_us"] for r in results) - min(r["start_us"] for r in results)) / 1e6
    budget = 10 + 5 * elapsed  # burst 10, 5 per second, on Redis's clock
    assert admitted <= budget, (admitted, elapsed, results)
    assert admitted >= 10 and all(r["refused"] > 0 for r in results), results  # both really contended


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fail_open_total() -> float:
    return REGISTRY.get_sample_value("totem_rate_limit_fail_open_total") or 0.0


def test_redis_unreachable_admits_fail_open_counts_it_and_warns_once(
        redis_namespace: str, caplog: pytest.LogCaptureFixture) -> None:
    bucket = fresh(rate=1, burst=1)
    before = fail_open_total()
    caplog.set_level(logging.WARNING, logger="totem.ratelimit")
    verdicts = admit_all(f"redis://127.0.0.1:{closed_port()}/0", redis_namespace, [[bucket]] * 3)
    assert all(v.admitted and v.fail_open for v in verdicts)
    assert fail_open_total() == before + 3
    warnings = [r for r in caplog.records if r.name == "totem.ratelimit"]
    assert len(warnings) == 1 and bucket.key not in warnings[0].getMessage()
    assert verdicts[0].headers() == {"RateLimit-Policy": '"token";q=1;w=1'}


def test_a_redis_that_never_answers_costs_a_request_only_the_timeout(redis_namespace: str) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"

        async def use(limiter: RateLimiter) -> tuple[Verdict, float]:
            started = time.monotonic()
            verdict = await limiter.admit([fresh()])
            return verdict, time.monotonic() - started

        verdict, took = with_limiter(url, redis_namespace, use, timeout=0.2)
    assert verdict.admitted and verdict.fail_open
    assert 0.2 <= took < 1.0


def test_headers_follow_the_ietf_ratelimit_draft(redis_url: str, redis_namespace: str) -> None:
    token, ip = fresh("token", rate=10, burst=20), fresh("ip", rate=5, burst=20)
    first, = admit_all(redis_url, redis_namespace, [[token, ip]])
    assert first.headers() == {"RateLimit-Policy": '"token";q=20;w=2, "ip";q=20;w=4',
                               "RateLimit": '"ip";r=19;t=1'}  # equal remaining: the slower to refill

    admitted = Verdict(admitted=True, retry_after=0, remaining=3, reset=0.4, policy='"token";q=20;w=2',
                       bucket="token")
    assert admitted.headers() == {"RateLimit-Policy": '"token";q=20;w=2', "RateLimit": '"token";r=3;t=1'}
    refused = Verdict(admitted=False, retry_after=1.2, remaining=0, reset=2, policy='"token";q=20;w=2',
                      bucket="token", refused=("token",))
    assert refused.headers() == {"RateLimit-Policy": '"token";q=20;w=2', "RateLimit": '"token";r=0;t=2',
                                 "Retry-After": "2"}
    barely = Verdict(admitted=False, retry_after=0.001, remaining=0, reset=0.1, policy='"ip";q=1;w=1', bucket="ip")
    assert barely.headers()["Retry-After"] == "1"  # never 0: a client would retry at once


TRUSTED = parse_networks("10.0.0.0/8, 2001:db8::/32")


@pytest.mark.parametrize(("peer", "forwarded_for", "expected"), [
    ("203.0.113.7", None, "203.0.113.7"),
    ("203.0.113.7", "198.51.100.1", "203.0.113.7"),  # spoofed by a client talking to us directly
    ("10.0.0.5", None, "10.0.0.5"),
    ("10.0.0.5", "198.51.100.1", "198.51.100.1"),
    ("10.0.0.5", "6.6.6.6, 198.51.100.1, 10.1.2.3", "198.51.100.1"),  # right to left past our own hops
    ("10.0.0.5", "10.9.9.9,10.1.2.3", "10.9.9.9"),  # every hop ours: the furthest one
    ("10.0.0.5", "198.51.100.1, not-an-ip, 10.1.2.3", "10.1.2.3"),  # garbage stops the walk
    ("10.0.0.5", "", "10.0.0.5"),
    ("2001:db8::1", "2001:0db8:0:0::2, 2a00:1450::1", "2a00:1450::1"),
    ("2001:db8::1", "2a00:1450:0::1", "2a00:1450::1"),  # written in its canonical form
    ("2a00:1450::1", "198.51.100.1", "2a00:1450::1"),
    ("::ffff:10.0.0.5", "198.51.100.1", "198.51.100.1"),  # a dual-stack socket's IPv4 peer
    (None, "198.51.100.1", "unknown"),
])
def test_client_ip_honours_forwarded_for_only_from_trusted_proxies(peer: str | None, forwarded_for: str | None,
                                                                    expected: str) -> None:
    assert client_ip(peer, forwarded_for, TRUSTED) == expected


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert client_ip("10.0.0.5", "198.51.100.1", ()) == "10.0.0.5"


def test_trusted_proxies_parse_and_a_bad_entry_is_named() -> None:
    assert parse_networks("") == ()
    assert parse_networks(" 10.0.0.0/8 ,, 192.168.1.1,::1 ") == (
        ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.1.1/32"), ipaddress.ip_network("::1/128"))
    with pytest.raises(ValueError, match=re.escape("'10.0.0.1/8'")):
        parse_networks("192.168.0.0/16, 10.0.0.1/8")
    with pytest.raises(ValueError, match=re.escape("'proxy.internal'")):
        parse_networks("proxy.internal")
