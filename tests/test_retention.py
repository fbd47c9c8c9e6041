"""Retention: finished jobs and published outbox rows (with their deliveries and in-app notifications) go
after RETENTION_JOBS_DAYS / RETENTION_EVENTS_DAYS; what money, audit or support needs stays."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from shared.db import QUERIES
from tests.support import make_catalog


def _count(conn: psycopg.Connection[Any], query: str, *params: Any) -> int:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row["n"])


def test_old_finished_jobs_and_published_events_are_purged_and_nothing_else(isolated_database_url: str) -> None:
    catalog = make_catalog(isolated_database_url)
    with psycopg.connect(isolated_database_url, row_factory=dict_row, autocommit=True) as conn:
        def job(status: str, age_days: int) -> uuid.UUID:
            job_id = uuid.uuid4()
            conn.execute(
                "INSERT INTO jobs (id, type, queue, actor, payload, status, updated_at, result, error, claim_token, "
                "claimed_until) VALUES (%s, 'test.job', 'test', 'test', '{}', %s, now() - make_interval(days => %s), "
                "CASE WHEN %s = 'succeeded' THEN '{}'::jsonb END, CASE WHEN %s = 'failed' THEN '{}'::jsonb END, "
                "CASE WHEN %s = 'running' THEN gen_random_uuid() END, CASE WHEN %s = 'running' THEN now() END)",
                (job_id, status, age_days, status, status, status, status))
            return job_id

        old_done, old_failed, old_running, recent = job("succeeded", 40), job("failed", 40), job("running", 40), \
            job("succeeded", 5)
        kept_by_event = job("succeeded", 40)  # a Stripe event keeps its apply job
        conn.execute("INSERT INTO stripe_events (event_id, type, object_id, stripe_created, payload, status, job_id) "
                     "VALUES ('evt_retention', 'payment_intent.succeeded', 'pi_x', now(), '{}', 'received', %s)",
                     (kept_by_event,))

        def event(published_days_ago: int | None) -> int:
            row = conn.execute(
                "INSERT INTO outbox (topic, aggregate_id, payload, published_at) VALUES ('booking_paid', %s, %s, "
                "CASE WHEN %s::int IS NULL THEN NULL ELSE now() - make_interval(days => %s::int) END) RETURNING id",
                (uuid.uuid4(), Jsonb({"provider_id": catalog.provider_id}), published_days_ago, published_days_ago),
            ).fetchone()
            assert row is not None
            return int(row["id"])

        old_event, recent_event, unpublished = event(40), event(5), event(None)
        conn.execute("INSERT INTO notifications (provider_id, event_id, topic, payload) VALUES (%s, %s, 'x', '{}')",
                     (catalog.provider_id, old_event))
        conn.execute("INSERT INTO deliveries (event_id, topic, provider_id, channel, recipient, audience) "
                     "VALUES (%s, 'x', %s, 'email', 'a@b.example', 'customer')", (old_event, catalog.provider_id))

        purged = conn.execute(QUERIES["purge_old_rows"], {"jobs_days": 30, "events_days": 30, "limit": 1000}).fetchone()
        assert purged is not None and purged["events"] == 1 and purged["jobs"] >= 2
        remaining = {r["id"] for r in conn.execute("SELECT id FROM jobs").fetchall()}
        assert {old_done, old_failed}.isdisjoint(remaining)
        assert {old_running, recent, kept_by_event} <= remaining
        events = {r["id"] for r in conn.execute("SELECT id FROM outbox").fetchall()}
        assert old_event not in events and {recent_event, unpublished} <= events
        assert _count(conn, "SELECT count(*) AS n FROM notifications WHERE event_id = %s", old_event) == 0
        assert _count(conn, "SELECT count(*) AS n FROM deliveries WHERE event_id = %s", old_event) == 0
