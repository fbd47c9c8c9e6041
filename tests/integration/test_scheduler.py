"""Exactly one scheduler leads among many; when the leader is SIGKILLed another takes over within the lease."""

from __future__ import annotations

import signal
import time
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.support import future, make_catalog, wait_for
from totem.fleet import Fleet

pytestmark = pytest.mark.fault


def _one(url: str, sql: str, *params: Any) -> dict[str, Any] | None:
    with psycopg.connect(url, row_factory=dict_row, autocommit=True) as conn:
        return conn.execute(sql, params).fetchone()


def test_three_schedulers_one_leader_and_a_killed_leader_is_replaced(
    fault_fleet: Fleet, isolated_database_url: str,
) -> None:
    url = isolated_database_url
    for name in ("scheduler-a", "scheduler-b", "scheduler-c"):
        fault_fleet.start_scheduler(name)
    lease = wait_for(lambda: _one(url, "SELECT holder FROM scheduler_leases WHERE name = 'scheduler'"), 30,
                     "a leader")
    time.sleep(2)  # several ticks: leadership must stay put, and only one process ever claims it
    acquired = [name for name in fault_fleet.procs if "leadership acquired" in fault_fleet.log(name)]
    assert len(acquired) == 1
    leader = acquired[0]
    assert lease["holder"] in fault_fleet.log(leader)

    fault_fleet.kill(leader, signal.SIGKILL)
    killed_at = time.monotonic()
    new_lease = wait_for(lambda: (row := _one(url, "SELECT holder FROM scheduler_leases WHERE name = 'scheduler'"))
                         and row["holder"] != lease["holder"] and row, 15, "a new leader")
    assert time.monotonic() - killed_at <= 3 + 3  # lease TTL (3 s in tests), a tick, and a busy CI box
    assert len([n for n in fault_fleet.procs if "leadership acquired" in fault_fleet.log(n)]) == 1
    assert new_lease["holder"] != lease["holder"]

    # ...and the new leader does the periodic work: an overdue hold expires.
    catalog = make_catalog(url)
    import uuid

    booking_id = uuid.uuid4()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("""INSERT INTO bookings (id, kind, status, resource_id, provider_id, period, amount, currency,
                          service_snapshot, customer, hold_expires_at, created_by_job)
                        VALUES (%s, 'slot', 'pending_payment', %s, %s, tstzrange(%s, %s), 1, 'EUR', '{}', '{}',
                                now() - interval '1 second', %s)""",
                     (booking_id, catalog.resource_id, catalog.provider_id, future(), future(hour=11), uuid.uuid4()))
    wait_for(lambda: _one(url, "SELECT status FROM bookings WHERE id = %s", booking_id)["status"] == "expired",  # type: ignore[index]
             10, "the new leader to expire the hold")
    expired_once = _one(url, "SELECT count(*) AS n FROM booking_audit_log "
                             "WHERE booking_id = %s AND to_status = 'expired'", booking_id)
    assert expired_once and expired_once["n"] == 1


def test_a_cleanly_stopped_leader_hands_over_at_once(fault_fleet: Fleet, isolated_database_url: str) -> None:
    url = isolated_database_url
    fault_fleet.start_scheduler("scheduler-x")
    first = wait_for(lambda: _one(url, "SELECT holder FROM scheduler_leases WHERE name = 'scheduler'"), 30, "leader")
    fault_fleet.start_scheduler("scheduler-y")
    time.sleep(1)
    fault_fleet.kill("scheduler-x", signal.SIGTERM)
    assert "leadership released" in fault_fleet.log("scheduler-x")
    wait_for(lambda: (row := _one(url, "SELECT holder FROM scheduler_leases WHERE name = 'scheduler'"))
             and row["holder"] != first["holder"], 3, "the standby to lead")
