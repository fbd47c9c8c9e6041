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
    """A statement with its parameters, constants and whitespace made uniform (pg_stat_statements shows
    constants as $n too, NULL among them, unless the statement was prepared before its last reset: then it
    keeps the text as sent), to match the text it recorded to the query of QUERIES it came from."""
    text = re.sub(r"%\(\w+\)s|\$\d+|E?'(?:[^']|'')*'|\b\d+\b|\bnull\b", "?", text, flags=re.IGNORECASE)
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
    named: dict[str, list[float]] = {}  # one statement may be recorded as several (plans by parameter types)
    for r in rows:
        entry = named.setdefault(_NAMES.get(_shape(r["query"])) or _shape(r["query"])[:70], [0, 0.0])
        entry[0] += int(r["calls"])
        entry[1] += float(r["total_ms"])
    statements = [{
        "statement": name, "calls_per_booking": round(n / max(1, bookings), 2),
        "mean_ms": round(ms / max(1, n), 3), "share": round(ms / total_ms, 3),
    } for name, (n, ms) in sorted(named.items(), key=lambda kv: -kv[1][1])[:limit]]
    return {"bookings": bookings, "statements_per_booking": round(calls / max(1, bookings), 2),
            "exec_ms_per_booking": round(total_ms / max(1, bookings), 3), "top": statements}
