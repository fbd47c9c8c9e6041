"""The peer baseline: the design a user would pick instead of ours. The same booking done synchronously inside
one HTTP request, in a small bench-only app (never a route of the product): the caller's public token looked
up (``use_public_token``), the idempotency key and job row recorded (``accept_command`` with
``check_slot_offer``: the gateway's very statement), then the booking job run right there through the
bookings worker's own code (``run_job`` with ``prepare_create_booking``: claim, the hold, the PaymentIntent on
the fake Stripe through the same ``StripeApi`` client, the payment and the job's result), answering 201
with the hold and its client secret.

So it runs the same SQL and the same Stripe call as a queued booking, on the same uvicorn, with as many
processes as our gateway and bookings pool together, each with the same database pool size and as many
request threads as a bookings worker process has. What it does not have is what the queue buys: the client
waits for Stripe, a crash mid-request loses the work (the job row is left running until its lease runs
out), and there is no back-pressure but the thread pool. It skips the gateway's rate limiter (one Redis
call), which only flatters it.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get, post
from psycopg import sql
from psycopg.types.json import Jsonb

from bench.bookings import Conn, booking_requests, db_now, say
from bench.cpu import cpu_by_part, delta
from bench.load import percentile, run_load
from bench.rows import one_row_async
from shared import tokens
from shared.db import QUERIES, Pool, expect_row, open_pool
from shared.jobs import Finish, run_job
from shared.registry import BOOKING_CREATE, job_route
from shared.schemas import BookingCreated, BookingRequest, SlotBookingRequest
from totem.embedded import free_port
from totem.fleet import Fleet, wait_ready

PEER = "peer app"  # its name in the CPU table
THREADS_ENV = "BENCH_PEER_THREADS"


def create_app() -> Litestar:
    """uvicorn's factory (``bench.peer:create_app``), one app per process."""
    import anyio.to_thread

    import workers.bookings as worker  # boots a worker runtime in this process: settings and the Stripe client
    from workers.runtime import runtime

    settings = runtime.boot()
    pools: list[Pool] = []
    accept = sql.SQL(QUERIES["accept_command"]).format(check=sql.SQL(QUERIES["check_slot_offer"]))

    def open_db() -> None:
        # as many request threads as a bookings worker process has, each with a connection of the same pool size
        anyio.to_thread.current_default_thread_limiter().total_tokens = int(os.environ.get(THREADS_ENV, "8"))
        pools.append(open_pool(settings.database_url, max_size=settings.db_pool_max, name="totem-bench-peer"))

    def close_db() -> None:
        for pool in pools:
            pool.close()

    @get("/healthz", sync_to_thread=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @post("/v1/bookings", sync_to_thread=True)
    def book(request: Request[Any, Any, Any], data: BookingRequest) -> Response[bytes]:
        if not isinstance(data, SlotBookingRequest):
            return _refused(422, "the peer baseline books slots only")
        key = request.headers.get("idempotency-key")
        authorization = request.headers.get("authorization", "")
        if not key or not authorization.lower().startswith("bearer "):
            return _refused(400, "Idempotency-Key and Authorization: Bearer <public token> are required")
        pool = pools[0]
        with pool.connection() as conn:
            caller = conn.execute(QUERIES["use_public_token"],
                                  {"digest": tokens.digest(authorization[7:].strip())}).fetchone()
            if caller is None:
                return _refused(401, "unknown public token")
            principal = f"public_token:{caller['id']}"
            canonical = msgspec.json.encode(data, order="sorted")
            job_id = uuid.uuid4()
            outcome = expect_row(conn.execute(accept, {
                "key_scope": f"caller:{principal}", "key": key,
                "fingerprint": hashlib.sha256(b"\n".join([b"POST", b"/v1/bookings", canonical])).digest(),
                "method": "POST", "path": "/v1/bookings", "job_id": job_id,
                "response_body": Jsonb({"job_id": str(job_id), "status_url": f"/v1/jobs/{job_id}"}),
                "ttl_seconds": settings.idempotency_ttl_seconds, **job_route(BOOKING_CREATE), "payload": Jsonb(data),
                "max_attempts": settings.job_max_attempts, "request_id": None,
                "caller": Jsonb({"principal": principal, "kind": "public_token", "id": str(caller["id"]),
                                 "provider_id": str(caller["provider_id"]), "role": None, "roles": {}}),
                "resource_id": data.resource_id, "service_id": data.service_id,
                "scope": [caller["provider_id"]]}).fetchone(), "accept_command")
        if not outcome["created"]:
            return _refused(409 if outcome["checked"] else 404, "key already used, or no such offer")
        created: list[BookingCreated] = []

        def prepare(conn: Any, job: Any) -> Any:
            work = worker.prepare_create_booking(conn, job)
            if isinstance(work, Finish):  # the hold's payment and the job's result, one statement
                if isinstance(work.result, BookingCreated):
                    created.append(work.result)
                return work

            def handle(conn: Any, job: Any) -> Any:
                result = work(conn, job)
                if isinstance(result, BookingCreated):
                    created.append(result)
                return result

            return handle

        ran = run_job(pool, job_id, None, lease_seconds=settings.job_lease_seconds, prepare=prepare)
        if ran != "succeeded" or not created:
            return _refused(409, f"booking {ran}")
        return Response(msgspec.json.encode(created[0]), status_code=201, media_type="application/json")

    return Litestar([healthz, book], on_startup=[open_db], on_shutdown=[close_db], openapi_config=None)


def _refused(status: int, detail: str) -> Response[bytes]:
    return Response(msgspec.json.encode({"title": detail, "status": status}), status_code=status,
                    media_type="application/problem+json")


@contextmanager
def running(fleet: Fleet, processes: int, threads: int) -> Iterator[tuple[int, int]]:
    """The peer app on a free port under uvicorn (as ``totem gateway`` runs ours: uvloop, httptools, no access
    log), with the fleet's environment (its database, its fake Stripe). Yields (port, process group)."""
    port = free_port()
    log = fleet.log_dir / "peer.log"
    argv = [sys.executable, "-m", "uvicorn", "bench.peer:create_app", "--factory", "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(processes), "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--log-level", "warning"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, env={**fleet.env, THREADS_ENV: str(threads)}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not wait_ready(f"http://127.0.0.1:{port}/healthz", 60):
            raise RuntimeError(f"the peer app did not start; see {log}")
        yield port, proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


async def measure(conn: Conn, fleet: Fleet, servers: dict[str, int], resources: list[dict[str, str]], count: int,
                  concurrency: int, first_day: datetime, processes: int, threads: int) -> dict[str, Any]:
    """``count`` bookings through the peer app at ``concurrency`` with the same load generator as (b), after a
    warm-up; bookings/s by the same rule as (b): succeeded jobs over first accept to last finish."""
    say(f"peer baseline: the same booking inside one request, uvicorn x{processes} ({threads} threads each)")
    with running(fleet, processes, threads) as (port, pgid):
        host = f"127.0.0.1:{port}"
        warm = booking_requests(resources, min(500, count), first_day.replace(year=first_day.year + 1), host)
        await run_load("127.0.0.1", port, warm, concurrency)
        requests = booking_requests(resources, count, first_day, host)
        run_start = await db_now(conn)
        sessions = {PEER: pgid, "fake-stripe": fleet.procs["fake-stripe"].pid}  # its Stripe calls cost there
        cpu_before = cpu_by_part(sessions, servers)
        say(f"peer baseline: posting {count} bookings at concurrency {concurrency} ...")
        started = time.monotonic()
        load = await run_load("127.0.0.1", port, requests, concurrency)
        cpu = delta(cpu_before, cpu_by_part(sessions, servers))
        seconds = time.monotonic() - started
    row = await one_row_async(conn, """
        SELECT count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE status <> 'succeeded') AS other,
               extract(epoch FROM max(updated_at) - min(created_at)) AS span
        FROM jobs WHERE created_at >= %s AND type = %s""", (run_start, BOOKING_CREATE))
    succeeded = int(row["succeeded"])
    say(f"peer baseline: {succeeded} bookings in {seconds:.1f}s, statuses {load.statuses}")
    return {
        "processes": processes, "threads": threads, "requests": count, "concurrency": concurrency,
        "statuses": load.statuses, "succeeded": succeeded, "not_succeeded": int(row["other"]), "seconds": seconds,
        "bookings_per_s": succeeded / float(row["span"]) if row["span"] else 0.0,
        "latency_p50_ms": percentile(load.latencies, 50) * 1000,
        "latency_p99_ms": percentile(load.latencies, 99) * 1000,
        "cpu_seconds": cpu,
        "cpu_ms_per_booking": {k: round(v * 1000 / max(1, succeeded), 3) for k, v in cpu.items()},
        "system_cpu_ms_per_booking": round(sum(v for k, v in cpu.items() if k not in ("other", "load generator"))
                                           * 1000 / max(1, succeeded), 3),
    }
