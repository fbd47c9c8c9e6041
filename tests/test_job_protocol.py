"""The job-row claim: a redelivered message never runs a job twice; a dead worker's job runs once more."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from shared.db import QUERIES, Pool, open_pool
from shared.errors import BookingSlotTaken
from shared.jobs import ClaimedJob, claim_job, requeue_stale_jobs, run_job


class Done(msgspec.Struct):
    ok: bool


@pytest.fixture
def pool(isolated_database_url: str) -> Iterator[Pool]:
    pool = open_pool(isolated_database_url, max_size=4, name="test-jobs")
    yield pool
    pool.close()


@pytest.fixture
def db(isolated_database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(isolated_database_url, row_factory=dict_row, autocommit=True) as conn:
        yield conn


def new_job(db: Any, max_attempts: int = 5) -> uuid.UUID:
    job_id = uuid.uuid4()
    db.execute(QUERIES["insert_job"], {"id": job_id, "type": "test.noop", "queue": "test-nowhere",
                                       "actor": "noop", "payload": Jsonb({}), "max_attempts": max_attempts,
                                       "request_id": None})
    return job_id


def job_row(db: Any, job_id: uuid.UUID) -> dict[str, Any]:
    return db.execute("SELECT * FROM jobs WHERE id = %s", (job_id,)).fetchone()  # type: ignore[no-any-return]


def test_a_second_delivery_finds_the_job_claimed_or_done(pool: Pool, db: Any) -> None:
    job_id = new_job(db)
    runs: list[uuid.UUID] = []

    def handler(conn: psycopg.Connection[Any], job: ClaimedJob) -> Done:
        runs.append(job.id)
        return Done(ok=True)

    with pool.connection() as conn:
        assert claim_job(conn, job_id, lease_seconds=30) is not None
        assert claim_job(conn, job_id, lease_seconds=30) is None  # in flight elsewhere: skip
    db.execute("UPDATE jobs SET status = 'queued', claim_token = NULL, claimed_until = NULL WHERE id = %s", (job_id,))
    assert run_job(pool, job_id, handler, lease_seconds=30) == "succeeded"
    assert run_job(pool, job_id, handler, lease_seconds=30) == "skipped"
    assert runs == [job_id]
    row = job_row(db, job_id)
    assert row["status"] == "succeeded" and row["result"] == {"ok": True} and row["claim_token"] is None


def test_a_worker_whose_lease_was_taken_over_commits_nothing(pool: Pool, db: Any) -> None:
    job_id = new_job(db)
    with pool.connection() as zombie_conn, pool.connection() as other_conn:
        zombie = claim_job(zombie_conn, job_id, lease_seconds=30)
        assert zombie is not None
        db.execute("UPDATE jobs SET claimed_until = now() - interval '1 second' WHERE id = %s", (job_id,))
        takeover = claim_job(other_conn, job_id, lease_seconds=30)
        assert takeover is not None and takeover.attempts == 2
        # The zombie wakes up and tries to finish inside its work transaction: the fence refuses it.
        from shared.jobs import finish_job

        with zombie_conn.transaction():
            zombie_conn.execute("CREATE TEMP TABLE IF NOT EXISTS side_effect (x int)")
            assert finish_job(zombie_conn, zombie, result=Done(ok=False)) is False
        with other_conn.transaction():
            assert finish_job(other_conn, takeover, result=Done(ok=True)) is True
    assert job_row(db, job_id)["result"] == {"ok": True}


def test_run_job_rolls_back_the_work_of_a_lost_lease(pool: Pool, db: Any) -> None:
    job_id = new_job(db)
    marker = uuid.uuid4().hex

    def slow_handler(conn: psycopg.Connection[Any], job: ClaimedJob) -> Done:
        conn.execute("INSERT INTO outbox (topic, aggregate_id, payload) VALUES (%s, %s, '{}')", (marker, job.id))
        # Meanwhile the lease runs out and the sweeper hands the job to someone else.
        with psycopg.connect(db.info.dsn, autocommit=True) as other:
            other.execute("UPDATE jobs SET status = 'queued', claim_token = NULL, claimed_until = NULL "
                          "WHERE id = %s", (job.id,))
        return Done(ok=True)

    assert run_job(pool, job_id, slow_handler, lease_seconds=30) == "lease_lost"
    assert db.execute("SELECT count(*) AS n FROM outbox WHERE topic = %s", (marker,)).fetchone()["n"] == 0
    assert job_row(db, job_id)["status"] == "queued"


def test_a_finish_statement_applies_its_work_only_with_the_lease(pool: Pool, db: Any,
                                                                  isolated_database_url: str) -> None:
    """A prepare step's Finish (one statement: the job closed and its work done) records the payment while the
    job is ours, and nothing at all once the lease was taken over."""
    from shared.booking import create_slot_booking, creation_params
    from shared.jobs import Finish
    from shared.schemas import Customer, SlotBookingRequest
    from tests.support import future, make_catalog

    catalog = make_catalog(isolated_database_url)
    with pool.connection() as conn:
        hold = create_slot_booking(conn, SlotBookingRequest(
            resource_id=uuid.UUID(catalog.resource_id), service_id=uuid.UUID(catalog.service_id),
            start_at=future(days=21), customer=Customer(name="Ada", email="ada@example.com")),
            job_id=uuid.uuid4(), default_hold_ttl_seconds=900, max_attempts=5, created=creation_params(None, "s"))

    db.execute("INSERT INTO booking_deposits (booking_id, provider_id, amount, currency) "  # the card is saved for
               "VALUES (%s, %s, 10000, 'EUR')", (hold.booking_id, catalog.provider_id))  # a deposit: its Customer

    def pay(intent: str, *, lose_lease: bool) -> Any:
        def prepare(conn: psycopg.Connection[Any], job: ClaimedJob) -> Finish:
            if lose_lease:  # the lease ran out meanwhile and the sweeper handed the job to someone else
                db.execute("UPDATE jobs SET status = 'queued', claim_token = NULL, claimed_until = NULL "
                           "WHERE id = %s", (job.id,))
            return Finish("finish_job_with_payment", {
                "booking_id": hold.booking_id, "payment_intent_id": intent, "client_secret": f"{intent}_secret",
                "amount": hold.amount, "currency": hold.currency, "customer_id": f"cus_{intent}"}, Done(ok=True))
        return prepare

    lost, kept = new_job(db), new_job(db)
    assert run_job(pool, lost, None, lease_seconds=30, prepare=pay("pi_lost", lose_lease=True)) == "lease_lost"
    assert run_job(pool, kept, None, lease_seconds=30, prepare=pay("pi_kept", lose_lease=False)) == "succeeded"
    payments = db.execute("SELECT payment_intent_id FROM payments WHERE booking_id = %s", (hold.booking_id,))
    assert [row["payment_intent_id"] for row in payments] == ["pi_kept"]
    deposit = db.execute("SELECT stripe_customer_id FROM booking_deposits WHERE booking_id = %s",
                         (hold.booking_id,)).fetchone()
    assert deposit["stripe_customer_id"] == "cus_pi_kept"
    assert job_row(db, lost)["status"] == "queued"
    assert job_row(db, kept)["status"] == "succeeded" and job_row(db, kept)["result"] == {"ok": True}


def test_a_domain_error_fails_the_job_with_its_code(pool: Pool, db: Any) -> None:
    job_id = new_job(db)

    def handler(conn: psycopg.Connection[Any], job: ClaimedJob) -> Done:
        raise BookingSlotTaken("taken")

    assert run_job(pool, job_id, handler, lease_seconds=30) == "failed"
    row = job_row(db, job_id)
    assert row["status"] == "failed" and row["error"] == {"code": "BOOKING_SLOT_TAKEN", "detail": "taken"}


def test_a_transient_error_hands_the_job_back_then_attempts_run_out(pool: Pool, db: Any) -> None:
    job_id = new_job(db, max_attempts=2)

    def flaky(conn: psycopg.Connection[Any], job: ClaimedJob) -> Done:
        raise ConnectionError("outside service down")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            run_job(pool, job_id, flaky, lease_seconds=30)
        assert job_row(db, job_id)["status"] == "queued"
    assert run_job(pool, job_id, flaky, lease_seconds=30) == "exhausted"
    row = job_row(db, job_id)
    assert row["status"] == "failed" and row["error"]["code"] == "JOB_ATTEMPTS_EXHAUSTED"
    assert row["attempts"] == 3


def test_the_sweeper_requeues_lost_enqueues_and_expired_leases(pool: Pool, db: Any) -> None:
    lost, dead, fresh = new_job(db), new_job(db), new_job(db)
    db.execute("UPDATE jobs SET enqueued_at = now() - interval '1 hour' WHERE id = %s", (lost,))
    with pool.connection() as conn:
        assert claim_job(conn, dead, lease_seconds=30) is not None
    db.execute("UPDATE jobs SET claimed_until = now() - interval '1 second' WHERE id = %s", (dead,))
    with pool.connection() as conn:
        requeued = {row["id"] for row in requeue_stale_jobs(conn, after_seconds=60)}
    assert {lost, dead} <= requeued and fresh not in requeued
    assert job_row(db, dead)["status"] == "queued" and job_row(db, dead)["claim_token"] is None
    with pool.connection() as conn:  # just re-enqueued: not picked again on the next pass
        again = {row["id"] for row in requeue_stale_jobs(conn, after_seconds=60)}
    assert not {lost, dead} & again


def test_the_sweeper_backs_off_a_job_that_may_only_be_waiting_in_a_long_queue(pool: Pool, db: Any) -> None:
    """Each re-enqueue of a job still queued waits as long as the job had already waited (doubling, capped at
    16 x after): a backlog is not re-sent whole on every pass (issue 16, found by `totem chaos`)."""
    first, twice, patient, capped = new_job(db), new_job(db), new_job(db), new_job(db)
    ages = {first: ("3 seconds", "3 seconds"),  # never re-enqueued: after_seconds is enough
            twice: ("10 seconds", "6 seconds"),  # had waited 4 s before its last re-enqueue, waited 6 since
            patient: ("100 seconds", "5 seconds"),  # had waited 95 s: the next one waits 32 s (the cap)
            capped: ("1000 seconds", "40 seconds")}  # past the cap
    for job, (created, enqueued) in ages.items():
        db.execute("UPDATE jobs SET created_at = now() - %s::interval, enqueued_at = now() - %s::interval "
                   "WHERE id = %s", (created, enqueued, job))
    with pool.connection() as conn:
        requeued = {row["id"] for row in requeue_stale_jobs(conn, after_seconds=2)}
    assert {first, twice, capped} <= requeued and patient not in requeued
