"""Disputes (chargebacks): Stripe's ``charge.dispute.*`` events applied once, in any order and any number of
copies, to a ``disputes`` row, the ledger and the owner's notifications.

Every event carries the whole Dispute as it was when sent: its status and its ``balance_transactions`` (the
withdrawal: type ``adjustment``, amount −D, fee F, Stripe's dispute fee; on a win, the reinstatement: +D,
no fee, since Stripe keeps the dispute fee whatever the outcome). So each event is applied the same way,
whichever it is: the dispute row is created by the first one heard of (``dispute_opened`` to the owner),
its status only moves forward (open → under review → closed; closing tells the owner ``dispute_closed``),
and each balance transaction it lists is posted once, the withdrawal before its reinstatement. The
dispute's row, locked after its booking, guards each posting (``funds_withdrawn_at`` /
``funds_reinstated_at``): a replay posts nothing.

Postings (debit +, credit −), D the disputed amount, F the fee, U what the booking still owes its provider
(pending, then available: not yet sent):

* withdrawal:      platform_cash −(D + F) | provider_pending/available +Dp+Fp | platform_dispute_costs +rest
  with liability ``provider`` (the provider's setting, the default) Dp = min(D, U), Fp = min(F, U − Dp);
  with ``platform`` Dp = Fp = 0.
* reinstatement:   platform_cash +D | <payable now> −Dp | platform_dispute_costs −(D − Dp)

So every journal balances, and cash = owed to providers + commission − dispute costs stays exact.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg

from shared import ledger
from shared.db import QUERIES, expect_row
from shared.notifications import emit

EVENTS = frozenset({"charge.dispute.created", "charge.dispute.updated", "charge.dispute.funds_withdrawn",
                    "charge.dispute.funds_reinstated", "charge.dispute.closed"})
CLOSED = frozenset({"won", "lost", "warning_closed", "prevented"})
_RANK = {"warning_needs_response": 0, "needs_response": 0, "warning_under_review": 1, "under_review": 1,
         "won": 2, "lost": 2, "warning_closed": 2, "prevented": 2}


class BalanceTransaction(msgspec.Struct):
    id: str
    amount: int
    fee: int = 0


class Dispute(msgspec.Struct):
    """What every charge.dispute.* event we apply must carry."""

    id: str
    amount: int
    currency: str
    charge: str
    status: str
    balance_transactions: list[BalanceTransaction] = []


class Change(msgspec.Struct):
    effect: str
    detail: dict[str, Any]


def apply(conn: psycopg.Connection[Any], obj: dict[str, Any]) -> tuple[uuid.UUID | None, list[Change]]:
    """Apply one dispute event's object; returns the booking and what changed (empty: nothing)."""
    dispute = msgspec.convert(obj, Dispute)
    intent = obj.get("payment_intent")
    intent_id = intent.get("id") if isinstance(intent, dict) else intent
    found = conn.execute(QUERIES["dispute_booking"], {"payment_intent_id": intent_id,
                                                     "charge_id": dispute.charge}).fetchone()
    if found is None:
        return None, []
    booking = conn.execute(QUERIES["lock_booking"], {"id": found["booking_id"]}).fetchone()
    if booking is None:
        return None, []
    due = (obj.get("evidence_details") or {}).get("due_by")
    due_by = datetime.fromtimestamp(int(due), UTC) if due else None
    changes: list[Change] = []
    # known from its first event as open, whichever came first: the status then moves on as any later one does
    inserted = conn.execute(QUERIES["insert_dispute"], {
        "stripe_dispute_id": dispute.id, "booking_id": booking["id"], "payment_intent_id": intent_id,
        "charge_id": dispute.charge, "amount": dispute.amount, "currency": dispute.currency.upper(),
        "status": "warning_needs_response" if dispute.status.startswith("warning_") else "needs_response",
        "reason": str(obj.get("reason") or "general"), "evidence_due_by": due_by,
    }).fetchone()
    row = _lock(conn, dispute.id)
    if inserted is not None:
        changes.append(Change("dispute_opened", {"dispute_id": dispute.id, "status": dispute.status}))
        _tell(conn, "dispute_opened", booking, row)
    for txn in sorted(dispute.balance_transactions, key=lambda t: t.amount):  # the withdrawal first
        if txn.amount < 0 and row["funds_withdrawn_at"] is None:
            share = _post_withdrawal(conn, booking, row, txn)
            changes.append(Change("dispute_funds_withdrawn", {"dispute_id": dispute.id, "amount": -txn.amount,
                                                              "fee": txn.fee, "provider_share": share}))
            row = _lock(conn, dispute.id)
        elif txn.amount > 0 and row["funds_withdrawn_at"] is not None and row["funds_reinstated_at"] is None:
            _post_reinstatement(conn, booking, row, txn)
            changes.append(Change("dispute_funds_reinstated", {"dispute_id": dispute.id, "amount": txn.amount}))
            row = _lock(conn, dispute.id)
    if _RANK.get(dispute.status, -1) > _RANK[row["status"]]:
        closed = dispute.status in CLOSED
        conn.execute(QUERIES["advance_dispute_status"], {"id": row["id"], "status": dispute.status,
                                                         "evidence_due_by": due_by, "closed": closed})
        row = {**row, "status": dispute.status}
        changes.append(Change("dispute_closed" if closed else "dispute_updated",
                              {"dispute_id": dispute.id, "status": dispute.status}))
        if closed:
            _tell(conn, "dispute_closed", booking, row)
    elif inserted is None and due_by is not None and due_by != row["evidence_due_by"] and row["status"] not in CLOSED:
        conn.execute(QUERIES["advance_dispute_status"], {"id": row["id"], "status": row["status"],
                                                         "evidence_due_by": due_by, "closed": False})
        changes.append(Change("dispute_updated", {"dispute_id": dispute.id, "evidence_due_by": due_by.isoformat()}))
    return booking["id"], changes


