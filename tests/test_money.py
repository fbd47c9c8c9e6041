"""The ledger and payouts through the running fleet: append-only and balanced, captures and refunds split
by the commission, settlement into one payout per booking, transfers through the fake Stripe, failures
returned to available, reconciliation, and the owner views."""

from __future__ import annotations

import itertools
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
import stripe
from psycopg.rows import dict_row

from gateway.pagination import encode_cursor
from shared import ledger
from shared.db import QUERIES, ConstraintViolation, translate_errors, use_msgspec_json
from shared.registry import PAYOUT_SEND, job_route
from shared.settlement import close_due_periods
from tests.support import Catalog, make_catalog, new_key, wait_for, wait_job
from tests.test_payments import book, cancel, pay, wait_booking
from totem.fleet import Fleet

SYSTEM = {"X-System-Token": "test-system-token"}


@pytest.fixture
def customer(fleet: Fleet) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_customer", base_addresses={"api": fleet.stripe_url}, max_network_retries=0)


@pytest.fixture
def conn(database_url: str) -> Any:
    use_msgspec_json()
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as c:
        yield c


def payout_enabled(database_url: str, destination: str = "acct_salon") -> Catalog:
    catalog = make_catalog(database_url)  # 10 % commission, price 2500
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute("UPDATE providers SET payout_account = %s WHERE id = %s", (destination, catalog.provider_id))
    return catalog


def paid_booking(client: httpx.Client, customer: stripe.StripeClient, catalog: Catalog, days: int) -> str:
    result = book(client, catalog, days=days)
    pay(customer, result["payment_intent_id"])
    wait_booking(client, result["booking_id"], "paid", lambda b: b["status"] == "paid")
    return str(result["booking_id"])


def complete(client: httpx.Client, booking_id: str) -> None:
    response = client.post(f"/v1/bookings/{booking_id}/complete", json={},
                           headers={"Idempotency-Key": new_key(), **SYSTEM})
    assert response.status_code == 202, response.text
    assert wait_job(client, response.json()["job_id"])["status"] == "succeeded"


def balance(client: httpx.Client, provider_id: str) -> dict[str, int]:
    response = client.get(f"/v1/providers/{provider_id}/balance", headers=SYSTEM)
    assert response.status_code == 200, response.text
    balances = response.json()["balances"]
    return balances[0] if balances else {}


def settle_tomorrow(conn: Any, provider_id: str) -> list[Any]:
    """Close the provider's period as the scheduler will at the next local midnight (now + 1 day)."""
    closed, _ = close_due_periods(conn, now=datetime.now(UTC) + timedelta(days=1), provider_id=uuid.UUID(provider_id))
    return closed  # the payout jobs are queued rows: the scheduler's sweeper enqueues them


def trial_balance(conn: Any) -> list[Any]:
    """Transactions that do not sum to zero (always none)."""
    return conn.execute(QUERIES["ledger_trial_balance"]).fetchall()


def test_entries_are_append_only_balanced_and_posted_once(conn: Any, database_url: str) -> None:
    catalog = make_catalog(database_url)
    provider = uuid.UUID(catalog.provider_id)
    entries = [ledger.Entry("platform_cash", None, "EUR", 1000),
               ledger.Entry("provider_pending", provider, "EUR", -900),
               ledger.Entry("platform_commission", None, "EUR", -100)]
    key = f"test:{uuid.uuid4()}"
    with conn.transaction():
        first, posted = ledger.post(conn, key=key, kind="capture", entries=entries)
    assert posted
    with conn.transaction():  # the same key and entries again: nothing new
        assert ledger.post(conn, key=key, kind="capture", entries=list(reversed(entries))) == (first, False)
    changed = [*entries[:2], ledger.Entry("platform_commission", None, "EUR", -99),
               ledger.Entry("platform_cash", None, "EUR", -1)]
    with pytest.raises(ConstraintViolation) as different, translate_errors(), conn.transaction():
        ledger.post(conn, key=key, kind="capture", entries=changed)
    assert different.value.constraint == "ledger_exists_with_different_entries"
    with pytest.raises(ConstraintViolation) as unbalanced, translate_errors(), conn.transaction():
        ledger.post(conn, key=f"test:{uuid.uuid4()}", kind="capture", entries=entries[:2])
    assert unbalanced.value.constraint == "ledger_balanced"
    for statement in ("UPDATE ledger_entries SET amount = amount + 1 WHERE transaction_id = %s",
                      "DELETE FROM ledger_entries WHERE transaction_id = %s",
                      "UPDATE ledger_transactions SET description = 'x' WHERE id = %s",
                      "DELETE FROM ledger_transactions WHERE id = %s"):
        with pytest.raises(psycopg.errors.CheckViolation, match="append-only"):
            conn.execute(statement, (first,))
    assert conn.execute("SELECT count(*) AS n FROM ledger_entries WHERE transaction_id = %s",
                        (first,)).fetchone()["n"] == 3


