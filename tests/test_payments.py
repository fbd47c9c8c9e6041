"""Payments end to end, through the real stripe SDK and the fake Stripe server (a real HTTP server that
sends signed webhooks to the real gateway): booking → PaymentIntent → confirm → webhook → paid; signatures;
duplicate, shuffled and late events; cancellation refunds by policy; Stripe failing with 500s."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
import stripe

from tests.support import Catalog, future, make_catalog, new_key, wait_for, wait_job
from totem.fake_stripe import sign
from totem.fleet import Fleet

SYSTEM = {"X-System-Token": "test-system-token"}
SECRET = "whsec_totem_dev"


@pytest.fixture
def customer(fleet: Fleet) -> stripe.StripeClient:
    """The customer's side of Stripe (what Stripe.js does in a browser), via the SDK against the fake."""
    return stripe.StripeClient("sk_test_customer", base_addresses={"api": fleet.stripe_url}, max_network_retries=0)


def book(client: httpx.Client, catalog: Catalog, *, days: int = 30, hours: float | None = None) -> dict[str, Any]:
    """Book a slot ``days`` ahead (10:00 UTC) or ``hours`` from now."""
    start = future(days=days) if hours is None else \
        (datetime.now(UTC) + timedelta(hours=hours)).replace(second=0, microsecond=0)
    response = client.post("/v1/bookings", json=catalog.slot_body(start), headers={"Idempotency-Key": new_key()})
    assert response.status_code == 202, response.text
    job = wait_job(client, response.json()["job_id"])
    assert job["status"] == "succeeded", job
    return job["result"]  # type: ignore[no-any-return]


def booking(client: httpx.Client, booking_id: str) -> dict[str, Any]:
    return client.get(f"/v1/bookings/{booking_id}").json()  # type: ignore[no-any-return]


def wait_booking(client: httpx.Client, booking_id: str, what: str, predicate: Any,
                 timeout: float = 20) -> dict[str, Any]:
    return wait_for(lambda: (b := booking(client, booking_id)) and predicate(b) and b, timeout, what)  # type: ignore[no-any-return]


def pay(customer: stripe.StripeClient, intent_id: str, method: str = "pm_card_visa") -> Any:
    return customer.v1.payment_intents.confirm(intent_id, params={"payment_method": method})


def cancel(client: httpx.Client, booking_id: str) -> dict[str, Any]:
    response = client.post(f"/v1/bookings/{booking_id}/cancel", json={"reason": "plans changed"},
                           headers={"Idempotency-Key": new_key()})
    assert response.status_code == 202, response.text
    return wait_job(client, response.json()["job_id"])


def events_for(fake: httpx.Client, intent_id: str) -> list[dict[str, Any]]:
    def mentions(event: dict[str, Any]) -> bool:
        obj = event["data"]["object"]
        return intent_id in (obj.get("id"), obj.get("payment_intent"))
    return [e for e in fake.get("/_fake/events").json() if mentions(e)]


def refunds_settled(b: dict[str, Any]) -> bool:
    return bool(b["refunds"]) and all(r["status"] == "succeeded" for r in b["refunds"])


def test_booking_pays_through_stripe_end_to_end(client: httpx.Client, customer: stripe.StripeClient,
                                                 catalog: Catalog) -> None:
    result = book(client, catalog)
    assert result["status"] == "pending_payment"
    assert result["payment_intent_id"].startswith("pi_")
    assert result["client_secret"].startswith(result["payment_intent_id"])
    intent = customer.v1.payment_intents.retrieve(result["payment_intent_id"])
    assert (intent.amount, intent.currency, intent.metadata["booking_id"]) == (2500, "eur", result["booking_id"])

    assert pay(customer, result["payment_intent_id"]).status == "succeeded"
    paid = wait_booking(client, result["booking_id"], "booking paid", lambda b: b["status"] == "paid")
    assert [(p["status"], p["amount"]) for p in paid["payments"]] == [("succeeded", 2500)]
    assert paid["audit"][-1]["actor"] == "stripe" and paid["audit"][-1]["reason"] == "payment_intent.succeeded"

    # support can see what the webhook did
    event_id = paid["audit"][-1]["detail"]["event_id"]
    event = client.get(f"/v1/system/stripe-events/{event_id}", headers=SYSTEM).json()
    assert event["status"] == "applied" and [e["effect"] for e in event["effects"]] == ["booking_paid"]


