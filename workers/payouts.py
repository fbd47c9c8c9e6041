"""Queue ``payouts``: send each payout through Stripe Transfers, and reconcile the ledger with Stripe.

A payout is sent with the idempotency key ``totem-payout-<id>``, so two workers or a rerun after a crash
make one transfer. Each transfer carries ``transfer_group`` (the booking's id) and ``source_transaction``
(the booking's charge), so it ties back to the charge that funded it. A payout to a connected account
whose payouts were disabled after its period closed is refused here, like a refusal by Stripe.

Transient failures retry (tenacity, then the job); a refusal is permanent: the payout
is marked failed with its reason and its money goes back to the provider's available balance (a later
period pays it again).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import psycopg

from shared import connect, ledger, settlement
from shared.db import QUERIES
from shared.errors import DomainError, NotFound, PaymentProviderRefused
from shared.jobs import ClaimedJob, Handler
from shared.registry import CONNECT_ONBOARD, LEDGER_RECONCILE, PAYOUT_SEND
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
        held = connect.hold_reason(connect.account_of(conn, payout["provider_id"]))
        if held:  # disabled since its period closed: the money goes back to available, paid later
            raise PaymentProviderRefused(held)
        transfer = runtime.stripe.create_transfer(
            payout_id=str(payout_id), amount=payout["amount"], currency=payout["currency"],
            destination=payout["destination"], transfer_group=str(payout["booking_id"]),
            source_transaction=_funding_charge(payout),
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


def _funding_charge(payout: dict[str, Any]) -> str | None:
    """The booking's charge, as the transfer's ``source_transaction`` (it ties the payout to the money that
    funded it), when the payout fits in it; one that does not (a deposit claim added to it) is sent without."""
    charge_id: str | None = payout["charge_id"]
    if charge_id is None or payout["charge_amount"] is None or payout["amount"] > payout["charge_amount"]:
        return None
    return charge_id


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


def prepare_onboard(conn: psycopg.Connection[Any], job: ClaimedJob) -> Handler:
    """The provider's connected account (created once: the Stripe key is the provider's) and a fresh
    onboarding link, from Stripe outside any transaction; then the account is kept, audited, in the job's."""
    command = msgspec.convert(job.payload, connect.OnboardJob)
    provider = conn.execute(QUERIES["connect_provider"], {"provider_id": command.provider_id}).fetchone()
    if provider is None:
        return lambda conn, job: NotFound(f"provider {command.provider_id} does not exist")
    known = connect.account_of(conn, command.provider_id)
    try:
        account = None if known else runtime.stripe.create_connected_account(
            provider_id=str(command.provider_id), email=provider["contact_email"])
        account_id: str = known["account_id"] if known else account.id  # type: ignore[union-attr]
        link = runtime.stripe.create_account_link(account_id=account_id, refresh_url=command.refresh_url,
                                                  return_url=command.return_url, key=str(job.id))
    except PaymentProviderRefused as exc:
        refused = exc
        return lambda conn, job: refused

    def record(conn: psycopg.Connection[Any], job: ClaimedJob) -> connect.OnboardingLink:
        created = account is not None and connect.record_created(conn, command, account.to_dict())
        return connect.OnboardingLink(provider_id=command.provider_id, account_id=account_id, created=created,
                                      url=link.url, expires_at=link.expires_at)

    return record


send_payout = job_actor(PAYOUT_SEND, prepare=prepare_payout)
onboard_stripe_account = job_actor(CONNECT_ONBOARD, prepare=prepare_onboard)
reconcile_ledger = job_actor(LEDGER_RECONCILE, prepare=prepare_reconcile)
