"""``totem chaos``: start the fleet from the registry on private Postgres and Redis (or RabbitMQ for jobs),
drive a mixed load while breaking things (``faults.py``), let the system settle, check every guarantee
(``invariants.py``) and print one table, violations beside the faults injected; the same as JSON.

The run, in order: servers, database, fleet (two schedulers, so one can be killed as leader), a catalog with
collision-prone slots and listings, a flaky webhook receiver registered as the provider's endpoint; then for
``duration`` seconds the clients (``load.py``), the fault schedule, Stripe faults armed every couple of
seconds and a settlement round every ten (each closes the next simulated day, so completed bookings are paid
out within the run: the scheduler alone would close only real days). Then calm: faults off, every process
up, the receiver well, until every job is terminal and every queue, outbox and webhook drained (bounded);
one more settlement and a reconciliation; then the checks. ``seed`` fixes the fault schedule, the load's
choices and the receiver's answers; timing between processes is the machine's, so two runs with one seed
break the same things in the same order, not at the same instant."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from shared import tokens
from shared.db import QUERIES, expect_row, use_msgspec_json
from shared.payments import HANDLED_EVENTS
from shared.registry import POOLS
from shared.settlement import close_due_periods
from totem.chaos.faults import Injector
from totem.chaos.invariants import check
from totem.chaos.load import Catalog, Client, Ledger
from totem.chaos.receiver import FlakyReceiver
from totem.embedded import PrivatePostgres, PrivateRedis
from totem.fleet import Fleet, wait_ready
from totem.migrate import create_database, migrate

HOLD_TTL_SECONDS = 8
WEBHOOK_TIMEOUT_SECONDS = 1.0
SCHEDULERS = ("scheduler-1", "scheduler-2")
# Short leases and intervals so every recovery path (a lease running out, a leader replaced, a job swept
# back into the queue) happens many times within a run of a minute or two.
TIMINGS = {
    "SCHEDULER_INTERVAL_SECONDS": "0.5", "SCHEDULER_LEASE_SECONDS": "3", "JOB_LEASE_SECONDS": "5",
    "JOB_REQUEUE_AFTER_SECONDS": "2", "IDEMPOTENCY_LEASE_SECONDS": "3", "PAYOUT_MATURITY_SECONDS": "0",
    "RECONCILE_INTERVAL_SECONDS": "0", "WORKER_THREADS": "4", "NOTIFY_RETRY_SCHEDULE": "0,1,1,1,1,1",
    "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true", "WEBHOOK_TIMEOUT_SECONDS": str(WEBHOOK_TIMEOUT_SECONDS),
    "RELAY_POLL_SECONDS": "0.2", "RATE_LIMIT_TOKEN_RPS": "0", "RATE_LIMIT_IP_RPS": "0", "LOG_LEVEL": "INFO",
    "STRIPE_MAX_ATTEMPTS": "4", "JOB_MAX_ATTEMPTS": "8",
    "BOOKING_HOLD_TTL_SECONDS": str(HOLD_TTL_SECONDS),  # holds run out within the run (a provider's own is >= 30 s)
}
FAULT_NAMES = ("worker_kill9", "relay_kill9", "leader_kill9", "gateway_kill9", "redis_restart", "postgres_restart",
               "webhook_duplicate", "webhook_delay", "webhook_reorder", "stripe_fault_before", "stripe_fault_after",
               "receiver_500", "receiver_503", "receiver_timeout", "client_timeouts")


@dataclass
class Options:
    duration: float = 60.0
    seed: int = 1
    report: Path = Path("chaos-report.json")
    broker: str = "redis"
    clients: int = 6
    settle_timeout: float = 120.0
    data_dir: Path | None = None


@dataclass
class Result:
    violations: dict[str, int]
    faults: dict[str, int]
    figures: dict[str, Any]
    seed: int
    duration: float
    broker: str
    logs: str
    problems: list[str] = field(default_factory=list)  # what kept the run from settling, if anything

    @property
    def ok(self) -> bool:
        return not any(self.violations.values()) and not self.problems

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "seed": self.seed, "duration_seconds": self.duration, "broker": self.broker,
                "violations": self.violations, "faults": self.faults, "figures": self.figures,
                "problems": self.problems, "logs": self.logs}


def run(options: Options, say: Callable[[str], None] = print) -> Result:
    use_msgspec_json()
    root = (options.data_dir or Path(os.environ.get("TOTEM_DATA_DIR", ".totem-data")) / "chaos").resolve()
    work = root / f"run-{datetime.now(UTC):%Y%m%dT%H%M%S}-seed{options.seed}-{uuid.uuid4().hex[:4]}"
    work.mkdir(parents=True)
    say(f"chaos: seed {options.seed}, {options.duration:g} s of load, broker {options.broker}; work in {work}")
    # the servers' files in a short path of their own: Postgres puts its socket in its data folder, and a
    # socket path may not exceed 107 bytes
    servers = Path(tempfile.mkdtemp(prefix="totem-chaos-"))
    postgres, redis = PrivatePostgres(servers), PrivateRedis(servers)
    receiver = FlakyReceiver(options.seed, timeout_seconds=WEBHOOK_TIMEOUT_SECONDS)
    fleet: Fleet | None = None
    vhost: str | None = None
    try:
        postgres.start()
        redis.start()
        vhost = _rabbit_vhost() if options.broker == "rabbitmq" else None
        create_database(postgres.url(), "totem")
        url = postgres.url("totem")
        migrate(url)
        fleet = _fleet(url, redis, vhost, work)
        say("chaos: starting the fleet (gateway, every pool in the registry, two schedulers, relay, fake Stripe, "
            "SMTP sink)")
        _start(fleet)
        catalog = _catalog(url, fleet, receiver)
        return _drive(options, say, url, fleet, postgres, redis, receiver, catalog, work)
    finally:
        if fleet is not None:
            fleet.stop(timeout=20)
        receiver.close()
        postgres.stop(mode="immediate")
        redis.stop()
        if vhost is not None:
            _rabbitmqctl("delete_vhost", vhost)
        shutil.rmtree(servers, ignore_errors=True)  # the logs stay (in ``work``); the servers' files need not


def _drive(options: Options, say: Callable[[str], None], url: str, fleet: Fleet, postgres: PrivatePostgres,
           redis: PrivateRedis, receiver: FlakyReceiver, catalog: Catalog, work: Path) -> Result:
    ledger = Ledger()
    injector = Injector(fleet, postgres, redis, SCHEDULERS, options.seed, say)
    started = time.monotonic()
    deadline = started + options.duration
    clients = [Client(n, options.seed, fleet.base_url, fleet.stripe_url, catalog, ledger, deadline, HOLD_TTL_SECONDS)
               for n in range(options.clients)]
    threads = [threading.Thread(target=c.run, name=f"chaos-client-{c.n}", daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    schedule = injector.schedule(options.duration)
    say(f"chaos: {len(schedule)} faults scheduled: {', '.join(kind for _, kind in schedule)}")
    day, next_arm, next_settle, next_progress = 0, started + 1, started + 10, started + 5
    problems: list[str] = []
    while time.monotonic() < deadline:
        now = time.monotonic()
        if schedule and now - started >= schedule[0][0]:
            problems += injector.inject(schedule.pop(0)[1])
        elif now >= next_arm:
            injector.arm_stripe()
            next_arm = now + 2
        elif now >= next_settle:
            day += _settlement_round(url, day + 1)
            next_settle = now + 10
        elif now >= next_progress:
            say(_progress(now - started, ledger, injector.counts))
            next_progress = now + 5
        else:
            time.sleep(0.1)
    for kind in (kind for _, kind in schedule):  # a fault late in a slow run still happens once
        problems += injector.inject(kind)
    for thread in threads:
        thread.join(30)
    say(_progress(time.monotonic() - started, ledger, injector.counts) + "; load over, settling")

    injector.calm()
    injector.close()
    receiver.flaky = False
    _revive(fleet, say)
    settling = time.monotonic()
    problems += _settle(url, fleet, options.settle_timeout, say)
    settled_after = time.monotonic() - settling
    day += _settlement_round(url, day + 1)
    problems += _settle(url, fleet, options.settle_timeout, say)
    mismatches, reconcile_problem = _reconcile(fleet, catalog)
    problems += [reconcile_problem] if reconcile_problem else []
    stripe = {name: httpx.get(f"{fleet.stripe_url}/_fake/{name}", timeout=30).json()
              for name in ("objects", "events", "requests", "deliveries")}
    violations, figures = check(url, ledger, stripe, receiver.events_by_id(), mismatches, _mail_ids(fleet))
    faults = _faults(injector.counts, receiver.faults, ledger.counts, stripe)
    figures.update(settle_seconds=round(settled_after, 1), settlement_days_closed=day, client=dict(ledger.counts),
                   stripe_deliveries=len(stripe["deliveries"]), stripe_events=len(stripe["events"]))
    return Result(violations=violations, faults=faults, figures=figures, seed=options.seed,
                  duration=options.duration, broker=options.broker, logs=str(work / "logs"), problems=problems)


def _mail_ids(fleet: Fleet) -> set[str] | None:
    """The delivery ids of every email the SMTP sink kept (its Message-ID is ``<delivery id@totem>``)."""
    if fleet.mail_dir is None:
        return None
    ids = set()
    for path in fleet.mail_dir.glob("*.eml"):
        message_id = BytesHeaderParser().parsebytes(path.read_bytes()).get("Message-ID", "")
        ids.add(str(message_id).strip("<>").split("@", 1)[0])
    return ids


def _faults(injected: Counter[str], receiver: Counter[str], client: Counter[str],
            stripe: dict[str, Any]) -> dict[str, int]:
    """What was broken, counted where it happened: Stripe's failed calls from the fake's own request log, the
    duplicated webhook deliveries from its delivery log."""
    outcomes = Counter(str(r.get("outcome")) for r in stripe["requests"])
    delivered = Counter(d["event_id"] for d in stripe["deliveries"] if isinstance(d["status"], int)
                        and 200 <= d["status"] < 300)
    counts = {**injected, **receiver, "client_timeouts": client["client_timeouts"],
              "stripe_fault_before": outcomes["fault_before"], "stripe_fault_after": outcomes["fault_after"],
              "webhook_events_delivered_twice": sum(1 for n in delivered.values() if n > 1)}
    counts.pop("stripe_armed", None)
    return {name: int(counts.get(name, 0)) for name in (*FAULT_NAMES, "webhook_events_delivered_twice")}


def _progress(elapsed: float, ledger: Ledger, faults: Counter[str]) -> str:
    with ledger.lock:
        accepted, counts = len(ledger.accepted), dict(ledger.counts)
    broken = sum(faults.values())
    return (f"chaos: {elapsed:5.1f} s  accepted {accepted}  held {counts.get('booking_held', 0)}  "
            f"paid {counts.get('booking_paid', 0)}  client timeouts {counts.get('client_timeouts', 0)}  "
            f"faults injected {broken}")


# --- setting up -----------------------------------------------------------------------------------------
def _fleet(url: str, redis: PrivateRedis, vhost: str | None, work: Path) -> Fleet:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PROMETHEUS_", "dramatiq_", "FAKE_STRIPE_", "STRIPE_API_BASE", "WORKER_", "PORT",
                                "BROKER_URL", "SMTP_URL"))}
    env.update(TIMINGS, DATABASE_URL=url, REDIS_URL=redis.url(), REDIS_NAMESPACE="totem-chaos",
               SYSTEM_TOKEN=secrets.token_urlsafe(24), TOKEN_SECRET=secrets.token_urlsafe(24),
               FAKE_STRIPE_ENABLED_EVENTS=",".join(sorted(HANDLED_EVENTS)))
    if vhost is not None:
        env["BROKER_URL"] = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    return Fleet(env=env, log_dir=work / "logs", mail_dir=work / "mail")


def _start(fleet: Fleet) -> None:
    fleet.start_smtp_sink()
    fleet.start_gateway()
    for pool in POOLS:
        fleet.start_worker(pool.name)
    for name in SCHEDULERS:
        fleet.start_scheduler(name)
    fleet.start_relay()
    if not wait_ready(fleet.base_url + "/readyz", 60):
        raise RuntimeError(f"the gateway did not become ready; see {fleet.log_dir}")
    # Stripe retries an unanswered event for days; the fake's six attempts would give up during a long outage
    httpx.post(f"{fleet.stripe_url}/_fake/webhooks", json={"attempts": 30}, timeout=10).raise_for_status()


def _catalog(url: str, fleet: Fleet, receiver: FlakyReceiver) -> Catalog:
    """One provider (paid out daily, mailed at its contact address) with three masters offering one
    30-minute service and four listings, a public token, and the flaky receiver as its webhook endpoint."""
    zone = "Europe/Berlin"
    with psycopg.connect(url, row_factory=dict_row) as conn:
        provider = expect_row(conn.execute(QUERIES["insert_provider"], {
            "slug": f"chaos-{uuid.uuid4().hex[:8]}", "name": "Chaos Salon", "time_zone": zone, "currency": "EUR",
            "commission_bps": 1000, "hold_ttl_seconds": None,  # the fleet's short default
            "cancellation_policy": Jsonb([{"min_hours_before_start": 24, "refund_percent": 100},
                                          {"min_hours_before_start": 0, "refund_percent": 50}])}).fetchone(),
            "insert_provider")
        conn.execute("UPDATE providers SET payout_account = 'acct_chaos', contact_email = 'owner@chaos.example' "
                     "WHERE id = %s", (provider["id"],))
        service = expect_row(conn.execute(QUERIES["insert_service"], {
            "provider_id": provider["id"], "name": "Cut", "duration_minutes": 30, "price": 2501,
            "currency": "EUR"}).fetchone(), "insert_service")
        masters, listings = [], []
        for n in range(3):
            resource = expect_row(conn.execute(QUERIES["insert_resource"], {
                "provider_id": provider["id"], "kind": "slot", "name": f"Master {n}", "nightly_price": None}
            ).fetchone(), "insert_resource")
            conn.execute(QUERIES["offer_service"], {"resource_id": resource["id"], "service_id": service["id"]})
            for weekday in range(1, 8):
                conn.execute(QUERIES["insert_resource_hours"], {"resource_id": resource["id"], "weekday": weekday,
                                                                "opens_at": "08:00", "closes_at": "20:00"})
            masters.append(str(resource["id"]))
        for n in range(4):
            listing = expect_row(conn.execute(QUERIES["insert_resource"], {
                "provider_id": provider["id"], "kind": "stay", "name": f"Loft {n}", "nightly_price": 9001}
            ).fetchone(), "insert_resource")
            listings.append(str(listing["id"]))
        token = tokens.new_token(tokens.PUBLIC)
        conn.execute(QUERIES["insert_public_token"], {
            "digest": tokens.digest(token), "provider_id": provider["id"],
            "prefix": token[:tokens.SHOWN_PREFIX_LENGTH], "name": "chaos widget", "allowed_origins": []})
    system = fleet.env["SYSTEM_TOKEN"]
    endpoint = httpx.post(f"{fleet.base_url}/v1/providers/{provider['id']}/webhook-endpoints",
                          json={"url": receiver.url}, timeout=10,
                          headers={"X-System-Token": system, "Idempotency-Key": uuid.uuid4().hex})
    if endpoint.status_code != 201:
        raise RuntimeError(f"registering the receiver failed: {endpoint.status_code} {endpoint.text}")
    return Catalog(provider_id=str(provider["id"]), time_zone=zone, slot_resources=masters,
                   service_id=str(service["id"]), listings=listings, public_token=token, system_token=system)


def _rabbit_vhost() -> str:
    name = f"totem-chaos-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", name)
    _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    return name


def _rabbitmqctl(*args: str) -> None:
    binary = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stdout}{done.stderr}")


# --- while it runs and after ------------------------------------------------------------------------------
def _settlement_round(url: str, day: int) -> int:
    """Close the settlement period ending ``day`` days from now, as the scheduler closes each real day: the
    payable of every booking completed so far is batched and its payout jobs are left queued, for the
    scheduler's sweeper to hand out. 1 when it ran, 0 when Postgres was down (the next round tries again)."""
    try:
        with psycopg.connect(url, row_factory=dict_row, autocommit=True, connect_timeout=3) as conn:
            close_due_periods(conn, now=datetime.now(UTC) + timedelta(days=day), max_attempts=8)
    except psycopg.OperationalError:
        return 0
    return 1


