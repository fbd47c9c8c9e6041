"""The outbox relay: publishes every outbox row exactly once, as deliveries.

Each batch is ONE statement and so one transaction (``relay_fan_out``): claim unpublished rows in id
order with ``FOR UPDATE SKIP LOCKED``, insert their deliveries (UNIQUE per event, channel, recipient) and
in-app notifications, stage the send jobs, mark the rows published. Then the send jobs are enqueued. So:

* any number of relays may run: SKIP LOCKED hands each row to one of them;
* a relay killed before its commit published nothing (the rows are claimed again); killed after it, the
  rows are published and their jobs are durable: the scheduler's sweeper enqueues jobs left queued;
* a row is never fanned out twice: it is published in the transaction that fans it out, and the UNIQUE
  key would refuse a second fan-out anyway;
* a row whose payload makes the statement fail (a refused cast or constraint) cannot stop the rows behind
  it: after such a failure the relay goes on one event per transaction and sets the failing one aside
  (published with no deliveries, ``relay_error`` set, logged and counted; migration 0007 says how to re-drive).

The relay polls every ``RELAY_POLL_SECONDS`` and also LISTENs on ``totem_outbox``. The statement-level trigger
that NOTIFYs there is created disabled (migration 0006): NOTIFY serialises commits on a database-wide lock,
which cost the booking job's SQL ~15 % of its ceiling in the bench; an operator may enable it for a lower
lag. Either way a lost notification only delays publishing until the next poll.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

import dramatiq
import psycopg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.broker import build_message, make_broker
from shared.config import Settings
from shared.db import Pool, open_pool
from shared.exporter import export_metrics
from shared.logs import configure_logging
from shared.notifications import DATA_ERRORS, FanOut, fan_out, fan_out_one_by_one
from shared.registry import NOTIFICATION_DELIVER

log = logging.getLogger("totem.relay")
CHANNEL = "totem_outbox"


class RelayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter("totem_relay_events", "Outbox events published by this relay", registry=registry)
        self.batches = Counter("totem_relay_batches", "Relay batches by outcome", ["outcome"], registry=registry)
        self.lag = Gauge("totem_relay_lag_seconds", "Age of the oldest event in the last batch published",
                         registry=registry)
        self.batch_seconds = Histogram("totem_relay_batch_seconds", "Time to publish one batch", registry=registry)
        self.set_aside = Counter("totem_relay_events_set_aside", "Outbox events set aside: their fan-out failed alone",
                                 registry=registry)


class Relay:
    def __init__(self, settings: Settings, pool: Pool, broker: dramatiq.Broker, metrics: RelayMetrics | None = None):
        self.settings = settings
        self.pool = pool
        self.broker = broker
        self.metrics = metrics
        self.stopping = threading.Event()

    def run_once(self) -> int:
        """Publish one batch; returns how many events it published."""
        started = time.monotonic()
        with self.pool.connection() as conn:
            batch = self._publish(conn)
        for job_id in batch.jobs:  # committed rows: a lost enqueue is the sweeper's
            try:
                self.broker.enqueue(build_message(NOTIFICATION_DELIVER, job_id))
            except Exception as exc:  # noqa: BLE001 - Redis down: the sweeper enqueues these jobs later
                log.warning("enqueue failed; the sweeper will enqueue it", extra={"error": type(exc).__name__})
                break
        if self.metrics is not None and batch.events:
            self.metrics.events.inc(batch.events)
            self.metrics.lag.set(batch.oldest_seconds)
            self.metrics.batch_seconds.observe(time.monotonic() - started)
        return batch.events

    def _publish(self, conn: psycopg.Connection[Any]) -> FanOut:
        limit, attempts = self.settings.relay_batch_size, self.settings.job_max_attempts
        try:
            return fan_out(conn, limit=limit, max_attempts=attempts)
        except DATA_ERRORS as exc:
            log.warning("relay batch refused on its data; publishing one event at a time",
                        extra={"error": type(exc).__name__, "sqlstate": exc.sqlstate})
            return fan_out_one_by_one(conn, limit=limit, max_attempts=attempts, set_aside=self._set_aside)

    def _set_aside(self, event_id: int, reason: str) -> None:
        log.error("outbox event set aside: its fan-out fails", extra={"event_id": event_id, "reason": reason})
        if self.metrics is not None:
            self.metrics.set_aside.inc()

    def run(self) -> None:
        log.info("relay started", extra={"batch": self.settings.relay_batch_size,
                                         "poll_seconds": self.settings.relay_poll_seconds})
        listener: psycopg.Connection[tuple[object, ...]] | None = None
        while not self.stopping.is_set():
            try:
                if listener is None or listener.closed:
                    listener = psycopg.connect(self.settings.database_url, autocommit=True)
                    listener.execute(f"LISTEN {CHANNEL}")
                published = self.run_once()
                self._count("ok")
                if published >= self.settings.relay_batch_size:
                    continue  # a full batch: there is more, go on at once
                for _ in listener.notifies(timeout=self.settings.relay_poll_seconds, stop_after=1):
                    pass
                for _ in listener.notifies(timeout=0):  # drain: one batch serves every commit so far
                    pass
            except psycopg.Error as exc:  # Postgres restarting: wait a poll interval, reconnect
                log.warning("relay batch failed; retrying", extra={  # no detail: it may quote a payload's value
                    "error": type(exc).__name__, "sqlstate": exc.sqlstate})
                self._count("failed")
                if listener is not None:
                    listener.close()
                listener = None
                self.stopping.wait(self.settings.relay_poll_seconds)
        if listener is not None:
            listener.close()

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.batches.labels(outcome).inc()


def main() -> None:
    settings = Settings.from_env()
    configure_logging(settings.log_level, "relay")
    pool = open_pool(settings.database_url, max_size=2, name="totem-relay")
    registry = CollectorRegistry()
    relay = Relay(settings, pool, make_broker(settings), RelayMetrics(registry))
    export_metrics(registry, settings.relay_metrics_port, "relay")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: relay.stopping.set())
    try:
        relay.run()
    finally:
        pool.close()
