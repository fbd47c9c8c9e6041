"""Refunds from refund events (Stripe API 2024-10-28.acacia and later), through the real SDK, the fake Stripe
and the running fleet: a refund made in the Dashboard is recorded as external with its ledger entries; a
refund that fails after it was created gives the money back once; ``charge.refunded`` carries no refunds
list and posts nothing; any order of arrival and any number of copies end the same; our own cancellation
refund is recorded once whether Stripe's answer or its event comes first."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from shared.db import QUERIES
from tests.support import Catalog, wait_for
from tests.test_payments import book, booking, cancel, events_for, pay, wait_booking
from totem.fleet import Fleet


@pytest.fixture
def customer(fleet: Fleet) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_customer", base_addresses={"api": fleet.stripe_url}, max_network_retries=0)


def postings(db: Any, booking_id: str) -> list[tuple[str, int]]:
    """The booking's refund postings and reversals: (kind, what left the platform's cash)."""
    return [(r["kind"], -int(r["cash"])) for r in db.execute(
        "SELECT t.kind, sum(e.amount) AS cash FROM ledger_transactions t "
        "JOIN ledger_entries e ON e.transaction_id = t.id "
        "JOIN ledger_accounts a ON a.id = e.account_id AND a.kind = 'platform_cash' "
        "WHERE t.booking_id = %s AND t.kind IN ('refund', 'refund_reversal') GROUP BY t.id, t.kind ORDER BY t.id",
        (booking_id,)).fetchall()]


def balanced(db: Any) -> bool:
    return db.execute(QUERIES["ledger_trial_balance"]).fetchall() == []


def refunds_of(b: dict[str, Any]) -> list[tuple[str, int, str]]:
    return sorted((r["kind"], r["amount"], r["status"]) for r in b["refunds"])


def paid(client: httpx.Client, customer: stripe.StripeClient, catalog: Catalog, days: int,
         card: str = "pm_card_visa") -> dict[str, Any]:
    result = book(client, catalog, days=days)
    pay(customer, result["payment_intent_id"], card)
    wait_booking(client, result["booking_id"], "paid", lambda b: b["status"] == "paid")
    return result


def test_a_dashboard_refund_is_recorded_as_external_from_its_refund_event(
        client: httpx.Client, customer: stripe.StripeClient, fake: httpx.Client, catalog: Catalog, db: Any) -> None:
    result = paid(client, customer, catalog, days=70)
    refund = fake.post("/_fake/refunds", json={"payment_intent": result["payment_intent_id"], "amount": 700}).json()
    assert (refund["status"], refund["metadata"]) == ("succeeded", {})
    view = wait_booking(client, result["booking_id"], "external refund recorded",
                        lambda b: b["refunds"] and b["payments"][0]["amount_refunded"] == 700)
    assert refunds_of(view) == [("external", 700, "succeeded")]
    assert view["refunds"][0]["stripe_refund_id"] == refund["id"]
    assert postings(db, result["booking_id"]) == [("refund", 700)]
    charge_events = [e for e in events_for(fake, result["payment_intent_id"]) if e["type"] == "charge.refunded"]
    assert len(charge_events) == 1 and "refunds" not in charge_events[0]["data"]["object"]  # since 2022-11-15
    assert customer.v1.refunds.retrieve(refund["id"]).amount == 700
    assert balanced(db)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_refund_failing_after_it_was_created_is_posted_and_reversed_once_whatever_the_order(
        client: httpx.Client, customer: stripe.StripeClient, fake: httpx.Client, catalog: Catalog, db: Any,
        seed: int) -> None:
    """Everything held from the payment on, then released shuffled, three copies each: refund.failed may
    come before refund.created, charge.refunded before either, and all of them before the payment's."""
    result = book(client, catalog, days=71 + seed)
    fake.post("/_fake/webhooks", json={"hold": True})
    pay(customer, result["payment_intent_id"])
    refund = fake.post("/_fake/refunds", json={"payment_intent": result["payment_intent_id"], "amount": 900}).json()
    failed = fake.post(f"/_fake/refunds/{refund['id']}/fail", json={"failure_reason": "lost_or_stolen_card"}).json()
    assert (failed["status"], failed["failure_reason"]) == ("failed", "lost_or_stolen_card")
    assert customer.v1.charges.retrieve(failed["charge"]).amount_refunded == 0  # the money is back on the charge
    types = [e["type"] for e in events_for(fake, result["payment_intent_id"])]
    assert types[-4:] == ["refund.created", "charge.refunded", "refund.updated", "refund.failed"]
    fake.post("/_fake/webhooks", json={"hold": False})
    fake.post("/_fake/webhooks/release", json={"order": "shuffled", "copies": 3, "seed": seed})

    def unapplied() -> int:
        return int(db.execute(
            "SELECT count(*) AS n FROM stripe_events WHERE status = 'received' AND (object_id = %(pi)s "
            "OR payload->'data'->'object'->>'payment_intent' = %(pi)s)", {"pi": result["payment_intent_id"]})
            .fetchone()["n"])

    view = wait_booking(client, result["booking_id"], "the failed refund recorded",
                        lambda b: b["status"] == "paid" and refunds_of(b) == [("external", 900, "failed")])
    assert view["refunds"][0]["failure_reason"] == "lost_or_stolen_card"
    wait_for(lambda: len(postings(db, result["booking_id"])) == 2 and unapplied() == 0, 30, "every event applied")
    assert postings(db, result["booking_id"]) == [("refund", 900), ("refund_reversal", -900)]
    assert booking(client, result["booking_id"])["payments"][0]["amount_refunded"] == 0  # every event is in
    assert balanced(db)


