"""The one row a bench query must return: a query that returns none stops the run with the query named."""

from __future__ import annotations

from typing import TypeVar

import psycopg
from psycopg.abc import Params

R = TypeVar("R")


def one_row(conn: psycopg.Connection[R], query: str, params: Params | None = None) -> R:
    return _required(conn.execute(query, params).fetchone(), query)


async def one_row_async(conn: psycopg.AsyncConnection[R], query: str, params: Params | None = None) -> R:
    return _required(await (await conn.execute(query, params)).fetchone(), query)


def _required(row: R | None, query: str) -> R:
    if row is None:
        raise RuntimeError(f"bench query returned no row: {query[:200]}")
    return row