def test_a_failed_attempt_leaves_the_booking_pending_and_a_retry_pays_it(
        client: httpx.Client, customer: stripe.StripeClient, catalog: Catalog) -> None:
    result = book(client, catalog)
    with pytest.raises(stripe.CardError):
        pay(customer, result["payment_intent_id"], "pm_card_chargeDeclined")
    failed = wait_booking(client, result["booking_id"], "payment failed recorded",
                          lambda b: b["payments"][0]["status"] == "failed")
    assert failed["status"] == "pending_payment" and failed["payments"][0]["failure_code"] == "card_declined"
    pay(customer, result["payment_intent_id"])
    wait_booking(client, result["booking_id"], "booking paid", lambda b: b["status"] == "paid")


def test_unhandled_event_types_are_stored_and_marked_ignored(client: httpx.Client, customer: stripe.StripeClient,
                                                            fake: httpx.Client, catalog: Catalog) -> None:
    result = book(client, catalog)
    pay(customer, result["payment_intent_id"])
    wait_booking(client, result["booking_id"], "booking paid", lambda b: b["status"] == "paid")
    charge_event = next(e for e in events_for(fake, result["payment_intent_id"]) if e["type"] == "charge.succeeded")
    stored = wait_for(lambda: (r := client.get(f"/v1/system/stripe-events/{charge_event['id']}", headers=SYSTEM))
                      .status_code == 200 and r.json(), 10, "charge.succeeded stored")
    assert stored["status"] == "ignored" and stored["job_id"] is None
    assert [e["effect"] for e in stored["effects"]] == ["ignored"]


def _post_event(client: httpx.Client, event: dict[str, Any], *, timestamp: int | None = None,
                secret: str = SECRET) -> httpx.Response:
    payload = json.dumps(event)
    return client.post("/v1/webhooks/stripe", content=payload,
                       headers={"Content-Type": "application/json",
                                "Stripe-Signature": sign(payload, secret, timestamp)})


def _event(type_: str = "payment_intent.succeeded") -> dict[str, Any]:
    return {"id": f"evt_test_{new_key()}", "object": "event", "type": type_, "created": int(time.time()),
            "data": {"object": {"id": f"pi_{new_key()}", "object": "payment_intent", "amount": 100,
                                "currency": "eur", "metadata": {}}}}


def _stored(db: Any, event_id: str) -> int:
    return int(db.execute("SELECT count(*) AS n FROM stripe_events WHERE event_id = %s", (event_id,)).fetchone()["n"])


def test_bad_or_missing_signatures_are_400_and_store_nothing(client: httpx.Client, db: Any) -> None:
    event = _event()
    wrong = _post_event(client, event, secret="whsec_not_ours")
    assert wrong.status_code == 400 and wrong.json()["code"] == "WEBHOOK_SIGNATURE_INVALID"
    assert wrong.headers["content-type"].startswith("application/problem+json")
    missing = client.post("/v1/webhooks/stripe", content=json.dumps(event),
                          headers={"Content-Type": "application/json"})
    assert missing.status_code == 400 and missing.json()["code"] == "WEBHOOK_SIGNATURE_INVALID"
    garbled = client.post("/v1/webhooks/stripe", content=json.dumps(event), headers={"Stripe-Signature": "nonsense"})
    assert garbled.status_code == 400
    tampered_payload = json.dumps(event)
    header = sign(tampered_payload, SECRET)
    tampered = client.post("/v1/webhooks/stripe", content=tampered_payload.replace("100", "999"),
                           headers={"Stripe-Signature": header})
    assert tampered.status_code == 400
    assert _stored(db, event["id"]) == 0


