"""Security deposits against the fake Stripe, through our client (``shared.stripe_api.StripeApi``) and the real
SDK: a customer saves a card paying on-session; the deposit is held off-session (manual capture), then captured
in part, cancelled, or left to lapse. The fake runs as its own process (a real HTTP server, API key required)
with no fleet and no database; its webhooks are held, and events are read from ``/_fake/events``, where each is
recorded when emitted, before the call that emitted it answers, so nothing here waits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe

from shared.config import Settings
from shared.errors import PaymentProviderRefused
from shared.stripe_api import CardDeclined, StripeApi
from tests.support import inherited_env, new_key
from totem.fleet import Fleet

API_KEY = "sk_test_deposits"
DEPOSIT = 30_000
HOLD_DAYS = 7 * 86_400
VISA_OFF_SESSION_HOLD = 4 * 86_400 + 18 * 3_600


@pytest.fixture(scope="module")
def stripe_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    fleet = Fleet(env={**inherited_env(), "STRIPE_API_KEY": API_KEY},
                  log_dir=tmp_path_factory.mktemp("fake-stripe-logs"))
    try:
        url = fleet.start_fake_stripe()
        httpx.post(f"{url}/_fake/webhooks", json={"hold": True}, timeout=10).raise_for_status()
        yield url
    finally:
        fleet.stop()


@pytest.fixture(scope="module")
def api(stripe_url: str) -> StripeApi:
    """Our worker-side client, as the workers build it."""
    return StripeApi(Settings(database_url="postgresql://unused", redis_url="redis://unused",
                              stripe_api_base=stripe_url, stripe_api_key=API_KEY))


@pytest.fixture
def browser(stripe_url: str) -> stripe.StripeClient:
    """The customer's side (what Stripe.js does on-session), via the SDK."""
    return stripe.StripeClient(API_KEY, base_addresses={"api": stripe_url}, max_network_retries=0)


@pytest.fixture
def fake(stripe_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stripe_url, timeout=10) as client:
        yield client


def events_about(fake: httpx.Client, object_id: str) -> list[dict[str, Any]]:
    """Events whose object is ``object_id`` or belongs to it (an intent's charges), in the order emitted."""
    def about(event: dict[str, Any]) -> bool:
        obj = event["data"]["object"]
        return object_id in (obj["id"], obj.get("payment_intent"))
    return [e for e in fake.get("/_fake/events").json() if about(e)]


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def saved_card(api: StripeApi, browser: stripe.StripeClient, card: str = "pm_card_visa") -> tuple[str, str, str]:
    """A booking paid on-session by a new customer who saved the card: (booking id, customer id, payment method)."""
    booking_id = new_key()
    customer = api.create_customer(booking_id=booking_id, email="grace@example.com")
    intent = api.create_payment_intent(booking_id=booking_id, amount=2500, currency="EUR", description="Stay",
                                       customer=customer.id, setup_future_usage="off_session")
    paid = browser.v1.payment_intents.confirm(intent.id, params={"payment_method": card})
    assert paid.status == "succeeded"
    return booking_id, customer.id, paid.payment_method


def held(api: StripeApi, browser: stripe.StripeClient) -> tuple[str, Any]:
    """A deposit of ``DEPOSIT`` held on a saved card: (booking id, the intent)."""
    booking_id, customer, method = saved_card(api, browser)
    intent = api.authorize_deposit(booking_id=booking_id, amount=DEPOSIT, currency="EUR", customer=customer,
                                   payment_method=method)
    assert intent.status == "requires_capture"
    return booking_id, intent


