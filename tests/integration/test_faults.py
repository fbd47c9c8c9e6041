"""Nothing accepted is lost: a worker killed with SIGKILL mid-job, Redis stopped while clients post."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from tests.support import FAST_TIMINGS, api_client, future, make_catalog, new_key, wait_for, wait_job
from totem.embedded import PrivatePostgres, PrivateRedis
from totem.fleet import Fleet
from totem.migrate import create_database, migrate

pytestmark = __import__("pytest").mark.fault


def _query(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def _hold_slot_uncommitted(url: str, catalog: Any, start: Any) -> psycopg.Connection[Any]:
    """Park a worker inside its job: an uncommitted overlapping booking makes its INSERT wait on us."""
    blocker = psycopg.connect(url)
    blocker.execute(
        """INSERT INTO bookings (id, kind, status, resource_id, provider_id, period, amount, currency,
                                 service_snapshot, customer, hold_expires_at, created_by_job)
           VALUES (%s, 'slot', 'pending_payment', %s, %s, tstzrange(%s, %s, '[)'), 1, 'EUR', '{}', '{}',
                   now() + interval '1 hour', %s)""",
        (uuid.uuid4(), catalog.resource_id, catalog.provider_id, start, start + timedelta(minutes=30), uuid.uuid4()))
    return blocker


def _wait_until_worker_blocks(url: str) -> None:
    wait_for(lambda: _query(url, "SELECT 1 FROM pg_stat_activity WHERE application_name = 'totem-worker' "
                                 "AND wait_event_type = 'Lock'"), 20, "the worker to block mid-job")


def test_a_worker_killed_mid_job_leaves_the_job_to_complete_once(
    fault_fleet: Fleet, isolated_database_url: str,
) -> None:
    url = isolated_database_url
    catalog = make_catalog(url)
    base = fault_fleet.start_gateway()
    fault_fleet.start_worker(name="bookings-1")
    fault_fleet.start_scheduler()
    start = future(days=20)

    blocker = _hold_slot_uncommitted(url, catalog, start)
    with api_client(base) as client:
        accepted = client.post("/v1/bookings", json=catalog.slot_body(start), headers={"Idempotency-Key": new_key()})
        assert accepted.status_code == 202
        job_id = accepted.json()["job_id"]
        _wait_until_worker_blocks(url)
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "running"

        fault_fleet.kill("bookings-1", signal.SIGKILL)
        blocker.rollback()
        blocker.close()
        fault_fleet.start_worker(name="bookings-2")

        job = wait_job(client, job_id, timeout=60)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2  # the killed attempt, then the one after the lease ran out
    bookings = _query(url, "SELECT id FROM bookings WHERE created_by_job = %s", job_id)
    assert len(bookings) == 1 and str(bookings[0]["id"]) == job["result"]["booking_id"]
    audit = _query(url, "SELECT count(*) AS n FROM booking_audit_log WHERE job_id = %s", job_id)
    assert audit[0]["n"] == 1


def test_requests_posted_while_redis_is_down_are_accepted_and_completed(
    fault_fleet: Fleet, isolated_database_url: str, private_redis: PrivateRedis,
) -> None:
    url = isolated_database_url
    catalog = make_catalog(url)
    base = fault_fleet.start_gateway()
    fault_fleet.start_worker()
    fault_fleet.start_scheduler()
    with api_client(base) as client:
        before = client.post("/v1/bookings", json=catalog.slot_body(future(days=21)),
                             headers={"Idempotency-Key": new_key()})
        assert wait_job(client, before.json()["job_id"])["status"] == "succeeded"

        port = private_redis.port
        private_redis.stop()
        assert client.get("/readyz").status_code == 503
        accepted = []
        for i in range(12):
            start = future(days=21, hour=11) + timedelta(hours=i)
            response = client.post("/v1/bookings", json=catalog.slot_body(start),
                                   headers={"Idempotency-Key": new_key()})
            assert response.status_code == 202, response.text
            accepted.append(response.json()["job_id"])
        statuses = _query(url, "SELECT status FROM jobs WHERE id = ANY(%s::uuid[])", accepted)
        assert {row["status"] for row in statuses} == {"queued"} and len(statuses) == 12

        private_redis.start(port=port)  # an empty Redis: every message it held is gone too
        jobs = [wait_job(client, job_id, timeout=90) for job_id in accepted]
    assert [job["status"] for job in jobs] == ["succeeded"] * 12
    assert len(_query(url, "SELECT 1 FROM bookings WHERE created_by_job = ANY(%s::uuid[])", accepted)) == 12


def test_a_postgres_restart_mid_run_loses_no_accepted_request_and_never_answers_500(
    tmp_path: Path, private_redis: PrivateRedis,
) -> None:
    pg = PrivatePostgres(tmp_path / "pg").start()
    create_database(pg.url(), "totem")
    url = pg.url("totem")
    migrate(url)
    catalog = make_catalog(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMETHEUS_", "dramatiq_"))}
    env.update(FAST_TIMINGS, DATABASE_URL=url, REDIS_URL=private_redis.url(), REDIS_NAMESPACE="totem-pg-restart")
    (tmp_path / "logs").mkdir()
    fleet = Fleet(env=env, log_dir=tmp_path / "logs")
    statuses: list[int] = []
    try:
        base = fleet.start_gateway()
        fleet.start_worker()
        fleet.start_scheduler()
        with api_client(base) as client:
            def book(i: int) -> str:
                """A well-behaved client: retry 503 with the same key until accepted."""
                key, body = f"restart-{i}", catalog.slot_body(future(days=30, hour=8) + timedelta(minutes=30 * i))
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    response = client.post("/v1/bookings", json=body, headers={"Idempotency-Key": key})
                    statuses.append(response.status_code)
                    if response.status_code == 202:
                        return str(response.json()["job_id"])
                    assert response.status_code == 503, response.text
                    assert response.json()["code"] == "SERVICE_UNAVAILABLE"
                    time.sleep(0.2)
                raise AssertionError(f"booking {i} not accepted within 60 s; restart errors: {restart_errors}")

            restart_errors: list[Exception] = []
            job_ids = [book(i) for i in range(10)]
            port = pg.port
            pg.stop(mode="fast")  # every pooled connection dies with it

            def restart() -> None:
                try:
                    PrivatePostgres(tmp_path / "pg").start(port=port)
                except Exception as exc:  # noqa: BLE001 - reported by the assertion above
                    restart_errors.append(exc)

            restarter = threading.Timer(2.0, restart)
            restarter.start()
            job_ids += [book(i) for i in range(10, 30)]
            restarter.join()

            def terminal(job_id: str) -> dict[str, Any] | None:
                response = client.get(f"/v1/jobs/{job_id}")
                statuses.append(response.status_code)
                return response.json() if response.status_code == 200 and response.json()["status"] in (
                    "succeeded", "failed") else None

            jobs = [wait_for(lambda j=job_id: terminal(j), 90, f"job {job_id}") for job_id in job_ids]
        assert 503 in statuses and 500 not in statuses
        assert [job["status"] for job in jobs] == ["succeeded"] * 30, [job["error"] for job in jobs]
        assert len(set(job_ids)) == 30
        assert len(_query(url, "SELECT 1 FROM bookings WHERE created_by_job = ANY(%s::uuid[])", job_ids)) == 30
    finally:
        fleet.stop()
        pg.stop(mode="immediate")


def test_sigterm_lets_a_worker_finish_its_job_and_loses_nothing(fault_fleet: Fleet, isolated_database_url: str) -> None:
    url = isolated_database_url
    catalog = make_catalog(url)
    base = fault_fleet.start_gateway()
    fault_fleet.start_worker(name="bookings-1")
    start = future(days=25)
    blocker = _hold_slot_uncommitted(url, catalog, start)
    with api_client(base) as client:
        job_id = client.post("/v1/bookings", json=catalog.slot_body(start),
                             headers={"Idempotency-Key": new_key()}).json()["job_id"]
        _wait_until_worker_blocks(url)
        worker = fault_fleet.procs["bookings-1"]
        os.kill(worker.pid, signal.SIGTERM)  # as a supervisor does: stop taking messages, finish the one in hand
        time.sleep(1)
        assert worker.poll() is None  # still finishing its job
        blocker.rollback()
        blocker.close()
        assert worker.wait(40) == 0
        job = wait_job(client, job_id, timeout=10)  # finished by the stopping worker, no restart needed
    assert job["status"] == "succeeded" and job["attempts"] == 1


def _fake_events(stripe_url: str, type_: str, booking_id: str) -> list[dict[str, Any]]:
    events = httpx.get(f"{stripe_url}/_fake/events", timeout=10).json()
    return [e for e in events if e["type"] == type_ and e["data"]["object"]["metadata"].get("booking_id") == booking_id]


def test_a_bookings_worker_killed_inside_its_stripe_call_reuses_its_hold_and_intent(
    fault_fleet: Fleet, isolated_database_url: str,
) -> None:
    """SIGKILL between the committed hold and the PaymentIntent answer: the rerun finds its hold and asks
    Stripe again with the same idempotency key, so there is one booking and one intent."""
    url = isolated_database_url
    catalog = make_catalog(url)
    base = fault_fleet.start_gateway()
    fault_fleet.start_worker(name="bookings-1")
    fault_fleet.start_scheduler()
    httpx.post(f"{fault_fleet.stripe_url}/_fake/faults", timeout=10,
               json={"operation": "payment_intents.create", "times": 1, "when": "slow", "delay_seconds": 3})
    with api_client(base) as client:
        job_id = client.post("/v1/bookings", json=catalog.slot_body(future(days=21)),
                             headers={"Idempotency-Key": new_key()}).json()["job_id"]
        wait_for(lambda: _query(url, "SELECT 1 FROM bookings WHERE created_by_job = %s", job_id), 20,
                 "the hold committed (the worker is now inside its Stripe call)")
        fault_fleet.kill("bookings-1", signal.SIGKILL)
        fault_fleet.start_worker(name="bookings-2")
        job = wait_job(client, job_id, timeout=60)
    assert job["status"] == "succeeded" and job["attempts"] == 2, job
    booking_id = job["result"]["booking_id"]
    assert len(_query(url, "SELECT 1 FROM bookings WHERE created_by_job = %s", job_id)) == 1
    payments = _query(url, "SELECT payment_intent_id FROM payments WHERE booking_id = %s", booking_id)
    assert [p["payment_intent_id"] for p in payments] == [job["result"]["payment_intent_id"]]
    created = _fake_events(fault_fleet.stripe_url, "payment_intent.created", booking_id)
    assert [e["data"]["object"]["id"] for e in created] == [job["result"]["payment_intent_id"]]


def test_a_payments_worker_killed_inside_a_refund_call_refunds_once(
    fault_fleet: Fleet, isolated_database_url: str,
) -> None:
    url = isolated_database_url
    catalog = make_catalog(url)
    base = fault_fleet.start_gateway()
    fault_fleet.start_worker()
    fault_fleet.start_worker("payments", name="payments-1")
    fault_fleet.start_scheduler()
    with api_client(base) as client:
        created = wait_job(client, client.post("/v1/bookings", json=catalog.slot_body(future(days=22)),
                                               headers={"Idempotency-Key": new_key()}).json()["job_id"])
        booking_id, intent = created["result"]["booking_id"], created["result"]["payment_intent_id"]
        httpx.post(f"{fault_fleet.stripe_url}/v1/payment_intents/{intent}/confirm", timeout=10,
                   data={"payment_method": "pm_card_visa"})
        wait_for(lambda: client.get(f"/v1/bookings/{booking_id}").json()["status"] == "paid", 20, "paid")
        httpx.post(f"{fault_fleet.stripe_url}/_fake/faults", timeout=10,
                   json={"operation": "refunds.create", "times": 1, "when": "slow", "delay_seconds": 3})
        cancel = wait_job(client, client.post(f"/v1/bookings/{booking_id}/cancel", json={},
                                              headers={"Idempotency-Key": new_key()}).json()["job_id"])
        refund_id = cancel["result"]["refund"]["refund_id"]
        wait_for(lambda: _query(url, "SELECT 1 FROM jobs WHERE type = 'refund.issue' AND status = 'running'"), 20,
                 "the refund job inside its Stripe call")
        fault_fleet.kill("payments-1", signal.SIGKILL)
        fault_fleet.start_worker("payments", name="payments-2")
        wait_for(lambda: client.get(f"/v1/bookings/{booking_id}").json()["refunds"][0]["status"] == "succeeded",
                 60, "refund settled")
        time.sleep(1)
        view = client.get(f"/v1/bookings/{booking_id}").json()
    assert [(r["id"], r["amount"]) for r in view["refunds"]] == [(refund_id, 2500)]
    assert view["payments"][0]["amount_refunded"] == 2500
    refunds = [e for e in httpx.get(f"{fault_fleet.stripe_url}/_fake/events", timeout=10).json()
               if e["type"] == "refund.created" and e["data"]["object"]["payment_intent"] == intent]
    assert len(refunds) == 1
    # the killed call took effect at Stripe (its refund.created event settled the refund); the job, handed
    # out again when its lease ran out, finds the refund settled and asks Stripe nothing more
    job = wait_for(lambda: (rows := _query(url, "SELECT status, attempts FROM jobs WHERE type = 'refund.issue'"))
                   [0]["status"] == "succeeded" and rows, 30, "the refund job rerun")
    assert job == [{"status": "succeeded", "attempts": 2}]


def test_after_a_postgres_restart_a_worker_loses_no_message_to_a_stale_connection(
    tmp_path: Path, private_redis: PrivateRedis,
) -> None:
    """No scheduler runs here, so no sweeper: every job must finish on its first message."""
    pg = PrivatePostgres(tmp_path / "pg").start()
    create_database(pg.url(), "totem")
    url = pg.url("totem")
    migrate(url)
    catalog = make_catalog(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMETHEUS_", "dramatiq_"))}
    env.update(FAST_TIMINGS, DATABASE_URL=url, REDIS_URL=private_redis.url(), REDIS_NAMESPACE="totem-stale")
    (tmp_path / "logs").mkdir()
    fleet = Fleet(env=env, log_dir=tmp_path / "logs")
    try:
        base = fleet.start_gateway()
        fleet.start_worker()
        with api_client(base) as client:
            def book(i: int) -> str:
                key, body = f"stale-{i}", catalog.slot_body(future(days=40, hour=8) + timedelta(minutes=30 * i))
                response = wait_for(lambda: (r := client.post("/v1/bookings", json=body,
                                                              headers={"Idempotency-Key": key})).status_code == 202
                                    and r, 60, f"booking {i} accepted")
                return str(response.json()["job_id"])

            def all_done(job_ids: list[str]) -> list[dict[str, Any]]:
                return [wait_job(client, job_id, timeout=30) for job_id in job_ids]

            warm = all_done([book(i) for i in range(12)])  # every worker thread holds a pooled connection now
            port = pg.port
            pg.stop(mode="fast")
            PrivatePostgres(tmp_path / "pg").start(port=port)
            after = all_done([book(i) for i in range(12, 24)])
        assert [job["status"] for job in warm + after] == ["succeeded"] * 24
        assert [job["attempts"] for job in after] == [1] * 12  # each on its first message, none swept
        worker_log = (tmp_path / "logs" / "bookings.log").read_text()
        assert "Failed to process message" not in worker_log
        assert "a pooled database connection was dead" in worker_log  # the stale ones were met, and replaced
    finally:
        fleet.stop()
        pg.stop(mode="immediate")


def test_sigterm_to_the_whole_process_group_still_lets_the_job_finish(
        fault_fleet: Fleet, isolated_database_url: str) -> None:
    """systemd's KillMode=control-group, `kill -- -PGID` and container runtimes signal every process at once:
    each worker process then gets SIGTERM twice (the group's, and its master's forward). One is enough."""
    url = isolated_database_url
    catalog = make_catalog(url)
    base = fault_fleet.start_gateway()
    fault_fleet.start_worker(name="bookings-group")
    start = future(days=26)
    blocker = _hold_slot_uncommitted(url, catalog, start)
    log = fault_fleet.log_dir / "bookings-group.log"
    with api_client(base) as client:
        job_id = client.post("/v1/bookings", json=catalog.slot_body(start),
                             headers={"Idempotency-Key": new_key()}).json()["job_id"]
        _wait_until_worker_blocks(url)
        worker = fault_fleet.procs["bookings-group"]
        os.killpg(worker.pid, signal.SIGTERM)
        wait_for(lambda: "Stopping worker process" in log.read_text(), 10, "the worker process to begin stopping")
        # Two signals sent at once may reach a process as one; sent after the first was handled, they are two
        # (as when the master's forward arrives late): the case Dramatiq's handler turns into an exit.
        os.killpg(worker.pid, signal.SIGTERM)
        wait_for(lambda: "another SIGTERM" in (text := log.read_text()) or "Killing worker process" in text, 10,
                 "the second SIGTERM to be handled")
        assert "Killing worker process" not in log.read_text()  # Dramatiq's own handler would exit here
        assert worker.poll() is None  # still finishing its job
        blocker.rollback()
        blocker.close()
        assert worker.wait(40) == 0
        job = wait_job(client, job_id, timeout=10)
    assert job["status"] == "succeeded" and job["attempts"] == 1
    assert "Killing worker process" not in log.read_text()
