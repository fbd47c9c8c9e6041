"""3-D Secure through the real stripe SDK against the fake: the card ``pm_card_authenticationRequired`` leaves
the booking's PaymentIntent waiting for the customer (``requires_action``), the fake's authentication page
completes or fails it, and our side pays the booking, keeps it waiting for another card, or lets its hold end
(cancelling the intent). Off-session, as for a stay's security deposit, that card is declined with
``authentication_required``: nobody is there to authenticate."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest
import stripe

from tests.support import SYSTEM, Catalog, wait_for
from tests.test_payments import book, booking, events_for, pay, wait_booking
from tests.test_rentals import listing, post_job, request_stay, today  # noqa: F401 (listing: a fixture)
from totem.fleet import Fleet

CARD = "pm_card_authenticationRequired"
RETURN_URL = "https://shop.example/booking/return?step=pay"


@pytest.fixture
def customer(fleet: Fleet) -> stripe.StripeClient:
    """The customer's side of Stripe (what Stripe.js does in a browser), via the SDK against the fake."""
    return stripe.StripeClient("sk_test_customer", base_addresses={"api": fleet.stripe_url}, max_network_retries=0)


def confirm_3ds(customer: stripe.StripeClient, intent_id: str, return_url: str | None = RETURN_URL) -> Any:
    params: dict[str, Any] = {"payment_method": CARD}
    if return_url:
        params["return_url"] = return_url
    return customer.v1.payment_intents.confirm(intent_id, params=params)


def authenticate(url: str, outcome: str) -> httpx.Response:
    """The customer answers on the fake's authentication page (its buttons submit the same query)."""
    return httpx.get(f"{url}&outcome={outcome}", timeout=10, follow_redirects=False)


def stored_event(client: httpx.Client, event_id: str) -> dict[str, Any]:
    return wait_for(lambda: (r := client.get(f"/v1/system/stripe-events/{event_id}", headers=SYSTEM))  # type: ignore[no-any-return]
                    .status_code == 200 and r.json(), 10, f"event {event_id} stored")