def test_a_customer_paying_on_session_with_setup_future_usage_saves_the_card_to_them(
        api: StripeApi, browser: stripe.StripeClient, fake: httpx.Client) -> None:
    booking_id = new_key()
    fake.post("/_fake/faults", json={"operation": "customers.create", "times": 1, "when": "after"})
    customer = api.create_customer(booking_id=booking_id, email="grace@example.com")  # made, answer lost, retried
    assert customer.id.startswith("cus_") and customer.object == "customer"
    assert (customer.email, customer.metadata.to_dict()) == ("grace@example.com", {"booking_id": booking_id})
    assert api.create_customer(booking_id=booking_id, email="grace@example.com").id == customer.id  # same key
    calls = [r for r in fake.get("/_fake/requests").json()
             if r["idempotency_key"] == f"totem-booking-{booking_id}-customer"]
    assert [c["outcome"] for c in calls] == ["fault_after", "replayed", "replayed"]
    assert types(events_about(fake, customer.id)) == ["customer.created"]
    assert browser.v1.customers.retrieve(customer.id).email == "grace@example.com"

    intent = api.create_payment_intent(booking_id=booking_id, amount=2500, currency="EUR", description="Stay",
                                       customer=customer.id, setup_future_usage="off_session")
    assert (intent.customer, intent.setup_future_usage, intent.capture_method) == \
        (customer.id, "off_session", "automatic")
    paid = browser.v1.payment_intents.confirm(intent.id, params={"payment_method": "pm_card_visa"})
    assert paid.status == "succeeded" and paid.amount_received == 2500
    method = paid.payment_method
    assert method.startswith("pm_") and method != "pm_card_visa"  # a test card makes a new payment method
    assert browser.v1.payment_methods.retrieve(method).customer == customer.id
    assert types(events_about(fake, method)) == ["payment_method.attached"]

    unsaved = api.create_payment_intent(booking_id=new_key(), amount=2500, currency="EUR", description=None,
                                        customer=customer.id)
    paid = browser.v1.payment_intents.confirm(unsaved.id, params={"payment_method": "pm_card_visa"})
    assert browser.v1.payment_methods.retrieve(paid.payment_method).customer is None


def test_an_off_session_authorisation_holds_the_deposit_and_captures_nothing(
        api: StripeApi, browser: stripe.StripeClient, fake: httpx.Client) -> None:
    booking_id, customer, method = saved_card(api, browser)
    intent = api.authorize_deposit(booking_id=booking_id, amount=DEPOSIT, currency="EUR", customer=customer,
                                   payment_method=method)
    assert (intent.status, intent.amount, intent.amount_capturable, intent.amount_received) == \
        ("requires_capture", DEPOSIT, DEPOSIT, 0)
    assert (intent.capture_method, intent.customer, intent.payment_method) == ("manual", customer, method)
    assert intent.metadata.to_dict() == {"booking_id": booking_id, "purpose": "deposit"}
    assert intent.payment_method_types == ["card"]

    charge = browser.v1.charges.retrieve(intent.latest_charge)
    assert (charge.status, charge.paid, charge.captured, charge.amount, charge.amount_captured) == \
        ("succeeded", True, False, DEPOSIT, 0)
    assert charge.balance_transaction is None  # no money moves until the capture
    assert charge.payment_method_details.card.capture_before == charge.created + VISA_OFF_SESSION_HOLD
    assert api.list_balance_transactions(source=charge.id).data == []

    events = events_about(fake, intent.id)
    assert types(events) == ["payment_intent.created", "charge.succeeded", "payment_intent.amount_capturable_updated"]
    assert events[2]["data"]["object"]["amount_capturable"] == DEPOSIT
    assert events[1]["data"]["object"]["captured"] is False


def test_a_partial_capture_takes_that_much_and_releases_the_rest_without_a_refund(
        api: StripeApi, browser: stripe.StripeClient, fake: httpx.Client) -> None:
    booking_id, intent = held(api, browser)
    captured = api.capture_deposit(booking_id=booking_id, payment_intent_id=intent.id, amount=12_000)
    assert (captured.status, captured.amount, captured.amount_received, captured.amount_capturable) == \
        ("succeeded", DEPOSIT, 12_000, 0)

    charge = browser.v1.charges.retrieve(intent.latest_charge)
    assert (charge.captured, charge.amount_captured, charge.amount_refunded, charge.refunded) == \
        (True, 12_000, 0, False)  # as Stripe since 2025-03-31.basil: the released rest is no refund
    txns = api.list_balance_transactions(source=charge.id).data
    assert [(t.id, t.amount, t.type) for t in txns] == [(charge.balance_transaction, 12_000, "charge")]
    assert types(events_about(fake, intent.id))[3:] == ["charge.captured", "payment_intent.succeeded"]

    with pytest.raises(stripe.InvalidRequestError):  # what was released cannot be refunded
        browser.v1.refunds.create(params={"payment_intent": intent.id, "amount": 12_001})
    assert browser.v1.refunds.create(params={"payment_intent": intent.id, "amount": 12_000}).status == "succeeded"


