"""3-D Secure in the booking widget, in headless Chromium against the real fleet: the customer pays with the
test card that asks for authentication, the bank's check (the fake's page) opens in a popup window, and the
widget shows the outcome: authenticated → paid; failed → told so, still held, another card pays."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.test_widget import PAID_TIMEOUT, choose_slot, fill_details
from tests.browser.widget_support import widget_url
from tests.support import api_client, make_catalog
from totem.fleet import Fleet

Shot = Callable[[Page, str], Path]
CARD_3DS = "Visa ending 3184 (test card that asks for 3-D Secure)"


def book_and_choose_3ds(page: Page, fleet: Fleet, database_url: str, days_ahead: int, label: str) -> str:
    """Book a slot in the widget and choose the 3-D Secure card; the provider's id."""
    catalog = make_catalog(database_url)
    page.goto(widget_url(fleet, database_url, catalog))
    choose_slot(page, days_ahead, label)
    fill_details(page)
    page.get_by_role("button", name="Book").click()
    expect(page.get_by_role("button", name="Pay €25.00")).to_be_enabled()
    page.get_by_label(CARD_3DS).check()
    return catalog.provider_id


def bank_check(page: Page) -> Page:
    """Press Pay: the bank's check opens in a popup; it is returned, loaded."""
    with page.expect_popup() as opened:
        page.get_by_role("button", name="Pay €25.00").click()
    popup = opened.value
    popup.wait_for_load_state()
    expect(popup.get_by_role("heading", name="3D Secure test page")).to_be_visible()
    expect(page.locator("#status")).to_contain_text("Your bank wants to check it is you")
    return popup


def test_a_customer_authenticates_with_3d_secure_and_sees_the_booking_paid(
        page: Page, fleet: Fleet, database_url: str, shot: Shot) -> None:
    provider_id = book_and_choose_3ds(page, fleet, database_url, 2, "12:00")
    shot(page, "1-3ds-card-chosen")
    popup = bank_check(page)
    shot(popup, "2-bank-check")
    shot(page, "3-waiting-for-the-bank")
    popup.get_by_role("button", name="Complete authentication").click()

    expect(page.locator("#booking-status")).to_have_text("paid", timeout=PAID_TIMEOUT)
    expect(page.get_by_role("heading", name="You're booked")).to_be_visible()
    shot(page, "4-paid")
    if not popup.is_closed():  # the widget closes the bank's window once it knows the outcome
        popup.wait_for_event("close")
    with api_client(fleet.base_url) as client:
        bookings = client.get("/v1/bookings", params={"provider": provider_id}).json()["items"]
    assert [b["status"] for b in bookings] == ["paid"]


def test_a_failed_authentication_is_said_and_another_card_pays_before_the_hold_ends(
        page: Page, fleet: Fleet, database_url: str, shot: Shot) -> None:
    provider_id = book_and_choose_3ds(page, fleet, database_url, 3, "12:30")
    popup = bank_check(page)
    popup.get_by_role("button", name="Fail authentication").click()

    expect(page.get_by_role("alert")).to_have_text(
        "Your bank could not confirm it was you. Try another card before your hold ends.")
    expect(page.locator("#hold")).to_contain_text("Your time is held for")
    if not popup.is_closed():
        popup.wait_for_event("close")
    shot(page, "1-authentication-failed")
    with api_client(fleet.base_url) as client:
        assert [b["status"] for b in client.get("/v1/bookings", params={"provider": provider_id})
                .json()["items"]] == ["pending_payment"]

    page.get_by_label("Visa ending 4242 (test card that pays)").check()
    page.get_by_role("button", name="Pay €25.00").click()
    expect(page.locator("#booking-status")).to_have_text("paid", timeout=PAID_TIMEOUT)
    shot(page, "2-paid-with-another-card")
