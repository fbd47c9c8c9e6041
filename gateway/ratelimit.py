"""Rate limits in Redis: GCRA over several buckets (per token, per client IP, per email, ...) in one step.

* One call to ``gateway/ratelimit.lua`` checks every bucket of a request and charges them only if ALL
  admit, so a request refused by one bucket consumes nothing from the others; the script runs atomically
  in Redis, so any number of gateway processes sharing Redis never admit more than
  burst + rate × elapsed per bucket.
* Time comes from Redis (``TIME``), never from a gateway's clock.
* A bucket with rate 0 is unlimited and never reaches Redis.
* If Redis cannot answer within ``timeout``, the request is admitted (``fail_open``): rate limiting
  protects the service, and a dead limiter must not become an outage of its own. Each such admission
  counts in ``totem_rate_limit_fail_open_total`` and a warning is logged at most every 10 s.
* Headers follow the IETF httpapi draft "RateLimit header fields for HTTP" (structured fields):
  ``RateLimit-Policy: "token";q=20;w=2`` and ``RateLimit: "token";r=3;t=1``, plus ``Retry-After`` on a
  refusal.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio
from prometheus_client import Counter
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger("totem.ratelimit")

SCRIPT = (Path(__file__).resolve().parent / "ratelimit.lua").read_text()

FAIL_OPEN = Counter("totem_rate_limit_fail_open", "Requests admitted without a rate-limit check: Redis failed")
REJECTIONS = Counter("totem_rate_limit_rejections", "Requests refused by a rate limit, by refusing bucket", ["bucket"])

WARN_EVERY_SECONDS = 10.0
_NAME = re.compile(r"[a-z][a-z0-9_-]*")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Bucket:
    """One limit a request is charged against; ``name`` is a policy name, ``key`` the identity limited."""

    name: str
    key: str
    rate: float  # requests per second; 0 = unlimited
    burst: int

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"bucket name {self.name!r}: lowercase letters, digits, '_' and '-' only")
        if self.rate < 0 or self.burst < 1:
            raise ValueError(f"bucket {self.name!r}: rate must be >= 0 and burst >= 1")

    @property
    def emission_interval_us(self) -> int:
        return max(1, round(1_000_000 / self.rate))

    @property
    def policy(self) -> str:
        """The draft's quota policy item: ``burst`` requests per the window that refills it."""
        return f'"{self.name}";q={self.burst};w={max(1, math.ceil(self.burst / self.rate))}'


@dataclass(frozen=True, slots=True)
class Verdict:
    admitted: bool
    retry_after: float  # seconds, 0 when admitted
    remaining: int  # requests left in the tightest bucket (0 and meaningless when fail_open)
    reset: float  # seconds until the tightest bucket is back to its full burst
    policy: str  # RateLimit-Policy for the buckets checked; "" when none was
    fail_open: bool = False
    bucket: str = ""  # the tightest bucket: the one the RateLimit header reports
    refused: tuple[str, ...] = ()  # the buckets that refused

    def headers(self) -> dict[str, str]:
        if not self.policy:
            return {}
        headers = {"RateLimit-Policy": self.policy}
        if self.fail_open:
            return headers
        if self.admitted:
            headers["RateLimit"] = f'"{self.bucket}";r={self.remaining};t={math.ceil(self.reset)}'
        else:
            # The draft: Retry-After SHOULD NOT point earlier than the end of the effective window.
            retry_after = str(max(1, math.ceil(self.retry_after)))
            headers["RateLimit"] = f'"{self.bucket}";r=0;t={retry_after}'
            headers["Retry-After"] = retry_after
        return headers


UNLIMITED = Verdict(admitted=True, retry_after=0.0, remaining=0, reset=0.0, policy="")


class RateLimiter:
    """Admits or refuses a request against its buckets with one EVALSHA on a client of its own."""

    def __init__(self, redis_url: str, namespace: str, *, timeout: float = 0.1) -> None:
        self.namespace = namespace
        # Short timeouts and no retries: a slow or dead Redis costs a request at most ~2 × timeout.
        self.client = redis.asyncio.Redis.from_url(
            redis_url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0))
        self._script = self.client.register_script(SCRIPT)
        self._last_warning = -math.inf

    async def admit(self, buckets: Sequence[Bucket]) -> Verdict:
        limited = [bucket for bucket in buckets if bucket.rate > 0]
        if not limited:
            return UNLIMITED
        policy = ", ".join(bucket.policy for bucket in limited)
        keys = [f"{self.namespace}:rl:{bucket.name}:{bucket.key}" for bucket in limited]
        args = [value for bucket in limited for value in (bucket.emission_interval_us, bucket.burst)]
        try:
            reply = await self._script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            return self._fail_open(policy, exc)
        admitted, retry_after_us, remaining, reset_us, tightest, refused_at = reply
        refused = tuple(limited[i - 1].name for i in refused_at)
        for name in refused:
            REJECTIONS.labels(bucket=name).inc()
        return Verdict(admitted=bool(admitted), retry_after=retry_after_us / 1e6, remaining=int(remaining),
                       reset=reset_us / 1e6, policy=policy, bucket=limited[tightest - 1].name, refused=refused)

    def _fail_open(self, policy: str, exc: BaseException) -> Verdict:
        FAIL_OPEN.inc()
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY_SECONDS:
            self._last_warning = now
            # The error only: never the keys (tokens, addresses, email hashes).
            log.warning("rate limiter failing open: Redis unavailable (%s: %s)", type(exc).__name__, exc)
        return Verdict(admitted=True, retry_after=0.0, remaining=0, reset=0.0, policy=policy, fail_open=True)

    async def close(self) -> None:
        await self.client.aclose()


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client's address: the peer, or, when the peer is a trusted proxy, the first untrusted address
    in X-Forwarded-For read right to left (each proxy appends the address it received the request from).

    A malformed entry ends the walk at the last address checked, which is a trusted one: whatever lies
    left of garbage may have been written by the client.
    """
    if peer is None:
        return "unknown"
    address = _address(peer)
    if address is None:
        return peer
    if not forwarded_for:
        return str(address)
    for entry in reversed(forwarded_for.split(",")):
        if not _is_trusted(address, trusted):
            break
        hop = _address(entry.strip())
        if hop is None:
            break
        address = hop
    return str(address)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's ::ffff:a.b.c.d is the IPv4 client a.b.c.d
    return address


def _is_trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, trusted: Sequence[Network]) -> bool:
    return any(address in network for network in trusted)


def parse_networks(text: str) -> tuple[Network, ...]:
    """TRUSTED_PROXIES: comma-separated CIDRs (a bare address is a /32 or /128); host bits must be zero."""
    networks: list[Network] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry))
        except ValueError as exc:
            raise ValueError(f"TRUSTED_PROXIES: {entry!r} is not a network in CIDR notation ({exc})") from None
    return tuple(networks)
