"""`totem chaos`, CI-sized: the real command, on private Postgres and Redis (and once with RabbitMQ for jobs),
a short mixed load while every kind of fault is injected at least once; every guarantee holds (each violation
count 0) and every fault was really injected (counted where it happened: the fake Stripe's request log, the
receiver, the launcher). The full-length run is `totem chaos --duration 300`."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support import make_catalog
from totem.chaos.faults import PROCESS_FAULTS, WEBHOOK_FAULTS
from totem.chaos.invariants import check
from totem.chaos.load import Ledger

pytestmark = pytest.mark.fault

INJECTED_IN_EVERY_RUN = (*PROCESS_FAULTS, *WEBHOOK_FAULTS, "stripe_fault_before", "stripe_fault_after",
                         "receiver_500", "receiver_timeout", "client_timeouts")


def _chaos(tmp_path: Path, *args: str, timeout: float) -> tuple[dict[str, Any], str]:
    report = tmp_path / "chaos-report.json"
    done = subprocess.run(
        [sys.executable, "-m", "totem.cli", "chaos", "--report", str(report), "--data-dir", str(tmp_path / "runs"),
         *args], capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert report.exists(), output[-5000:]
    result: dict[str, Any] = json.loads(report.read_text())
    assert done.returncode == (0 if result["ok"] else 1), output[-5000:]
    return result, output


def _assert_held(result: dict[str, Any], output: str) -> None:
    assert "error" not in result, output[-5000:]  # the run itself broke
    assert result["problems"] == [], output[-5000:]
    assert {name: n for name, n in result["violations"].items() if n} == {}, output[-5000:]
    assert result["ok"], output[-5000:]
    assert result["figures"]["requests_accepted"] > 0


def test_every_guarantee_holds_while_everything_is_broken(tmp_path: Path) -> None:
    result, output = _chaos(tmp_path, "--duration", "45", "--seed", "16", timeout=280)
    _assert_held(result, output)
    assert {name: result["faults"][name] for name in INJECTED_IN_EVERY_RUN if result["faults"][name] < 1} == {}, \
        output[-5000:]
    assert result["figures"]["payouts_paid"] > 0  # settlement and payouts ran under the faults too
    assert "PASS" in output and "accepted" in output  # the table and the progress lines


def test_every_guarantee_holds_with_rabbitmq_as_the_broker(tmp_path: Path) -> None:
    result, output = _chaos(tmp_path, "--duration", "25", "--seed", "3", "--broker", "rabbitmq", timeout=240)
    _assert_held(result, output)
    assert result["broker"] == "rabbitmq"
    assert result["faults"]["worker_kill9"] >= 1 and result["faults"]["postgres_restart"] >= 1


def test_the_checks_find_each_kind_of_violation(isolated_database_url: str) -> None:
    """A checker that always says 0 proves nothing: plant one of each violation the database lets us plant
    (the rest it refuses itself) and one on Stripe's and the receiver's side, and each is counted."""
    url = isolated_database_url
    catalog = make_catalog(url)
    booking_id, job_id = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("""INSERT INTO bookings (id, kind, status, resource_id, provider_id, period, amount, currency,
                                              service_snapshot, customer, hold_expires_at, created_by_job)
                        VALUES (%s, 'slot', 'pending_payment', %s, %s, tstzrange(now(), now() + interval '1 hour'),
                                2500, 'EUR', '{}', '{}', now() + interval '1 hour', %s)""",
                     (booking_id, catalog.resource_id, catalog.provider_id, job_id))
        conn.execute("INSERT INTO booking_audit_log (booking_id, actor, from_status, to_status) VALUES "
                     "(%s, 'test', NULL, 'pending_payment'), (%s, 'test', 'completed', 'paid')",
                     (booking_id, booking_id))
        conn.execute("INSERT INTO payments (booking_id, payment_intent_id, amount, currency, status, succeeded_at) "
                     "VALUES (%s, 'pi_stripe_never_took', 2500, 'EUR', 'succeeded', now())", (booking_id,))
        conn.execute("WITH event AS (INSERT INTO outbox (topic, aggregate_id, payload) VALUES ('booking_created', %s, "
                     "'{}') RETURNING id) INSERT INTO deliveries (event_id, topic, provider_id, channel, recipient, "
                     "status, delivered_at, audience) SELECT id, 'booking_created', %s, 'email', 'a@example.com', "
                     "'delivered', now(), 'customer' FROM event",
                     (booking_id, catalog.provider_id))
    ledger = Ledger()
    ledger.accepted[str(uuid.uuid4())] = "booking.create"  # a 202 whose job the database never had
    intent = {"id": "pi_1", "status": "succeeded", "amount_received": 5000,
              "metadata": {"booking_id": str(booking_id)}}
    stripe = {"objects": {"payment_intents": [intent], "refunds": [],
                          "transfers": [{"metadata": {"booking_id": str(booking_id)}}] * 2},
              "events": [{"id": "evt_never_arrived", "type": "payment_intent.succeeded"}]}
    violations, _ = check(url, ledger, stripe, {"msg_unknown": {}}, reconciliation_mismatches=1, mail_ids=set())
    assert {name: n for name, n in violations.items() if n} == {
        "accepted_requests_lost": 1, "invalid_transitions": 1, "double_payments": 1, "payments_not_at_stripe": 1,
        "double_payouts": 1, "ledger_stripe_mismatches": 1, "webhooks_lost": 1, "duplicate_notifications": 1,
        "notifications_lost": 1}
