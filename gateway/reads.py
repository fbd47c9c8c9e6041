"""Reads the routes share: a named query's rows (once more on a fresh connection if Postgres restarted),
and the 404 for a provider that does not exist.

``lag_ok=True`` marks an owner's read that may trail the primary by a replica's lag (a booking made a moment ago
missing from a list): it runs on the read pool (DATABASE_READ_URL, else the primary). Everything else, and
every statement that writes, runs on the primary."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from gateway.problems import Problem
from gateway.state import GatewayState
from shared.db import QUERIES, with_reconnect
from shared.errors import Code


async def fetch_rows(state: GatewayState, query: str, params: dict[str, Any], *,
                     lag_ok: bool = False) -> list[dict[str, Any]]:
    pool = state.read_pool if lag_ok else state.pool

    async def read() -> list[dict[str, Any]]:
        async with pool.connection() as conn:
            cur = await conn.execute(QUERIES[query], params)
            return await cur.fetchall()

    return await with_reconnect(read)


async def require_provider(state: GatewayState, provider_id: UUID, *, lag_ok: bool = False) -> None:
    if not await fetch_rows(state, "get_provider", {"id": provider_id}, lag_ok=lag_ok):
        raise Problem(Code.NOT_FOUND, f"provider {provider_id} does not exist")
