"""The job-row protocol that makes at-least-once delivery exactly-once in effect.

Connections are in autocommit mode: a lone statement is its own transaction. Phase 1 (claim) commits
``status = running`` with a fresh ``claim_token`` and a lease. Phase 2 runs the handler and ``finish_job``
in ONE transaction; ``finish_job`` matches only while we still hold the token,
so if the lease ran out and another worker took the job over, phase 2 rolls back whole. Hence:

* a duplicate delivery finds the job running (lease live) or finished and does nothing;
* a worker killed mid-job leaves the job running; when its lease runs out the scheduler's sweeper puts it
  back to queued and re-enqueues it, and the next claim runs it once (phase 2 never committed);
* a job is claimed at most ``max_attempts`` times, then fails with ``JOB_ATTEMPTS_EXHAUSTED``, so every
  accepted job reaches a terminal status.

A job that calls an outside service (Stripe) does so in an optional ``prepare`` step between claim and
work: it runs on the autocommit connection (it may commit steps of its own, each idempotent on retry) and
returns the handler for the work transaction. The outside call itself is made idempotent by a key derived
from our rows, so a retried job repeats it harmlessly. No transaction is ever held open across it.

A prepare step whose work is a single statement may return it as a ``Finish`` instead of a handler: that
statement closes the job the way ``finish_job`` does (fenced by the claim token) and applies the work only if
it did, so the work and the job's status commit together in ONE statement, without BEGIN and COMMIT round
trips; a lost lease applies nothing.

A handler may stage follow-up jobs (rows inserted in its transaction) with ``job.follow_up``; they are
enqueued once the work commits (and swept up by the scheduler if that enqueue is lost). It may also
*return* a DomainError instead of raising it: the job then fails with that error in the same transaction
as the handler's writes (e.g. a refund marked failed together with its job).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import psycopg
import structlog
from psycopg.types.json import Jsonb

from shared.db import QUERIES, Pool
from shared.errors import DomainError, JobAttemptsExhausted
from shared.registry import job_route

log = logging.getLogger("totem.jobs")


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: uuid.UUID
    type: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    request_id: str | None
    token: uuid.UUID
    caller: dict[str, Any] | None = None  # who asked for it (gateway-accepted jobs), as Caller.job_caller()
    follow_ups: list[tuple[str, uuid.UUID]] = field(default_factory=list)

    def follow_up(self, conn: psycopg.Connection[Any], job_type: str, payload: msgspec.Struct) -> uuid.UUID:
        """Insert a job row in the current transaction; it is enqueued after the commit."""
        job_id = insert_job(conn, job_type, payload, max_attempts=self.max_attempts, request_id=self.request_id)
        self.follow_ups.append((job_type, job_id))
        return job_id


def insert_job(conn: psycopg.Connection[Any], job_type: str, payload: msgspec.Struct | dict[str, Any], *,
               max_attempts: int, request_id: str | None = None) -> uuid.UUID:
    """A queued job row, routed by the registry, in the caller's transaction (the caller enqueues it after the
    commit; if that is lost the scheduler's sweeper does)."""
    job_id = uuid.uuid4()
    conn.execute(QUERIES["insert_job"], {"id": job_id, **job_route(job_type), "payload": Jsonb(payload),
                                         "max_attempts": max_attempts, "request_id": request_id})
    return job_id


@dataclass(frozen=True, slots=True)
class Finish:
    """A job's work as one named statement that also finishes it (see the module's docstring): ``query``
    takes the job's ``id``, ``token`` and ``result`` besides ``params``, and returns a row only if it closed
    the job."""

    query: str
    params: dict[str, Any]
    result: msgspec.Struct


Handler = Callable[[psycopg.Connection[Any], ClaimedJob], "msgspec.Struct | DomainError"]
Prepare = Callable[[psycopg.Connection[Any], ClaimedJob], "Handler | Finish"]
Enqueue = Callable[[str, uuid.UUID], None]


def claim_job(conn: psycopg.Connection[Any], job_id: uuid.UUID, lease_seconds: float) -> ClaimedJob | None:
    token = uuid.uuid4()
    row = conn.execute(QUERIES["claim_job"], {"id": job_id, "token": token, "lease_seconds": lease_seconds}).fetchone()
    if row is None:
        return None
    return ClaimedJob(token=token, **row)


def finish_job(
    conn: psycopg.Connection[Any], job: ClaimedJob, *, result: msgspec.Struct | None = None,
    error: DomainError | None = None,
) -> bool:
    params = {
        "id": job.id, "token": job.token,
        "status": "failed" if error else "succeeded",
        "result": Jsonb(result) if result is not None else None,
        "error": Jsonb(error.as_dict()) if error else None,
    }
    return conn.execute(QUERIES["finish_job"], params).fetchone() is not None