def test_our_refund_failing_after_it_was_created_shows_failed_on_the_booking_and_returns_the_money(
        client: httpx.Client, customer: stripe.StripeClient, fake: httpx.Client, catalog: Catalog, db: Any) -> None:
    result = paid(client, customer, catalog, days=80, card="pm_card_refundFail")
    refund_id = cancel(client, result["booking_id"])["result"]["refund"]["refund_id"]
    done = wait_booking(client, result["booking_id"], "refund succeeded",
                        lambda b: b["refunds"] and b["refunds"][0]["status"] == "succeeded")
    stripe_refund = done["refunds"][0]["stripe_refund_id"]
    assert customer.v1.refunds.retrieve(stripe_refund).metadata["refund_id"] == refund_id
    fake.post(f"/_fake/refunds/{stripe_refund}/fail", json={})
    view = wait_booking(client, result["booking_id"], "refund failed",
                        lambda b: b["refunds"][0]["status"] == "failed" and b["payments"][0]["amount_refunded"] == 0)
    assert [(r["id"], r["kind"], r["failure_reason"]) for r in view["refunds"]] == [
        (refund_id, "cancellation", "expired_or_canceled_card")]
    wait_for(lambda: len(postings(db, result["booking_id"])) == 2, 10, "the reversal posted")
    assert postings(db, result["booking_id"]) == [("refund", 2500), ("refund_reversal", -2500)]
    assert balanced(db)
    # both sides are told, once (the outbox row commits with the reversal)
    notices = db.execute("SELECT payload FROM outbox WHERE aggregate_id = %s AND topic = 'refund_failed'",
                         (result["booking_id"],)).fetchall()
    assert [(n["payload"]["amount"], n["payload"]["reason"]) for n in notices] == [(2500, "expired_or_canceled_card")]


@pytest.mark.parametrize("first", ["answer", "event"])
def test_our_cancellation_refund_is_recorded_once_whether_stripes_answer_or_its_event_comes_first(
        client: httpx.Client, customer: stripe.StripeClient, fake: httpx.Client, catalog: Catalog, db: Any,
        first: str) -> None:
    """answer: the events are held until the refund job recorded Stripe's answer. event: the answer is lost
    (a 500 after Stripe made the refund), so the event is applied before the retried call's replay."""
    result = paid(client, customer, catalog, days=90 if first == "answer" else 91)
    if first == "answer":
        fake.post("/_fake/webhooks", json={"hold": True})
    else:
        fake.post("/_fake/faults", json={"operation": "refunds.create", "times": 1, "when": "after"})
    refund_id = cancel(client, result["booking_id"])["result"]["refund"]["refund_id"]
    if first == "answer":
        wait_booking(client, result["booking_id"], "the answer recorded",
                     lambda b: b["refunds"][0]["status"] == "succeeded")
        fake.post("/_fake/webhooks", json={"hold": False})
        fake.post("/_fake/webhooks/release", json={"order": "shuffled", "copies": 3, "seed": 5})
    wait_for(lambda: db.execute("SELECT status FROM jobs WHERE type = 'refund.issue' AND payload->>'refund_id' = %s",
                                (refund_id,)).fetchone()["status"] == "succeeded", 30, "the refund job done")
    refund_events = [e["id"] for e in events_for(fake, result["payment_intent_id"]) if e["type"] == "refund.created"]
    assert len(refund_events) == 1
    wait_for(lambda: db.execute("SELECT status FROM stripe_events WHERE event_id = %s",
                                (refund_events[0],)).fetchone() == {"status": "applied"}, 30, "refund.created applied")
    view = wait_booking(client, result["booking_id"], "refund counted",
                        lambda b: b["payments"][0]["amount_refunded"] == 2500)
    assert [(r["id"], r["kind"], r["status"]) for r in view["refunds"]] == [(refund_id, "cancellation", "succeeded")]
    assert postings(db, result["booking_id"]) == [("refund", 2500)]
    assert balanced(db)


def test_a_pending_refund_is_posted_once_and_succeeds_later(
        client: httpx.Client, customer: stripe.StripeClient, fake: httpx.Client, catalog: Catalog, db: Any) -> None:
    """pm_card_pendingRefund: the refund is pending at first (its money already left the balance), then
    succeeds (refund.updated): posted once, when Stripe created it."""
    result = paid(client, customer, catalog, days=95, card="pm_card_pendingRefund")
    cancel(client, result["booking_id"])
    pending = wait_booking(client, result["booking_id"], "refund pending at Stripe",
                           lambda b: b["refunds"] and b["refunds"][0]["stripe_refund_id"])
    assert pending["refunds"][0]["status"] == "pending" and pending["payments"][0]["amount_refunded"] == 2500
    wait_for(lambda: postings(db, result["booking_id"]) == [("refund", 2500)], 10, "posted while pending")
    fake.post(f"/_fake/refunds/{pending['refunds'][0]['stripe_refund_id']}/succeed")
    wait_booking(client, result["booking_id"], "refund succeeded", lambda b: b["refunds"][0]["status"] == "succeeded")
    assert postings(db, result["booking_id"]) == [("refund", 2500)]
    assert balanced(db)
