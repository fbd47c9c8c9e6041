"""`totem bench`: every benchmark in one run on one Postgres, one report (bench/report.py):
  (a)  pgbench TPS for the SQL one booking job commits (claim + booking/audit/outbox + finish): the ceiling;
  (a') pgbench TPS for ALL the SQL one booking costs end to end (the gateway's accept transaction too);
  (b)  our end-to-end bookings/s: N requests posted at concurrency C through the gateway, until every job is
       terminal, with CPU per part;
then the in-request peer baseline (bench/peer.py), what the outbox pipeline costs (pgbench with the NOTIFY
trigger on and off, bench/notify.py; (b) with the relay, notifications and SMTP sink, bench/pipeline.py),
accept-only and webhook ingest, the open-loop accept latency curve (bench/openloop.py), availability, a
py-spy profile (bench/profile.py), bookings pool scaling (bench/scaling.py) and the ledger (bench/ledger.py).
Each phase is announced as it starts; a run that fails writes what it measured to partial.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from bench import ledger as ledger_bench
from bench import notify, openloop, peer, pgstat, pipeline, profile, scaling
from bench import report as bench_report
from bench.bookings import booking_requests, db_now, measure, say, wait_terminal
from bench.details import figure_lines
from bench.load import build_post, percentile, run_load
from bench.pgbench import BENCH_TOKEN_ID, PRESEED_JOBS, REPEAT_SPACES, write_scripts
from bench.rows import one_row, one_row_async
from shared import tokens
from shared.db import QUERIES
from shared.payments import HANDLED_EVENTS
from shared.registry import BOOKING_CREATE, JOB_TYPES, STRIPE_APPLY_EVENT
from shared.stripe_api import STRIPE_API_VERSION
from totem.embedded import PrivatePostgres, PrivateRedis, pg_bindir
from totem.fake_stripe import sign
from totem.fleet import Fleet, wait_ready
from totem.migrate import create_database, drop_database, migrate

RESOURCES = 64
# the pools a booking and its payment run on
BOOKINGS_POOL, PAYMENTS_POOL = JOB_TYPES[BOOKING_CREATE].pool, JOB_TYPES[STRIPE_APPLY_EVENT].pool
GATEWAY = "web"  # the gateway's name in the fleet
PGBENCH_CLIENTS = 16
CEILING_ROUNDS = 3  # each pgbench ceiling is the median of this many interleaved runs
PAIRS = 3  # (b) and the in-request peer back to back this many times; their ratio is the median pair's
PIPELINE_BUDGET_SECONDS = 60  # (c') runs only when (c) had all its mail out within this, to bound the run


QUICK = {"requests": 300, "pgbench_seconds": 2, "ledger_entries": 20_000, "open_loop_seconds": 2.0,
         "scaling_requests": 150}  # `--quick`: a smoke run of every phase within 3 minutes


def main(args: argparse.Namespace) -> int:
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    args.scaling_requests = getattr(args, "scaling_requests", None) or args.requests
    work = Path(os.environ.get("TOTEM_DATA_DIR", ".totem-data")).resolve() / "bench"
    work.mkdir(parents=True, exist_ok=True)
    servers: list[PrivatePostgres | PrivateRedis] = []
    admin_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if not admin_url:
        say(f"no DATABASE_URL: private PostgreSQL under {work}")
        pg = PrivatePostgres(work).start()
        pgstat.preload(pg)
        servers.append(pg)
        admin_url = pg.url()
    if not redis_url:
        rd = PrivateRedis(work).start()
        servers.append(rd)
        redis_url = rd.url()
    name = f"totem_bench_{uuid.uuid4().hex[:8]}"
    create_database(admin_url, name)
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    fleet = _fleet(args, url, redis_url, work)
    phases = Phases()
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                              "params": {k: v for k, v in vars(args).items() if k != "func"},
                              "phase_seconds": phases.seconds}
    try:
        migrate(url)
        report["pg_statements_unavailable"] = pgstat.install(url)
        resources = _catalog(url)
        scripts = write_scripts(work / "pgbench", resources[0]["service_id"])
        with phases(f"pgbench ceilings (a), (a'), webhook: {CEILING_ROUNDS} rounds, the median of each"):
            report.update(_ceilings(url, scripts, args.pgbench_seconds, resources))
        with phases("pgbench NOTIFY on/off"):
            report["notify_pgbench"] = _notify_pgbench(url, scripts, args.pgbench_seconds, resources,
                                                       report["pgbench_job"]["tps"])
        _reset(url)
        report["e2e"] = {}  # filled phase by phase: a run that fails keeps what it measured (partial.json)
        asyncio.run(_end_to_end(args, url, resources, fleet, _leaders(servers), phases, report["e2e"],
                                pg_statements=report["pg_statements_unavailable"] is None))
        fleet.stop()  # the ledger phase is pgbench and reads: nothing else on the cores
        with phases(f"ledger: posting, then reads at {args.ledger_entries:,} entries"):
            report["ledger"] = ledger_bench.run(url, work, args.pgbench_seconds, resources,
                                                entries=args.ledger_entries)
        report["finished_at"] = datetime.now(UTC).isoformat()
        details = figure_lines(report)
        print("\n" + "\n".join(details) + "\n", flush=True)
        out_dir = Path(args.out_dir)
        summary = bench_report.write(report, out_dir, details)
        for row in summary["targets"]:
            verdict = {True: "met", False: "NOT met", None: "not measured"}[row["met"]]
            say(f"  {row['name']}: {_shown(row['measured'])} (goal {row['target']}): {verdict}")
        say(f"results written to {out_dir}/latest.json, report.md and PNG charts (fleet logs: {fleet.log_dir}); "
            f"{phases.total():.0f}s in all")
        return 0
    except BaseException as exc:
        partial = Path(args.out_dir) / "partial.json"
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({**report, "failed": repr(exc)}, indent=2, default=str))
        say(f"the run stopped ({exc!r}); what it measured is in {partial}")
        raise
    finally:
        fleet.stop()
        drop_database(admin_url, name)
        for server in servers:
            server.stop()


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


class Phases:
    """Progress: each phase announced with the time so far, its duration kept for the report."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.seconds: dict[str, float] = {}

    def total(self) -> float:
        return time.monotonic() - self.started

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        say(f"== [{self.total():5.0f}s] {name}")
        began = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - began, 1)


