"""The scheduler: exactly one leader among any number of instances runs the periodic work.

Leadership is a TTL lease row (``scheduler_leases``), renewed every tick; a crashed leader is replaced
within ``SCHEDULER_LEASE_SECONDS``. Every periodic task is idempotent, so the brief overlap possible when
a paused leader resumes after losing its lease does no harm: a job re-enqueued twice is claimed once, a
hold expires once (the transition trigger refuses a second change), a purged key is gone.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dramatiq
import psycopg
import redis
from prometheus_client import CollectorRegistry, Counter, Gauge

from shared import deposits
from shared.booking import expire_overdue_holds
from shared.broker import build_message, make_broker, message_for, queue_depth
from shared.config import Settings
from shared.db import QUERIES, Pool, open_pool
from shared.exporter import export_metrics
from shared.jobs import insert_job, requeue_stale_jobs
from shared.logs import configure_logging
from shared.registry import (
    DEPOSIT_AUTHORIZE,
    DEPOSIT_RELEASE,
    LEDGER_RECONCILE,
    NOTIFICATION_DELIVER,
    PAYMENT_CANCEL_INTENT,
    PAYOUT_SEND,
    QUEUES,
    job_route,
)
from shared.settlement import close_due_periods

log = logging.getLogger("totem.scheduler")
LEASE_NAME = "scheduler"


class Gauges:
    """What SREs watch, refreshed by every scheduler instance each tick (leader or not)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.leader = Gauge("totem_scheduler_leader", "1 while this instance leads", registry=registry)
        self.queue_depth = Gauge("totem_queue_depth", "Messages waiting in the broker", ["queue"], registry=registry)
        self.open_jobs = Gauge("totem_jobs_open", "Jobs queued or running", ["queue", "status"], registry=registry)
        self.outbox_lag = Gauge("totem_outbox_lag_seconds", "Age of the oldest unpublished outbox row",
                                registry=registry)
        self.outbox_pending = Gauge("totem_outbox_pending", "Unpublished outbox rows", registry=registry)
        self.ticks = Counter("totem_scheduler_ticks", "Scheduler ticks by outcome", ["outcome"], registry=registry)
        self.deliveries = Gauge("totem_deliveries", "Deliveries not yet delivered, by channel and status",
                                ["channel", "status"], registry=registry)

    def refresh(self, conn: psycopg.Connection[Any], broker: dramatiq.Broker, namespace: str, leader: bool) -> None:
        self.leader.set(1 if leader else 0)
        for row in conn.execute(QUERIES["job_counts"]).fetchall():
            self.open_jobs.labels(row["queue"], row["status"]).set(row["n"])
        lag = conn.execute(QUERIES["outbox_lag"]).fetchone()
        if lag is not None:
            self.outbox_lag.set(float(lag["lag_seconds"]))
            self.outbox_pending.set(lag["pending"])
        for row in conn.execute(QUERIES["delivery_counts"]).fetchall():
            self.deliveries.labels(row["channel"], row["status"]).set(row["n"])
        for queue in QUEUES:
            self.queue_depth.labels(queue).set(queue_depth(broker, namespace, queue))