def _lock(conn: psycopg.Connection[Any], stripe_dispute_id: str) -> dict[str, Any]:
    row: dict[str, Any] = expect_row(conn.execute(QUERIES["lock_dispute"], {"stripe_dispute_id": stripe_dispute_id})
                                     .fetchone(), "lock_dispute")
    return row


def _tell(conn: psycopg.Connection[Any], topic: str, booking: dict[str, Any], row: dict[str, Any]) -> None:
    emit(conn, topic, booking["id"], {
        "booking_id": str(booking["id"]), "provider_id": str(booking["provider_id"]),
        "dispute_id": row["stripe_dispute_id"], "amount": row["amount"], "currency": row["currency"],
        "reason": row["reason"], "outcome": row["status"]})


def cost_split(amount: int, fee: int, unpaid: int, liability: str) -> tuple[int, int]:
    """(Dp, Fp): what the provider bears of the amount and of the fee; the platform bears the rest."""
    if liability != "provider":
        return 0, 0
    unpaid = max(unpaid, 0)
    provider_amount = min(amount, unpaid)
    return provider_amount, min(fee, unpaid - provider_amount)


def _post_withdrawal(conn: psycopg.Connection[Any], booking: dict[str, Any], row: dict[str, Any],
                     txn: BalanceTransaction) -> int:
    amount, fee, currency, provider = -txn.amount, txn.fee, row["currency"], booking["provider_id"]
    unpaid = {r["kind"]: int(r["amount"]) for r in conn.execute(QUERIES["booking_unpaid_payable"],
                                                                 {"booking_id": booking["id"]})}
    provider_amount, provider_fee = cost_split(amount, fee, sum(max(v, 0) for v in unpaid.values()),
                                               row["dispute_liability"])
    share = provider_amount + provider_fee
    from_pending = min(share, max(unpaid.get("provider_pending", 0), 0))
    ledger.post(conn, key=f"dispute_withdrawal:{row['stripe_dispute_id']}", kind="dispute_withdrawal",
                booking_id=booking["id"], external_ref=txn.id,
                description=f"dispute {row['stripe_dispute_id']}: amount and dispute fee withdrawn", entries=[
                    ledger.Entry("platform_cash", None, currency, -(amount + fee)),
                    ledger.Entry("provider_pending", provider, currency, from_pending),
                    ledger.Entry("provider_available", provider, currency, share - from_pending),
                    ledger.Entry("platform_dispute_costs", None, currency, amount + fee - share)])
    conn.execute(QUERIES["record_dispute_withdrawal"], {"id": row["id"], "fee": fee, "provider_share": share,
                                                        "liability": row["dispute_liability"]})
    return share


def _post_reinstatement(conn: psycopg.Connection[Any], booking: dict[str, Any], row: dict[str, Any],
                        txn: BalanceTransaction) -> None:
    """The provider gets back what they bore of the amount (the fee is not returned), on the account the
    booking's payable sits on now; the platform the rest."""
    amount, currency = txn.amount, row["currency"]
    provider_amount = min(amount, int(row["provider_share"]))
    money = conn.execute(QUERIES["booking_money"], {"booking_id": booking["id"]}).fetchone()
    payable = "provider_available" if money and money["matured"] else "provider_pending"
    ledger.post(conn, key=f"dispute_reinstatement:{row['stripe_dispute_id']}", kind="dispute_reinstatement",
                booking_id=booking["id"], external_ref=txn.id,
                description=f"dispute {row['stripe_dispute_id']} won: amount reinstated", entries=[
                    ledger.Entry("platform_cash", None, currency, amount),
                    ledger.Entry(payable, booking["provider_id"], currency, -provider_amount),
                    ledger.Entry("platform_dispute_costs", None, currency, -(amount - provider_amount))])
    conn.execute(QUERIES["record_dispute_reinstatement"], {"id": row["id"]})