def test_a_replayed_old_signature_is_refused(client: httpx.Client, db: Any) -> None:
    event = _event()
    stale = _post_event(client, event, timestamp=int(time.time()) - 301)
    assert stale.status_code == 400 and stale.json()["code"] == "WEBHOOK_SIGNATURE_INVALID"
    assert _stored(db, event["id"]) == 0
    fresh = _post_event(client, event, timestamp=int(time.time()) - 290)
    assert fresh.status_code == 200 and fresh.json() == {"received": True, "duplicate": False}


def test_a_signed_payload_that_is_not_an_event_is_400(client: httpx.Client) -> None:
    response = client.post("/v1/webhooks/stripe", content="[1,2]", headers={"Stripe-Signature": sign("[1,2]", SECRET)})
    assert response.status_code == 400 and response.json()["code"] == "WEBHOOK_PAYLOAD_INVALID"


def test_a_duplicate_delivery_answers_200_and_changes_nothing(client: httpx.Client, db: Any) -> None:
    event = _event()
    first, second = _post_event(client, event), _post_event(client, event)
    assert first.json() == {"received": True, "duplicate": False}
    assert second.status_code == 200 and second.json() == {"received": True, "duplicate": True}
    assert _stored(db, event["id"]) == 1
    stored = wait_for(lambda: (r := client.get(f"/v1/system/stripe-events/{event['id']}", headers=SYSTEM).json())
                      ["status"] == "applied" and r, 10, "event applied")
    assert [e["effect"] for e in stored["effects"]] == ["unknown_booking"]  # no booking_id in its metadata


def _final_state(client: httpx.Client, booking_id: str) -> dict[str, Any]:
    b = booking(client, booking_id)
    return {"status": b["status"],
            "payments": [(p["status"], p["amount"], p["amount_refunded"]) for p in b["payments"]],
            "refunds": sorted((r["kind"], r["amount"], r["status"]) for r in b["refunds"]),
            "transitions": [(a["from_status"], a["to_status"]) for a in b["audit"]]}


def _history(customer: stripe.StripeClient, intent_id: str) -> None:
    """Decline, then pay, then a partial refund from the Stripe dashboard (one we did not issue)."""
    with pytest.raises(stripe.CardError):
        pay(customer, intent_id, "pm_card_chargeDeclined")
    pay(customer, intent_id)
    customer.v1.refunds.create(params={"payment_intent": intent_id, "amount": 700})


def test_events_delivered_three_times_in_shuffled_order_end_as_if_delivered_once(
        client: httpx.Client, customer: stripe.StripeClient, fake: httpx.Client, catalog: Catalog) -> None:
    once = book(client, catalog, days=31)
    _history(customer, once["payment_intent_id"])
    expected = wait_for(lambda: (s := _final_state(client, once["booking_id"]))["refunds"] and
                        s["payments"][0][2] == 700 and s["status"] == "paid" and s, 20, "control history applied")

    shuffled = book(client, catalog, days=32)
    fake.post("/_fake/webhooks", json={"hold": True})
    _history(customer, shuffled["payment_intent_id"])
    assert booking(client, shuffled["booking_id"])["status"] == "pending_payment"  # nothing delivered yet
    released = fake.post("/_fake/webhooks/release", json={"order": "shuffled", "copies": 3, "seed": 7}).json()
    assert released["released"] >= 3 * 4
    wait_for(lambda: _final_state(client, shuffled["booking_id"]) == expected, 30, "shuffled history applied")
    held = [e["id"] for e in events_for(fake, shuffled["payment_intent_id"]) if e["type"] != "payment_intent.created"]

    def deliveries() -> list[dict[str, Any]]:
        return [d for d in fake.get("/_fake/deliveries").json() if d["event_id"] in held]

    wait_for(lambda: len(deliveries()) >= 3 * len(held), 20, "all copies delivered")
    assert all(d["status"] == 200 for d in deliveries())  # every copy answered 200, duplicates included
    time.sleep(1)  # any late application would show now
    assert _final_state(client, shuffled["booking_id"]) == expected
    assert expected["status"] == "paid" and expected["refunds"] == [("external", 700, "succeeded")]