def test_a_completed_booking_is_settled_paid_out_once_and_shows_in_the_owner_views(
        client: httpx.Client, customer: stripe.StripeClient, database_url: str, conn: Any, fleet: Fleet) -> None:
    catalog = payout_enabled(database_url)
    started = datetime.now(UTC) - timedelta(seconds=1)
    booking_id = paid_booking(client, customer, catalog, days=60)
    assert balance(client, catalog.provider_id) == {"currency": "EUR", "pending": 2250, "available": 0,
                                                    "in_transit": 0, "paid_out": 0}
    complete(client, booking_id)
    assert balance(client, catalog.provider_id)["available"] == 2250

    closed = settle_tomorrow(conn, catalog.provider_id)
    assert [len(c.payouts) for c in closed] == [1]
    assert settle_tomorrow(conn, catalog.provider_id) == []  # the period is closed once
    wait_for(lambda: balance(client, catalog.provider_id)["paid_out"] == 2250, 30, "payout paid")
    assert balance(client, catalog.provider_id) == {"currency": "EUR", "pending": 0, "available": 0,
                                                    "in_transit": 0, "paid_out": 2250}
    page = client.get("/v1/payouts", params={"provider": catalog.provider_id}, headers=SYSTEM).json()
    [batch] = page["items"]
    assert batch["total"] == 2250 and batch["destination"] == "acct_salon"
    lines = [(line["booking_id"], line["amount"], line["status"]) for line in batch["lines"]]
    assert lines == [(booking_id, 2250, "paid")]
    transfer = httpx.get(f"{fleet.stripe_url}/_fake/events").json()
    assert [e["data"]["object"]["amount"] for e in transfer if e["type"] == "transfer.created"
            and e["data"]["object"]["metadata"].get("booking_id") == booking_id] == [2250]

    statement = client.get(f"/v1/providers/{catalog.provider_id}/statement", headers=SYSTEM, params={
        "from": started.isoformat(), "to": (datetime.now(UTC) + timedelta(days=2)).isoformat()}).json()
    kinds = [(e["kind"], e["account"], e["amount"], e["running_balance"]) for e in statement["entries"]]
    assert kinds == [("capture", "provider_pending", 2250, 2250), ("maturity", "provider_pending", -2250, 0),
                     ("maturity", "provider_available", 2250, 2250),
                     ("payout_initiated", "provider_available", -2250, 0),
                     ("payout_initiated", "payouts_in_transit", 2250, 2250),
                     ("payout_paid", "payouts_in_transit", -2250, 0)]
    assert statement["opening_balances"] == {} and statement["closing_balances"] == {"EUR": 0}
    assert statement["next_cursor"] is None and statement["truncated"] is False
    # the same period two entries a page: the same entries and running balances, each page opening where the
    # one before closed (a page may end between two entries of one transaction, which share their instant)
    period = {"from": started.isoformat(), "to": (datetime.now(UTC) + timedelta(days=2)).isoformat(), "limit": 2}
    pages, cursor = [], None
    while True:
        page = client.get(f"/v1/providers/{catalog.provider_id}/statement", headers=SYSTEM,
                          params={**period, **({"cursor": cursor} if cursor else {})}).json()
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e for page in pages for e in page["entries"]] == statement["entries"]
    assert [len(page["entries"]) for page in pages] == [2, 2, 2]
    assert all(page["truncated"] for page in pages[:-1]) and not pages[-1]["truncated"]
    for before, after in itertools.pairwise(pages):
        assert after["opening_balances"] == before["closing_balances"]
    # a cursor of another period (its entry outside this one) is not this statement's
    elsewhere = client.get(f"/v1/providers/{catalog.provider_id}/statement", headers=SYSTEM, params={
        "from": "2030-01-01", "to": "2030-01-31", "cursor": pages[0]["next_cursor"]})
    assert elsewhere.status_code == 422 and elsewhere.json()["code"] == "REQUEST_UNPROCESSABLE"
    # nor is one naming an entry number no entry can have (past bigint)
    forged = encode_cursor(datetime.fromisoformat(statement["entries"][0]["created_at"]), 2**63 - 1)
    beyond = client.get(f"/v1/providers/{catalog.provider_id}/statement", headers=SYSTEM,
                        params={**period, "cursor": forged})
    assert beyond.status_code == 422 and beyond.json()["code"] == "REQUEST_UNPROCESSABLE"
    assert trial_balance(conn) == []


