"""Settlement and payouts: close due periods into payout batches (one payout per booking), record what the
transfer did, and reconcile the ledger with Stripe's balance transactions.

Closing a period is one transaction: the period row (an exclusion constraint lets exactly one closer
insert it, however many schedulers race), the batch, one payout per booking with matured payable (a
unique index: one payout per booking, a failed one aside), the ``payout_initiated`` postings, and a
``payout.send`` job per payout. A provider onboarded through Connect is paid to its connected account, and
only while its payouts are enabled: otherwise the batch is recorded held, with the reason (``shared.connect``),
the owner is told (``payout_held``), and nothing is paid until a later period.

Bookings refunded in full have nothing payable and are skipped; bookings
with a refund still pending wait for the next period.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any

import msgspec
import psycopg

from shared import connect, ledger
from shared.db import QUERIES, expect_row
from shared.jobs import insert_job
from shared.notifications import emit
from shared.registry import PAYOUT_SEND
from shared.schemas import PayoutJob


class ClosedPeriod(msgspec.Struct):
    period_id: uuid.UUID
    provider_id: uuid.UUID
    batch_id: uuid.UUID | None
    payouts: list[uuid.UUID]


def close_due_periods(conn: psycopg.Connection[Any], *, now: datetime, max_attempts: int = 5,
                      provider_id: uuid.UUID | None = None) -> tuple[list[ClosedPeriod], list[uuid.UUID]]:
    """Close every provider's most recent ended period that is not closed yet. Returns the periods closed
    and the payout job ids to enqueue once this commits."""
    closed: list[ClosedPeriod] = []
    jobs: list[uuid.UUID] = []
    with conn.transaction():
        periods = conn.execute(QUERIES["close_due_periods"], {"now": now, "provider_id": provider_id}).fetchall()
        for period in periods:
            result, period_jobs = _batch(conn, period, max_attempts)
            closed.append(result)
            jobs += period_jobs
    return closed, jobs


def _batch(conn: psycopg.Connection[Any], period: dict[str, Any],
           max_attempts: int) -> tuple[ClosedPeriod, list[uuid.UUID]]:
    due = conn.execute(QUERIES["payable_due"], {"provider_id": period["provider_id"],
                                                "cutoff": period["period_end"]}).fetchall()
    by_currency: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in due:
        by_currency[row["currency"]].append(row)
    batch_id, payouts, jobs = None, [], []
    destination, held = connect.payout_destination(conn, period["provider_id"])
    for currency, rows in by_currency.items():
        total = sum(r["amount"] for r in rows)
        batch = conn.execute(QUERIES["insert_payout_batch"], {
            "provider_id": period["provider_id"], "period_id": period["id"], "currency": currency,
            "total": total, "destination": destination, "held_reason": held}).fetchone()
        if batch is None or batch["destination"] is None:
            continue
        batch_id = batch["id"]
        if held:  # the connected account cannot be paid: say why; the money waits for a later period
            emit(conn, "payout_held", batch_id, {"provider_id": str(period["provider_id"]),
                                                 "payout_batch_id": str(batch_id), "amount": total,
                                                 "currency": currency, "reason": held})
            continue
        for row in rows:
            payout = conn.execute(QUERIES["insert_payout"], {
                "batch_id": batch_id, "provider_id": period["provider_id"], "booking_id": row["booking_id"],
                "amount": row["amount"], "currency": currency}).fetchone()
            if payout is None:
                continue
            ledger.post_payout(conn, "initiated", {"id": payout["id"], "provider_id": period["provider_id"],
                                                   "booking_id": row["booking_id"], "amount": row["amount"],
                                                   "currency": currency})
            payouts.append(payout["id"])
            jobs.append(insert_job(conn, PAYOUT_SEND, PayoutJob(payout_id=payout["id"]), max_attempts=max_attempts))
    return ClosedPeriod(period_id=period["id"], provider_id=period["provider_id"], batch_id=batch_id,
                        payouts=payouts), jobs


class ReconciliationResult(msgspec.Struct):
    run_id: uuid.UUID
    checked: int
    mismatches: list[dict[str, Any]]


_STRIPE_KIND = {"charge": "capture", "refund": "refund", "transfer": "payout"}
_DISPUTE_KIND = {"dispute": "dispute", "dispute_reversal": "dispute_reversal"}


def reconcile(conn: psycopg.Connection[Any], stripe_transactions: list[dict[str, Any]]) -> ReconciliationResult:
    """Compare the ledger's captures, refunds, paid payouts and dispute withdrawals and reinstatements (by
    Stripe id, cash-account amount) with Stripe's balance transactions; write every difference to
    ``reconciliations``."""
    ours = {row["reference"]: row for row in conn.execute(QUERIES["ledger_stripe_refs"])}
    theirs = {}
    for txn in stripe_transactions:
        kind = _STRIPE_KIND.get(txn["type"])
        if kind is not None:
            theirs[txn["source"]] = {"kind": kind, "amount": int(txn["amount"]),
                                     "currency": str(txn["currency"]).upper()}
        elif txn.get("reporting_category") in _DISPUTE_KIND:  # an adjustment: by its own id, net of the fee
            theirs[txn["id"]] = {"kind": _DISPUTE_KIND[txn["reporting_category"]], "amount": int(txn["net"]),
                                 "currency": str(txn["currency"]).upper()}
    mismatches = []
    for reference in sorted(ours.keys() | theirs.keys()):
        mine, stripe_side = ours.get(reference), theirs.get(reference)
        known = mine or stripe_side or {}
        if mine is None:
            problem = "missing_in_ledger"
        elif stripe_side is None:
            problem = "missing_at_stripe"
        elif (mine["amount"], mine["currency"]) != (stripe_side["amount"], stripe_side["currency"]):
            problem = "amount_differs"
        else:
            continue
        mismatches.append({"kind": known["kind"], "reference": reference, "problem": problem,
                           "ledger_amount": mine["amount"] if mine else None,
                           "stripe_amount": stripe_side["amount"] if stripe_side else None,
                           "currency": known["currency"]})
    run = conn.execute(QUERIES["insert_reconciliation_run"], {"checked": len(ours.keys() | theirs.keys()),
                                                              "mismatches": len(mismatches)}).fetchone()
    run = expect_row(run, "insert_reconciliation_run")
    for mismatch in mismatches:
        conn.execute(QUERIES["insert_reconciliation"], {"run_id": run["id"], **mismatch})
    return ReconciliationResult(run_id=run["id"], checked=len(ours.keys() | theirs.keys()), mismatches=mismatches)
