"""The double-entry ledger: what each money event posts, in the same transaction as the state change it
records. The database guarantees the rest (migration 0004): entries are append-only, every transaction
balances per currency at commit, and a transaction's idempotency key posts it once; a replay with other
entries is refused (``ledger_exists_with_different_entries``), never ignored.

Postings (debit +, credit −):

* capture A (payment succeeded):   cash +A | provider_pending −P | platform_commission −C
* deposit capture A (a claim):     the same, under the deposit's PaymentIntent (posted once: the claim is final)
* refund R (Stripe created it):     cash −R | <payable> +Rp | platform_commission +Rc
* refund reversal (it failed):     the refund's entries negated (once)
* maturity (booking completed, or a paid booking cancelled: the share the provider keeps is earned):
                                   provider_pending +X | provider_available −X (available_at = now + window)
* payout initiated / paid / returned:
                                   provider_available +X | payouts_in_transit −X
                                   payouts_in_transit +X | cash −X
                                   payouts_in_transit +X | provider_available −X

Rounding, never losing a cent: C = floor(A × bps / 10 000) and P = A − C; a refund's commission share is
Rc = floor(R × C / A) and Rp = R − Rc. So P + C = A and Rp + Rc = R exactly, and a full refund (R = A)
reverses exactly P and C.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from shared.db import QUERIES, expect_row
from shared.errors import NotFound, PaymentNotCaptured
from shared.notifications import emit


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str
    provider_id: uuid.UUID | None
    currency: str
    amount: int
    available_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "provider_id": str(self.provider_id) if self.provider_id else None,
                               "currency": self.currency, "amount": self.amount}
        if self.available_at is not None:
            out["available_at"] = self.available_at.astimezone(UTC).isoformat()
        return out


def post(conn: psycopg.Connection[Any], *, key: str, kind: str, entries: list[Entry],
         booking_id: uuid.UUID | None = None, payout_id: uuid.UUID | None = None,
         external_ref: str | None = None, description: str | None = None) -> tuple[int, bool]:
    """Post once under ``key``; returns (transaction id, whether this call posted it)."""
    row = conn.execute(QUERIES["ledger_post"], {
        "key": key, "kind": kind, "booking_id": booking_id, "payout_id": payout_id, "external_ref": external_ref,
        "description": description, "entries": Jsonb([e.as_json() for e in entries])}).fetchone()
    row = expect_row(row, "ledger_post")
    return int(row["transaction_id"]), bool(row["posted"])


def split(amount: int, commission_bps: int) -> tuple[int, int]:
    """(provider share, commission) of a capture; they add up to ``amount`` exactly."""
    commission = amount * commission_bps // 10_000
    return amount - commission, commission


def _booking(conn: psycopg.Connection[Any], booking_id: uuid.UUID) -> dict[str, Any]:
    row: dict[str, Any] | None = conn.execute(QUERIES["booking_money"], {"booking_id": booking_id}).fetchone()
    if row is None:
        raise NotFound(f"booking {booking_id} does not exist")
    return row


def post_capture(conn: psycopg.Connection[Any], *, booking_id: uuid.UUID, payment_intent_id: str,
                 charge_id: str | None, amount: int, currency: str) -> None:
    booking = _booking(conn, booking_id)
    provider, commission = split(amount, booking["commission_bps"])
    post(conn, key=f"capture:{payment_intent_id}", kind="capture", booking_id=booking_id,
         external_ref=charge_id, description=f"card payment {payment_intent_id}", entries=[
             Entry("platform_cash", None, currency, amount),
             Entry("provider_pending", booking["provider_id"], currency, -provider),
             Entry("platform_commission", None, currency, -commission)])


def post_deposit_capture(conn: psycopg.Connection[Any], *, booking_id: uuid.UUID, payment_intent_id: str,
                         amount: int, currency: str) -> bool:
    """A claimed security deposit is money in for the provider like a payment, at the booking's commission.
    Returns whether this call posted it (a replay posts nothing)."""
    booking = _booking(conn, booking_id)
    provider, commission = split(amount, booking["commission_bps"])
    _, posted = post(conn, key=f"deposit_capture:{payment_intent_id}", kind="deposit_capture", booking_id=booking_id,
                     description=f"security deposit claimed {payment_intent_id}", entries=[
                         Entry("platform_cash", None, currency, amount),
                         Entry("provider_pending", booking["provider_id"], currency, -provider),
                         Entry("platform_commission", None, currency, -commission)])
    return posted


def post_refund(conn: psycopg.Connection[Any], *, refund_id: uuid.UUID, booking_id: uuid.UUID,
                stripe_refund_id: str | None, amount: int) -> None:
    """Compensate a capture by the same provider/commission ratio; the provider's share comes off the
    account the booking's payable sits on now (available once matured, else pending). The first posting
    tells the customer (``refund_issued``); a replay tells nobody."""
    booking = _booking(conn, booking_id)
    captured = booking["captured"]
    if not captured:
        raise PaymentNotCaptured(f"refund {refund_id}: booking {booking_id} has no captured payment")
    _, commission = split(captured, booking["commission_bps"])
    commission_share = amount * commission // captured
    payable = "provider_available" if booking["matured"] else "provider_pending"
    currency = booking["currency"]
    _, posted = post(conn, key=f"refund:{refund_id}", kind="refund", booking_id=booking_id,
                     external_ref=stripe_refund_id, description=f"refund {refund_id}", entries=[
                         Entry("platform_cash", None, currency, -amount),
                         Entry(payable, booking["provider_id"], currency, amount - commission_share),
                         Entry("platform_commission", None, currency, commission_share)])
    if posted:
        emit(conn, "refund_issued", booking_id, {
            "booking_id": str(booking_id), "provider_id": str(booking["provider_id"]), "refund_id": str(refund_id),
            "amount": amount, "currency": currency})


def post_refund_reversal(conn: psycopg.Connection[Any], *, refund_id: uuid.UUID, booking_id: uuid.UUID,
                         stripe_refund_id: str | None, reason: str | None) -> bool:
    """A refund that failed after it was posted gives the money back: the exact negation of its posting
    (the same accounts, so the provider's share returns where it was taken from), once. Returns whether
    this call posted it (not when the refund was never posted, nor on a replay)."""
    rows = conn.execute(QUERIES["ledger_transaction_entries"], {"key": f"refund:{refund_id}"}).fetchall()
    if not rows:
        return False
    _, posted = post(conn, key=f"refund_reversal:{refund_id}", kind="refund_reversal", booking_id=booking_id,
                     external_ref=stripe_refund_id, description=f"refund {refund_id} failed: {reason or 'unknown'}",
                     entries=[Entry(r["kind"], r["provider_id"], r["currency"], -int(r["amount"])) for r in rows])
    if posted:  # the customer and the provider are told (refund_failed); a replay tells nobody
        cash = next(r for r in rows if r["kind"] == "platform_cash")
        emit(conn, "refund_failed", booking_id, {
            "booking_id": str(booking_id), "provider_id": str(_booking(conn, booking_id)["provider_id"]),
            "refund_id": str(refund_id), "amount": -int(cash["amount"]), "currency": cash["currency"],
            "reason": reason or "unknown"})
    return posted


def post_maturity(conn: psycopg.Connection[Any], *, booking_id: uuid.UUID, maturity_seconds: float,
                  reason: str, key: str | None = None) -> int:
    """Move what a booking still owes its provider from pending to available, maturing after the window
    (once per ``key``: by default the booking's one maturity)."""
    booking = _booking(conn, booking_id)
    row = conn.execute(QUERIES["booking_pending_payable"], {"booking_id": booking_id}).fetchone()
    owed = int(row["amount"]) if row else 0
    if owed <= 0:
        return 0
    at = datetime.now(UTC) + timedelta(seconds=maturity_seconds)
    post(conn, key=key or f"maturity:{booking_id}", kind="maturity", booking_id=booking_id, description=reason,
         entries=[
        Entry("provider_pending", booking["provider_id"], booking["currency"], owed),
        Entry("provider_available", booking["provider_id"], booking["currency"], -owed, at)])
    return owed


def post_payout(conn: psycopg.Connection[Any], stage: str, payout: dict[str, Any],
                transfer_id: str | None = None) -> None:
    """initiated: available → in transit; paid: in transit → cash; returned: in transit → available.
    The first posting of "paid" tells the provider (``payout_sent``)."""
    provider, currency, amount = payout["provider_id"], payout["currency"], payout["amount"]
    moves = {
        "initiated": ("payout_initiated", "provider_available", "payouts_in_transit"),
        "paid": ("payout_paid", "payouts_in_transit", "platform_cash"),
        "returned": ("payout_returned", "payouts_in_transit", "provider_available"),
    }
    kind, debit, credit = moves[stage]
    _, posted = post(conn, key=f"payout:{payout['id']}:{stage}", kind=kind, booking_id=payout["booking_id"],
                     payout_id=payout["id"], external_ref=transfer_id, description=f"payout {stage}", entries=[
                         Entry(debit, None if debit.startswith("platform_") else provider, currency, amount),
                         Entry(credit, None if credit.startswith("platform_") else provider, currency, -amount)])
    if posted and stage == "paid":
        emit(conn, "payout_sent", payout["id"], {
            "provider_id": str(provider), "payout_id": str(payout["id"]), "booking_id": str(payout["booking_id"]),
            "amount": amount, "currency": currency})


class Balance(msgspec.Struct):
    currency: str
    pending: int
    available: int
    in_transit: int
    paid_out: int


def balances(conn: psycopg.Connection[Any], provider_id: uuid.UUID) -> list[Balance]:
    return [Balance(**row) for row in conn.execute(QUERIES["provider_balances"], {"provider_id": provider_id})]


def summary_drift(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Where the derived balances (migration 0014) differ from the entries they sum: always none. A pass
    over every provider entry: for operators and tests, not for requests."""
    return list(conn.execute(QUERIES["ledger_summary_drift"]).fetchall())


def rebuild_summary(conn: psycopg.Connection[Any]) -> int:
    """Rebuild the derived balances from the entries (postings wait meanwhile); returns how many accounts."""
    row = expect_row(conn.execute(QUERIES["ledger_rebuild_summary"]).fetchone(), "ledger_rebuild_summary")
    return int(row["accounts"])