def test_refunds_split_by_the_commission_and_a_full_refund_is_never_paid_out(
        client: httpx.Client, customer: stripe.StripeClient, database_url: str, conn: Any) -> None:
    catalog = payout_enabled(database_url)
    full = paid_booking(client, customer, catalog, days=61)   # cancelled > 24 h ahead: refunded in full
    half = paid_booking(client, customer, catalog, days=62)
    with psycopg.connect(database_url, autocommit=True) as c:  # this one starts in 2 hours: 50 %
        c.execute("UPDATE bookings SET period = tstzrange(now() + interval '2 hours', now() + interval '150 minutes') "
                  "WHERE id = %s", (half,))
    for booking_id in (full, half):
        cancel(client, booking_id)
        wait_booking(client, booking_id, "refund settled",
                     lambda b: b["refunds"] and all(r["status"] == "succeeded" for r in b["refunds"]))
    # full: 2500 back; half: 1250 back (provider 1125, commission 125), the provider keeps 1125
    assert balance(client, catalog.provider_id) == {"currency": "EUR", "pending": 0, "available": 1125,
                                                    "in_transit": 0, "paid_out": 0}
    commission = conn.execute(
        "SELECT -sum(e.amount) AS c FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id "
        "JOIN ledger_accounts a ON a.id = e.account_id AND a.kind = 'platform_commission' "
        "WHERE t.booking_id IN (%s, %s)", (full, half)).fetchone()["c"]
    assert commission == 125
    closed = settle_tomorrow(conn, catalog.provider_id)
    payouts = conn.execute("SELECT booking_id, amount FROM payouts WHERE batch_id = %s",
                           (closed[0].batch_id,)).fetchall()
    assert [(str(p["booking_id"]), p["amount"]) for p in payouts] == [(half, 1125)]
    wait_for(lambda: balance(client, catalog.provider_id)["paid_out"] == 1125, 30, "payout paid")
    assert trial_balance(conn) == []


def test_a_refused_transfer_returns_the_money_to_available_and_is_visible(
        client: httpx.Client, customer: stripe.StripeClient, database_url: str, conn: Any) -> None:
    catalog = payout_enabled(database_url, destination="acct_invalid_closed")
    booking_id = paid_booking(client, customer, catalog, days=63)
    complete(client, booking_id)
    settle_tomorrow(conn, catalog.provider_id)
    wait_for(lambda: conn.execute("SELECT status FROM payouts WHERE booking_id = %s", (booking_id,)).fetchone()
             ["status"] == "failed", 30, "payout failed")
    assert balance(client, catalog.provider_id) == {"currency": "EUR", "pending": 0, "available": 2250,
                                                    "in_transit": 0, "paid_out": 0}
    [batch] = client.get("/v1/payouts", params={"provider": catalog.provider_id}, headers=SYSTEM).json()["items"]
    assert batch["lines"][0]["status"] == "failed" and "No such destination" in batch["lines"][0]["failure_reason"]
    # fixed destination: the next period pays it again
    conn.execute("UPDATE providers SET payout_account = 'acct_salon_fixed' WHERE id = %s", (catalog.provider_id,))
    close_due_periods(conn, now=datetime.now(UTC) + timedelta(days=2), provider_id=uuid.UUID(catalog.provider_id))
    wait_for(lambda: balance(client, catalog.provider_id)["paid_out"] == 2250, 30, "paid on the next period")
    assert trial_balance(conn) == []


