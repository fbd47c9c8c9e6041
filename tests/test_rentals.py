"""Rentals (seed 004): request-to-book with the owner's approval, check-in and check-out, and security deposits
held before arrival and claimed or released after departure, through the real gateway, workers, scheduler and
fake Stripe. Time passing (a request's TTL, a claim window) is simulated by moving the row's deadline into the
past; the scheduler then does what it would do when the clock got there."""

from __future__ import annotations

import threading
import uuid
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
import stripe
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from shared import booking as booking_rules
from shared.db import QUERIES, ConstraintViolation
from shared.errors import BookingInvalidTransition
from shared.schemas import BookingCommand
from tests.support import STANDARD_POLICY, new_key, wait_for, wait_job
from totem.fleet import Fleet

LISBON = ZoneInfo("Europe/Lisbon")
DEPOSIT = 20_000
NIGHTLY = 12_000


@pytest.fixture
def customer(fleet: Fleet) -> stripe.StripeClient:
    """The guest's side of Stripe (what Stripe.js does in a browser), via the SDK against the fake."""
    return stripe.StripeClient("sk_test_customer", base_addresses={"api": fleet.stripe_url}, max_network_retries=0)


@pytest.fixture
def listing(database_url: str, client: httpx.Client) -> dict[str, Any]:
    """A request-mode listing with a security deposit, set up through the API as its owner would."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        provider = conn.execute(QUERIES["insert_provider"], {
            "slug": f"r-{uuid.uuid4().hex[:12]}", "name": "Alfama Rentals", "time_zone": "Europe/Lisbon",
            "currency": "EUR", "commission_bps": 1500, "hold_ttl_seconds": None,
            "cancellation_policy": Jsonb(STANDARD_POLICY)}).fetchone()
        assert provider
        conn.execute("UPDATE providers SET contact_email = 'host@example.com' WHERE id = %s", (provider["id"],))
        resource = conn.execute(QUERIES["insert_resource"], {
            "provider_id": provider["id"], "kind": "stay", "name": "Loft", "nightly_price": NIGHTLY}).fetchone()
        assert resource
    changed = client.patch(f"/v1/resources/{resource['id']}", json={
        "booking_mode": "request", "request_ttl_hours": 12, "security_deposit": DEPOSIT})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["booking_mode"], changed.json()["security_deposit"]) == ("request", DEPOSIT)
    return {"resource_id": str(resource["id"]), "provider_id": str(provider["id"])}


def today() -> date:
    return datetime.now(LISBON).date()


def stay_body(listing: dict[str, Any], check_in: date, nights: int = 2) -> dict[str, Any]:
    return {"kind": "stay", "resource_id": listing["resource_id"], "check_in": check_in.isoformat(),
            "check_out": (check_in + timedelta(days=nights)).isoformat(), "guests": 2,
            "customer": {"name": "Ada", "email": "ada@example.com"}}


def post_job(client: httpx.Client, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = client.post(path, json=body or {}, headers={"Idempotency-Key": new_key()})
    assert response.status_code == 202, response.text
    return wait_job(client, response.json()["job_id"])


def request_stay(client: httpx.Client, listing: dict[str, Any], check_in: date) -> dict[str, Any]:
    job = post_job(client, "/v1/bookings", stay_body(listing, check_in))
    assert job["status"] == "succeeded", job
    return job["result"]  # type: ignore[no-any-return]


def read(client: httpx.Client, booking_id: str) -> dict[str, Any]:
    return client.get(f"/v1/bookings/{booking_id}").json()  # type: ignore[no-any-return]


def wait_booking(client: httpx.Client, booking_id: str, what: str, predicate: Any) -> dict[str, Any]:
    try:
        return wait_for(lambda: (b := read(client, booking_id)) and predicate(b) and b, 30, what)  # type: ignore[no-any-return]
    except AssertionError as timeout:
        raise AssertionError(f"{timeout}; the booking now: {read(client, booking_id)}") from None


def topics(db: psycopg.Connection[Any], booking_id: str) -> list[str]:
    rows = db.execute("SELECT topic FROM outbox WHERE aggregate_id = %s ORDER BY id", (booking_id,)).fetchall()
    return [row["topic"] for row in rows]


def paid_and_held(client: httpx.Client, customer: stripe.StripeClient, listing: dict[str, Any], check_in: date,
                  card: str = "pm_card_visa") -> dict[str, Any]:
    """Request → approve → pay: the stay is paid and (arrival being near) its deposit is being held."""
    requested = request_stay(client, listing, check_in)
    approved = post_job(client, f"/v1/bookings/{requested['booking_id']}/approve", {"note": "Welcome!"})
    assert approved["status"] == "succeeded", approved
    customer.v1.payment_intents.confirm(approved["result"]["payment_intent_id"], params={"payment_method": card})
    return wait_booking(client, requested["booking_id"], "paid with the deposit decided",
                        lambda b: b["status"] == "paid" and b["deposit"]["status"] != "pending")


def test_request_approve_pay_check_in_out_claim_completes_with_the_claim_on_the_ledger(
        client: httpx.Client, customer: stripe.StripeClient, listing: dict[str, Any], db: psycopg.Connection[Any],
        fake: httpx.Client) -> None:
    requested = request_stay(client, listing, today())
    assert requested["status"] == "requested" and "payment_intent_id" not in requested
    booking_id = requested["booking_id"]
    # the request holds the nights: a second request for them is refused, and availability leaves them out
    second = post_job(client, "/v1/bookings", stay_body(listing, today()))
    assert second["status"] == "failed" and second["error"]["code"] == "BOOKING_SLOT_TAKEN"
    nights = client.get(f"/v1/resources/{listing['resource_id']}/availability",
                        params={"from": today().isoformat(), "to": (today() + timedelta(days=4)).isoformat()}).json()
    assert today().isoformat() not in nights["nights"]
    listed = client.get("/v1/bookings", params={"provider": listing["provider_id"], "status": "requested"}).json()
    assert [b["id"] for b in listed["items"]] == [booking_id]

    approved = post_job(client, f"/v1/bookings/{booking_id}/approve", {"note": "Welcome!"})
    assert approved["status"] == "succeeded", approved
    assert approved["result"]["status"] == "pending_payment"
    assert approved["result"]["client_secret"].startswith(approved["result"]["payment_intent_id"])
    customer.v1.payment_intents.confirm(approved["result"]["payment_intent_id"],
                                        params={"payment_method": "pm_card_visa"})
    held = wait_booking(client, booking_id, "paid and deposit held",
                        lambda b: b["status"] == "paid" and b["deposit"]["status"] == "authorized")
    assert held["deposit"]["amount"] == DEPOSIT and held["deposit"]["payment_intent_id"].startswith("pi_")

    assert post_job(client, f"/v1/bookings/{booking_id}/check-in")["result"]["status"] == "checked_in"
    out = post_job(client, f"/v1/bookings/{booking_id}/check-out")
    assert out["result"]["status"] == "checked_out", out
    assert read(client, booking_id)["deposit"]["claim_deadline"] is not None

    claimed = post_job(client, f"/v1/bookings/{booking_id}/deposit/claim", {"amount": 5_000, "reason": "broken lamp"})
    assert claimed["status"] == "succeeded", claimed
    done = read(client, booking_id)
    assert done["status"] == "completed"
    assert (done["deposit"]["status"], done["deposit"]["claimed_amount"]) == ("claimed", 5_000)
    intent = customer.v1.payment_intents.retrieve(done["deposit"]["payment_intent_id"])
    assert (intent.status, intent.amount_received) == ("succeeded", 5_000)

    # the ledger balances, and the provider's payable holds the stay and the claim, less commission
    unbalanced = db.execute("SELECT t.id FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id "
                            "GROUP BY t.id, e.currency HAVING sum(e.amount) <> 0").fetchall()
    assert unbalanced == []
    kinds = [r["kind"] for r in db.execute("SELECT kind FROM ledger_transactions WHERE booking_id = %s ORDER BY id",
                                           (booking_id,)).fetchall()]
    assert kinds == ["capture", "deposit_capture", "maturity"]
    balance = client.get(f"/v1/providers/{listing['provider_id']}/balance").json()
    [eur] = [b for b in balance["balances"] if b["currency"] == "EUR"]
    stay, claim = 2 * NIGHTLY, 5_000
    assert eur["pending"] + eur["available"] == (stay - stay * 1500 // 10_000) + (claim - claim * 1500 // 10_000)

    # everyone was told, in order; every change is in the audit trail with its verified actor
    assert topics(db, booking_id) == ["booking_requested", "booking_pending_payment", "booking_paid",
                                      "deposit_authorized", "booking_checked_in", "booking_checked_out",
                                      "deposit_claimed", "booking_completed"]
    trail = [(a["from_status"], a["to_status"], a["actor"]) for a in done["audit"]]
    assert trail == [(None, "requested", "system"), ("requested", "pending_payment", "system"),
                     ("pending_payment", "paid", "stripe"), ("paid", "checked_in", "system"),
                     ("checked_in", "checked_out", "system"), ("checked_out", "completed", "system")]


def test_a_declined_request_frees_its_nights(client: httpx.Client, listing: dict[str, Any],
                                              db: psycopg.Connection[Any]) -> None:
    check_in = today() + timedelta(days=20)
    booking_id = request_stay(client, listing, check_in)["booking_id"]
    declined = post_job(client, f"/v1/bookings/{booking_id}/decline", {"reason": "dates blocked for repairs"})
    assert declined["result"]["status"] == "declined", declined
    gone = read(client, booking_id)
    assert gone["status"] == "declined" and gone["deposit"]["status"] == "released"
    assert request_stay(client, listing, check_in)["status"] == "requested"  # the nights are free again
    again = client.post(f"/v1/bookings/{booking_id}/approve", json={}, headers={"Idempotency-Key": new_key()})
    assert again.status_code == 409 and again.json()["code"] == "BOOKING_INVALID_TRANSITION"
    assert "booking_declined" in topics(db, booking_id)


def test_an_unanswered_request_expires_and_frees_its_nights(client: httpx.Client, listing: dict[str, Any],
                                                            db: psycopg.Connection[Any]) -> None:
    check_in = today() + timedelta(days=30)
    booking_id = request_stay(client, listing, check_in)["booking_id"]
    db.execute("UPDATE bookings SET hold_expires_at = now() - interval '1 second' WHERE id = %s", (booking_id,))
    late = client.post(f"/v1/bookings/{booking_id}/approve", json={}, headers={"Idempotency-Key": new_key()})
    assert late.status_code == 409 and "lapsed" in late.json()["detail"]
    expired = wait_booking(client, booking_id, "request expired", lambda b: b["status"] == "expired")
    assert expired["audit"][-1]["reason"] == "request not answered in time"
    assert request_stay(client, listing, check_in)["status"] == "requested"


def test_approve_racing_the_request_expiry_has_exactly_one_outcome(
        client: httpx.Client, listing: dict[str, Any], database_url: str) -> None:
    outcomes = []
    for round_ in range(8):
        booking_id = request_stay(client, listing, today() + timedelta(days=40 + 3 * round_))["booking_id"]
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("UPDATE bookings SET hold_expires_at = now() + interval '30 milliseconds' WHERE id = %s",
                         (booking_id,))
        results: dict[str, Any] = {}
        start = threading.Barrier(2)

        def approve(booking_id: str = booking_id, results: dict[str, Any] = results,
                    start: threading.Barrier = start) -> None:
            with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as conn:
                start.wait()
                try:
                    with conn.transaction():
                        booking_rules.transition_booking(conn, BookingCommand(
                            booking_id=uuid.UUID(booking_id), to_status="pending_payment", actor="user"),
                            default_hold_ttl_seconds=900)
                    results["approved"] = True
                except (BookingInvalidTransition, ConstraintViolation):
                    results["approved"] = False

        def sweep(start: threading.Barrier = start, results: dict[str, Any] = results) -> None:
            with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as conn:
                start.wait()
                deadline = datetime.now().timestamp() + 1
                expired = 0
                while not expired and datetime.now().timestamp() < deadline:
                    expired += booking_rules.expire_overdue_holds(conn, max_attempts=5)[0]
                results["expired"] = expired

        threads = [threading.Thread(target=approve), threading.Thread(target=sweep)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        final = read(client, booking_id)
        assert (final["status"], results["approved"]) in {("pending_payment", True), ("expired", False)}, results
        outcomes.append(final["status"])
    assert outcomes  # both outcomes are legal; which one won each round is up to the clock


def test_a_declined_deposit_is_visible_and_does_not_block_check_in(
        client: httpx.Client, customer: stripe.StripeClient, listing: dict[str, Any],
        db: psycopg.Connection[Any]) -> None:
    paid = paid_and_held(client, customer, listing, today() + timedelta(days=1),
                         card="pm_card_visa_offSessionDeclined")
    assert paid["deposit"]["status"] == "failed" and paid["deposit"]["failure_code"] == "authentication_required"
    assert "deposit_failed" in topics(db, paid["id"])
    early = client.post(f"/v1/bookings/{paid['id']}/check-in", json={}, headers={"Idempotency-Key": new_key()})
    assert early.status_code == 409 and early.json()["code"] == "BOOKING_CHECK_IN_TOO_EARLY"


def test_a_failed_deposit_lets_the_stay_check_in_and_complete_at_check_out(
        client: httpx.Client, customer: stripe.StripeClient, listing: dict[str, Any]) -> None:
    paid = paid_and_held(client, customer, listing, today() + timedelta(days=0), card="pm_card_visa_offSessionDeclined")
    assert paid["deposit"]["status"] == "failed"
    assert post_job(client, f"/v1/bookings/{paid['id']}/check-in")["result"]["status"] == "checked_in"
    assert post_job(client, f"/v1/bookings/{paid['id']}/check-out")["result"]["status"] == "completed"


def test_an_unclaimed_deposit_is_released_when_the_window_closes(
        client: httpx.Client, customer: stripe.StripeClient, listing: dict[str, Any],
        db: psycopg.Connection[Any]) -> None:
    paid = paid_and_held(client, customer, listing, today() + timedelta(days=0))
    booking_id = paid["id"]
    assert paid["deposit"]["status"] == "authorized"
    post_job(client, f"/v1/bookings/{booking_id}/check-in")
    post_job(client, f"/v1/bookings/{booking_id}/check-out")
    refused = client.post(f"/v1/bookings/{booking_id}/deposit/claim", json={"amount": DEPOSIT + 1, "reason": "x"},
                          headers={"Idempotency-Key": new_key()})
    assert refused.status_code == 409 and refused.json()["code"] == "DEPOSIT_NOT_SETTLEABLE"
    db.execute("UPDATE booking_deposits SET claim_deadline = now() - interval '1 second' WHERE booking_id = %s",
               (booking_id,))
    done = wait_booking(client, booking_id, "deposit released and stay completed",
                        lambda b: b["status"] == "completed" and b["deposit"]["status"] == "released")
    assert customer.v1.payment_intents.retrieve(done["deposit"]["payment_intent_id"]).status == "canceled"
    assert "deposit_released" in topics(db, booking_id)
    kinds = [r["kind"] for r in db.execute("SELECT kind FROM ledger_transactions WHERE booking_id = %s",
                                           (booking_id,)).fetchall()]
    assert "deposit_capture" not in kinds


def test_a_lapsed_authorisation_fails_the_deposit(client: httpx.Client, customer: stripe.StripeClient,
                                                  listing: dict[str, Any], fake: httpx.Client) -> None:
    paid = paid_and_held(client, customer, listing, today() + timedelta(days=2))
    intent = paid["deposit"]["payment_intent_id"]
    assert fake.post(f"/_fake/payment_intents/{intent}/expire_authorization").status_code == 200
    lapsed = wait_booking(client, paid["id"], "deposit lapsed", lambda b: b["deposit"]["status"] == "failed")
    assert lapsed["deposit"]["failure_code"] == "authorization_expired" and lapsed["status"] == "paid"


def test_a_late_authorisation_event_does_not_revive_a_lapsed_deposit(
        client: httpx.Client, customer: stripe.StripeClient, listing: dict[str, Any], fake: httpx.Client,
        db: psycopg.Connection[Any]) -> None:
    """Stripe sends events in any order: the hold's amount_capturable_updated may arrive after the same
    intent's payment_intent.canceled (lapsed). The deposit stays failed."""
    requested = request_stay(client, listing, today() + timedelta(days=2))
    approved = post_job(client, f"/v1/bookings/{requested['booking_id']}/approve", {})
    assert approved["status"] == "succeeded", approved
    try:
        fake.post("/_fake/webhooks", json={"hold": True}).raise_for_status()
        customer.v1.payment_intents.confirm(approved["result"]["payment_intent_id"],
                                            params={"payment_method": "pm_card_visa"})
        fake.post("/_fake/webhooks/release", json={"order": "in_order"}).raise_for_status()  # the payment only
        held = wait_booking(client, requested["booking_id"], "deposit held (said by Stripe's answer)",
                            lambda b: b["deposit"]["status"] == "authorized")
        intent = held["deposit"]["payment_intent_id"]
        assert fake.post(f"/_fake/payment_intents/{intent}/expire_authorization").status_code == 200
        events = [e["id"] for e in fake.get("/_fake/events").json() if e["data"]["object"]["id"] == intent
                  and e["type"] in ("payment_intent.amount_capturable_updated", "payment_intent.canceled")]
        assert len(events) == 2, events  # both still held
        fake.post("/_fake/webhooks/release", json={"order": "reversed"}).raise_for_status()
    finally:
        fake.post("/_fake/webhooks", json={"hold": False}).raise_for_status()
    wait_for(lambda: db.execute("SELECT count(*) AS n FROM stripe_events WHERE event_id = ANY(%s) "
                                "AND status <> 'received'", (events,)).fetchone()["n"] == 2, 30,
             "both events applied")
    lapsed = read(client, requested["booking_id"])
    assert lapsed["deposit"]["status"] == "failed" and lapsed["deposit"]["failure_code"] == "authorization_expired"


