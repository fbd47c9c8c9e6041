"""Settings from the environment: one msgspec Struct, built once by each entry point and passed down."""

from __future__ import annotations

import functools
import ipaddress
import os
from collections.abc import Mapping

import msgspec

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
SECRETS = ("system_token", "token_secret")
MIN_SECRET_LENGTH = 16


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str
    # A Postgres read replica for the owners' reads that tolerate its lag (bookings list, availability, balance,
    # statement, payouts); unset, they read the primary. Writes and everything else always use DATABASE_URL.
    database_read_url: str | None = None
    redis_url: str
    redis_namespace: str = "totem"
    # The job broker: unset, Dramatiq's Redis broker on REDIS_URL; `amqp://…`, RabbitMQ (Redis then only
    # keeps rate limits). Postgres is the source of truth either way: losing the broker loses nothing.
    broker_url: str | None = None

    @property
    def uses_rabbitmq(self) -> bool:
        return bool(self.broker_url) and str(self.broker_url).startswith(("amqp://", "amqps://"))
    port: int = 8000
    system_token: str = ""  # required (from_env): operations' credential; `totem up` makes a random one
    booking_hold_ttl_seconds: int = 900
    # Rentals: set, how long every request waits for its owner (else each resource's request_ttl_hours);
    # a deposit is authorised this long before the first night and may be claimed this long after check-out.
    booking_request_ttl_seconds: int | None = None
    deposit_authorize_before_hours: float = 48.0
    deposit_claim_window_hours: float = 72.0
    scheduler_interval_seconds: float = 5.0
    scheduler_lease_seconds: float = 15.0
    scheduler_metrics_port: int = 9200
    job_lease_seconds: float = 30.0
    job_requeue_after_seconds: float = 30.0
    job_max_attempts: int = 5
    idempotency_ttl_seconds: int = 86_400
    idempotency_lease_seconds: float = 10.0
    db_pool_max: int = 10
    db_pool_wait_seconds: float = 5.0  # the gateway waits this long for a connection, then answers 503
    log_level: str = "INFO"
    # Stripe: the real SDK; STRIPE_API_BASE points it at the local fake (totem fake-stripe) in dev and tests.
    stripe_api_key: str = "sk_test_totem"
    stripe_api_base: str | None = None
    stripe_webhook_secret: str = "whsec_totem_dev"  # noqa: S105 - the fake Stripe's dev secret
    # Connect: connected accounts' events (account.updated) come through a Connect endpoint with its own secret
    stripe_connect_webhook_secret: str | None = None
    # The booking widget's card form: with this key (pk_live_… / pk_test_…) and no STRIPE_API_BASE, Stripe.js's
    # Payment Element from js.stripe.com; with STRIPE_API_BASE (the fake), a test-card form confirming there.
    stripe_publishable_key: str | None = None
    stripe_webhook_tolerance_seconds: int = 300
    stripe_max_attempts: int = 4
    stripe_timeout_seconds: float = 10.0
    # Money: payable matures this long after completion; the scheduler reconciles with Stripe this often.
    payout_maturity_seconds: float = 86_400.0
    reconcile_interval_seconds: float = 3_600.0
    payout_redrive_after_seconds: float = 600.0
    # Notifications: SMTP (unset: mail is not sent, deliveries wait), links, retries, webhook targets.
    smtp_url: str | None = None  # smtp://[user:password@]host:port[?starttls=true]; unset: emails fail (retried)
    mail_from: str = "Totem <no-reply@totem.localhost>"
    public_url: str | None = None  # base of links in messages; default http://localhost:$PORT
    notify_retry_schedule: str = "0,5,300,1800,7200,18000,36000,36000"  # seconds before each attempt
    notify_endpoint_disable_after_seconds: float = 432_000.0  # an endpoint failing this long is disabled
    notify_stuck_after_seconds: float = 600.0  # a delivery still pending this long with no open job is re-driven
    webhook_allow_private_targets: bool = False  # dev and tests only: let webhooks reach 127.0.0.1 etc.
    webhook_timeout_seconds: float = 15.0
    relay_batch_size: int = 200
    relay_poll_seconds: float = 0.25  # how often a relay looks for new outbox rows (NOTIFY is off by default)
    relay_metrics_port: int = 9201
    retention_jobs_days: float = 30.0  # finished jobs
    retention_events_days: float = 30.0  # published outbox rows, with their deliveries, attempts, feed rows
    # Access: derived tokens (customer, magic link) are HMACs under TOKEN_SECRET; sessions; rate limits.
    token_secret: str = ""  # required (from_env); `totem up` makes a random one
    magic_link_ttl_seconds: float = 900.0
    session_idle_seconds: float = 604_800.0  # a week without a request ends a session
    session_absolute_seconds: float = 2_592_000.0  # 30 days after sign-in it ends anyway
    rate_limit_token_rps: float = 10.0  # per public token; 0 = no limit
    rate_limit_token_burst: int = 20
    rate_limit_ip_rps: float = 5.0  # per client IP, for public-token and customer callers; 0 = no limit
    rate_limit_ip_burst: int = 20
    rate_limit_email_per_hour: float = 5.0  # magic links per address
    trusted_proxies: str = ""  # comma-separated CIDRs whose X-Forwarded-For is believed, right to left

    @property
    def retry_schedule(self) -> list[float]:
        return [float(part) for part in self.notify_retry_schedule.split(",") if part.strip()]

    @property
    def trusted_networks(self) -> tuple[IPNetwork, ...]:
        return _networks(self.trusted_proxies)

    @property
    def links_base(self) -> str:
        return (self.public_url or f"http://localhost:{self.port}").rstrip("/")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read TOTEM settings; DATABASE_URL and REDIS_URL are required (the CLI fills them in embedded mode)."""
        env = os.environ if env is None else env
        fields: dict[str, object] = {}
        for name in cls.__struct_fields__:
            value = env.get(name.upper())
            if value is not None and value != "":
                fields[name] = value
        if "database_url" not in fields or "redis_url" not in fields:
            raise RuntimeError(
                "DATABASE_URL and REDIS_URL must be set (run `totem up` for the embedded default)"
            )
        weak = [name.upper() for name in SECRETS if len(str(fields.get(name, ""))) < MIN_SECRET_LENGTH]
        if weak:  # no default: a published one would let anyone forge customer tokens or act as the system
            raise RuntimeError(f"{' and '.join(weak)} must be set to a secret of at least {MIN_SECRET_LENGTH} "
                               "characters (`totem up` makes random ones under its data folder)")
        settings = msgspec.convert(fields, cls, strict=False)
        settings.trusted_networks  # noqa: B018 - a malformed TRUSTED_PROXIES fails at start, not per request
        return settings


@functools.lru_cache(maxsize=8)
def _networks(text: str) -> tuple[IPNetwork, ...]:
    """TRUSTED_PROXIES parsed once: comma-separated CIDRs, host bits refused (ValueError names the entry)."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if part:
            try:
                out.append(ipaddress.ip_network(part))
            except ValueError:
                raise ValueError(f"TRUSTED_PROXIES: {part!r} is not a network (CIDR)") from None
    return tuple(out)