def test_racing_closers_and_payout_workers_make_one_batch_and_one_payout_per_booking(
        client: httpx.Client, customer: stripe.StripeClient, database_url: str, fleet: Fleet) -> None:
    catalog = payout_enabled(database_url)
    bookings = [paid_booking(client, customer, catalog, days=70 + i) for i in range(4)]
    for booking_id in bookings:
        complete(client, booking_id)
    fleet.start_worker("payouts", name="payouts-2")
    try:
        def close(_: int) -> int:
            with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as c:
                return len(settle_tomorrow(c, catalog.provider_id))

        with ThreadPoolExecutor(4) as pool:
            assert sorted(pool.map(close, range(4))) == [0, 0, 0, 1]
        wait_for(lambda: balance(client, catalog.provider_id)["paid_out"] == 4 * 2250, 30, "all paid")
    finally:
        fleet.kill("payouts-2", __import__("signal").SIGTERM)
    with psycopg.connect(database_url, row_factory=dict_row) as c:
        assert c.execute("SELECT count(*) AS n FROM payout_batches WHERE provider_id = %s",
                         (catalog.provider_id,)).fetchone()["n"] == 1
        rows = c.execute("SELECT booking_id, count(*) AS n FROM payouts WHERE provider_id = %s GROUP BY booking_id",
                         (catalog.provider_id,)).fetchall()
    assert sorted(str(r["booking_id"]) for r in rows) == sorted(bookings) and {r["n"] for r in rows} == {1}
    transfers = [e for e in httpx.get(f"{fleet.stripe_url}/_fake/events").json() if e["type"] == "transfer.created"
                 and e["data"]["object"]["metadata"].get("booking_id") in bookings]
    assert len(transfers) == 4


def test_reconciliation_records_every_mismatch_with_stripe(
        client: httpx.Client, customer: stripe.StripeClient, database_url: str, conn: Any, fleet: Fleet) -> None:
    catalog = payout_enabled(database_url)
    booking_id = paid_booking(client, customer, catalog, days=80)
    charge_id = conn.execute("SELECT charge_id FROM payments WHERE booking_id = %s",
                             (booking_id,)).fetchone()["charge_id"]
    # (1) Stripe moved money our ledger does not know: a transfer made from the dashboard
    stray = customer.v1.transfers.create(params={"amount": 777, "currency": "eur", "destination": "acct_someone"})
    # (2) the ledger says a capture happened that Stripe never saw; (3) one amount differs from Stripe's
    with conn.transaction():
        ledger.post(conn, key=f"test:{uuid.uuid4()}", kind="capture", external_ref="ch_never_at_stripe", entries=[
            ledger.Entry("platform_cash", None, "EUR", 500), ledger.Entry("platform_commission", None, "EUR", -500)])
        ledger.post(conn, key=f"test:{uuid.uuid4()}", kind="capture", external_ref=charge_id, entries=[
            ledger.Entry("platform_cash", None, "EUR", 1), ledger.Entry("platform_commission", None, "EUR", -1)])
    accepted = client.post("/v1/system/reconciliations", json={}, headers={"Idempotency-Key": new_key(), **SYSTEM})
    assert accepted.status_code == 202, accepted.text
    job = wait_job(client, accepted.json()["job_id"], timeout=30)
    assert job["status"] == "succeeded", job
    found = {(m["reference"], m["problem"], m["ledger_amount"], m["stripe_amount"])
             for m in conn.execute("SELECT * FROM reconciliations WHERE run_id = %s", (job["result"]["run_id"],))}
    assert (stray.id, "missing_in_ledger", None, -777) in found
    assert ("ch_never_at_stripe", "missing_at_stripe", 500, None) in found
    assert (charge_id, "amount_differs", 2501, 2500) in found


