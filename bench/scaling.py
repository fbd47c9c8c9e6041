"""Worker pool scaling: (b) again with the bookings pool restarted at 1, 2 and 4 processes (same threads each),
after a warm-up per size, so what one more process buys on this machine is measured rather than assumed."""

from __future__ import annotations

import signal
from datetime import datetime, timedelta
from typing import Any

from bench.bookings import Conn, booking_requests, db_now, measure, say, wait_terminal
from bench.load import run_load
from shared.registry import BOOKING_CREATE, JOB_TYPES
from totem.fleet import Fleet

BOOKINGS_POOL = JOB_TYPES[BOOKING_CREATE].pool
PROCESSES = (1, 2, 4)
WARM = 100


async def pool_scaling(conn: Conn, fleet: Fleet, servers: dict[str, int], resources: list[dict[str, str]],
                       count: int, concurrency: int, threads: int, first_day: datetime) -> dict[str, Any]:
    runs = []
    for k, processes in enumerate(PROCESSES):
        say(f"pool scaling: the bookings pool restarted with {processes} process(es) x {threads} threads")
        fleet.kill(BOOKINGS_POOL, signal.SIGTERM)
        fleet.start_worker(BOOKINGS_POOL, processes=processes, threads=threads)
        day = first_day + timedelta(days=60 * k)
        since = await db_now(conn)  # the warm-up: the new processes boot, import and connect
        await run_load("127.0.0.1", fleet.gateway_port,
                       booking_requests(resources, WARM, day, f"127.0.0.1:{fleet.gateway_port}"), concurrency)
        await wait_terminal(conn, since, WARM, quiet=True)
        result = await measure(conn, fleet, servers, resources, count, concurrency, day + timedelta(days=30))
        runs.append({"processes": processes, "threads": threads, **{key: result[key] for key in (
            "requests", "succeeded", "failed", "bookings_per_s", "accepted_per_s", "accept_p99_ms",
            "system_cpu_ms_per_booking", "cpu_ms_per_booking")}})
        say(f"  {processes} process(es): {result['bookings_per_s']:.0f} bookings/s")
    base = runs[0]["bookings_per_s"] or 1.0
    for run in runs:
        run["over_one_process"] = run["bookings_per_s"] / base
    return {"runs": runs}
