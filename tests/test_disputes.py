"""Disputes (chargebacks) end to end, through the real stripe SDK and the fake Stripe: a dispute opened on a
paid booking withdraws the amount and Stripe's dispute fee (the provider bears it up to what the booking
still owes them, or the platform, by the provider's setting), the booking lists it, the owner hears of it,
a won dispute reinstates the amount (not the fee), a lost one keeps it withdrawn; shuffled and repeated
events post once; reconciliation finds a withdrawal the ledger missed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import stripe
from psycopg.rows import dict_row

from shared.db import use_msgspec_json
from tests.support import Catalog, make_catalog, new_key, wait_for, wait_job
from tests.test_payments import book, pay, wait_booking
from totem.fleet import Fleet

SYSTEM = {"X-System-Token": "test-system-token"}
PRICE, PROVIDER_SHARE, COMMISSION, FEE = 2500, 2250, 250, 1500  # make_catalog: 10 % commission


@pytest.fixture
def customer(fleet: Fleet) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_customer", base_addresses={"api": fleet.stripe_url}, max_network_retries=0)


@pytest.fixture
def conn(database_url: str) -> Iterator[Any]:
    use_msgspec_json()
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as c:
        yield c


@pytest.fixture
def salon(database_url: str, conn: Any) -> Catalog:
    catalog = make_catalog(database_url)
    conn.execute("UPDATE providers SET contact_email = 'owner@example.com' WHERE id = %s", (catalog.provider_id,))
    return catalog


def paid(client: httpx.Client, customer: stripe.StripeClient, catalog: Catalog, days: int) -> dict[str, Any]:
    result = book(client, catalog, days=days)
    pay(customer, result["payment_intent_id"])
    wait_booking(client, result["booking_id"], "paid", lambda b: b["status"] == "paid")
    return result


def open_dispute(fake: httpx.Client, intent_id: str, **extra: Any) -> dict[str, Any]:
    response = fake.post("/_fake/disputes", json={"payment_intent": intent_id, **extra})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def close_dispute(fake: httpx.Client, dispute_id: str, outcome: str) -> dict[str, Any]:
    response = fake.post(f"/_fake/disputes/{dispute_id}/close", json={"outcome": outcome})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def dispute_of(client: httpx.Client, booking_id: str, what: str, predicate: Any) -> dict[str, Any]:
    found = wait_booking(client, booking_id, what, lambda b: b["disputes"] and predicate(b["disputes"][0]))
    assert len(found["disputes"]) == 1
    return found["disputes"][0]  # type: ignore[no-any-return]


def by_account(conn: Any, booking_id: str) -> dict[str, int]:
    rows = conn.execute("""SELECT a.kind, sum(e.amount)::bigint AS total FROM ledger_transactions t
                           JOIN ledger_entries e ON e.transaction_id = t.id
                           JOIN ledger_accounts a ON a.id = e.account_id
                           WHERE t.booking_id = %s GROUP BY a.kind""", (booking_id,)).fetchall()
    return {row["kind"]: row["total"] for row in rows if row["total"]}


def postings(conn: Any, booking_id: str) -> list[str]:
    return [row["kind"] for row in conn.execute(
        "SELECT kind FROM ledger_transactions WHERE booking_id = %s AND kind LIKE 'dispute%%' ORDER BY id",
        (booking_id,))]


def delivered(conn: Any, booking_id: str, topic: str) -> bool:
    return conn.execute("""SELECT 1 FROM deliveries d JOIN outbox o ON o.id = d.event_id
                           WHERE d.topic = %s AND d.channel = 'email' AND d.audience = 'provider'
                             AND d.status = 'delivered' AND o.payload->>'booking_id' = %s""",
                        (topic, booking_id)).fetchone() is not None


def test_a_lost_dispute_withdraws_amount_and_fee_from_the_provider_and_tells_the_owner(
        client: httpx.Client, customer: stripe.StripeClient, fake: httpx.Client, conn: Any, salon: Catalog) -> None:
    result = paid(client, customer, salon, days=91)
    opened = open_dispute(fake, result["payment_intent_id"], reason="product_not_received")
    assert opened["id"].startswith("dp_") and opened["status"] == "needs_response"
    assert opened["evidence_details"]["due_by"] > time.time()
    [withdrawal] = opened["balance_transactions"]
    assert (withdrawal["type"], withdrawal["reporting_category"], withdrawal["amount"], withdrawal["fee"],
            withdrawal["net"]) == ("adjustment", "dispute", -PRICE, FEE, -PRICE - FEE)

    shown = dispute_of(client, result["booking_id"], "dispute withdrawn", lambda d: d["funds_withdrawn_at"])
    assert (shown["id"], shown["amount"], shown["currency"], shown["status"], shown["reason"], shown["fee"],
            shown["provider_share"]) == (opened["id"], PRICE, "EUR", "needs_response", "product_not_received", FEE,
                                         PROVIDER_SHARE)
    # the provider bears it up to what the booking owes them (all of it); the platform the rest
    assert by_account(conn, result["booking_id"]) == {
        "platform_cash": PRICE - PRICE - FEE, "platform_commission": -COMMISSION,
        "platform_dispute_costs": COMMISSION + FEE}
    wait_for(lambda: delivered(conn, result["booking_id"], "dispute_opened"), 30, "the owner told of the dispute")

    assert close_dispute(fake, opened["id"], "lost")["status"] == "lost"
    assert customer.v1.disputes.retrieve(opened["id"]).status == "lost"
    dispute_of(client, result["booking_id"], "dispute lost", lambda d: d["status"] == "lost" and d["closed_at"])
    assert postings(conn, result["booking_id"]) == ["dispute_withdrawal"]  # a lost dispute keeps it
    wait_for(lambda: delivered(conn, result["booking_id"], "dispute_closed"), 30, "the owner told it is lost")


def test_a_won_dispute_reinstates_the_amount_but_not_the_fee(
        client: httpx.Client, customer: stripe.StripeClient, fake: httpx.Client, conn: Any, salon: Catalog) -> None:
    result = paid(client, customer, salon, days=92)
    opened = open_dispute(fake, result["payment_intent_id"])
    dispute_of(client, result["booking_id"], "dispute withdrawn", lambda d: d["funds_withdrawn_at"])

    won = close_dispute(fake, opened["id"], "won")
    assert won["status"] == "won"
    reinstated = won["balance_transactions"][1]
    assert (reinstated["reporting_category"], reinstated["amount"], reinstated["fee"]) == ("dispute_reversal", PRICE, 0)
    dispute_of(client, result["booking_id"], "dispute won", lambda d: d["status"] == "won" and d["funds_reinstated_at"])
    assert postings(conn, result["booking_id"]) == ["dispute_withdrawal", "dispute_reinstatement"]
    assert by_account(conn, result["booking_id"]) == {
        "platform_cash": PRICE - FEE, "provider_pending": -PROVIDER_SHARE, "platform_commission": -COMMISSION,
        "platform_dispute_costs": FEE}


def test_shuffled_and_repeated_dispute_events_post_once(
        client: httpx.Client, customer: stripe.StripeClient, fake: httpx.Client, conn: Any, salon: Catalog) -> None:
    result = paid(client, customer, salon, days=93)
    fake.post("/_fake/webhooks", json={"hold": True})
    opened = open_dispute(fake, result["payment_intent_id"])
    close_dispute(fake, opened["id"], "won")
    released = fake.post("/_fake/webhooks/release", json={"order": "shuffled", "copies": 3, "seed": 15}).json()
    assert released["released"] >= 3 * 4  # created, funds_withdrawn, funds_reinstated, closed

    dispute_of(client, result["booking_id"], "dispute won",
               lambda d: d["status"] == "won" and d["funds_reinstated_at"] and d["funds_withdrawn_at"])
    wait_for(lambda: conn.execute("SELECT count(*) AS n FROM stripe_events WHERE status = 'received' "
                                  "AND payload->'data'->'object'->>'id' = %s", (opened["id"],)).fetchone()["n"] == 0,
             30, "every dispute event applied")
    assert postings(conn, result["booking_id"]) == ["dispute_withdrawal", "dispute_reinstatement"]
    topics = [row["topic"] for row in conn.execute(
        "SELECT topic FROM outbox WHERE topic LIKE 'dispute%%' AND payload->>'dispute_id' = %s ORDER BY id",
        (opened["id"],))]
    assert sorted(topics) == ["dispute_closed", "dispute_opened"]
    assert by_account(conn, result["booking_id"])["platform_dispute_costs"] == FEE


def test_with_platform_liability_the_provider_keeps_their_share(
        client: httpx.Client, customer: stripe.StripeClient, fake: httpx.Client, conn: Any, salon: Catalog) -> None:
    # the platform sets who bears disputes, as it sets the commission; the provider's owner may not
    refused = client.patch(f"/v1/providers/{salon.provider_id}", json={"dispute_liability": "platform"},
                           headers=salon.owner)
    assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN"
    changed = client.patch(f"/v1/providers/{salon.provider_id}", json={"dispute_liability": "platform"})
    assert changed.status_code == 200 and changed.json()["dispute_liability"] == "platform"
    result = paid(client, customer, salon, days=94)
    opened = open_dispute(fake, result["payment_intent_id"], amount=1000)
    shown = dispute_of(client, result["booking_id"], "dispute withdrawn", lambda d: d["funds_withdrawn_at"])
    assert (shown["amount"], shown["provider_share"]) == (1000, 0)
    assert by_account(conn, result["booking_id"]) == {  # cash: 2,500 in, 1,000 + 1,500 out
        "provider_pending": -PROVIDER_SHARE, "platform_commission": -COMMISSION, "platform_dispute_costs": 1000 + FEE}
    close_dispute(fake, opened["id"], "lost")
    dispute_of(client, result["booking_id"], "dispute lost", lambda d: d["status"] == "lost")


def test_a_dispute_past_its_evidence_deadline_is_lost(
        client: httpx.Client, customer: stripe.StripeClient, fake: httpx.Client, salon: Catalog) -> None:
    result = paid(client, customer, salon, days=95)
    opened = open_dispute(fake, result["payment_intent_id"])
    moved = fake.post(f"/_fake/disputes/{opened['id']}/due_by", json={"due_by": int(time.time()) - 60}).json()
    assert moved["status"] == "lost" and moved["evidence_details"]["past_due"] is True
    dispute_of(client, result["booking_id"], "dispute lost", lambda d: d["status"] == "lost")


def test_reconciliation_finds_a_dispute_withdrawal_the_ledger_missed(
        client: httpx.Client, customer: stripe.StripeClient, fake: httpx.Client, conn: Any, salon: Catalog) -> None:
    result = paid(client, customer, salon, days=96)
    fake.post("/_fake/webhooks", json={"hold": True})  # our ledger never hears of it
    opened = open_dispute(fake, result["payment_intent_id"])
    withdrawal = opened["balance_transactions"][0]["id"]

    def reconcile() -> set[tuple[Any, ...]]:
        accepted = client.post("/v1/system/reconciliations", json={},
                               headers={"Idempotency-Key": new_key(), **SYSTEM})
        job = wait_job(client, accepted.json()["job_id"], timeout=30)
        assert job["status"] == "succeeded", job
        return {(m["kind"], m["reference"], m["problem"], m["ledger_amount"], m["stripe_amount"]) for m in conn.execute(
            "SELECT * FROM reconciliations WHERE run_id = %s", (job["result"]["run_id"],))}

    assert ("dispute", withdrawal, "missing_in_ledger", None, -PRICE - FEE) in reconcile()
    fake.post("/_fake/webhooks", json={"hold": False})
    fake.post("/_fake/webhooks/release", json={"order": "in_order"})
    dispute_of(client, result["booking_id"], "dispute withdrawn", lambda d: d["funds_withdrawn_at"])
    assert not {m for m in reconcile() if m[1] == withdrawal}


def test_the_fake_refuses_a_dispute_on_an_unpaid_intent_and_a_second_close(
        client: httpx.Client, customer: stripe.StripeClient, fake: httpx.Client, salon: Catalog) -> None:
    unpaid = book(client, salon, days=97)
    refused = fake.post("/_fake/disputes", json={"payment_intent": unpaid["payment_intent_id"]})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "charge_not_disputable"
    result = paid(client, customer, salon, days=98)
    opened = open_dispute(fake, result["payment_intent_id"])
    close_dispute(fake, opened["id"], "lost")
    again = fake.post(f"/_fake/disputes/{opened['id']}/close", json={"outcome": "won"})
    assert again.status_code == 400 and again.json()["error"]["code"] == "dispute_already_closed"
