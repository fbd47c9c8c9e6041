"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Response, get

from gateway.access import PUBLIC_ROUTE
from gateway.state import GatewayState


class Health(msgspec.Struct, omit_defaults=True):
    status: str
    postgres: str | None = None
    redis: str | None = None


@get("/healthz", summary="The process is up", include_in_schema=True, opt=PUBLIC_ROUTE)
async def healthz() -> Health:
    return Health(status="ok")


@get("/readyz", summary="Postgres and Redis are reachable", opt=PUBLIC_ROUTE)
async def readyz(state: GatewayState) -> Response[Health]:
    postgres, redis = "ok", "ok"
    try:
        async with asyncio.timeout(2):
            async with state.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        postgres = f"unavailable: {type(exc).__name__}"
    try:
        async with asyncio.timeout(2):
            await state.enqueuer.ping()
    except Exception as exc:  # noqa: BLE001
        redis = f"unavailable: {type(exc).__name__}"
    ready = postgres == "ok" and redis == "ok"
    return Response(Health(status="ok" if ready else "unavailable", postgres=postgres, redis=redis),
                    status_code=200 if ready else 503)
