"""The guarantees of SPEC's "Guarantees", checked after a chaos run against the database, the fake Stripe
and the flaky receiver. Each check returns a count of violations; every one must be 0.

The database enforces most of these itself (``bookings_no_overlap``, the transition trigger, the balanced
journal, the unique indexes): the checks do not trust that, they look at the rows that resulted. Stripe's
side is read from the fake's own records (``/_fake/objects``, ``/_fake/events``), not from our copy."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import psycopg
from psycopg.rows import dict_row

from shared import ledger as ledger_books
from shared.db import QUERIES
from shared.payments import HANDLED_EVENTS
from totem.chaos.load import Ledger

RELEASED = ("expired", "cancelled", "declined")

DOUBLE_BOOKINGS = f"""
SELECT count(*) AS n FROM bookings a JOIN bookings b
  ON a.resource_id = b.resource_id AND a.id < b.id AND a.period && b.period
WHERE a.status NOT IN {RELEASED} AND b.status NOT IN {RELEASED}"""

# Every audit row is an allowed transition for the booking's kind, follows on from the one before it, and
# the last one is where the booking is now.
INVALID_TRANSITIONS = """
WITH trail AS (
  SELECT l.booking_id, l.from_status, l.to_status, b.kind, b.status AS now_status,
         lag(l.to_status) OVER w AS previous,
         row_number() OVER (PARTITION BY l.booking_id ORDER BY l.id DESC) AS from_end
  FROM booking_audit_log l JOIN bookings b ON b.id = l.booking_id
  WINDOW w AS (PARTITION BY l.booking_id ORDER BY l.id))