def _revive(fleet: Fleet, say: Callable[[str], None]) -> None:
    """Every process must be running for the run to settle; one that exited on its own is said (a finding)."""
    for name, code in fleet.exited().items():
        say(f"chaos: {name} had exited on its own (code {code}); started again")
        fleet.restart(name)
    wait_ready(fleet.base_url + "/readyz", 60)


SETTLED = """
SELECT (SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')) AS open_jobs,
       (SELECT count(*) FROM outbox WHERE published_at IS NULL) AS unpublished_events,
       (SELECT count(*) FROM stripe_events WHERE status = 'received') AS unapplied_stripe_events,
       (SELECT count(*) FROM deliveries WHERE status IN ('pending', 'failed')) AS undelivered_notifications,
       (SELECT count(*) FROM bookings WHERE status IN ('pending_payment', 'requested')) AS open_holds"""


def _settle(url: str, fleet: Fleet, timeout: float, say: Callable[[str], None]) -> list[str]:
    """Wait until nothing is left to do (twice in a row, a second apart); what is still open at the end."""
    until, quiet, last = time.monotonic() + timeout, 0, {}
    while time.monotonic() < until:
        try:
            with psycopg.connect(url, row_factory=dict_row, autocommit=True, connect_timeout=3) as conn:
                last = dict(conn.execute(SETTLED).fetchone() or {})
            webhooks = httpx.get(f"{fleet.stripe_url}/_fake/webhooks", timeout=5).json()
            last.update(stripe_webhooks_in_flight=webhooks["in_flight"] + webhooks["held"])
        except (psycopg.OperationalError, httpx.HTTPError) as exc:
            last = {"error": repr(exc)}
        quiet = quiet + 1 if last and not any(last.values()) else 0
        if quiet >= 2:
            return []
        time.sleep(1)
    say(f"chaos: not settled after {timeout:g} s: {last}")
    return [f"not settled after {timeout:g} s: {last}"]