def _finish_with(conn: psycopg.Connection[Any], job: ClaimedJob, finish: Finish) -> bool:
    params = {**finish.params, "id": job.id, "token": job.token, "result": Jsonb(finish.result)}
    return conn.execute(QUERIES[finish.query], params).fetchone() is not None


class LeaseLost(Exception):
    """Our claim was taken over (lease ran out); this attempt's work must not commit."""


def run_job(pool: Pool, job_id: uuid.UUID, handler: Handler | None, *, lease_seconds: float,
            prepare: Prepare | None = None, enqueue: Enqueue | None = None) -> str:
    """Run one job to a terminal state at most once; returns what happened, for logs and metrics.

    A pooled connection that died with its server (a Postgres restart) fails at the claim, before anything
    happened: the pool then drops every dead idle connection and the claim runs once more on a fresh one, so
    no message is lost to a stale connection (a second failure is a real outage: the message is retried)."""
    try:
        return _claim_and_run(pool, job_id, handler, lease_seconds, prepare, enqueue)
    except StaleConnection:
        log.warning("a pooled database connection was dead; checking the pool and claiming again",
                    extra={"job_id": str(job_id)})
        pool.check()
        return _claim_and_run(pool, job_id, handler, lease_seconds, prepare, enqueue)


class StaleConnection(Exception):
    """The claim failed on a connection the server had closed: nothing was done."""


def _claim_and_run(pool: Pool, job_id: uuid.UUID, handler: Handler | None, lease_seconds: float,
                   prepare: Prepare | None, enqueue: Enqueue | None) -> str:
    with pool.connection() as conn:
        try:
            job = claim_job(conn, job_id, lease_seconds)
        except psycopg.OperationalError as exc:
            if conn.closed or conn.broken:
                raise StaleConnection(str(job_id)) from exc
            raise
        if job is None:
            return "skipped"
        structlog.contextvars.bind_contextvars(request_id=job.request_id)  # gateway -> job -> worker
        if job.attempts > job.max_attempts:
            finish_job(conn, job, error=JobAttemptsExhausted(f"gave up after {job.max_attempts} attempts"))
            return "exhausted"
        try:
            work = prepare(conn, job) if prepare is not None else handler
            if isinstance(work, Finish):
                if not _finish_with(conn, job, work):
                    raise LeaseLost(str(job.id))
                _enqueue_follow_ups(job, enqueue)  # any the prepare step staged in steps of its own
                return "succeeded"
            if work is None:
                raise TypeError("run_job needs a handler or a prepare step")
            # no psycopg pipeline: it saves round trips but costs more client CPU than it saves (measured: a
            # bookings worker spent 17 % more CPU per job with its two transactions pipelined)
            with conn.transaction():
                outcome = work(conn, job)
                error, result = (outcome, None) if isinstance(outcome, DomainError) else (None, outcome)
                if not finish_job(conn, job, result=result, error=error):
                    raise LeaseLost(str(job.id))
            _enqueue_follow_ups(job, enqueue)
            return "failed" if error else "succeeded"
        except DomainError as exc:
            finish_job(conn, job, error=exc)
            return "failed"
        except LeaseLost:
            log.warning("job lease lost; another worker owns it now", extra={"job_id": str(job.id)})
            return "lease_lost"
        except Exception:
            _release_quietly(conn, job)
            raise


def _enqueue_follow_ups(job: ClaimedJob, enqueue: Enqueue | None) -> None:
    for job_type, follow_up_id in job.follow_ups:
        try:
            if enqueue is None:
                raise RuntimeError("no enqueue function")
            enqueue(job_type, follow_up_id)
        except Exception as exc:  # noqa: BLE001 - the row is committed: the sweeper enqueues it later
            log.warning("follow-up enqueue failed; the sweeper will enqueue it",
                        extra={"job_id": str(follow_up_id), "error": type(exc).__name__})


def _release_quietly(conn: psycopg.Connection[Any], job: ClaimedJob) -> None:
    """After a transient failure hand the job back at once; if even that fails, the lease expiry does it."""
    try:
        if conn.closed or conn.broken:
            return
        conn.execute(QUERIES["release_job"], {"id": job.id, "token": job.token})
    except psycopg.Error:
        log.warning("could not release job; its lease will expire", extra={"job_id": str(job.id)})


def requeue_stale_jobs(
    conn: psycopg.Connection[Any], *, after_seconds: float, limit: int = 1000
) -> list[dict[str, Any]]:
    return conn.execute(QUERIES["requeue_stale_jobs"], {"after_seconds": after_seconds, "limit": limit}).fetchall()