def test_the_3ds_card_waits_for_authentication_and_succeeding_pays_the_booking(
        client: httpx.Client, customer: stripe.StripeClient, fake: httpx.Client, fleet: Fleet,
        catalog: Catalog) -> None:
    result = book(client, catalog, days=50)
    intent = confirm_3ds(customer, result["payment_intent_id"])
    assert intent.status == "requires_action" and intent.latest_charge is None
    assert intent.next_action.type == "redirect_to_url"
    url = intent.next_action.redirect_to_url.url
    assert url.startswith(f"{fleet.stripe_url}/3d_secure_2/hosted?")
    assert intent.next_action.redirect_to_url.return_url == RETURN_URL

    # Stripe's payment_intent.requires_action is no failure: stored, not applied, the booking still waits
    waiting = next(e for e in events_for(fake, intent.id) if e["type"] == "payment_intent.requires_action")
    assert stored_event(client, waiting["id"])["status"] == "ignored"
    pending = booking(client, result["booking_id"])
    assert pending["status"] == "pending_payment"
    assert [p["status"] for p in pending["payments"]] == ["requires_payment"]

    page = httpx.get(url, timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'name="outcome" value="succeed"' in page.text and 'name="outcome" value="fail"' in page.text
    assert not any(tag in page.text for tag in ("<script", "<link", "<img", "src="))  # plain HTML, nothing outside

    answered = authenticate(url, "succeed")
    assert answered.status_code == 303
    back = urlsplit(answered.headers["location"])
    assert (back.scheme, back.netloc, back.path) == ("https", "shop.example", "/booking/return")
    assert {k: v[0] for k, v in parse_qs(back.query).items()} == {
        "step": "pay", "payment_intent": intent.id, "payment_intent_client_secret": result["client_secret"],
        "redirect_status": "succeeded"}

    paid = wait_booking(client, result["booking_id"], "booking paid", lambda b: b["status"] == "paid")
    assert [(p["status"], p["amount"]) for p in paid["payments"]] == [("succeeded", 2500)]
    done = customer.v1.payment_intents.retrieve(intent.id)
    assert done.status == "succeeded" and done.next_action is None and done.latest_charge
    types = [e["type"] for e in events_for(fake, intent.id)]
    assert types[types.index("payment_intent.requires_action"):] == [
        "payment_intent.requires_action", "charge.succeeded", "payment_intent.succeeded"]

    again = authenticate(url, "fail")  # a second answer changes nothing: the page only says where it stands
    assert again.status_code == 200 and "the payment went through" in again.text
    assert customer.v1.payment_intents.retrieve(intent.id).status == "succeeded"


def test_without_a_return_url_the_next_action_is_for_stripe_js(
        client: httpx.Client, customer: stripe.StripeClient, catalog: Catalog) -> None:
    result = book(client, catalog, days=51)
    intent = confirm_3ds(customer, result["payment_intent_id"], return_url=None)
    assert intent.status == "requires_action" and intent.next_action.type == "use_stripe_sdk"
    assert "redirect_to_url" not in intent.next_action


def test_a_failed_authentication_keeps_the_booking_pending_and_another_card_pays_it(
        client: httpx.Client, customer: stripe.StripeClient, fake: httpx.Client, catalog: Catalog) -> None:
    result = book(client, catalog, days=52)
    intent = confirm_3ds(customer, result["payment_intent_id"], return_url=None)
    url = intent.next_action.use_stripe_sdk["stripe_js"]
    answered = authenticate(url, "fail")
    assert answered.status_code == 200 and "Authentication failed" in answered.text  # no return_url: it says so

    failed = customer.v1.payment_intents.retrieve(intent.id)
    assert failed.status == "requires_payment_method" and failed.payment_method is None
    assert failed.last_payment_error.code == "payment_intent_authentication_failure"
    assert failed.last_payment_error.type == "invalid_request_error"
    assert "payment_intent.payment_failed" in [e["type"] for e in events_for(fake, intent.id)]
    view = wait_booking(client, result["booking_id"], "the failure recorded",
                        lambda b: b["payments"][0]["status"] == "failed")
    assert view["status"] == "pending_payment"
    assert view["payments"][0]["failure_code"] == "payment_intent_authentication_failure"

    assert pay(customer, intent.id).status == "succeeded"
    wait_booking(client, result["booking_id"], "paid with another card", lambda b: b["status"] == "paid")


def test_a_booking_waiting_for_authentication_expires_with_its_hold_and_its_intent_is_cancelled(
        client: httpx.Client, customer: stripe.StripeClient, catalog: Catalog, db: psycopg.Connection[Any]) -> None:
    result = book(client, catalog, days=53)
    intent = confirm_3ds(customer, result["payment_intent_id"])
    held = booking(client, result["booking_id"])
    assert held["status"] == "pending_payment" and held["hold_expires_at"] == result["hold_expires_at"]

    db.execute("UPDATE bookings SET hold_expires_at = now() - interval '1 second' WHERE id = %s",
               (result["booking_id"],))
    view = wait_booking(client, result["booking_id"], "expired, its intent cancelled",
                        lambda b: b["status"] == "expired" and b["payments"][0]["status"] == "canceled")
    assert view["refunds"] == []
    assert customer.v1.payment_intents.retrieve(intent.id).status == "canceled"

    late = authenticate(intent.next_action.redirect_to_url.url, "succeed")  # too late: nothing to authenticate
    assert late.status_code == 200 and "cancelled" in late.text
    assert customer.v1.payment_intents.retrieve(intent.id).status == "canceled"
    assert booking(client, result["booking_id"])["status"] == "expired"


def test_a_stay_paid_with_3ds_cannot_hold_its_deposit_off_session(
        client: httpx.Client, customer: stripe.StripeClient, listing: dict[str, Any],  # noqa: F811
        db: psycopg.Connection[Any]) -> None:
    """The card is saved when the customer pays (authenticated); holding the deposit later, off-session, the
    bank still wants the customer: Stripe declines with authentication_required, and the deposit says so."""
    requested = request_stay(client, listing, today() + timedelta(days=1))
    approved = post_job(client, f"/v1/bookings/{requested['booking_id']}/approve", {"note": "Welcome!"})
    intent = confirm_3ds(customer, approved["result"]["payment_intent_id"])
    assert intent.status == "requires_action"
    assert authenticate(intent.next_action.redirect_to_url.url, "succeed").status_code == 303
    paid = wait_booking(client, requested["booking_id"], "paid with the deposit decided",
                        lambda b: b["status"] == "paid" and b["deposit"]["status"] != "pending")
    assert paid["deposit"]["status"] == "failed"
    assert paid["deposit"]["failure_code"] == "authentication_required"


def test_the_page_and_a_browser_read_need_the_intents_own_client_secret(
        client: httpx.Client, customer: stripe.StripeClient, fake: httpx.Client, catalog: Catalog) -> None:
    result = book(client, catalog, days=54)
    intent = confirm_3ds(customer, result["payment_intent_id"])
    forged = intent.next_action.redirect_to_url.url.replace(result["client_secret"], f"{intent.id}_secret_forged")
    assert authenticate(forged, "succeed").status_code == 404
    refused = fake.get(f"/v1/payment_intents/{intent.id}",
                       params={"key": "pk_test_any", "client_secret": f"{intent.id}_secret_forged"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "client_secret"
    read = fake.get(f"/v1/payment_intents/{intent.id}",
                    params={"key": "pk_test_any", "client_secret": result["client_secret"]})
    assert read.status_code == 200 and read.json()["status"] == "requires_action"