def test_a_payment_after_the_hold_expired_is_refunded_in_full(
        client: httpx.Client, customer: stripe.StripeClient, fake: httpx.Client, catalog: Catalog, db: Any) -> None:
    """The customer pays while the hold expires: our cancel of the intent loses the race (held off here
    with 500s) and the payment succeeds for a booking that no longer waits: it is refunded in full."""
    fake.post("/_fake/faults", json={"operation": "payment_intents.cancel", "times": 1000, "when": "before"})
    result = book(client, catalog, days=33)
    db.execute("UPDATE bookings SET hold_expires_at = now() - interval '1 second' WHERE id = %s",
               (result["booking_id"],))
    wait_booking(client, result["booking_id"], "hold expired by the scheduler", lambda b: b["status"] == "expired")
    pay(customer, result["payment_intent_id"])
    settled = wait_booking(client, result["booking_id"], "late payment refunded", refunds_settled)
    assert settled["status"] == "expired"
    assert [(r["kind"], r["amount"]) for r in settled["refunds"]] == [("late_payment", 2500)]
    assert settled["payments"][0]["amount_refunded"] == 2500
    intent = customer.v1.payment_intents.retrieve(result["payment_intent_id"])
    charge_refunds = [e for e in events_for(fake, result["payment_intent_id"]) if e["type"] == "charge.refunded"]
    assert intent.status == "succeeded" and len(charge_refunds) == 1
    assert charge_refunds[0]["data"]["object"]["amount_refunded"] == 2500


def test_concurrent_cancel_and_payment_success_never_keep_money_for_a_cancelled_booking(
        client: httpx.Client, customer: stripe.StripeClient, catalog: Catalog) -> None:
    """Whichever wins, the booking ends cancelled and keeps no money: paid first → a 100 % cancellation
    refund (> 24 h ahead); cancel first → its intent is cancelled (the payment is refused) or, if the payment
    slipped in before that, the late-payment rule refunds it in full."""
    results = [book(client, catalog, days=40 + i) for i in range(6)]

    def try_pay(intent_id: str) -> str:
        try:
            return str(pay(customer, intent_id).status)
        except stripe.InvalidRequestError:
            return "refused"

    with ThreadPoolExecutor(12) as pool:
        cancels = [pool.submit(cancel, client, r["booking_id"]) for r in results]
        payments = [pool.submit(try_pay, r["payment_intent_id"]) for r in results]
        assert all(job.result()["status"] == "succeeded" for job in cancels)
        outcomes = [p.result() for p in payments]
    for r, outcome in zip(results, outcomes, strict=True):
        if outcome == "refused":
            settled = wait_booking(client, r["booking_id"], "intent canceled",
                                   lambda b: b["payments"][0]["status"] == "canceled")
            assert settled["refunds"] == []
        else:
            settled = wait_booking(client, r["booking_id"], "refund settled", refunds_settled)
            assert [(x["amount"], x["status"]) for x in settled["refunds"]] == [(2500, "succeeded")]
            assert settled["refunds"][0]["kind"] in ("cancellation", "late_payment")
            wait_booking(client, r["booking_id"], "refund counted",
                         lambda b: b["payments"][0]["amount_refunded"] == 2500)
        assert settled["status"] == "cancelled"