def test_a_capture_retried_with_its_key_after_a_lost_answer_captures_once(
        api: StripeApi, browser: stripe.StripeClient, fake: httpx.Client) -> None:
    """Stripe captured, the answer was lost (500): our retry, then a whole second run of the job, send the same
    key and get the first answer back."""
    booking_id, intent = held(api, browser)
    fake.post("/_fake/faults", json={"operation": "payment_intents.capture", "times": 1, "when": "after"})
    first = api.capture_deposit(booking_id=booking_id, payment_intent_id=intent.id, amount=DEPOSIT)
    again = api.capture_deposit(booking_id=booking_id, payment_intent_id=intent.id, amount=DEPOSIT)
    assert first.status == again.status == "succeeded" and first.amount_received == again.amount_received == DEPOSIT
    assert again.last_response.headers["Idempotent-Replayed"] == "true"

    calls = [r for r in fake.get("/_fake/requests").json() if r["operation"] == "payment_intents.capture"
             and r["idempotency_key"] == f"totem-deposit-{booking_id}-capture"]
    assert [c["outcome"] for c in calls] == ["fault_after", "replayed", "replayed"]
    assert len(api.list_balance_transactions(source=intent.latest_charge).data) == 1
    assert types(events_about(fake, intent.id)).count("charge.captured") == 1


def test_capturing_more_than_is_held_is_refused_and_takes_nothing(
        api: StripeApi, browser: stripe.StripeClient) -> None:
    booking_id, intent = held(api, browser)
    with pytest.raises(PaymentProviderRefused) as refused:
        api.capture_deposit(booking_id=booking_id, payment_intent_id=intent.id, amount=DEPOSIT + 1)
    assert not isinstance(refused.value, CardDeclined)
    assert isinstance(refused.value.__cause__, stripe.InvalidRequestError)
    assert refused.value.__cause__.code == "amount_too_large"
    still = browser.v1.payment_intents.retrieve(intent.id)
    assert (still.status, still.amount_capturable) == ("requires_capture", DEPOSIT)
    assert api.list_balance_transactions(source=intent.latest_charge).data == []


def test_releasing_a_deposit_cancels_the_hold_and_moves_no_money(
        api: StripeApi, browser: stripe.StripeClient, fake: httpx.Client) -> None:
    booking_id, intent = held(api, browser)
    released = api.release_deposit(booking_id=booking_id, payment_intent_id=intent.id)
    assert (released.status, released.amount_capturable, released.amount_received) == ("canceled", 0, 0)
    assert released.cancellation_reason == "abandoned"
    charge = browser.v1.charges.retrieve(intent.latest_charge)
    assert (charge.captured, charge.amount_captured, charge.amount_refunded, charge.refunded) == (False, 0, 0, False)
    assert types(events_about(fake, intent.id))[3:] == ["payment_intent.canceled"]
    assert api.list_balance_transactions(source=charge.id).data == []
    with pytest.raises(PaymentProviderRefused) as refused:
        api.capture_deposit(booking_id=booking_id, payment_intent_id=intent.id, amount=1)
    assert refused.value.__cause__.code == "payment_intent_unexpected_state"  # type: ignore[union-attr]


def test_a_lapsed_authorisation_is_cancelled_as_expired_and_can_no_longer_be_captured(
        api: StripeApi, browser: stripe.StripeClient, fake: httpx.Client) -> None:
    booking_id, intent = held(api, browser)
    lapsed = fake.post(f"/_fake/payment_intents/{intent.id}/expire_authorization")
    assert lapsed.status_code == 200
    assert (lapsed.json()["status"], lapsed.json()["cancellation_reason"]) == ("canceled", "expired")
    assert types(events_about(fake, intent.id))[3:] == ["charge.expired", "payment_intent.canceled"]
    with pytest.raises(PaymentProviderRefused) as refused:
        api.capture_deposit(booking_id=booking_id, payment_intent_id=intent.id, amount=DEPOSIT)
    cause = refused.value.__cause__
    assert isinstance(cause, stripe.InvalidRequestError) and cause.http_status == 400
    assert cause.code == "payment_intent_unexpected_state"
    assert fake.post(f"/_fake/payment_intents/{intent.id}/expire_authorization").status_code == 400


