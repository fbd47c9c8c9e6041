"""Accept latency at a fixed arrival rate (open loop), at 25/50/75/90 % of the capacity measured in this run
(end-to-end bookings/s of (b)), with the worker pools running: the latency curve a client sees at a given
load, which a closed loop at a fixed concurrency cannot show (it slows down with the server it measures).
Each point waits until its jobs are terminal before the next one starts, so no backlog spills over."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from bench.bookings import Conn, booking_requests, db_now, say, wait_terminal
from bench.cpu import cpu_by_part, delta
from bench.load import percentile, run_open_loop
from bench.rows import one_row_async
from shared.registry import BOOKING_CREATE
from totem.fleet import Fleet

FRACTIONS = (0.25, 0.5, 0.75, 0.9)


async def curve(conn: Conn, fleet: Fleet, servers: dict[str, int], resources: list[dict[str, str]],
                capacity: float, seconds: float, first_day: datetime) -> dict[str, Any]:
    host = f"127.0.0.1:{fleet.gateway_port}"
    points = []
    for k, fraction in enumerate(FRACTIONS):
        rate = capacity * fraction
        count = max(20, round(rate * seconds))
        requests = booking_requests(resources, count, first_day + timedelta(days=60 * k), host)
        say(f"open loop: {fraction:.0%} of capacity = {rate:.0f} bookings/s for {seconds:.0f}s ({count} requests)")
        since = await db_now(conn)
        sessions = {name: proc.pid for name, proc in fleet.procs.items()}
        cpu_before, started = cpu_by_part(sessions, servers), time.monotonic()
        load = await run_open_loop("127.0.0.1", fleet.gateway_port, requests, rate)
        cpu = delta(cpu_before, cpu_by_part(sessions, servers))
        wall = max(1e-9, time.monotonic() - started)
        # cores busy while the load was offered: the system's own (fleet, Postgres, Redis), and the whole machine's
        # (with the load generator and whatever else runs on this shared box)
        system = sum(v for k, v in cpu.items() if k not in ("other", "load generator")) / wall
        await wait_terminal(conn, since, count, quiet=True)
        row = await one_row_async(conn, """
            SELECT count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
                   extract(epoch FROM max(updated_at) - min(created_at))::float8 AS span
            FROM jobs WHERE created_at >= %s AND type = %s""", (since, BOOKING_CREATE))
        point = {
            "fraction": fraction, "rate_per_s": rate, "requests": count, "statuses": load.statuses,
            "offered_seconds": load.finished - load.started,
            "accept_p50_ms": percentile(load.latencies, 50) * 1000,
            "accept_p90_ms": percentile(load.latencies, 90) * 1000,
            "accept_p99_ms": percentile(load.latencies, 99) * 1000,
            "accept_max_ms": max(load.latencies, default=float("nan")) * 1000,
            "succeeded": row["succeeded"], "bookings_per_s": row["succeeded"] / max(1e-9, row["span"] or 0.0),
            "cores_busy": round(system, 2), "machine_cores_busy": round(sum(cpu.values()) / wall, 2),
            "cpu_seconds": cpu,
        }
        say(f"  p50 {point['accept_p50_ms']:.1f} ms  p99 {point['accept_p99_ms']:.1f} ms  "
            f"(system {point['cores_busy']:.2f} cores busy, machine {point['machine_cores_busy']:.2f}; "
            f"statuses {load.statuses})")
        points.append(point)
    return {"capacity_per_s": capacity, "seconds": seconds, "points": points}
