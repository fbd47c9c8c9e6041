"""Stripe Connect through the running fleet and the real stripe SDK against the fake: an owner's Express
account and its onboarding link, account.updated kept on the provider in any order and number of copies,
settlement holding a payout while the account cannot be paid (and saying why), and transfers tied to the
charge that funded them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
import stripe
from psycopg.rows import dict_row

from gateway.routes.webhooks import _verify
from shared.db import use_msgspec_json
from shared.settlement import close_due_periods
from tests.support import Catalog, make_catalog, new_key, wait_for, wait_job
from tests.test_money import balance, complete, paid_booking, trial_balance
from totem.fake_stripe import sign
from totem.fleet import Fleet

SYSTEM = {"X-System-Token": "test-system-token"}


@pytest.fixture
def customer(fleet: Fleet) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_customer", base_addresses={"api": fleet.stripe_url}, max_network_retries=0)


@pytest.fixture
def platform(fleet: Fleet) -> stripe.StripeClient:
    """The platform's own view of Stripe (what its Dashboard shows), through the SDK."""
    return stripe.StripeClient("sk_test_platform", base_addresses={"api": fleet.stripe_url}, max_network_retries=0)


@pytest.fixture
def conn(database_url: str) -> Iterator[Any]:
    use_msgspec_json()
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as c:
        yield c


