"""Queue ``payouts``: send each payout through Stripe Transfers, and reconcile the ledger with Stripe.

A payout is sent with the idempotency key ``totem-payout-<id>``, so two workers or a rerun after a crash
make one transfer. Transient failures retry (tenacity, then the job); a refusal is permanent: the payout
is marked failed with its reason and its money goes back to the provider's available balance (a later
period pays it again).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import psycopg

from shared import ledger, settlement
from shared.db import QUERIES
from shared.errors import DomainError, NotFound, PaymentProviderRefused
from shared.jobs import ClaimedJob, Handler
from shared.registry import LEDGER_RECONCILE, PAYOUT_SEND
from shared.schemas import PayoutJob, PayoutSent
from workers.runtime import job_actor, runtime

runtime.boot()


def prepare_payout(conn: psycopg.Connection[Any], job: ClaimedJob) -> Handler:
    payout_id = msgspec.convert(job.payload, PayoutJob).payout_id
    payout = conn.execute(QUERIES["payout_to_send"], {"id": payout_id}).fetchone()
    if payout is None:
        return lambda conn, job: NotFound(f"payout {payout_id} does not exist")
    if payout["status"] != "pending":
        return lambda conn, job: _sent(payout, payout["status"], payout["stripe_transfer_id"])
    try:
        transfer = runtime.stripe.create_transfer(
            payout_id=str(payout_id), amount=payout["amount"], currency=payout["currency"],
            destination=payout["destination"], transfer_group=f"batch_{payout['batch_id']}",
            metadata={"booking_id": str(payout["booking_id"]), "batch_id": str(payout["batch_id"])})
    except PaymentProviderRefused as exc:
        refused = exc  # the except clause unbinds its own name; the handler runs after it

        def give_back(conn: psycopg.Connection[Any], job: ClaimedJob) -> DomainError:
            failed = conn.execute(QUERIES["mark_payout_failed"], {"id": payout_id, "reason": refused.detail}).fetchone()
            if failed is not None:
                ledger.post_payout(conn, "returned", failed)
            return refused

        return give_back

    def record(conn: psycopg.Connection[Any], job: ClaimedJob) -> PayoutSent:
        paid = conn.execute(QUERIES["mark_payout_paid"], {"id": payout_id, "transfer_id": transfer.id}).fetchone()
        if paid is not None:
            ledger.post_payout(conn, "paid", paid, transfer_id=transfer.id)
        return _sent(payout, "paid", transfer.id)

    return record


def _sent(payout: dict[str, Any], status: Literal["pending", "paid", "failed"],
          transfer_id: str | None) -> PayoutSent:
    return PayoutSent(payout_id=payout["id"], status=status, stripe_transfer_id=transfer_id, amount=payout["amount"])


def prepare_reconcile(conn: psycopg.Connection[Any], job: ClaimedJob) -> Handler:
    """Read every balance transaction from Stripe (paged), then compare and record in one transaction."""
    transactions: list[dict[str, Any]] = []
    starting_after = None
    while True:
        params: dict[str, Any] = {"limit": 100, **({"starting_after": starting_after} if starting_after else {})}
        page = runtime.stripe.list_balance_transactions(**params)
        transactions += [txn.to_dict() for txn in page.data]
        if not page.has_more or not page.data:
            break
        starting_after = page.data[-1].id
    return lambda conn, job: settlement.reconcile(conn, transactions)


send_payout = job_actor(PAYOUT_SEND, prepare=prepare_payout)
reconcile_ledger = job_actor(LEDGER_RECONCILE, prepare=prepare_reconcile)