def test_cancelling_a_pending_booking_or_letting_its_hold_expire_cancels_its_intent(
        client: httpx.Client, customer: stripe.StripeClient, catalog: Catalog, db: Any) -> None:
    cancelled, expired = book(client, catalog, days=34), book(client, catalog, days=35)
    cancel(client, cancelled["booking_id"])
    db.execute("UPDATE bookings SET hold_expires_at = now() - interval '1 second' WHERE id = %s",
               (expired["booking_id"],))
    for result in (cancelled, expired):
        view = wait_booking(client, result["booking_id"], "intent canceled",
                            lambda b: b["payments"][0]["status"] == "canceled")
        assert view["status"] in ("cancelled", "expired")
        assert customer.v1.payment_intents.retrieve(result["payment_intent_id"]).status == "canceled"
        with pytest.raises(stripe.InvalidRequestError):  # nobody can pay for it any more
            pay(customer, result["payment_intent_id"])


@pytest.mark.parametrize(("hours_ahead", "percent"), [(72, 100), (5, 50), (-1, 0)])
def test_cancelling_a_paid_booking_refunds_by_the_policy_window(
        client: httpx.Client, customer: stripe.StripeClient, database_url: str, db: Any,
        hours_ahead: int, percent: int) -> None:
    catalog = make_catalog(database_url, price=2501)  # odd: 50 % rounds down to 1250
    result = book(client, catalog, hours=max(hours_ahead, 2))
    pay(customer, result["payment_intent_id"])
    wait_booking(client, result["booking_id"], "paid", lambda b: b["status"] == "paid")
    if hours_ahead < 0:  # the appointment has started: move it into the past
        db.execute("UPDATE bookings SET period = tstzrange(now() - interval '1 hour', now() - interval '30 minutes') "
                   "WHERE id = %s", (result["booking_id"],))
    job = cancel(client, result["booking_id"])
    expected = 2501 * percent // 100
    refund = job["result"]["refund"]
    assert (refund["amount"], refund["refund_percent"]) == (expected, percent)
    assert refund["status"] == ("pending" if expected else "none")
    final = booking(client, result["booking_id"]) if not expected else \
        wait_booking(client, result["booking_id"], "refund settled", refunds_settled)
    assert final["status"] == "cancelled"
    assert [r["amount"] for r in final["refunds"]] == ([expected] if expected else [])
    detail = final["audit"][-1]["detail"]["refund"]
    assert (detail["amount"], detail["refund_percent"]) == (expected, percent)
    assert (detail["window"] or {}).get("refund_percent", 0) == percent
    if expected:
        assert final["payments"][0]["amount_refunded"] == expected


def _calls(fake: httpx.Client, operation: str, key_part: str) -> list[dict[str, Any]]:
    return [r for r in fake.get("/_fake/requests").json()
            if r["operation"] == operation and key_part in (r["idempotency_key"] or "")]


@pytest.mark.parametrize("when", ["before", "after"])
def test_stripe_failing_with_500_is_retried_with_the_same_key_and_charges_once(
        client: httpx.Client, customer: stripe.StripeClient, fake: httpx.Client, catalog: Catalog, when: str) -> None:
    fake.post("/_fake/faults", json={"operation": "payment_intents.create", "times": 2, "when": when})
    result = book(client, catalog, days=50 if when == "before" else 51)
    calls = _calls(fake, "payment_intents.create", result["booking_id"])
    assert len({c["idempotency_key"] for c in calls}) == 1
    expected_outcomes = ["fault_before"] * 2 if when == "before" else ["fault_after", "replayed"]
    assert [c["outcome"] for c in calls][:2] == expected_outcomes
    created = [e for e in fake.get("/_fake/events").json() if e["type"] == "payment_intent.created"
               and e["data"]["object"]["metadata"].get("booking_id") == result["booking_id"]]
    assert len(created) == 1 and created[0]["data"]["object"]["id"] == result["payment_intent_id"]

    pay(customer, result["payment_intent_id"])
    wait_booking(client, result["booking_id"], "paid", lambda b: b["status"] == "paid")
    fake.post("/_fake/faults", json={"operation": "refunds.create", "times": 2, "when": when})
    cancel(client, result["booking_id"])
    settled = wait_booking(client, result["booking_id"], "refund settled", refunds_settled)
    tries = 3 if when == "before" else 2  # failed, failed, ok / executed-but-lost, replayed
    refund_calls = wait_for(lambda: len(c := _calls(fake, "refunds.create", settled["refunds"][0]["id"])) >= tries
                            and c, 10, "the refund call retried")
    assert len({c["idempotency_key"] for c in refund_calls}) == 1
    refunded = [e for e in events_for(fake, result["payment_intent_id"]) if e["type"] == "charge.refunded"]
    assert len(refunded) == 1 and refunded[0]["data"]["object"]["amount_refunded"] == 2500