def _catalog(url: str) -> list[dict[str, str]]:
    """One provider, RESOURCES masters each offering one 30-minute service."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        provider = one_row(conn, QUERIES["insert_provider"], {
            "slug": "bench-salon", "name": "Bench Salon", "time_zone": "Europe/Berlin", "currency": "EUR",
            "commission_bps": 1000, "hold_ttl_seconds": None,
            "cancellation_policy": Jsonb([])})
        service = one_row(conn, QUERIES["insert_service"], {
            "provider_id": provider["id"], "name": "Cut", "duration_minutes": 30, "price": 2500,
            "currency": "EUR"})
        conn.execute("CREATE TABLE bench_resources (n int PRIMARY KEY, resource_id uuid NOT NULL)")
        token = tokens.new_token(tokens.PUBLIC)  # the load's credential; its id is the one pgbench's SQL names
        conn.execute("INSERT INTO public_tokens (id, token_sha256, provider_id, prefix, name) "
                     "VALUES (%s, %s, %s, %s, 'bench')", (BENCH_TOKEN_ID, tokens.digest(token), provider["id"],
                                                          token[:tokens.SHOWN_PREFIX_LENGTH]))
        out = []
        for n in range(1, RESOURCES + 1):
            resource = one_row(conn, QUERIES["insert_resource"], {
                "provider_id": provider["id"], "kind": "slot", "name": f"Master {n}", "nightly_price": None})
            conn.execute(QUERIES["offer_service"], {"resource_id": resource["id"], "service_id": service["id"]})
            conn.execute("INSERT INTO bench_resources VALUES (%s, %s)", (n, resource["id"]))
            for weekday in range(1, 8):
                conn.execute(QUERIES["insert_resource_hours"], {"resource_id": resource["id"], "weekday": weekday,
                                                                "opens_at": "00:00", "closes_at": "24:00"})
            out.append({"resource_id": str(resource["id"]), "service_id": str(service["id"]), "token": token})
    return out


def _pgbench(url: str, script: Path, seconds: int, resources: list[dict[str, str]]) -> dict[str, Any]:
    parsed = urlparse(url)
    binary = shutil.which("pgbench") or str(pg_bindir() / "pgbench")
    argv = [binary, "-n", "-M", "prepared", "-f", str(script), "-c", str(PGBENCH_CLIENTS), "-j", "2",
            "-T", str(seconds), "-P", "5", "-D", f"nres={len(resources)}", "-D", "n=0",
            "-h", parsed.hostname or "127.0.0.1", "-p", str(parsed.port or 5432),
            "-U", parsed.username or "postgres", parsed.path.lstrip("/")]
    say(f"pgbench {script.name}: {PGBENCH_CLIENTS} clients for {seconds}s (rendered from sql/queries) ...")
    proc = subprocess.run(argv, capture_output=True, text=True)
    for line in proc.stderr.splitlines():
        if line.startswith("progress"):
            say("  " + line)
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench failed: {proc.stderr[-2000:]}")
    tps_line = re.search(r"tps = ([0-9.]+)", proc.stdout)
    if tps_line is None:
        raise RuntimeError(f"pgbench printed no tps line: {proc.stdout[-2000:]}")
    tps = float(tps_line.group(1))
    latency = re.search(r"latency average = ([0-9.]+) ms", proc.stdout)
    return {"script": script.name, "tps": tps, "latency_avg_ms": float(latency.group(1)) if latency else None}


def _ceilings(url: str, scripts: dict[str, Path], seconds: int,
              resources: list[dict[str, str]]) -> dict[str, dict[str, Any]]:
    """(a), (a') and the webhook's statement, CEILING_ROUNDS rounds of the three in turn, each round starting on
    emptied tables with the job rows job.sql claims preseeded (so (a') runs on what (a) wrote, every round
    alike); each ceiling is its median run, every run's tps kept beside it.
    One run is not enough on a shared box: the same 5-second job.sql gave 495 to 965 tps within one bench."""
    runs: dict[str, list[dict[str, Any]]] = {"job": [], "full": [], "webhook": []}
    for _ in range(CEILING_ROUNDS):
        _reset(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(PRESEED_JOBS, {"space": 0, "clients": PGBENCH_CLIENTS,
                                        "per_client": 10_000 * seconds // 10 + 5000})
        for name, done in runs.items():
            done.append(_pgbench(url, scripts[name], seconds, resources))
    return {f"pgbench_{name}": {**sorted(done, key=lambda run: run["tps"])[len(done) // 2],
                                "runs_tps": [round(run["tps"], 1) for run in done]}
            for name, done in runs.items()}


def _notify_pgbench(url: str, scripts: dict[str, Path], seconds: int, resources: list[dict[str, str]],
                    job_tps: float) -> dict[str, Any]:
    """job.sql with the outbox NOTIFY trigger off and on (bench/notify.py); each run claims jobs of its own,
    preseeded for up to 4x the rate (a) measured with the trigger on."""
    per_client = int(4 * job_tps * seconds / PGBENCH_CLIENTS) + 1000
    with psycopg.connect(url, autocommit=True) as conn:
        for space in REPEAT_SPACES:
            conn.execute(PRESEED_JOBS, {"space": space, "clients": PGBENCH_CLIENTS, "per_client": per_client})
        conn.execute("VACUUM ANALYZE jobs")
    return notify.compare(url, [scripts[f"job_{k}"] for k in range(len(REPEAT_SPACES))],
                          lambda script: _pgbench(url, script, seconds, resources))


def _reset(url: str) -> None:
    """Empty what pgbench wrote, its preseeded job rows too: left queued, the scheduler's sweeper would
    re-enqueue a thousand of them every tick through every phase that follows."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE ledger_entries, ledger_transactions, payouts, payout_batches, settlement_periods, "
                     "idempotency_keys, booking_audit_log, delivery_attempts, deliveries, notifications, outbox, "
                     "stripe_event_effects, stripe_events, refunds, payments, booking_deposits, disputes, bookings, "
                     "jobs CASCADE")  # CASCADE: whatever a later migration hangs off these (the bench's own database)
        conn.execute("VACUUM ANALYZE")


def _fleet(args: argparse.Namespace, url: str, redis_url: str, work: Path) -> Fleet:
    """The fleet under test; every booking opens a PaymentIntent on the fake Stripe (a real HTTP call). Mail
    goes to the SMTP sink (under ``work``/mail) when the pipeline phase runs one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMETHEUS_", "dramatiq_"))}
    env.setdefault("SYSTEM_TOKEN", secrets.token_urlsafe(24))
    env.setdefault("TOKEN_SECRET", secrets.token_urlsafe(24))
    env.update(DATABASE_URL=url, REDIS_URL=redis_url, REDIS_NAMESPACE=f"bench-{uuid.uuid4().hex[:6]}",
               LOG_LEVEL="WARNING", PROMETHEUS_MULTIPROC_DIR=tempfile.mkdtemp(prefix="totem-bench-"),
               DB_POOL_MAX=str(max(10, args.worker_threads + 2)),
               FAKE_STRIPE_ENABLED_EVENTS=",".join(sorted(HANDLED_EVENTS)),
               # the limiter runs (its Redis call is part of the cost) with budgets the load never reaches
               **dict.fromkeys(("RATE_LIMIT_TOKEN_RPS", "RATE_LIMIT_TOKEN_BURST", "RATE_LIMIT_IP_RPS",
                                "RATE_LIMIT_IP_BURST"), "1000000"))
    fleet = Fleet(env=env, log_dir=work / "logs", run_dir=work / "run", mail_dir=work / "mail")
    fleet.reap_stale()
    return fleet


def _leaders(servers: list[PrivatePostgres | PrivateRedis]) -> dict[str, int]:
    """The pid of each server this run started (the CPU table counts those, not a neighbour's)."""
    leaders = {}
    for server in servers:
        if isinstance(server, PrivatePostgres):
            leaders["postgres"] = int((server.pgdata / "postmaster.pid").read_text().split()[0])
        elif (pid := server.running_pid()) is not None:
            leaders["redis"] = pid
    return leaders


async def _end_to_end(args: argparse.Namespace, url: str, resources: list[dict[str, str]], fleet: Fleet,
                      servers: dict[str, int], phases: Phases, result: dict[str, Any], pg_statements: bool) -> None:
    fleet.start_gateway(args.web_workers)
    fleet.start_worker(BOOKINGS_POOL, processes=args.worker_processes, threads=args.worker_threads)
    fleet.start_worker(PAYMENTS_POOL)
    fleet.start_scheduler()
    if not wait_ready(f"{fleet.base_url}/readyz", 60):
        raise RuntimeError(f"gateway not ready; see {fleet.log_dir}")
    port = fleet.gateway_port
    host = f"127.0.0.1:{port}"
    warm_day = datetime(2031, 1, 1, 8, tzinfo=UTC)
    say(f"fleet up: gateway x{args.web_workers}, bookings worker {args.worker_processes}x{args.worker_threads};"
        " warming up")
    warm = min(500, args.requests)
    await run_load("127.0.0.1", port, booking_requests(resources, warm, warm_day, host), args.concurrency)
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row, autocommit=True) as conn:
        await wait_terminal(conn, "1970-01-01", warm, quiet=True)
        with phases(f"(b) end to end: {args.requests} bookings at c={args.concurrency}"):
            if pg_statements:
                await conn.execute("SELECT pg_stat_statements_reset()")
            result.update(await measure(conn, fleet, servers, resources, args.requests, args.concurrency,
                                        datetime(2032, 1, 1, 8, tzinfo=UTC)))
            if pg_statements:
                result["pg_statements"] = pgstat.top(url, result["succeeded"])
        with phases("peer baseline: the same booking inside one request"):
            result["peer"] = await _peer(args, conn, fleet, servers, resources, datetime(2037, 1, 1, 8, tzinfo=UTC))
        with phases(f"(b) and the peer baseline again, {PAIRS - 1} more pairs (their ratio: the median pair's)"):
            result["pairs"] = [_pair(result, result["peer"])]
            for k in range(PAIRS - 1):
                again = await measure(conn, fleet, servers, resources, args.requests, args.concurrency,
                                      datetime(2050 + 2 * k, 1, 1, 8, tzinfo=UTC))
                result["pairs"].append(_pair(again, await _peer(args, conn, fleet, servers, resources,
                                                                datetime(2060 + 2 * k, 1, 1, 8, tzinfo=UTC))))
        with phases("outbox pipeline (r), (c), (c')"):
            result.update(await _with_pipeline(args, url, resources, fleet, servers, conn))
        with phases("accept only, webhook ingest"):
            result["accept_only"] = await _accept_only(args, port, host, resources, fleet, conn)
            result["webhooks"] = await _webhook_ingest(args, port, host, fleet, conn)
        with phases("open-loop accept latency at 25/50/75/90 % of (b)"):
            result["open_loop"] = await openloop.curve(conn, fleet, servers, resources, result["bookings_per_s"],
                                                       args.open_loop_seconds, datetime(2039, 1, 1, 8, tzinfo=UTC))
        with phases("availability"):
            result["availability"] = await _availability(port, resources[-1], conn)
        with phases("profile: (b) again, py-spy sampling the gateway and the bookings pool"):
            result["profile"] = await _profiled(args, conn, fleet, servers, resources)
        with phases("bookings pool scaling: 1, 2, 4 processes"):
            result["scaling"] = await scaling.pool_scaling(conn, fleet, servers, resources, args.scaling_requests,
                                                           args.concurrency, args.worker_threads,
                                                           datetime(2041, 1, 1, 8, tzinfo=UTC))


async def _peer(args: argparse.Namespace, conn: psycopg.AsyncConnection[Any], fleet: Fleet, servers: dict[str, int],
                resources: list[dict[str, str]], first_day: datetime) -> dict[str, Any]:
    """The peer app: as many Python processes as our gateway and bookings pool together, as many threads as a
    worker's."""
    return await peer.measure(conn, fleet, servers, resources, args.requests, args.concurrency, first_day,
                              processes=args.web_workers + args.worker_processes, threads=args.worker_threads)


def _pair(e2e: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """(b) and the peer run back to back: on a box whose speed drifts between phases (the fake Stripe's CPU per
    booking, the same work every time, varied by 45 % between two runs), a ratio of two runs minutes apart
    measures the drift as much as the designs; the report takes the median of PAIRS such pairs."""
    return {"e2e_bookings_per_s": e2e["bookings_per_s"], "peer_bookings_per_s": baseline["bookings_per_s"],
            "e2e_cpu_ms_per_booking": e2e["system_cpu_ms_per_booking"],
            "peer_cpu_ms_per_booking": baseline["system_cpu_ms_per_booking"]}


async def _profiled(args: argparse.Namespace, conn: psycopg.AsyncConnection[Any], fleet: Fleet,
                    servers: dict[str, int], resources: list[dict[str, str]]) -> dict[str, Any]:
    """(b) once more, apart from the measured runs (sampling costs CPU on these cores), under py-spy."""
    if profile.binary() is None:
        return {"skipped": "py-spy is not installed"}
    pids = {name: fleet.procs[name].pid for name in (GATEWAY, BOOKINGS_POOL)}
    with profile.sampling(pids, Path(args.out_dir)) as files:
        run = await measure(conn, fleet, servers, resources, max(100, args.requests // 2), args.concurrency,
                            datetime(2040, 1, 1, 8, tzinfo=UTC))
    return {"bookings_per_s": run["bookings_per_s"], "cpu_ms_per_booking": run["cpu_ms_per_booking"],
            **{name: {**profile.summarize(path), "file": path.name} for name, path in files.items()}}


async def _with_pipeline(args: argparse.Namespace, url: str, resources: list[dict[str, str]], fleet: Fleet,
                         servers: dict[str, int], conn: psycopg.AsyncConnection[Any]) -> dict[str, Any]:
    """(r) (b) again with the relay alone (deliveries staged, none sent); (c) with the relay, the
    notifications pool and the SMTP sink running (the relays poll: the default); (c') the same with the outbox
    NOTIFY trigger on (the relays are woken at every commit), ending when its events are published (bookings/s
    and the relay are what it compares; its mail is not waited for). Each on days of its own."""
    await conn.execute("VACUUM ANALYZE")
    say("pipeline (r): bookings with the relay alone running (publishing, no sending)")
    await pipeline.start_relay(conn, fleet)
    out: dict[str, Any] = {}
    try:
        out["pipeline_relay"] = await pipeline.phase(conn, fleet, servers, resources, args.requests,
                                                     args.concurrency, datetime(2033, 1, 1, 8, tzinfo=UTC), mail=False)
        say("pipeline: starting the notifications pool and the SMTP sink (they send (r)'s mail first); warming up")
        await pipeline.start_senders(conn, fleet)
        await pipeline.warm(conn, fleet, servers, resources, args.concurrency, datetime(2034, 1, 1, 8, tzinfo=UTC))
        await conn.execute("VACUUM ANALYZE")
        say("pipeline (c): bookings with the relay, notifications and SMTP sink running")
        out["pipeline"] = await pipeline.phase(conn, fleet, servers, resources, args.requests, args.concurrency,
                                                datetime(2035, 1, 1, 8, tzinfo=UTC))
        c = out["pipeline"]
        if args.quick:
            out["pipeline_notify_on"] = {"skipped": "--quick"}
            return out
        if c["seconds"] > PIPELINE_BUDGET_SECONDS or c["undelivered"] or c["published"] < c["events"]:
            why = (f"(c) took {c['seconds']:.0f}s (budget {PIPELINE_BUDGET_SECONDS}s), "
                   f"{c['undelivered']} deliveries and {c['events'] - c['published']} events left")
            say(f"pipeline (c'): skipped: {why}")
            out["pipeline_notify_on"] = {"skipped": why}
            return out
        await conn.execute("VACUUM ANALYZE")
        say("pipeline (c'): the same with the outbox NOTIFY trigger on (relays woken at every commit)")
        notify.set_notify(url, True)
        try:
            out["pipeline_notify_on"] = await pipeline.phase(
                conn, fleet, servers, resources, args.requests, args.concurrency, datetime(2036, 1, 1, 8, tzinfo=UTC),
                mail=False)
        finally:
            notify.set_notify(url, False)
    finally:
        pipeline.stop(fleet)
    return out


async def _accept_only(args: argparse.Namespace, port: int, host: str, resources: list[dict[str, str]],
                       fleet: Fleet, conn: psycopg.AsyncConnection[Any]) -> dict[str, Any]:
    """The gateway alone: the worker pool is paused (SIGSTOP), so accepts do not share the CPU with jobs."""
    count = max(1000, args.requests // 2)
    say(f"accept-only: pausing the bookings pool, posting {count} bookings at concurrency {args.concurrency} ...")
    since = await db_now(conn)
    pool_pgid = fleet.procs[BOOKINGS_POOL].pid
    os.killpg(pool_pgid, signal.SIGSTOP)
    try:
        requests = booking_requests(resources, count, datetime(2033, 1, 1, 8, tzinfo=UTC), host)
        load = await run_load("127.0.0.1", port, requests, args.concurrency)
    finally:
        os.killpg(pool_pgid, signal.SIGCONT)
    say("accept-only: resumed the pool; waiting for those jobs to be terminal")
    await wait_terminal(conn, since, count)
    return {"requests": count, "accepted_per_s": load.statuses.get(202, 0) / (load.finished - load.started),
            "accept_p50_ms": percentile(load.latencies, 50) * 1000,
            "accept_p99_ms": percentile(load.latencies, 99) * 1000}


async def _webhook_ingest(args: argparse.Namespace, port: int, host: str, fleet: Fleet,
                          conn: psycopg.AsyncConnection[Any]) -> dict[str, Any]:
    """The webhook ingress alone: signed events posted with the payments pool paused, so each one costs
    verify (stripe SDK) + store with its job (one statement) + enqueue, nothing else."""
    count = max(1000, args.requests // 2)
    secret = os.environ.get("STRIPE_WEBHOOK_SECRET", "whsec_totem_dev")
    requests = []
    for i in range(count):
        payload = json.dumps({"id": f"evt_bench_{uuid.uuid4().hex}", "object": "event",
                              "type": "payment_intent.succeeded",
                              "created": int(time.time()), "api_version": STRIPE_API_VERSION, "livemode": False,
                              "data": {"object": {"id": f"pi_bench_{i}", "object": "payment_intent", "amount": 2500,
                                                  "amount_received": 2500, "currency": "eur", "status": "succeeded",
                                                  "metadata": {"booking_id": str(uuid.uuid4())}}}})
        requests.append(build_post(host, "/v1/webhooks/stripe", payload.encode(),
                                   {"Stripe-Signature": sign(payload, secret)}))
    say(f"webhooks: pausing the payments pool, posting {count} signed events at concurrency {args.concurrency} ...")
    since = await db_now(conn)
    pool_pgid = fleet.procs[PAYMENTS_POOL].pid
    os.killpg(pool_pgid, signal.SIGSTOP)
    try:
        load = await run_load("127.0.0.1", port, requests, args.concurrency)
    finally:
        os.killpg(pool_pgid, signal.SIGCONT)
    say("webhooks: resumed the payments pool; waiting for every event to be applied")
    await wait_terminal(conn, since, count, job_type=STRIPE_APPLY_EVENT)
    return {"events": count, "statuses": load.statuses,
            "ingested_per_s": load.statuses.get(200, 0) / (load.finished - load.started),
            "p50_ms": percentile(load.latencies, 50) * 1000, "p99_ms": percentile(load.latencies, 99) * 1000}


AVAILABILITY_BOOKINGS = 10_000


async def _availability(port: int, resource: dict[str, str], conn: psycopg.AsyncConnection[Any]) -> dict[str, Any]:
    """A month of free slots for one resource holding 10,000 bookings: database time and HTTP latency."""
    say(f"availability: placing {AVAILABILITY_BOOKINGS} bookings on one resource ...")
    await conn.execute("""
        INSERT INTO bookings (id, kind, status, resource_id, provider_id, period, amount, currency,
                              service_snapshot, customer, created_by_job)
        SELECT gen_random_uuid(), 'slot', 'paid', r.id, r.provider_id, tstzrange(t, t + interval '30 minutes'),
               2500, 'EUR', '{}', '{}', gen_random_uuid()
        FROM resources r, generate_series(0, %(n)s - 1) i,
             LATERAL (SELECT date_trunc('day', now()) + interval '1 day' + (i / 16) * interval '1 day'
                             + interval '6 hours' + (i %% 16) * interval '45 minutes' AS t) x
        WHERE r.id = %(resource_id)s""", {"n": AVAILABILITY_BOOKINGS, "resource_id": resource["resource_id"]})
    await conn.execute("ANALYZE bookings")
    today = datetime.now(UTC).date()
    params = {"resource_id": resource["resource_id"], "service_id": resource["service_id"],
              "from": today + timedelta(days=30), "to": today + timedelta(days=59), "step_minutes": 15}
    db_ms: list[float] = []
    for _ in range(100):
        plan = (await one_row_async(conn, "EXPLAIN (ANALYZE, FORMAT JSON) " + QUERIES["slot_availability"],
                                    params))["QUERY PLAN"]
        db_ms.append(float(plan[0]["Execution Time"]))
    cur = await conn.execute(QUERIES["slot_availability"], params)
    free = len(await cur.fetchall())
    path = (f"/v1/resources/{resource['resource_id']}/availability?from={params['from']}&to={params['to']}"
            f"&service_id={resource['service_id']}")
    http_ms: list[float] = []
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(200):
            started = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {resource['token']}\r\n\r\n"
                         .encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            http_ms.append((time.perf_counter() - started) * 1000)
    finally:
        writer.close()
    return {"bookings_on_resource": AVAILABILITY_BOOKINGS, "window_days": 30, "free_slots": free,
            "db_p50_ms": percentile(db_ms, 50), "db_p99_ms": percentile(db_ms, 99),
            "http_p50_ms": percentile(http_ms, 50), "http_p99_ms": percentile(http_ms, 99)}