def test_an_off_session_declined_card_pays_on_session_and_is_refused_off_session_for_authentication(
        api: StripeApi, browser: stripe.StripeClient, fake: httpx.Client) -> None:
    booking_id, customer, method = saved_card(api, browser, "pm_card_visa_offSessionDeclined")  # paid on-session
    with pytest.raises(CardDeclined) as declined:
        api.authorize_deposit(booking_id=booking_id, amount=DEPOSIT, currency="EUR", customer=customer,
                              payment_method=method)
    assert (declined.value.stripe_code, declined.value.decline_code) == ("authentication_required",) * 2
    intent = browser.v1.payment_intents.retrieve(declined.value.payment_intent_id or "")
    assert (intent.status, intent.last_payment_error.code) == ("requires_payment_method", "authentication_required")
    assert types(events_about(fake, intent.id)) == ["payment_intent.created", "payment_intent.payment_failed"]
    cause = declined.value.__cause__
    assert isinstance(cause, stripe.CardError) and cause.http_status == 402

    with pytest.raises(CardDeclined) as replayed:  # the same key: Stripe's stored answer, the same decline
        api.authorize_deposit(booking_id=booking_id, amount=DEPOSIT, currency="EUR", customer=customer,
                              payment_method=method)
    assert replayed.value.payment_intent_id == intent.id
    with pytest.raises(CardDeclined) as again:  # a new attempt is a new try, off-session declined again
        api.authorize_deposit(booking_id=booking_id, amount=DEPOSIT, currency="EUR", customer=customer,
                              payment_method=method, attempt=2)
    assert again.value.payment_intent_id not in (None, intent.id)

    present = api.create_payment_intent(booking_id=new_key(), amount=DEPOSIT, currency="EUR", description=None,
                                        customer=customer)
    paid = browser.v1.payment_intents.confirm(present.id, params={"payment_method": method})
    assert (paid.status, paid.payment_method) == ("succeeded", method)  # with the customer there, it pays


def test_off_session_with_a_card_not_saved_to_the_customer_is_refused_and_makes_no_intent(
        api: StripeApi, browser: stripe.StripeClient, fake: httpx.Client) -> None:
    _, customer, _ = saved_card(api, browser)
    _, _, someone_elses = saved_card(api, browser)
    for method in (someone_elses, "pm_card_visa"):
        before = len(fake.get("/_fake/events").json())
        with pytest.raises(PaymentProviderRefused) as refused:
            api.authorize_deposit(booking_id=new_key(), amount=DEPOSIT, currency="EUR", customer=customer,
                                  payment_method=method)
        cause = refused.value.__cause__
        assert isinstance(cause, stripe.InvalidRequestError) and cause.http_status == 400
        assert cause.param == "payment_method" and "must be attached to the customer" in str(cause)
        assert not [e for e in fake.get("/_fake/events").json()[before:] if e["type"] == "payment_intent.created"]


def test_confirming_at_create_with_redirecting_automatic_payment_methods_needs_a_return_url(
        api: StripeApi, browser: stripe.StripeClient) -> None:
    _, customer, method = saved_card(api, browser)
    hold = {"amount": DEPOSIT, "currency": "eur", "customer": customer, "payment_method": method,
            "capture_method": "manual", "confirm": True, "off_session": True}
    with pytest.raises(stripe.InvalidRequestError) as refused:
        browser.v1.payment_intents.create(params={**hold, "automatic_payment_methods": {"enabled": True}})
    assert refused.value.param == "return_url"
    never = browser.v1.payment_intents.create(
        params={**hold, "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"}})
    assert never.status == "requires_capture"
