"""One end-to-end booking measurement, the same for every phase that compares with another: N bookings
posted through the gateway at concurrency C, until every job is terminal (and whatever else the phase
waits for), with bookings/s, latencies and CPU seconds per part of the system over that window."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg

from bench.cpu import cpu_by_part, delta
from bench.load import build_post, percentile, run_load
from bench.rows import one_row_async
from shared.registry import BOOKING_CREATE
from totem.fleet import Fleet

Conn = psycopg.AsyncConnection[Any]


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def booking_requests(resources: list[dict[str, str]], count: int, first_day: datetime, host: str) -> list[bytes]:
    """``count`` slot bookings spread over the resources, each on a time of its own from ``first_day`` on."""
    out = []
    for i in range(count):
        res = resources[i % len(resources)]
        start = first_day + timedelta(minutes=30 * (i // len(resources)))
        body = json.dumps({"kind": "slot", "resource_id": res["resource_id"], "service_id": res["service_id"],
                           "start_at": start.isoformat(),
                           "customer": {"name": "Bench Customer", "email": "bench@example.com"}}).encode()
        out.append(build_post(host, "/v1/bookings", body, {"Idempotency-Key": uuid.uuid4().hex,
                                                           "Authorization": f"Bearer {res['token']}"}))
    return out


async def measure(conn: Conn, fleet: Fleet, servers: dict[str, int], resources: list[dict[str, str]], count: int,
                  concurrency: int, first_day: datetime,
                  settle: Callable[[], Awaitable[None]] | None = None) -> dict[str, Any]:
    """Post ``count`` bookings and wait until every job is terminal, then for ``settle`` (if given); CPU is
    counted over the whole window, for every process the fleet runs at the start and our ``servers``."""
    host = f"127.0.0.1:{fleet.gateway_port}"
    requests = booking_requests(resources, count, first_day, host)
    run_start = await db_now(conn)
    started = time.monotonic()
    sessions = {name: proc.pid for name, proc in fleet.procs.items()}
    cpu_before = cpu_by_part(sessions, servers)
    say(f"posting {count} bookings at concurrency {concurrency} ...")
    ticker = asyncio.create_task(_progress(conn, run_start, count))
    load = await run_load("127.0.0.1", fleet.gateway_port, requests, concurrency)
    ticker.cancel()
    say(f"all {count} answered in {load.finished - load.started:.1f}s; waiting for every job to be terminal")
    await wait_terminal(conn, run_start, count)
    if settle is not None:
        await settle()
    cpu = delta(cpu_before, cpu_by_part(sessions, servers))
    seconds = time.monotonic() - started
    row = await one_row_async(conn, """
        SELECT count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               extract(epoch FROM max(updated_at) - min(created_at)) AS span,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at)) AS p50,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at)) AS p99
        FROM jobs WHERE created_at >= %s AND type = %s""", (run_start, BOOKING_CREATE))
    accepted = load.statuses.get(202, 0)
    return {
        "run_start": run_start, "seconds": seconds,
        "requests": count, "concurrency": concurrency, "statuses": load.statuses,
        "accepted_per_s": accepted / (load.finished - load.started),
        "accept_p50_ms": percentile(load.latencies, 50) * 1000,
        "accept_p99_ms": percentile(load.latencies, 99) * 1000,
        "succeeded": row["succeeded"], "failed": row["failed"],
        "bookings_per_s": row["succeeded"] / float(row["span"]),
        "accept_to_terminal_p50_ms": float(row["p50"]) * 1000,
        "accept_to_terminal_p99_ms": float(row["p99"]) * 1000,
        "cpu_seconds": cpu,
        "cpu_ms_per_booking": {k: round(v * 1000 / max(1, row["succeeded"]), 3) for k, v in cpu.items()},
        # the system's own CPU per booking (not the load generator's, not the rest of the machine's)
        "system_cpu_ms_per_booking": round(sum(v for k, v in cpu.items() if k not in ("other", "load generator"))
                                           * 1000 / max(1, row["succeeded"]), 3),
    }


async def db_now(conn: Conn) -> Any:
    """The database's clock, so job timestamps are compared with the clock that wrote them."""
    return (await one_row_async(conn, "SELECT now() AS t"))["t"]


async def _progress(conn: Conn, since: Any, total: int) -> None:
    while True:
        await asyncio.sleep(2)
        await _report(conn, since, total)


async def _report(conn: Conn, since: Any, total: int) -> int:
    row = await one_row_async(
        conn,
        "SELECT count(*) AS accepted, count(*) FILTER (WHERE status IN ('succeeded', 'failed')) AS terminal "
        "FROM jobs WHERE created_at >= %s AND type = %s", (since, BOOKING_CREATE))
    say(f"  accepted {row['accepted']}/{total}, terminal {row['terminal']}")
    return int(row["terminal"])


async def wait_terminal(conn: Conn, since: Any, total: int, quiet: bool = False,
                        job_type: str = BOOKING_CREATE) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        row = await (await conn.execute(
            "SELECT count(*) AS n FROM jobs WHERE created_at >= %s AND type = %s "
            "AND status IN ('succeeded', 'failed')", (since, job_type))).fetchone()
        if row and row["n"] >= total:
            return
        if not quiet and job_type == BOOKING_CREATE:
            await _report(conn, since, total)
        await asyncio.sleep(1 if not quiet else 0.2)
    raise RuntimeError("jobs did not all become terminal within 300 s")
