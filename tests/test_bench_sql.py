"""The bench's pgbench ceiling is the worker's SQL: a real booking job, traced statement by statement, runs
exactly ``CREATE_SLOT_BOOKING_STATEMENTS``, the list the pgbench job script is rendered from."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from bench.pgbench import write_scripts
from bench.run import _reset
from shared.booking import CREATE_SLOT_BOOKING_STATEMENTS
from tests.support import ROOT, future, make_catalog
from totem.fleet import Fleet

# Runs in a fresh interpreter: importing the worker module boots a worker runtime (settings, broker).
TRACE_ONE_JOB = """
import contextlib, json, sys, uuid
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
import workers.bookings as worker
from shared.db import QUERIES, use_msgspec_json
from shared.jobs import insert_job, run_job
from shared.registry import BOOKING_CREATE

use_msgspec_json()  # as the worker's own pool does
names = {text: name for name, text in QUERIES.items()}
trace = []

class Traced(psycopg.Connection):
    def execute(self, query, params=None, **kwargs):
        trace.append(names.get(query, "<unnamed>"))
        return super().execute(query, params, **kwargs)

    @contextlib.contextmanager
    def transaction(self, *args, **kwargs):
        trace.append("BEGIN")
        with super().transaction(*args, **kwargs) as tx:
            yield tx
        trace.append("COMMIT")

url, payload = sys.argv[1], json.loads(sys.argv[2])
with psycopg.connect(url, autocommit=True) as conn:
    job_id = insert_job(conn, BOOKING_CREATE, payload, max_attempts=5)
pool = ConnectionPool(url, connection_class=Traced, min_size=1, max_size=1, open=True,
                      kwargs={"row_factory": dict_row, "autocommit": True, "options": "-c TimeZone=UTC"})
outcome = run_job(pool, job_id, None, lease_seconds=30, prepare=worker.prepare_create_booking,
                  enqueue=lambda *args: None)
print(json.dumps({"outcome": outcome, "trace": trace}))
"""


def test_a_booking_job_runs_exactly_the_statements_the_bench_measures(
        isolated_database_url: str, fleet: Fleet, fleet_env: dict[str, str]) -> None:
    catalog = make_catalog(isolated_database_url)
    payload = catalog.slot_body(future(days=40) + timedelta(minutes=30))
    env = {**fleet_env, "DATABASE_URL": isolated_database_url, "STRIPE_API_BASE": fleet.stripe_url}
    run = subprocess.run([sys.executable, "-c", TRACE_ONE_JOB, isolated_database_url, json.dumps(payload)],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    traced = json.loads(run.stdout.strip().splitlines()[-1])
    assert traced["outcome"] == "succeeded"
    assert tuple(traced["trace"]) == CREATE_SLOT_BOOKING_STATEMENTS



def test_every_pgbench_script_binds_every_parameter_of_the_workers_sql(tmp_path: Path) -> None:
    """A statement the worker gained a parameter in cannot leave the bench's scripts unrenderable (or bound
    to nothing): each script is written, and no psycopg placeholder is left in it."""
    scripts = write_scripts(tmp_path, str(uuid.uuid4()))
    assert {"job", "full", "webhook"} <= set(scripts)
    for path in scripts.values():
        assert "%(" not in path.read_text()


def test_the_bench_can_empty_every_table_a_booking_fills(isolated_database_url: str) -> None:
    """Between its phases the bench truncates what pgbench wrote; a table that references bookings, added
    by a migration, must be in that list (or the bench stops there)."""
    _reset(isolated_database_url)