def onboard(client: httpx.Client, catalog: Catalog, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Ask for the provider's account and link as its owner; the job's result."""
    response = client.post(f"/v1/providers/{catalog.provider_id}/stripe-account", json={},
                           headers={"Idempotency-Key": new_key(), **(headers or catalog.owner)})
    assert response.status_code == 202, response.text
    job = wait_job(client, response.json()["job_id"], headers=headers or catalog.owner)
    assert job["status"] == "succeeded", job
    return job["result"]  # type: ignore[no-any-return]


def open_link(url: str, outcome: str) -> httpx.Response:
    return httpx.get(url, params={"outcome": outcome}, follow_redirects=False, timeout=10)


def provider(client: httpx.Client, catalog: Catalog) -> dict[str, Any]:
    response = client.get(f"/v1/providers/{catalog.provider_id}", headers=catalog.owner)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def account_events(fake: httpx.Client, account_id: str) -> list[dict[str, Any]]:
    return [e for e in fake.get("/_fake/events").json()
            if e["type"] == "account.updated" and e.get("account") == account_id]


def settle(conn: Any, catalog: Catalog, days: int) -> list[Any]:
    closed, _ = close_due_periods(conn, now=datetime.now(UTC) + timedelta(days=days),
                                  provider_id=uuid.UUID(catalog.provider_id))
    return closed


def test_an_owner_gets_one_express_account_and_a_fresh_link_each_time_and_no_one_else_may_ask(
        client: httpx.Client, database_url: str, fake: httpx.Client, platform: stripe.StripeClient) -> None:
    catalog, other = make_catalog(database_url), make_catalog(database_url)
    path = f"/v1/providers/{catalog.provider_id}/stripe-account"
    assert client.post(path, json={}, headers={"Idempotency-Key": new_key(), **catalog.staff}).status_code == 403
    assert client.post(path, json={}, headers={"Idempotency-Key": new_key(), **other.owner}).status_code == 404
    assert client.post(path, json={}, headers=catalog.owner).json()["code"] == "IDEMPOTENCY_KEY_MISSING"
    assert client.post(path, json={"type": "standard"},
                       headers={"Idempotency-Key": new_key(), **catalog.owner}).status_code == 400

    first = onboard(client, catalog)
    assert first["account_id"].startswith("acct_") and first["created"] is True
    assert "/setup/e/" + first["account_id"] in first["url"]
    [created] = [r for r in fake.get("/_fake/requests").json() if r["operation"] == "accounts.create"
                 and r["params"]["metadata"]["provider_id"] == catalog.provider_id]
    assert created["params"]["controller"]["stripe_dashboard"]["type"] == "express"
    assert created["idempotency_key"] == f"totem-provider-{catalog.provider_id}-account"
    account = platform.v1.accounts.retrieve(first["account_id"])
    assert (account.type, account.charges_enabled, account.payouts_enabled) == ("express", False, False)
    [link] = [r for r in fake.get("/_fake/requests").json() if r["operation"] == "account_links.create"
              and r["params"]["account"] == first["account_id"]]
    assert link["params"]["type"] == "account_onboarding"
    assert link["params"]["return_url"].endswith("/console/settings?stripe=return")
    assert link["params"]["refresh_url"].endswith("/console/settings?stripe=refresh")

    again = onboard(client, catalog)  # a new request: the same account, a fresh link
    assert (again["account_id"], again["created"]) == (first["account_id"], False)
    assert again["url"] != first["url"]
    page = httpx.get(again["url"], timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'name="outcome" value="complete"' in page.text and "<script" not in page.text

    shown = provider(client, catalog)["stripe_account"]
    assert shown["id"] == first["account_id"]
    assert (shown["charges_enabled"], shown["payouts_enabled"]) == (False, False)
    assert "external_account" in shown["requirements"]["currently_due"]
    assert shown["requirements"]["disabled_reason"] == "requirements.past_due"
    as_staff = client.get(f"/v1/providers/{catalog.provider_id}", headers=catalog.staff).json()
    assert "stripe_account" not in as_staff
    audit = client.get(f"/v1/providers/{catalog.provider_id}/audit-log", headers=catalog.owner).json()
    assert [e["action"] for e in audit["items"]].count("provider.stripe_account.create") == 1


def test_incomplete_onboarding_holds_the_payout_with_why_and_completing_it_pays_out_tied_to_the_charge(
        client: httpx.Client, database_url: str, conn: Any, fake: httpx.Client,
        customer: stripe.StripeClient) -> None:
    catalog = make_catalog(database_url)  # 10 % commission, price 2500
    link = onboard(client, catalog)
    opened = open_link(link["url"], "incomplete")
    assert opened.status_code == 303 and opened.headers["location"].endswith("/console/settings?stripe=return")
    assert open_link(link["url"], "complete").headers["location"].endswith("?stripe=refresh")  # used: refresh
    wait_for(lambda: provider(client, catalog)["stripe_account"]["requirements"]["currently_due"]
             == ["external_account"], 20, "account.updated applied")
    assert provider(client, catalog)["stripe_account"]["payouts_enabled"] is False

    booking_id = paid_booking(client, customer, catalog, days=70)
    complete(client, booking_id)
    [closed] = settle(conn, catalog, days=1)
    assert closed.payouts == []
    [batch] = client.get("/v1/payouts", params={"provider": catalog.provider_id}, headers=catalog.owner).json()["items"]
    assert batch["held_reason"] == "payouts not enabled (requirements: external_account; requirements.past_due)"
    assert (batch["destination"], batch["total"], batch["lines"]) == (link["account_id"], 2250, [])
    assert balance(client, catalog.provider_id)["available"] == 2250  # still owed, nothing in transit
    shown_balance = client.get(f"/v1/providers/{catalog.provider_id}/balance", headers=catalog.owner).json()
    assert shown_balance["payouts_held"] == batch["held_reason"]
    held = wait_for(lambda: [n for n in client.get(f"/v1/providers/{catalog.provider_id}/notifications",
                                                   headers=catalog.owner).json()["items"]
                             if n["topic"] == "payout_held"], 30, "the owner is told")
    assert held[0]["payload"]["reason"] == batch["held_reason"]

    finish = onboard(client, catalog)
    assert open_link(finish["url"], "complete").status_code == 303
    wait_for(lambda: provider(client, catalog)["stripe_account"]["payouts_enabled"], 20, "payouts enabled")
    shown = provider(client, catalog)["stripe_account"]
    assert shown["charges_enabled"] and shown["requirements"]["currently_due"] == []
    assert shown["requirements"]["disabled_reason"] is None

    [closed] = settle(conn, catalog, days=2)  # the next period pays what was held
    assert len(closed.payouts) == 1
    wait_for(lambda: balance(client, catalog.provider_id)["paid_out"] == 2250, 30, "payout paid")
    assert client.get(f"/v1/providers/{catalog.provider_id}/balance", headers=SYSTEM).json()["payouts_held"] is None
    charge_id = conn.execute("SELECT charge_id FROM payments WHERE booking_id = %s AND status = 'succeeded'",
                             (booking_id,)).fetchone()["charge_id"]
    [transfer] = [e["data"]["object"] for e in fake.get("/_fake/events").json() if e["type"] == "transfer.created"
                  and e["data"]["object"]["metadata"].get("booking_id") == booking_id]
    assert transfer["destination"] == link["account_id"] and transfer["amount"] == 2250
    assert (transfer["transfer_group"], transfer["source_transaction"]) == (booking_id, charge_id)
    assert trial_balance(conn) == []


def test_account_updated_applies_once_in_any_order_and_number_of_copies(
        client: httpx.Client, database_url: str, fake: httpx.Client) -> None:
    """The older account.updated (onboarding left incomplete) is held back until the newer one (completed),
    sent three times, has been applied; then it arrives three times late and changes nothing. (Released
    together, the payments pool's threads could apply them in either order; the end state is the same, but
    only this order proves the late one is refused.)"""
    catalog = make_catalog(database_url)
    first = onboard(client, catalog)
    second = onboard(client, catalog)

    def applied(event_id: str) -> dict[str, Any] | None:
        seen = client.get(f"/v1/system/stripe-events/{event_id}", headers=SYSTEM)
        return seen.json() if seen.status_code == 200 and seen.json()["status"] == "applied" else None

    fake.post("/_fake/webhooks", json={"hold": True})
    open_link(first["url"], "incomplete")  # the older event waits at the fake
    fake.post("/_fake/webhooks", json={"hold": False, "copies": 3})
    open_link(second["url"], "complete")  # the newer one goes out at once, three times
    older, newer = account_events(fake, first["account_id"])
    assert older["created"] < newer["created"]
    early = wait_for(lambda: applied(newer["id"]), 20, "the newer event applied")
    assert fake.post("/_fake/webhooks/release", json={"order": "in_order", "copies": 3}).json()["released"] == 3
    late = wait_for(lambda: applied(older["id"]), 20, "the older event applied")
    assert [e["effect"] for e in early["effects"]] == ["stripe_account_updated"]
    assert [e["effect"] for e in late["effects"]] == ["no_change"]  # older than the state held
    shown = provider(client, catalog)["stripe_account"]
    assert (shown["payouts_enabled"], shown["requirements"]["currently_due"]) == (True, [])
    def answered(event_id: str) -> int:
        return sum(1 for d in fake.get("/_fake/deliveries").json() if d["event_id"] == event_id and d["status"] == 200)

    wait_for(lambda: answered(older["id"]) == 3 and answered(newer["id"]) == 3, 20, "every copy answered")
    for event in (newer, older):  # three copies each, applied once
        assert len(client.get(f"/v1/system/stripe-events/{event['id']}", headers=SYSTEM).json()["effects"]) == 1


def test_a_transfer_whose_source_transaction_is_not_a_platform_charge_is_refused(
        platform: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError, match="No such charge"):
        platform.v1.transfers.create(params={"amount": 100, "currency": "eur", "destination": "acct_salon",
                                             "source_transaction": "ch_not_ours"})


def test_a_connected_accounts_event_signed_with_the_connect_endpoints_secret_verifies() -> None:
    payload = b'{"id": "evt_connect", "account": "acct_1"}'
    header = sign(payload.decode(), "whsec_connect")
    _verify(payload, header, "whsec_account", "whsec_connect", 300)
    with pytest.raises(stripe.SignatureVerificationError):
        _verify(payload, header, "whsec_account", None, 300)
    with pytest.raises(stripe.SignatureVerificationError):
        _verify(payload, sign(payload.decode(), "whsec_other"), "whsec_account", "whsec_connect", 300)
