"""Litestar app factory: routes, middleware, problem handlers, and the lifespan that owns the pools."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import structlog
from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.openapi import OpenAPIConfig
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter, Gauge

from gateway.access import PUBLIC_ROUTE, authorize, current_grant
from gateway.cors import cors_middleware
from gateway.idempotency import CommandAcceptor
from gateway.openapi_docs import allow_every_method, document_problems
from gateway.problems import EXCEPTION_HANDLERS
from gateway.ratelimit import RateLimiter, Verdict
from gateway.routes import (
    audit_log,
    auth,
    availability,
    bookings,
    connect,
    health,
    jobs,
    lifecycle,
    members,
    money,
    notification_templates,
    notifications,
    public_tokens,
    webhook_endpoints,
    webhooks,
)
from gateway.routes.catalog import catalog_router
from gateway.web import routes as web_routes
from shared.broker import make_enqueuer
from shared.config import Settings
from shared.db import AsyncPool, open_async_pool
from shared.logs import configure_logging


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    """Give every request an id (or keep the caller's X-Request-Id), echo it, and bind it to the logs."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")

    return middleware


def rate_limit_headers_middleware(app: ASGIApp) -> ASGIApp:
    """Tell a rate-limited caller where it stands (``RateLimit-Policy``, ``RateLimit``) on every answer."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return

        async def send_with_limits(message: Message) -> None:
            verdict = scope.get("state", {}).get("rate_limit")
            if message["type"] == "http.response.start" and isinstance(verdict, Verdict):
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k.lower().encode(), v.encode()) for k, v in verdict.headers().items()
                         if k.lower().encode() not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await app(scope, receive, send_with_limits)

    return middleware


# The jobs the gateway handed to the broker, per queue: "sent", or "dropped" (Redis down: the scheduler's
# sweeper enqueues those from Postgres).
ENQUEUED = Counter("totem_gateway_jobs_enqueued", "Jobs the gateway enqueued, by queue and outcome",
                   ["queue", "outcome"])


# The gateway's Postgres pools, sampled every second (summed over the gateway's processes), by pool: "primary",
# and "read" when DATABASE_READ_URL opens one of its own.
POOL_IN_USE = Gauge("totem_gateway_db_connections_in_use", "Pooled Postgres connections lent out", ["pool"],
                    multiprocess_mode="livesum")
POOL_WAITING = Gauge("totem_gateway_db_requests_waiting", "Requests waiting for a pooled Postgres connection",
                     ["pool"], multiprocess_mode="livesum")


async def _watch_pools(pools: dict[str, AsyncPool]) -> None:
    while True:
        for name, pool in pools.items():
            stats = pool.get_stats()
            POOL_IN_USE.labels(name).set(stats.get("pool_size", 0) - stats.get("pool_available", 0))
            POOL_WAITING.labels(name).set(stats.get("requests_waiting", 0))
        await asyncio.sleep(1)


class MetricsController(PrometheusController):
    opt = PUBLIC_ROUTE  # scraped by Prometheus; keep it off the public internet at the network
    include_in_schema = False  # Prometheus' text format, not an operation of the API


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level, "gateway")

    async def open_pool(url: str, name: str) -> AsyncPool:
        # The transaction is the idempotency key's in-flight lease: a stuck one is cut off by Postgres.
        lease_ms = str(int(settings.idempotency_lease_seconds * 1000))
        return await open_async_pool(url, max_size=settings.db_pool_max, name=name,
                                     wait_seconds=settings.db_pool_wait_seconds,
                                     session={"idle_in_transaction_session_timeout": lease_ms})

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            pool = await open_pool(settings.database_url, "totem-gateway")
            stack.push_async_callback(pool.close)
            pools = {"primary": pool}
            if settings.database_read_url:
                pools["read"] = await open_pool(settings.database_read_url, "totem-gateway-read")
                stack.push_async_callback(pools["read"].close)
            enqueuer = make_enqueuer(settings,
                                     counted=lambda queue, outcome, n: ENQUEUED.labels(queue, outcome).inc(n))
            stack.push_async_callback(enqueuer.close)
            limiter = RateLimiter(settings.redis_url, settings.redis_namespace)
            stack.push_async_callback(limiter.close)
            app.state.pool = pool
            app.state.read_pool = pools.get("read", pool)
            app.state.enqueuer = enqueuer
            app.state.limiter = limiter
            app.state.acceptor = CommandAcceptor(pool, enqueuer, settings)
            watcher = asyncio.get_running_loop().create_task(_watch_pools(pools))
            stack.callback(watcher.cancel)
            yield

    prometheus = PrometheusConfig(app_name="totem_gateway", prefix="totem_http", group_path=True, exclude=["/metrics"])
    app = Litestar(
        route_handlers=[bookings.create_booking, bookings.list_bookings, bookings.get_booking, bookings.refund_quote,
                        jobs.get_job,
                        lifecycle.cancel_booking, lifecycle.complete_booking, lifecycle.mark_booking_paid,
                        lifecycle.approve_booking, lifecycle.decline_booking, lifecycle.check_in_booking,
                        lifecycle.check_out_booking, lifecycle.claim_deposit, lifecycle.release_deposit,
                        availability.slot_availability, catalog_router, webhooks.stripe_webhook,
                        webhooks.get_stripe_event, money.provider_balance, money.provider_statement,
                        money.list_payouts, money.run_reconciliation, notifications.list_notifications,
                        notifications.mark_notification_read, notifications.list_deliveries,
                        notifications.retry_delivery, webhook_endpoints.router, health.healthz, health.readyz,
                        notification_templates.router, MetricsController, *auth.ROUTES, members.router,
                        audit_log.list_audit_log, public_tokens.router, connect.create_stripe_account,
                        *web_routes()],
        middleware=[request_id_middleware, cors_middleware, rate_limit_headers_middleware, prometheus.middleware],
        guards=[authorize],
        dependencies={"grant": Provide(current_grant, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        state=State({"settings": settings}),
        openapi_config=OpenAPIConfig(title="Totem", version="0.1.0",
                                     description="Booking-and-payments backend: thin ingress gateway.",
                                     openapi_router=Router("/schema", route_handlers=[], opt=PUBLIC_ROUTE,
                                                           include_in_schema=False)),
        debug=False,
    )
    document_problems(app)
    allow_every_method(app)
    return app