def _reconcile(fleet: Fleet, catalog: Catalog) -> tuple[int, str | None]:
    """The product's own reconciliation, ledger against the fake's balance transactions: its mismatches."""
    headers = {"X-System-Token": catalog.system_token, "Idempotency-Key": uuid.uuid4().hex}
    with httpx.Client(base_url=fleet.base_url, timeout=10) as client:
        job_id = client.post("/v1/system/reconciliations", json={}, headers=headers).json()["job_id"]
        until = time.monotonic() + 60
        while time.monotonic() < until:
            job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
            if job["status"] == "succeeded":
                return len(job["result"]["mismatches"]), None
            if job["status"] == "failed":
                return 0, f"reconciliation failed: {job['error']}"
            time.sleep(0.3)
    return 0, "reconciliation did not finish within 60 s"


# --- the report -------------------------------------------------------------------------------------------
def table(result: Result) -> str:
    violations = list(result.violations.items())
    faults = list(result.faults.items())
    lines = [f"{'guarantee':<28}{'violations':>11}    {'fault injected':<32}{'count':>6}",
             "-" * 81]
    for i in range(max(len(violations), len(faults))):
        left = f"{violations[i][0]:<28}{violations[i][1]:>11}" if i < len(violations) else " " * 39
        right = f"{faults[i][0]:<32}{faults[i][1]:>6}" if i < len(faults) else ""
        lines.append(f"{left}    {right}")
    lines.append("-" * 81)
    lines.append(f"requests accepted {result.figures.get('requests_accepted')}, jobs terminal "
                 f"{result.figures.get('jobs_terminal')}, bookings {result.figures.get('bookings_by_status')}, "
                 f"payouts paid {result.figures.get('payouts_paid')}, refunds {result.figures.get('refunds')}; "
                 f"settled {result.figures.get('settle_seconds')} s after the load")
    lines += [f"problem: {p}" for p in result.problems]
    lines.append(f"{'PASS' if result.ok else 'FAIL'}: seed {result.seed}, {result.duration:g} s, broker "
                 f"{result.broker}; logs in {result.logs}")
    return "\n".join(lines)


def write_report(result: Result, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.as_json(), indent=2, default=str))


def main(options: Options) -> int:
    try:
        result = run(options, say=lambda line: print(line, flush=True))
    except Exception as exc:
        # the run itself broke (a server that would not come back, the database unreadable): still a report
        options.report.parent.mkdir(parents=True, exist_ok=True)
        options.report.write_text(json.dumps({"ok": False, "seed": options.seed, "error": repr(exc),
                                              "violations": {}, "faults": {}}, indent=2))
        raise
    print(table(result), flush=True)
    write_report(result, options.report)
    print(f"chaos: report written to {options.report}", flush=True)
    return 0 if result.ok else 1