SELECT count(*) AS n FROM trail
WHERE (from_status IS NOT NULL AND NOT EXISTS (
         SELECT 1 FROM booking_transitions t
         WHERE t.from_status = trail.from_status AND t.to_status = trail.to_status AND trail.kind = ANY (t.kinds)))
   OR previous IS DISTINCT FROM from_status
   OR (from_end = 1 AND to_status <> now_status)"""

DOUBLE_PAYMENTS_DB = """
SELECT count(*) AS n FROM (SELECT booking_id FROM payments WHERE status = 'succeeded'
                           GROUP BY booking_id HAVING count(*) > 1) twice"""

DOUBLE_PAYOUTS_DB = """
SELECT count(*) AS n FROM (SELECT booking_id FROM payouts WHERE status <> 'failed'
                           GROUP BY booking_id HAVING count(*) > 1) twice"""

# An event applied twice would record its effects twice.
DOUBLY_APPLIED = """
SELECT count(*) AS n FROM (SELECT event_id FROM stripe_event_effects
                           GROUP BY event_id, effect, booking_id HAVING count(*) > 1) twice"""

# Paid by two different events: a success applied twice under different event ids.
PAID_TWICE = """
SELECT count(*) AS n FROM (SELECT booking_id FROM stripe_event_effects WHERE effect = 'booking_paid'
                           GROUP BY booking_id HAVING count(*) > 1) twice"""

DUPLICATE_DELIVERIES = """
SELECT count(*) AS n FROM (SELECT 1 FROM deliveries GROUP BY event_id, channel, recipient HAVING count(*) > 1) twice"""


def _count(conn: psycopg.Connection[Any], sql: str, *params: Any) -> int:
    row = conn.execute(sql, params).fetchone()
    return int(row["n"]) if row else 0


def check(database_url: str, ledger: Ledger, stripe: dict[str, Any], receiver_messages: dict[str, dict[str, Any]],
          reconciliation_mismatches: int, mail_ids: set[str] | None = None) -> tuple[dict[str, int], dict[str, Any]]:
    """(violations, figures): each violation a count that must be 0; figures say how much was exercised."""
    violations: dict[str, int] = {}
    figures: dict[str, Any] = {}
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as conn:
        jobs = {str(r["id"]): r for r in conn.execute("SELECT id, type, status FROM jobs")}
        terminal = sum(1 for job in jobs.values() if job["status"] in ("succeeded", "failed"))
        figures["requests_accepted"] = len(ledger.accepted)
        figures["jobs_terminal"] = f"{terminal}/{len(jobs)}"
        violations["jobs_not_terminal"] = len(jobs) - terminal
        created = {str(r["created_by_job"]) for r in conn.execute("SELECT created_by_job FROM bookings")}
        lost = 0
        for job_id, job_type in ledger.accepted.items():
            job = jobs.get(job_id)
            unfinished = job is None or job["status"] not in ("succeeded", "failed")
            hold_missing = job is not None and job_type == "booking.create" and job["status"] == "succeeded" \
                and job_id not in created
            lost += unfinished or hold_missing
        violations["accepted_requests_lost"] = lost
        # one Idempotency-Key is one job at most: more jobs of a client's type than keys sent is a key applied twice
        by_type = Counter(job["type"] for job in jobs.values())
        violations["requests_applied_twice"] = sum(max(0, by_type[t] - sent) for t, sent in ledger.keys_sent.items())
        violations["http_500_answers"] = ledger.http_500

        violations["double_bookings"] = _count(conn, DOUBLE_BOOKINGS)
        violations["invalid_transitions"] = _count(conn, INVALID_TRANSITIONS)
        amounts = {str(r["id"]): int(r["amount"]) for r in conn.execute("SELECT id, amount FROM bookings")}
        violations["double_payments"] = _count(conn, DOUBLE_PAYMENTS_DB) + _overpaid_at_stripe(stripe, amounts)
        violations["payments_not_at_stripe"] = _succeeded_without_stripe(conn, stripe)
        violations["double_payouts"] = _count(conn, DOUBLE_PAYOUTS_DB) + _transferred_twice(stripe)
        violations["unbalanced_journals"] = len(conn.execute(QUERIES["ledger_trial_balance"]).fetchall())
        violations["ledger_summary_drift"] = len(ledger_books.summary_drift(conn))  # balances read = entries
        violations["ledger_stripe_mismatches"] = reconciliation_mismatches
        lost_events, stored = _lost_webhooks(conn, stripe["events"])
        violations["webhooks_lost"] = lost_events
        violations["webhooks_applied_twice"] = _count(conn, DOUBLY_APPLIED) + _count(conn, PAID_TWICE)
        violations["duplicate_notifications"] = _count(conn, DUPLICATE_DELIVERIES) + _duplicates_received(
            conn, receiver_messages)
        violations["notifications_lost"] = _delivered_but_not_received(conn, receiver_messages, mail_ids)
        figures["stripe_events_stored"] = stored
        figures["bookings_by_status"] = dict(Counter(
            r["status"] for r in conn.execute("SELECT status FROM bookings")))
        figures["payouts_paid"] = _count(conn, "SELECT count(*) AS n FROM payouts WHERE status = 'paid'")
        figures["refunds"] = _count(conn, "SELECT count(*) AS n FROM refunds")
        figures["deliveries_by_status"] = dict(Counter(
            f"{r['channel']}:{r['status']}" for r in conn.execute("SELECT channel, status FROM deliveries")))
    return violations, figures


def _overpaid_at_stripe(stripe: dict[str, Any], amounts: dict[str, int]) -> int:
    """Bookings Stripe holds more money for than they cost: captured less refunded, over every intent."""
    refunded: Counter[str] = Counter()
    for refund in stripe["objects"]["refunds"]:
        if refund["status"] in ("succeeded", "pending"):
            refunded[str(refund["payment_intent"])] += int(refund["amount"])
    net: Counter[str] = Counter()
    for intent in stripe["objects"]["payment_intents"]:
        booking_id = (intent.get("metadata") or {}).get("booking_id")
        if booking_id:
            net[booking_id] += int(intent["amount_received"]) - refunded[intent["id"]]
    return sum(1 for booking_id, kept in net.items() if kept > amounts.get(booking_id, 0))


def _succeeded_without_stripe(conn: psycopg.Connection[Any], stripe: dict[str, Any]) -> int:
    """Payments we hold as succeeded whose PaymentIntent Stripe does not (a booking paid without money)."""
    succeeded = {i["id"] for i in stripe["objects"]["payment_intents"] if i["status"] == "succeeded"}
    ours = [r["payment_intent_id"] for r in conn.execute("SELECT payment_intent_id FROM payments "
                                                        "WHERE status = 'succeeded'")]
    return sum(1 for intent in ours if intent not in succeeded)


def _delivered_but_not_received(conn: psycopg.Connection[Any], messages: dict[str, dict[str, Any]],
                                mail_ids: set[str] | None) -> int:
    """Deliveries recorded as delivered that never reached their receiver: a webhook the receiver never
    answered 2xx under that id, an email the SMTP sink never kept under that Message-ID."""
    lost = 0
    for row in conn.execute("SELECT id::text AS id, channel FROM deliveries WHERE status = 'delivered' "
                            "AND channel IN ('webhook', 'email')"):
        if row["channel"] == "webhook":
            arrivals = messages.get(row["id"], {}).get("arrivals", [])
            lost += not any(200 <= a["answered"] < 300 for a in arrivals)
        elif mail_ids is not None:
            lost += row["id"] not in mail_ids
    return lost


def _transferred_twice(stripe: dict[str, Any]) -> int:
    per_booking = Counter((t.get("metadata") or {}).get("booking_id") for t in stripe["objects"]["transfers"])
    return sum(1 for booking_id, n in per_booking.items() if booking_id and n > 1)


def _lost_webhooks(conn: psycopg.Connection[Any], events: list[dict[str, Any]]) -> tuple[int, int]:
    """Events Stripe sent (of the types the endpoint is enabled for) that are not stored and processed."""
    stored = {r["event_id"]: r["status"] for r in conn.execute("SELECT event_id, status FROM stripe_events")}
    sent = [e["id"] for e in events if e["type"] in HANDLED_EVENTS]
    return sum(1 for event_id in sent if stored.get(event_id) in (None, "received")), len(stored)


def _duplicates_received(conn: psycopg.Connection[Any], messages: dict[str, dict[str, Any]]) -> int:
    """Two messages (different ``webhook-id``) for one event to one endpoint. A message sent again under its
    own id (the receiver timed out) is at-least-once, which the id lets a receiver drop: not a duplicate."""
    if not messages:
        return 0
    rows = conn.execute("SELECT id::text AS id, event_id, recipient FROM deliveries WHERE id::text = ANY(%s)",
                        (list(messages),)).fetchall()
    per_event: defaultdict[tuple[int, str], set[str]] = defaultdict(set)
    for row in rows:
        per_event[(row["event_id"], row["recipient"])].add(row["id"])
    unknown = len(messages) - len(rows)  # a message no delivery row accounts for
    return unknown + sum(1 for ids in per_event.values() if len(ids) > 1)