STATUSES = ("requested", "pending_payment", "paid", "checked_in", "checked_out", "completed", "declined",
            "expired", "cancelled")
LEGAL = {
    "slot": {("requested", "pending_payment"), ("requested", "declined"), ("requested", "expired"),
             ("requested", "cancelled"), ("pending_payment", "paid"), ("pending_payment", "expired"),
             ("pending_payment", "cancelled"), ("paid", "cancelled"), ("paid", "completed")},
}
LEGAL["stay"] = (LEGAL["slot"] - {("paid", "completed")}) | {
    ("paid", "checked_in"), ("checked_in", "checked_out"), ("checked_out", "completed")}


@pytest.mark.parametrize("kind", ["slot", "stay"])
def test_every_illegal_transition_is_refused_by_the_database(kind: str, listing: dict[str, Any],
                                                             database_url: str) -> None:
    """Every (from, to) pair on rows inserted in each status (long past, so check-in's date rule holds):
    the legal ones commit, every other one is refused by the trigger over booking_transitions."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        for i, (source, target) in enumerate((s, t) for s in STATUSES for t in STATUSES):
            booking_id = uuid.uuid4()
            start = datetime(2001, 1, 1, tzinfo=LISBON) + timedelta(days=3 * i)
            conn.execute(
                "INSERT INTO bookings (id, kind, status, resource_id, provider_id, period, amount, currency, "
                "service_snapshot, customer, hold_expires_at, created_by_job) VALUES (%s, %s, %s, %s, %s, "
                "tstzrange(%s, %s, '[)'), 0, 'EUR', '{}', '{}', now() + interval '1 hour', %s)",
                (booking_id, kind, source, listing["resource_id"], listing["provider_id"], start,
                 start + timedelta(days=1), uuid.uuid4()))
            try:
                with conn.transaction():
                    conn.execute("UPDATE bookings SET status = %s WHERE id = %s", (target, booking_id))
                allowed = True
            except psycopg.errors.CheckViolation as exc:
                assert exc.diag.constraint_name == "bookings_valid_transition"
                allowed = False
            assert allowed == ((source, target) in LEGAL[kind]), (kind, source, target)
        conn.rollback()