def test_one_active_payment_per_booking_and_payment_terms_are_immutable(
    database_url: str, client: httpx.Client, catalog: Catalog,
) -> None:
    result = book(client, catalog, days=52)
    with psycopg.connect(database_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO payments (booking_id, payment_intent_id, amount, currency, status) "
                         "VALUES (%s, 'pi_second', 2500, 'EUR', 'requires_payment')", (result["booking_id"],))
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE payments SET amount = 1 WHERE booking_id = %s", (result["booking_id"],))
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("DELETE FROM payments WHERE booking_id = %s", (result["booking_id"],))


def test_a_refund_stripe_refuses_is_marked_failed_and_visible(
        client: httpx.Client, customer: stripe.StripeClient, fake: httpx.Client, catalog: Catalog, db: Any) -> None:
    """The charge was refunded in full from the dashboard and we had not heard yet: our policy refund is
    refused by Stripe; the refund row says failed and why, the job fails with PAYMENT_PROVIDER_REFUSED, and
    the external refund is recorded once its event arrives."""
    result = book(client, catalog, days=53)
    pay(customer, result["payment_intent_id"])
    wait_booking(client, result["booking_id"], "paid", lambda b: b["status"] == "paid")
    fake.post("/_fake/webhooks", json={"hold": True})
    customer.v1.refunds.create(params={"payment_intent": result["payment_intent_id"]})
    cancelled = cancel(client, result["booking_id"])
    refund_id = cancelled["result"]["refund"]["refund_id"]
    failed = wait_booking(client, result["booking_id"], "refund failed",
                          lambda b: b["refunds"] and b["refunds"][0]["status"] == "failed")
    assert "already been refunded" in failed["refunds"][0]["failure_reason"]
    job = db.execute("SELECT status, error FROM jobs WHERE type = 'refund.issue' AND payload->>'refund_id' = %s",
                     (refund_id,)).fetchone()
    assert job["status"] == "failed" and job["error"]["code"] == "PAYMENT_PROVIDER_REFUSED"
    fake.post("/_fake/webhooks", json={"hold": False})
    fake.post("/_fake/webhooks/release", json={"order": "in_order"})
    final = wait_booking(client, result["booking_id"], "external refund recorded", lambda b: len(b["refunds"]) == 2)
    assert sorted((r["kind"], r["status"], r["amount"]) for r in final["refunds"]) == [
        ("cancellation", "failed", 2500), ("external", "succeeded", 2500)]
    assert final["status"] == "cancelled" and final["payments"][0]["amount_refunded"] == 2500
    assert refund_id == next(r["id"] for r in final["refunds"] if r["kind"] == "cancellation")


def test_an_event_missing_a_field_its_type_needs_fails_at_once_with_a_named_code(client: httpx.Client) -> None:
    event = _event()
    del event["data"]["object"]["amount"]
    assert _post_event(client, event).json() == {"received": True, "duplicate": False}
    stored = wait_for(lambda: (r := client.get(f"/v1/system/stripe-events/{event['id']}", headers=SYSTEM).json())
                      ["status"] != "received" and r, 10, "event set aside")
    job = wait_job(client, stored["job_id"])
    assert job["status"] == "failed" and job["attempts"] == 1  # permanent: not retried until exhausted
    assert job["error"]["code"] == "STRIPE_EVENT_MALFORMED" and "amount" in job["error"]["detail"]
    assert stored["status"] == "ignored"
    assert [(e["effect"], e["detail"]["reason"]) for e in stored["effects"]] == [("ignored", "malformed")]