@pytest.mark.parametrize(("schedule", "time_zone", "now", "period"), [
    ("daily", "America/New_York", "2031-03-10T12:00:00+00:00",  # the day before had 23 hours (DST began)
     ("2031-03-09T05:00:00+00:00", "2031-03-10T04:00:00+00:00")),
    ("weekly", "Europe/Berlin", "2031-06-04T12:00:00+00:00",  # a Wednesday: the week before, Monday to Monday
     ("2031-05-25T22:00:00+00:00", "2031-06-01T22:00:00+00:00")),
])
def test_settlement_periods_are_bounded_by_local_midnights(conn: Any, database_url: str, schedule: str,
                                                           time_zone: str, now: str, period: tuple[str, str]) -> None:
    catalog = make_catalog(database_url, time_zone=time_zone)
    conn.execute("UPDATE providers SET payout_account = 'acct_tz', payout_schedule = %s WHERE id = %s",
                 (schedule, catalog.provider_id))
    close_due_periods(conn, now=datetime.fromisoformat(now), provider_id=uuid.UUID(catalog.provider_id))
    row = conn.execute("SELECT lower(period) AS lo, upper(period) AS hi FROM settlement_periods "
                       "WHERE provider_id = %s AND upper(period) <= %s ORDER BY lower(period) DESC LIMIT 1",
                       (catalog.provider_id, now)).fetchone()
    assert (row["lo"], row["hi"]) == tuple(datetime.fromisoformat(p) for p in period)


def test_the_scheduler_closes_each_payout_enabled_providers_last_period(conn: Any, database_url: str,
                                                                      fleet: Fleet) -> None:
    catalog = payout_enabled(database_url)
    row = wait_for(lambda: conn.execute("SELECT upper(period) AS hi FROM settlement_periods WHERE provider_id = %s",
                                        (catalog.provider_id,)).fetchone(), 15, "the scheduler to close a period")
    assert row["hi"] <= datetime.now(UTC)


def test_a_pending_payout_whose_job_gave_up_is_sent_again(
        client: httpx.Client, customer: stripe.StripeClient, database_url: str, conn: Any, fleet: Fleet) -> None:
    """Stripe was down for every attempt: the job ended JOB_ATTEMPTS_EXHAUSTED with the payout pending. Once
    that job has been quiet long enough the scheduler queues a new one, and the payout is paid once."""
    catalog = payout_enabled(database_url)
    booking_id = paid_booking(client, customer, catalog, days=90)
    complete(client, booking_id)
    with conn.transaction():  # close the period, then play the job's exhaustion before any worker sees it
        [closed], _ = close_due_periods(conn, now=datetime.now(UTC) + timedelta(days=1),
                                        provider_id=uuid.UUID(catalog.provider_id))
        [payout_id] = closed.payouts
        conn.execute("UPDATE jobs SET status = 'failed', error = '{\"code\": \"JOB_ATTEMPTS_EXHAUSTED\", "
                     "\"detail\": \"Stripe down\"}', attempts = max_attempts, updated_at = now() - interval '1 hour' "
                     "WHERE type = %s AND payload->>'payout_id' = %s", (PAYOUT_SEND, str(payout_id)))
        conn.execute("UPDATE payouts SET created_at = now() - interval '1 hour' WHERE id = %s", (payout_id,))
        # (in the same transaction, so the fleet's own scheduler cannot re-drive it first)
        query = QUERIES["redrive_stuck_payouts"]
        params = {**job_route(PAYOUT_SEND), "max_attempts": 5, "after_seconds": 600}
        assert len(conn.execute(query, params).fetchall()) == 1
        assert conn.execute(query, params).fetchall() == []  # its fresh job is open: not twice
    wait_for(lambda: balance(client, catalog.provider_id)["paid_out"] == 2250, 30, "paid by the fresh job")
    jobs = conn.execute("SELECT status FROM jobs WHERE type = %s AND payload->>'payout_id' = %s",
                        (PAYOUT_SEND, str(payout_id))).fetchall()
    # both rows were made in one transaction (same created_at): the exhausted one, and one fresh job that paid
    assert sorted(j["status"] for j in jobs) == ["failed", "succeeded"]
