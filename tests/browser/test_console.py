"""The owner console in headless Chromium against the real fleet: signing in by the emailed link, answering a
request from the email's approve link, a stay from check-in to a deposit claim with the balance moving, the
cancel dialog quoting the refund before anything happens, the filters, and a staff session that sees no money.
Every wait is for the thing asserted: Playwright's ``expect`` in the page, ``wait_for`` on the backend."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import PHONE
from tests.browser.console_support import (
    NIGHTLY,
    SLOT_PRICE,
    Shop,
    book_slot,
    booking,
    link_in_mail,
    make_shop,
    request_stay,
    sign_in_tab,
    stripe_customer,
    wait_booking,
)
from tests.support import new_key, wait_for
from totem.fleet import Fleet

Shot = Callable[[Page, str], Path]
UUID = "[0-9a-f-]{36}"


@pytest.fixture
def shop(database_url: str, client: httpx.Client) -> Shop:
    return make_shop(database_url, client)


@pytest.fixture
def phone_page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=PHONE, locale="en-GB", is_mobile=True, has_touch=True)
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def lisbon_today() -> datetime:
    return datetime.now(ZoneInfo("Europe/Lisbon"))


def test_the_emailed_link_signs_the_owner_into_the_console_and_sign_out_ends_the_session(
        page: Page, fleet: Fleet, shop: Shop, shot: Shot, db: psycopg.Connection[dict]) -> None:  # type: ignore[type-arg]
    page.goto(f"{fleet.base_url}/console")
    expect(page.get_by_role("heading", name="Sign in to the console")).to_be_visible()
    shot(page, "sign-in")
    page.get_by_label("Email").fill(shop.owner_email)
    page.get_by_role("button", name="Email me a sign-in link").press("Enter")  # the keyboard alone
    expect(page.get_by_text("a sign-in link is on its way")).to_be_visible()
    shot(page, "link-sent")

    path = link_in_mail(fleet, shop.owner_email, r"/auth/magic\?token=ml_[A-Za-z0-9_-]+")
    page.goto(f"{fleet.base_url}{path}")
    expect(page.get_by_role("heading", name="Sign in to Totem")).to_be_visible()
    shot(page, "magic-link-page")
    page.get_by_role("button", name="Sign in to the console").click()
    expect(page).to_have_url(re.compile(r"/console/bookings$"))
    expect(page.get_by_role("heading", name="Bookings", level=1)).to_be_visible()
    expect(page.get_by_text(f"{shop.owner_email.lower()} · owner")).to_be_visible()
    assert "st_" not in page.url and "ml_" not in page.url
    shot(page, "signed-in")
    user_sessions = ("SELECT count(*) FILTER (WHERE revoked_at IS NULL) AS open, count(*) AS all FROM sessions s "
                     "JOIN users u ON u.id = s.user_id WHERE lower(u.email) = lower(%s)")
    assert db.execute(user_sessions, (shop.owner_email,)).fetchone() == {"open": 1, "all": 1}

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('totem.console.session')") is None
    wait_for(lambda: db.execute(user_sessions, (shop.owner_email,)).fetchone() == {"open": 0, "all": 1}, 10,
             "the console's session ended through the API")
    shot(page, "signed-out")


def test_approve_from_the_email_then_check_in_and_out_and_claim_the_deposit_moves_the_balance(
        page: Page, fleet: Fleet, shop: Shop, client: httpx.Client, shot: Shot) -> None:
    booking_id = request_stay(client, shop, lisbon_today().date())
    approve = link_in_mail(fleet, shop.owner_email, f"/console/bookings/{booking_id}/approve")
    sign_in_tab(page, fleet, shop)

    page.goto(f"{fleet.base_url}/console/money")
    expect(page.get_by_role("heading", name="Balance")).to_be_visible()
    expect(page.get_by_text("Nothing yet.").first).to_be_visible()  # no money moved yet: no balance row
    shot(page, "money-before")

    page.goto(f"{fleet.base_url}{approve}")
    expect(page.get_by_role("heading", name="Approve this request?")).to_be_visible()
    expect(page.get_by_text("Ada Lovelace")).to_be_visible()
    shot(page, "approve-page")
    page.get_by_label("Message to the guest (optional)").fill("Welcome to Alfama!")
    page.get_by_role("button", name="Approve and ask for payment").click()
    expect(page.get_by_text("Approved: the booking is pending payment")).to_be_visible()
    shot(page, "approved")

    approved = booking(client, booking_id)
    assert approved["status"] == "pending_payment" and approved["audit"][-1]["reason"] == "Welcome to Alfama!"
    intent = approved["payments"][0]["payment_intent_id"]
    stripe_customer(fleet).v1.payment_intents.confirm(intent, params={"payment_method": "pm_card_visa"})
    wait_booking(client, booking_id, "paid with the deposit held",
                 lambda b: b["status"] == "paid" and b["deposit"]["status"] == "authorized")

    page.goto(f"{fleet.base_url}/console/bookings/{booking_id}")
    expect(page.locator("[data-booking]").first).to_have_attribute("data-status", "paid")
    shot(page, "paid")
    page.get_by_role("button", name="Check in").click()
    page.get_by_role("dialog").get_by_role("button", name="Check in").click()
    expect(page.locator("section[data-booking]")).to_have_attribute("data-status", "checked_in")
    shot(page, "checked-in")
    page.get_by_role("button", name="Check out").click()
    page.get_by_role("dialog").get_by_role("button", name="Check out").click()
    expect(page.locator("section[data-booking]")).to_have_attribute("data-status", "checked_out")
    expect(page.locator(".deposit-status")).to_have_text("authorized")
    shot(page, "checked-out")

    page.get_by_role("button", name="Claim deposit").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Amount (EUR)").fill("50.00")
    dialog.get_by_label("Reason (the guest is told)").fill("a broken lamp")
    shot(page, "claim-dialog")
    dialog.get_by_role("button", name="Claim deposit").click()
    expect(page.locator("section[data-booking]")).to_have_attribute("data-status", "completed")
    expect(page.locator(".deposit-status")).to_have_text("claimed")
    shot(page, "deposit-claimed")
    done = booking(client, booking_id)
    assert (done["deposit"]["status"], done["deposit"]["claimed_amount"]) == ("claimed", 5_000)

    page.get_by_role("link", name="Money").click()
    earned = (2 * NIGHTLY - 2 * NIGHTLY // 10) + (5_000 - 5_000 // 10)  # the stay and the claim, less 10 %
    eur = page.locator("#balance tr[data-currency=EUR]")
    expect(eur).to_be_visible()
    cells = [eur.locator(f"[data-field={f}]").inner_text() for f in ("pending", "available", "in_transit", "paid_out")]
    assert sum(int(re.sub(r"\D", "", text)) for text in cells) == earned, cells
    expect(page.get_by_role("heading", name="Statement")).to_be_visible()
    expect(page.locator("#statement tbody tr").first).to_be_visible()
    shot(page, "money-after")

    # the statement in pages of two (each request's limit rewritten on its way): "Show more" appends the next page
    # until the period ends, and the closing balance follows the last page loaded
    period = {name: page.locator(f"#statement input[name={name}]").input_value() for name in ("from", "to")}
    whole = client.get(f"/v1/providers/{shop.provider_id}/statement", params={**period, "limit": 1000},
                       headers={"Authorization": f"Bearer {shop.owner_token}"}).json()
    assert len(whole["entries"]) > 2 and whole["next_cursor"] is None
    page.route(re.compile(r".*/statement\?.*"),
               lambda route: route.continue_(url=re.sub(r"limit=\d+", "limit=2", route.request.url)))
    page.get_by_role("button", name="Show statement").click()
    rows = page.locator("#statement tbody tr")
    expect(rows).to_have_count(2)
    while page.get_by_role("button", name="Show more").count():
        shown = rows.count()
        page.get_by_role("button", name="Show more").click()
        expect(rows).not_to_have_count(shown)
    expect(rows).to_have_count(len(whole["entries"]))
    closing = page.locator("#statement [data-field=closing]").inner_text()
    assert int(re.sub(r"\D", "", closing)) == abs(sum(whole["closing_balances"].values())), closing
    shot(page, "statement-paged")


def test_cancel_shows_the_refund_the_policy_gives_before_confirming_on_a_phone_with_the_keyboard(
        phone_page: Page, fleet: Fleet, shop: Shop, client: httpx.Client, shot: Shot) -> None:
    page = phone_page
    made = book_slot(client, shop, days=10)
    stripe_customer(fleet).v1.payment_intents.confirm(made["payment_intent_id"],
                                                      params={"payment_method": "pm_card_visa"})
    wait_booking(client, made["booking_id"], "paid", lambda b: b["status"] == "paid")
    sign_in_tab(page, fleet, shop)
    page.goto(f"{fleet.base_url}/console/bookings/{made['booking_id']}")
    expect(page.locator("section[data-booking]")).to_have_attribute("data-status", "paid")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # nothing overflows sideways
    shot(page, "paid-phone")

    page.get_by_role("button", name="Cancel booking").focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog.locator(".refund")).to_have_text(re.compile(r"Refund to the customer: €25\.00 \(100 %"))
    assert booking(client, made["booking_id"])["status"] == "paid"  # shown before anything is done
    shot(page, "cancel-quote")
    dialog.get_by_label("Reason (optional, the customer is told)").fill("the master is ill")
    confirm = dialog.get_by_role("button", name="Cancel booking")
    expect(confirm).to_be_enabled()
    confirm.focus()
    page.keyboard.press("Enter")
    expect(page.locator("section[data-booking]")).to_have_attribute("data-status", "cancelled")
    shot(page, "cancelled")
    cancelled = wait_booking(client, made["booking_id"], "the refund issued",
                             lambda b: b["refunds"] and b["refunds"][0]["status"] == "succeeded")
    assert cancelled["refunds"][0]["amount"] == SLOT_PRICE


def test_filters_by_status_date_and_resource_narrow_the_list(
        page: Page, fleet: Fleet, shop: Shop, client: httpx.Client, shot: Shot) -> None:
    soon = book_slot(client, shop, days=3, name="Soon Slot")["booking_id"]
    later = book_slot(client, shop, days=12, name="Later Slot")["booking_id"]
    stay = request_stay(client, shop, lisbon_today().date() + timedelta(days=5))
    cancelled = client.post(f"/v1/bookings/{later}/cancel", json={}, headers={"Idempotency-Key": new_key()})
    assert cancelled.status_code == 202, cancelled.text
    wait_booking(client, later, "cancelled", lambda b: b["status"] == "cancelled")
    sign_in_tab(page, fleet, shop)

    rows = page.locator("ul.bookings > li")
    page.goto(f"{fleet.base_url}/console/bookings")
    expect(rows).to_have_count(3)
    shot(page, "upcoming")
    page.get_by_label("Status").select_option("requested")
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-booking", stay)
    shot(page, "requested")

    page.get_by_label("Status").select_option("")
    page.get_by_label("Resource").select_option(label="Master Rui")
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(2)
    expect(page.locator("ul.bookings > li[data-status=cancelled]")).to_have_attribute("data-booking", later)

    day = (datetime.now().date() + timedelta(days=3)).isoformat()
    page.get_by_label("From").fill(day)
    page.get_by_label("To").fill(day)
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-booking", soon)
    assert "resource=" in page.url and f"from={day}" in page.url  # a filtered view is a link
    shot(page, "filtered")


def test_a_staff_session_sees_no_money_and_nothing_broken(
        page: Page, fleet: Fleet, shop: Shop, client: httpx.Client, shot: Shot) -> None:
    request_stay(client, shop, lisbon_today().date() + timedelta(days=40))
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    sign_in_tab(page, fleet, shop, role="staff")
    page.goto(f"{fleet.base_url}/console/bookings")
    expect(page.get_by_text("staff@salon.example · staff")).to_be_visible()
    expect(page.locator("ul.bookings > li")).to_have_count(1)
    nav = page.get_by_role("navigation", name="Console")
    expect(nav.get_by_role("link", name="Bookings")).to_be_visible()
    expect(nav.get_by_role("link", name="Money")).to_have_count(0)
    expect(nav.get_by_role("link", name="Settings")).to_have_count(0)
    shot(page, "staff-bookings")
    page.goto(f"{fleet.base_url}/console/money")
    expect(page.get_by_text("Your role does not include this section")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)
    shot(page, "staff-money")
    assert failed == []  # the console never even asked for what staff may not see
    assert client.get(f"/v1/providers/{shop.provider_id}/balance",
                      headers={"Authorization": f"Bearer {shop.staff_token}"}).status_code == 403


def test_an_owner_creates_a_public_token_seen_once_and_reads_the_audit_log(
        page: Page, fleet: Fleet, shop: Shop, shot: Shot) -> None:
    sign_in_tab(page, fleet, shop)
    page.goto(f"{fleet.base_url}/console/settings")
    tokens = page.locator("#tokens")
    tokens.get_by_label("Name").fill("salon site")
    tokens.get_by_role("button", name="Create token").click()
    expect(tokens.locator("code.once")).to_have_text(re.compile(r"^pk_"))
    expect(tokens.get_by_role("cell", name="salon site")).to_be_visible()
    expect(page.locator("#members").get_by_role("cell", name=shop.owner_email.lower())).to_be_visible()
    shot(page, "settings")
    page.reload()
    expect(page.locator("#tokens").get_by_role("cell", name="salon site")).to_be_visible()
    expect(page.locator("#tokens code.once")).to_have_count(0)  # shown once
    expect(page.locator("#audit tbody tr").first).to_contain_text("public_token")


def test_a_console_path_that_is_no_page_is_a_404_problem(client: httpx.Client) -> None:
    for path in ("/console/nowhere", "/console/bookings/not-a-uuid/approve"):
        answer = client.get(path)
        assert answer.status_code == 404 and answer.headers["content-type"] == "application/problem+json", path
    shell = client.get("/console/bookings/00000000-0000-0000-0000-000000000000/approve")
    assert shell.status_code == 200 and "script-src 'self'" in shell.headers["content-security-policy"]
    assert "unsafe-inline" not in shell.headers["content-security-policy"]


def test_an_owner_sets_up_payouts_with_stripe_and_comes_back_to_see_them_enabled(
        page: Page, fleet: Fleet, shop: Shop, client: httpx.Client, shot: Shot) -> None:
    """Settings → Stripe's onboarding page (the fake's Account Link) → leave requirements open → back: the
    console says what Stripe still needs → continue → complete → back: payouts enabled (account.updated).
    Stripe sends the owner back to PUBLIC_URL (unset here: http://localhost:<port>), so the console is used
    there: its session lives in that origin's sessionStorage."""
    base = f"http://localhost:{fleet.gateway_port}"
    sign_in_tab(page, fleet, shop, base=base)
    page.goto(f"{base}/console/settings")
    section = page.locator("#stripe")
    expect(section.get_by_role("button", name="Set up payouts with Stripe")).to_be_visible()
    shot(page, "not-set-up")
    section.get_by_role("button", name="Set up payouts with Stripe").click()
    expect(page.get_by_role("heading", name="Set up payouts")).to_be_visible()  # Stripe's (the fake's) page
    shot(page, "stripe-onboarding")
    page.get_by_role("button", name="Leave requirements open").click()
    expect(page).to_have_url(re.compile(r"/console/settings"))
    due = page.locator("#stripe-due")
    expect(due).not_to_have_text("nothing")
    expect(page.locator("#stripe-payouts")).to_have_text("not enabled yet")
    shot(page, "requirements-open")
    page.locator("#stripe").get_by_role("button", name="Continue onboarding with Stripe").click()
    page.get_by_role("button", name="Complete onboarding").click()
    expect(page).to_have_url(re.compile(r"/console/settings"))
    # account.updated reaches us through the webhook and the payments pool; once applied, a reload shows it
    wait_for(lambda: (client.get(f"/v1/providers/{shop.provider_id}").json()["stripe_account"] or {}).get(
        "payouts_enabled"), 30, "account.updated applied")
    page.reload()
    expect(page.locator("#stripe-payouts")).to_have_text("enabled")
    expect(page.locator("#stripe-due")).to_have_text("nothing")
    shot(page, "payouts-enabled")
