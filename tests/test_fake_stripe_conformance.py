"""The fake Stripe speaks one API version (ours, pinned in ``shared.stripe_api``) and sends what Stripe's
published OpenAPI description of it says: every object it answers and every event it emits is checked
against ``tests/data/stripe/objects.json`` (``tests.stripe_schemas``). The fake runs as its own process (API
key required, webhooks held) with no fleet; events are read from ``/_fake/events``, recorded when emitted.

A scenario is one function decorated ``@scenario``: it drives the fake through the real SDK and returns
the objects the fake answered (SDK objects, validated as the raw JSON received). Every event emitted while
it ran is validated too, by ``data.object.object``: an object type another module adds is covered once a
scenario makes the fake send it (and fails until its schema is in ``objects.json``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import stripe

from shared.config import Settings
from shared.stripe_api import STRIPE_API_VERSION, CardDeclined, StripeApi
from tests.stripe_schemas import problems, published
from tests.support import inherited_env, new_key
from totem.fleet import Fleet

API_KEY = "sk_test_conformance"


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


class Drive:
    """What a scenario drives the fake with: our client, the SDK as a browser uses it, the fake's controls."""

    def __init__(self, url: str) -> None:
        self.api = StripeApi(Settings(database_url="postgresql://unused", redis_url="redis://unused",
                                      stripe_api_base=url, stripe_api_key=API_KEY))
        self.sdk = stripe.StripeClient(API_KEY, base_addresses={"api": url}, max_network_retries=0)
        self.fake = httpx.Client(base_url=url, timeout=10)

    def paid_intent(self, card: str = "pm_card_visa", **create: Any) -> Any:
        intent = self.api.create_payment_intent(booking_id=new_key(), amount=4200, currency="EUR",
                                                description="Haircut", **create)
        return intent, self.sdk.v1.payment_intents.confirm(intent.id, params={"payment_method": card})

    def saved_card(self, card: str = "pm_card_visa") -> tuple[Any, Any, Any]:
        customer = self.api.create_customer(booking_id=new_key(), email="ada@example.com")
        intent, paid = self.paid_intent(card, customer=customer.id, setup_future_usage="off_session")
        return customer, intent, paid

    def hold(self) -> tuple[Any, Any]:
        customer, _, paid = self.saved_card()
        held = self.api.authorize_deposit(booking_id=new_key(), amount=30_000, currency="EUR",
                                          customer=customer.id, payment_method=paid.payment_method)
        assert held.status == "requires_capture"
        return customer, held


