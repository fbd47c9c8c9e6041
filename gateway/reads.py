"""Reads the routes share: a named query's rows (once more on a fresh connection if Postgres restarted),
and the 404 for a provider that does not exist."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from gateway.problems import Problem
from gateway.state import GatewayState
from shared.db import QUERIES, with_reconnect
from shared.errors import Code


async def fetch_rows(state: GatewayState, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        async with state.pool.connection() as conn:
            cur = await conn.execute(QUERIES[query], params)
            return await cur.fetchall()

    return await with_reconnect(read)


async def require_provider(state: GatewayState, provider_id: UUID) -> None:
    if not await fetch_rows(state, "get_provider", {"id": provider_id}):
        raise Problem(Code.NOT_FOUND, f"provider {provider_id} does not exist")
