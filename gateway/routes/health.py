"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Response, get

from gateway.access import PUBLIC_ROUTE
from gateway.state import GatewayState
from shared.db import AsyncPool


class Health(msgspec.Struct, omit_defaults=True):
    status: str
    postgres: str | None = None
    postgres_read: str | None = None  # the read replica (DATABASE_READ_URL), when there is one
    redis: str | None = None


@get("/healthz", summary="The process is up", include_in_schema=True, opt=PUBLIC_ROUTE)
async def healthz() -> Health:
    return Health(status="ok")


async def _postgres(pool: AsyncPool) -> str:
    try:
        async with asyncio.timeout(2):
            async with pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return f"unavailable: {type(exc).__name__}"
    return "ok"


@get("/readyz", summary="Postgres (and its read replica, if any) and Redis are reachable", opt=PUBLIC_ROUTE)
async def readyz(state: GatewayState) -> Response[Health]:
    redis = "ok"
    postgres = await _postgres(state.pool)
    postgres_read = await _postgres(state.read_pool) if state.read_pool is not state.pool else None
    try:
        async with asyncio.timeout(2):
            await state.enqueuer.ping()
    except Exception as exc:  # noqa: BLE001
        redis = f"unavailable: {type(exc).__name__}"
    ready = postgres == "ok" and postgres_read in (None, "ok") and redis == "ok"
    return Response(Health(status="ok" if ready else "unavailable", postgres=postgres, postgres_read=postgres_read,
                           redis=redis), status_code=200 if ready else 503)