Scenario = Callable[[Drive], list[Any]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(run: Scenario) -> Scenario:
    SCENARIOS[run.__name__] = run
    return run


@scenario
def payment_confirmed(drive: Drive) -> list[Any]:
    intent, paid = drive.paid_intent()
    charge = drive.sdk.v1.charges.retrieve(paid.latest_charge)
    return [intent, paid, charge, drive.sdk.v1.payment_intents.retrieve(intent.id)]


@scenario
def three_d_secure_then_authenticated(drive: Drive) -> list[Any]:
    """requires_action with a redirect, then the customer passes the bank's page: the same objects as a
    payment, plus the waiting intent and its payment_intent.requires_action event."""
    intent = drive.api.create_payment_intent(booking_id=new_key(), amount=4200, currency="EUR", description=None)
    waiting = drive.sdk.v1.payment_intents.confirm(intent.id, params={
        "payment_method": "pm_card_authenticationRequired", "return_url": "https://shop.example/back"})
    page = httpx.get(f"{waiting.next_action.redirect_to_url.url}&outcome=succeed", timeout=10)
    assert page.status_code in (200, 303)
    return [intent, waiting, drive.sdk.v1.payment_intents.retrieve(intent.id)]


@scenario
def refunds_made_in_the_dashboard_and_failed(drive: Drive) -> list[Any]:
    """A refund with no metadata of ours (the Dashboard), then one that fails after it was created: the
    refund.created / updated / failed events and charge.refunded without a refunds list."""
    intent, paid = drive.paid_intent("pm_card_refundFail")
    made = drive.fake.post("/_fake/refunds", json={"payment_intent": intent.id, "amount": 1000}).json()
    failed = drive.fake.post(f"/_fake/refunds/{made['id']}/fail", json={"failure_reason": "expired_or_canceled_card"})
    assert failed.status_code == 200, failed.text
    return [paid, drive.sdk.v1.refunds.retrieve(made["id"]), drive.sdk.v1.charges.retrieve(paid.latest_charge)]


@scenario
def dispute_won_and_dispute_lost(drive: Drive) -> list[Any]:
    """A chargeback: charge.dispute.created / funds_withdrawn / funds_reinstated / closed, both outcomes."""
    answers = []
    for outcome in ("won", "lost"):
        intent, paid = drive.paid_intent()
        opened = drive.fake.post("/_fake/disputes", json={"payment_intent": intent.id})
        assert opened.status_code == 200, opened.text
        closed = drive.fake.post(f"/_fake/disputes/{opened.json()['id']}/close", json={"outcome": outcome})
        assert closed.status_code == 200, closed.text
        answers += [drive.sdk.v1.disputes.retrieve(opened.json()["id"]),
                    drive.sdk.v1.charges.retrieve(paid.latest_charge)]
    return answers


@scenario
def payment_declined(drive: Drive) -> list[Any]:
    intent = drive.api.create_payment_intent(booking_id=new_key(), amount=4200, currency="EUR", description=None)
    with pytest.raises(stripe.CardError) as declined:
        drive.sdk.v1.payment_intents.confirm(intent.id, params={"payment_method": "pm_card_chargeDeclined"})
    error = declined.value.json_body["error"]  # type: ignore[index]
    return [intent, error["payment_intent"], error["payment_method"]]


@scenario
def deposit_declined_off_session(drive: Drive) -> list[Any]:
    customer, _, paid = drive.saved_card("pm_card_visa_offSessionDeclined")
    with pytest.raises(CardDeclined):
        drive.api.authorize_deposit(booking_id=new_key(), amount=30_000, currency="EUR", customer=customer.id,
                                    payment_method=paid.payment_method)
    return [customer, paid]


@scenario
def customer_and_saved_card(drive: Drive) -> list[Any]:
    customer, intent, paid = drive.saved_card()
    return [customer, intent, paid, drive.sdk.v1.customers.retrieve(customer.id),
            drive.sdk.v1.payment_methods.retrieve(paid.payment_method)]


@scenario
def partial_capture(drive: Drive) -> list[Any]:
    _, held = drive.hold()
    captured = drive.api.capture_deposit(booking_id=new_key(), payment_intent_id=held.id, amount=12_000)
    return [held, captured, drive.sdk.v1.charges.retrieve(captured.latest_charge)]


@scenario
def full_capture(drive: Drive) -> list[Any]:
    _, held = drive.hold()
    return [held, drive.sdk.v1.payment_intents.capture(held.id)]


@scenario
def authorisation_cancelled(drive: Drive) -> list[Any]:
    _, held = drive.hold()
    return [held, drive.api.release_deposit(booking_id=new_key(), payment_intent_id=held.id)]


@scenario
def authorisation_lapsed(drive: Drive) -> list[Any]:
    _, held = drive.hold()
    lapsed = drive.fake.post(f"/_fake/payment_intents/{held.id}/expire_authorization")
    assert lapsed.status_code == 200, lapsed.text
    return [held, lapsed.json()]


@scenario
def refunded(drive: Drive) -> list[Any]:
    _, paid = drive.paid_intent()
    part = drive.api.create_refund(refund_id=new_key(), booking_id=new_key(), payment_intent_id=paid.id, amount=1000)
    rest = drive.api.create_refund(refund_id=new_key(), booking_id=new_key(), payment_intent_id=paid.id, amount=3200)
    return [part, rest, drive.sdk.v1.charges.retrieve(paid.latest_charge)]


@scenario
def transfer(drive: Drive) -> list[Any]:
    return [drive.api.create_transfer(payout_id=new_key(), amount=2500, currency="EUR",
                                      destination="acct_1conformance", metadata={"provider_id": new_key()},
                                      transfer_group="booking-1")]


@scenario
def connect_onboarding_and_a_transfer_from_its_charge(drive: Drive) -> list[Any]:
    account = drive.api.create_connected_account(provider_id=new_key(), email="owner@example.com")
    link = drive.api.create_account_link(account_id=account.id, refresh_url="https://totem.example/r",
                                         return_url="https://totem.example/done", key=new_key())
    assert httpx.get(link.url, params={"outcome": "complete"}, timeout=10).status_code == 303
    _, paid = drive.paid_intent()
    sent = drive.api.create_transfer(payout_id=new_key(), amount=3780, currency="EUR", destination=account.id,
                                     metadata={}, transfer_group="booking-2", source_transaction=paid.latest_charge)
    return [account, link, drive.sdk.v1.accounts.retrieve(account.id), sent]


@scenario
def balance_transactions(drive: Drive) -> list[Any]:
    drive.paid_intent()
    listed = drive.api.list_balance_transactions(limit=5)
    assert listed.data, "a captured payment moves money through the balance"
    return [listed, drive.sdk.v1.balance_transactions.list(params={"type": "charge", "limit": 2})]


def raw(answer: Any) -> Any:
    """What the fake sent: the SDK object's own response body, else the dict as received."""
    response = getattr(answer, "last_response", None)
    return response.data if response is not None else answer


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_object_the_fake_answers_and_every_event_it_emits_is_as_stripe_publishes_it(
        stripe_url: str, name: str) -> None:
    drive = Drive(stripe_url)
    already = len(drive.fake.get("/_fake/events").json())
    answers = SCENARIOS[name](drive)
    events = drive.fake.get("/_fake/events").json()[already:]
    assert events, f"scenario {name} made the fake emit no event"
    found = [p for answer in answers for p in problems(raw(answer))] + [p for e in events for p in problems(e)]
    assert not found, f"{name}: the fake drifts from Stripe's published description:\n" + "\n".join(found)


def test_a_field_stripe_does_not_have_is_caught() -> None:
    """The check itself: a bogus field, a missing required one, an expanded id, a list sent unasked."""
    charge = dict.fromkeys(published()["objects"]["charge"]["properties"])
    assert any("'bogus' was unexpected" in p for p in problems({**charge, "object": "charge", "bogus": 1}))
    assert any("'amount' is a required property" in p
               for p in problems({k: v for k, v in charge.items() if k != "amount"} | {"object": "charge"}))
    assert any("refunds" in p for p in problems({**charge, "object": "charge", "refunds": {"object": "list"}}))
    assert any("customer" in p for p in problems({**charge, "object": "charge", "customer": {"id": "cus_1"}}))
    assert problems({"object": "dinosaur"}) == [
        "dinosaur: no published schema here for object type 'dinosaur' (add it to extract.py's OBJECTS)"]


def test_the_pinned_version_is_the_one_the_sdk_was_built_for_and_the_published_schemas_target() -> None:
    assert STRIPE_API_VERSION == stripe.api_version == published()["x-source"]["target_api_version"]


def test_a_request_naming_another_api_version_gets_stripes_400_from_the_fake(stripe_url: str) -> None:
    other = stripe.StripeClient(API_KEY, base_addresses={"api": stripe_url}, max_network_retries=0,
                                stripe_version="2025-09-30.clover")
    with pytest.raises(stripe.InvalidRequestError) as refused:
        other.v1.customers.create(params={"email": "old@example.com"})
    assert refused.value.http_status == 400
    error = refused.value.json_body["error"]  # type: ignore[index]
    assert error["type"] == "invalid_request_error"
    assert "2025-09-30.clover" in error["message"] and f"speaks only API version {STRIPE_API_VERSION}" \
        in error["message"]
    assert refused.value.headers["Stripe-Version"] == STRIPE_API_VERSION


def test_a_request_naming_no_version_is_answered_in_the_pinned_one_and_its_events_carry_it(stripe_url: str) -> None:
    with httpx.Client(base_url=stripe_url, timeout=10) as fake:
        already = len(fake.get("/_fake/events").json())
        created = fake.post("/v1/customers", data={"email": "none@example.com"},
                            headers={"Authorization": f"Bearer {API_KEY}"})
        assert created.status_code == 200, created.text
        assert created.headers["Stripe-Version"] == STRIPE_API_VERSION
        events = fake.get("/_fake/events").json()[already:]
    assert [e["type"] for e in events] == ["customer.created"]
    assert events[0]["api_version"] == STRIPE_API_VERSION


def test_our_client_names_the_pinned_version_on_every_request(stripe_url: str) -> None:
    drive = Drive(stripe_url)
    customer = drive.api.create_customer(booking_id=new_key(), email="pin@example.com")
    assert customer.last_response.headers["Stripe-Version"] == STRIPE_API_VERSION
    assert drive.api.client._requestor._options.stripe_version == STRIPE_API_VERSION