@dataclass
class Scheduler:
    settings: Settings
    pool: Pool
    broker: dramatiq.Broker
    holder: str = field(default_factory=lambda: f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}")
    stopping: threading.Event = field(default_factory=threading.Event)
    is_leader: bool = False
    last_purge: float = float("-inf")
    gauges: Gauges | None = None

    def acquire_leadership(self, conn: psycopg.Connection[Any]) -> bool:
        with conn.transaction():
            row = conn.execute(QUERIES["acquire_leadership"], {
                "name": LEASE_NAME, "holder": self.holder, "ttl_seconds": self.settings.scheduler_lease_seconds,
            }).fetchone()
        leader = row is not None
        if leader != self.is_leader:
            log.info("leadership %s", "acquired" if leader else "lost", extra={"holder": self.holder})
        self.is_leader = leader
        return leader

    def requeue_stale_jobs(self, conn: psycopg.Connection[Any]) -> int:
        jobs = requeue_stale_jobs(conn, after_seconds=self.settings.job_requeue_after_seconds)
        sent = 0
        for job in jobs:
            try:
                self.broker.enqueue(message_for(job["queue"], job["actor"], job["id"]))
                sent += 1
            except Exception as exc:  # noqa: BLE001 - Redis down: the job stays queued for the next pass
                log.warning("re-enqueue failed; will retry", extra={"job_id": str(job["id"]), "error": repr(exc)})
                break
        return sent

    def run_once(self) -> dict[str, int] | None:
        """One tick: renew or take the lease; if leading, run every periodic task once."""
        with self.pool.connection() as conn:
            leader = self.acquire_leadership(conn)
            if self.gauges is not None:
                self._refresh_gauges(self.gauges, conn, leader)
            if not leader:
                return None
            done = {
                "requeued_jobs": self.requeue_stale_jobs(conn),
                "expired_holds": self._expire_holds(conn),
                "deposits_to_hold": self._hold_due_deposits(conn),
                "deposits_released": self._release_lapsed_deposits(conn),
                "purged_idempotency_keys": self._purge_keys(conn),
                "payouts_created": self._settle(conn),
                "payouts_redriven": self._redrive_payouts(conn),
                "reconciliations_queued": self._reconcile_if_due(conn),
                "deliveries_redriven": self._redrive_deliveries(conn),
                "rows_purged": self._purge_old_rows(conn),
            }
        if any(done.values()):
            log.info("scheduler tick", extra=done)
        return done

    def _refresh_gauges(self, gauges: Gauges, conn: psycopg.Connection[Any], leader: bool) -> None:
        try:
            gauges.refresh(conn, self.broker, self.settings.redis_namespace, leader)
        except (psycopg.Error, redis.RedisError) as exc:  # metrics never stop the periodic work
            log.warning("could not refresh gauges", extra={"error": type(exc).__name__})

    def _expire_holds(self, conn: psycopg.Connection[Any]) -> int:
        expired, cancel_jobs = expire_overdue_holds(conn, max_attempts=self.settings.job_max_attempts)
        self._enqueue(PAYMENT_CANCEL_INTENT, cancel_jobs)
        return expired

    def _hold_due_deposits(self, conn: psycopg.Connection[Any]) -> int:
        """Stays beginning within DEPOSIT_AUTHORIZE_BEFORE_HOURS get their security deposit held."""
        with conn.transaction():
            jobs = deposits.stage_due_authorizations(conn, before_hours=self.settings.deposit_authorize_before_hours,
                                                     max_attempts=self.settings.job_max_attempts)
        self._enqueue(DEPOSIT_AUTHORIZE, jobs)
        return len(jobs)

    def _release_lapsed_deposits(self, conn: psycopg.Connection[Any]) -> int:
        """Held deposits nobody claimed within DEPOSIT_CLAIM_WINDOW_HOURS of check-out are released."""
        with conn.transaction():
            jobs = deposits.stage_lapsed_releases(conn, max_attempts=self.settings.job_max_attempts)
        self._enqueue(DEPOSIT_RELEASE, jobs)
        return len(jobs)

    def _settle(self, conn: psycopg.Connection[Any]) -> int:
        """Close every provider's ended settlement period into a payout batch; send its payouts."""
        closed, jobs = close_due_periods(conn, now=datetime.now(UTC), max_attempts=self.settings.job_max_attempts)
        for period in closed:
            log.info("settlement period closed", extra={"provider_id": str(period.provider_id),
                                                        "batch_id": str(period.batch_id),
                                                        "payouts": len(period.payouts)})
        self._enqueue(PAYOUT_SEND, jobs)
        return len(jobs)

    def _redrive_payouts(self, conn: psycopg.Connection[Any]) -> int:
        rows = conn.execute(QUERIES["redrive_stuck_payouts"], {
            **job_route(PAYOUT_SEND), "max_attempts": self.settings.job_max_attempts,
            "after_seconds": self.settings.payout_redrive_after_seconds}).fetchall()
        self._enqueue(PAYOUT_SEND, [row["id"] for row in rows])
        return len(rows)

    def _reconcile_if_due(self, conn: psycopg.Connection[Any]) -> int:
        if self.settings.reconcile_interval_seconds <= 0:  # 0: only on demand (POST /v1/system/reconciliations)
            return 0
        row = conn.execute(QUERIES["reconcile_due"], {"interval": self.settings.reconcile_interval_seconds,
                                                      "type": LEDGER_RECONCILE}).fetchone()
        if not (row and row["due"]):
            return 0
        job_id = insert_job(conn, LEDGER_RECONCILE, {}, max_attempts=self.settings.job_max_attempts)
        self._enqueue(LEDGER_RECONCILE, [job_id])
        return 1

    def _enqueue(self, job_type: str, job_ids: list[uuid.UUID]) -> None:
        for job_id in job_ids:  # committed rows: a failed send is picked up by the sweeper
            try:
                self.broker.enqueue(build_message(job_type, job_id))
            except Exception as exc:  # noqa: BLE001
                log.warning("enqueue failed; the sweeper will retry", extra={"job_id": str(job_id), "error": repr(exc)})
                break

    def _redrive_deliveries(self, conn: psycopg.Connection[Any]) -> int:
        """Failed deliveries whose next attempt is due (by the retry schedule, or "retry now") get a job."""
        rows = conn.execute(QUERIES["redrive_due_deliveries"], {
            **job_route(NOTIFICATION_DELIVER), "max_attempts": self.settings.job_max_attempts, "limit": 500,
            "stuck_after_seconds": self.settings.notify_stuck_after_seconds}).fetchall()
        self._enqueue(NOTIFICATION_DELIVER, [row["id"] for row in rows])
        return len(rows)

    def _purge_old_rows(self, conn: psycopg.Connection[Any]) -> int:
        """Retention: finished jobs and published outbox rows (with their deliveries and in-app
        notifications) older than RETENTION_JOBS_DAYS / RETENTION_EVENTS_DAYS, a batch at most once a minute."""
        if time.monotonic() - self.last_purge < 60:
            return 0
        self.last_purge = time.monotonic()
        with conn.transaction():
            row = conn.execute(QUERIES["purge_old_rows"], {
                "jobs_days": self.settings.retention_jobs_days, "events_days": self.settings.retention_events_days,
                "limit": 5000}).fetchone()
        return int(row["jobs"]) + int(row["events"]) if row else 0

    def _purge_keys(self, conn: psycopg.Connection[Any]) -> int:
        with conn.transaction():
            return conn.execute(QUERIES["purge_expired_idempotency_keys"], {"limit": 5000}).rowcount

    def run(self) -> None:
        interval = min(self.settings.scheduler_interval_seconds, self.settings.scheduler_lease_seconds / 3)
        log.info("scheduler started", extra={"holder": self.holder, "interval": interval})
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                self.run_once()
                if self.gauges is not None:
                    self.gauges.ticks.labels("ok").inc()
            except Exception:  # a failed tick (DB/Redis restart) is retried next tick
                log.exception("scheduler tick failed")
                if self.gauges is not None:
                    self.gauges.ticks.labels("failed").inc()
            self.stopping.wait(max(0.0, interval - (time.monotonic() - started)))
        self._step_down()

    def _step_down(self) -> None:
        if not self.is_leader:
            return
        try:
            with self.pool.connection() as conn, conn.transaction():
                conn.execute(QUERIES["release_leadership"], {"name": LEASE_NAME, "holder": self.holder})
            log.info("leadership released", extra={"holder": self.holder})
        except psycopg.Error:
            log.warning("could not release leadership; it expires with its lease")


def main() -> None:
    settings = Settings.from_env()
    configure_logging(settings.log_level, "scheduler")
    pool = open_pool(settings.database_url, max_size=2, name="totem-scheduler")
    registry = CollectorRegistry()
    scheduler = Scheduler(settings=settings, pool=pool, broker=make_broker(settings), gauges=Gauges(registry))
    export_metrics(registry, settings.scheduler_metrics_port, "scheduler")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: scheduler.stopping.set())
    try:
        scheduler.run()
    finally:
        pool.close()
