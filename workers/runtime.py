"""Worker process bootstrap: settings, broker and a Postgres pool per process, and the job actor decorator.

Dramatiq's CLI imports a worker module in every worker process; importing it calls ``boot()`` once, which
builds the settings from the environment and installs the broker. The pool opens after the process boots
(never across a fork) and closes when the worker shuts down.
"""

from __future__ import annotations

import logging
import signal
import uuid
from typing import Any

import dramatiq
import structlog
from dramatiq.middleware.prometheus import Prometheus

from shared.broker import build_message, make_broker
from shared.config import Settings
from shared.db import Pool, open_pool
from shared.jobs import Handler, Prepare, run_job
from shared.logs import configure_logging
from shared.registry import JOB_TYPES
from shared.stripe_api import StripeApi

log = logging.getLogger("totem.worker")


class PoolMiddleware(dramatiq.Middleware):
    """Own this process's Postgres pool: open on boot, close on shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool: Pool | None = None

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        self.pool = open_pool(self.settings.database_url, max_size=self.settings.db_pool_max, name="totem-worker")
        _one_sigterm_is_enough()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.pool is not None:
            self.pool.close()


def _one_sigterm_is_enough() -> None:
    """In a worker process: the first SIGTERM stops it gracefully (Dramatiq's handler: stop taking messages,
    finish the ones in hand); a repeat is ignored, where Dramatiq would exit at once and drop them. A process
    group signalled as a whole (systemd's KillMode=control-group, ``kill -- -PGID``, a container runtime) gets
    SIGTERM from the signaller and again from the pool's master. SIGKILL still stops it at once."""
    original = signal.getsignal(signal.SIGTERM)
    if not callable(original):
        return
    stopping = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal stopping
        if stopping:
            log.info("another SIGTERM: already stopping, finishing the jobs in hand")
            return
        stopping = True
        original(signum, frame)

    signal.signal(signal.SIGTERM, handler)


class Runtime:
    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.pools: PoolMiddleware | None = None
        self._stripe: StripeApi | None = None

    def boot(self) -> Settings:
        if self.settings is None:
            settings = Settings.from_env()
            configure_logging(settings.log_level, "worker")
            self.pools = PoolMiddleware(settings)
            dramatiq.set_broker(make_broker(settings, [self.pools, Prometheus()]))
            self.settings = settings
        return self.settings

    @property
    def stripe(self) -> StripeApi:
        """This process's Stripe client (made on first use, after the fork)."""
        if self._stripe is None:
            self._stripe = StripeApi(self.boot())
        return self._stripe

    @property
    def pool(self) -> Pool:
        if self.pools is None or self.pools.pool is None:
            raise RuntimeError("worker pool not open: the process has not booted")
        return self.pools.pool


runtime = Runtime()


def enqueue(job_type: str, job_id: uuid.UUID) -> None:
    """Send a follow-up job by name (its actor may live in another pool)."""
    dramatiq.get_broker().enqueue(build_message(job_type, job_id))


def job_actor(job_type: str, handler: Handler | None = None, *, prepare: Prepare | None = None,
              **options: Any) -> dramatiq.Actor[[str], None]:
    """The Dramatiq actor of a registered job type (its queue and actor name come from the registry); it
    runs ``handler`` under the job-row protocol (see shared/jobs.py). ``prepare`` runs first, outside any
    transaction (outside calls), and returns the handler to run instead."""
    settings = runtime.boot()
    route = JOB_TYPES[job_type]
    queue, name = route.queue, route.actor

    def run(job_id: str) -> None:
        structlog.contextvars.bind_contextvars(job_id=job_id)
        try:
            outcome = run_job(runtime.pool, uuid.UUID(job_id), handler, lease_seconds=settings.job_lease_seconds,
                              prepare=prepare, enqueue=enqueue)
            log.info("job %s", outcome, extra={"queue": queue, "actor": name})
        finally:
            structlog.contextvars.unbind_contextvars("job_id", "request_id")

    run.__name__ = name
    options = {"max_retries": 5, "min_backoff": 250, "max_backoff": 10_000, **options}
    return dramatiq.actor(queue_name=queue, actor_name=name, **options)(run)
