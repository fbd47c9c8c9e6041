"""Where Postgres's time goes during (b): pg_stat_statements, each statement named by the query of
sql/queries it is (or its first words), with calls per booking (the round trips a booking costs) and its
share of the execution time. The bench's private server is restarted once with the module preloaded (the
setting stays in that server's own data folder); on a server given by DATABASE_URL without it, the figures
are skipped and the report says so."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg.rows import dict_row

from bench.rows import one_row
from shared.db import QUERIES
from totem.embedded import PrivatePostgres

MODULE = "pg_stat_statements"


def preload(server: PrivatePostgres) -> None:
    """Restart the bench's own server with pg_stat_statements loaded, unless it is already."""
    with psycopg.connect(server.url(), autocommit=True) as conn:
        if MODULE in str(one_row(conn, "SHOW shared_preload_libraries")[0]):
            return
        conn.execute(f"ALTER SYSTEM SET shared_preload_libraries = '{MODULE}'")
    port = server.port
    server.stop()
    server.start(port)


def install(url: str) -> str | None:
    """The extension in the bench's database; the reason when it cannot be."""
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE EXTENSION IF NOT EXISTS {MODULE}")
            conn.execute("SELECT pg_stat_statements_reset()")
    except psycopg.Error as exc:
        return f"{MODULE} unavailable: {str(exc).strip()[:200]}"
    return None


def reset(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT pg_stat_statements_reset()")


def _shape(text: str) -> str:
    """A statement with its parameters and whitespace made uniform, to match psycopg's text to QUERIES'."""
    text = re.sub(r"%\(\w+\)s|\$\d+", "?", text)
    return re.sub(r"\s+", " ", text).strip().lower()[:120]


_NAMES = {_shape(text): name for name, text in QUERIES.items()}


def top(url: str, bookings: int, limit: int = 12) -> dict[str, Any]:
    """The statements of the bench's database since the last reset, by total execution time."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        rows = conn.execute(
            "SELECT query, calls, total_exec_time AS total_ms, mean_exec_time AS mean_ms "
            f"FROM {MODULE} s JOIN pg_database d ON d.oid = s.dbid AND d.datname = current_database() "
            "ORDER BY total_exec_time DESC").fetchall()
    total_ms = sum(float(r["total_ms"]) for r in rows) or 1.0
    calls = sum(int(r["calls"]) for r in rows)
    statements = [{
        "statement": _NAMES.get(_shape(r["query"])) or _shape(r["query"])[:70],
        "calls_per_booking": round(int(r["calls"]) / max(1, bookings), 2),
        "mean_ms": round(float(r["mean_ms"]), 3), "share": round(float(r["total_ms"]) / total_ms, 3),
    } for r in rows[:limit]]
    return {"bookings": bookings, "statements_per_booking": round(calls / max(1, bookings), 2),
            "exec_ms_per_booking": round(total_ms / max(1, bookings), 3), "top": statements}
