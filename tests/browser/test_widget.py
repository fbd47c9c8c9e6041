"""The booking widget in headless Chromium against the real fleet: a customer books a slot, pays with the
test card and sees it paid; a declined card, then a good one; a time taken between seeing and booking it;
cancelling from the customer's link with the refund shown first; the embed snippet on another site (allowed,
and refused); a phone-width screen driven by the keyboard alone. Screenshots of each state are written."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from playwright.sync_api import BrowserContext, Page, Route, expect

from tests.browser.conftest import PHONE
from tests.browser.widget_support import (
    book_through_api,
    host_site,
    local_start,
    pay_through_fake,
    slug_of,
    tab_to,
    widget_url,
)
from tests.support import api_client, issue_public_token, make_catalog
from totem.fleet import Fleet

Shot = Callable[[Page, str], Path]
PAID_TIMEOUT = 30_000


def day_button(page: Page, days_ahead: int) -> Any:
    return page.locator(".days button").nth(days_ahead)


def slot_button(page: Page, label: str) -> Any:
    return page.locator(".slots").get_by_role("button", name=label, exact=True)


def choose_slot(page: Page, days_ahead: int, label: str) -> None:
    day_button(page, days_ahead).click()
    expect(page.locator("#slots-label")).to_contain_text("Free times on")
    slot_button(page, label).click()
    expect(page.locator("#chosen")).to_contain_text(label)


def fill_details(page: Page) -> None:
    page.get_by_label("Name").fill("Ada Lovelace")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Phone (optional)").fill("+49 30 1234567")


def test_a_customer_books_a_slot_pays_with_the_test_card_and_sees_it_paid(
        page: Page, fleet: Fleet, database_url: str, shot: Shot) -> None:
    catalog = make_catalog(database_url)
    keys: list[str] = []

    def rate_limited_once(route: Route) -> None:  # the first try is refused 429; the widget waits, same key
        keys.append(route.request.headers["idempotency-key"])
        if len(keys) == 1:
            route.fulfill(status=429, headers={"Retry-After": "1", "Content-Type": "application/problem+json"},
                          body='{"code": "RATE_LIMITED", "detail": "too many requests", "status": 429}')
        else:
            route.continue_()

    page.route("**/v1/bookings", rate_limited_once)
    page.goto(widget_url(fleet, database_url, catalog))
    expect(page.get_by_role("heading", level=1)).to_have_text("Book with Test Salon")
    expect(page.get_by_label("Service or stay")).to_contain_text("Cut · 30 min · €25.00")
    expect(page.locator(".slots button").first).to_be_visible()
    shot(page, "1-choose")
    choose_slot(page, 2, "10:00")
    fill_details(page)
    shot(page, "2-details")
    page.get_by_role("button", name="Book").click()

    expect(page.locator("#hold")).to_contain_text("Your time is held for")
    expect(page.get_by_role("button", name="Pay €25.00")).to_be_enabled()
    shot(page, "3-pay")
    page.get_by_role("button", name="Pay €25.00").click()
    expect(page.locator("#booking-status")).to_have_text("paid", timeout=PAID_TIMEOUT)
    expect(page.get_by_role("heading", name="You're booked")).to_be_visible()
    shot(page, "4-paid")

    assert len(keys) == 2 and keys[0] == keys[1], keys  # the retry after 429 is the same attempt
    with api_client(fleet.base_url) as client:
        bookings = client.get("/v1/bookings", params={"provider": catalog.provider_id}).json()["items"]
    assert [(b["status"], b["customer"]["email"], b["customer"].get("phone")) for b in bookings] == [
        ("paid", "ada@example.com", "+49 30 1234567")]
    assert datetime.fromisoformat(bookings[0]["start_at"]) == local_start(2, 10)
    assert page.locator("#manage-link").get_attribute("href").startswith(  # type: ignore[union-attr]
        f"{fleet.base_url}/widget/{slug_of(database_url, catalog.provider_id)}?booking={bookings[0]['id']}#ct=ct_")


def test_a_declined_card_then_a_good_one_pays_before_the_hold_ends(
        page: Page, fleet: Fleet, database_url: str, shot: Shot) -> None:
    catalog = make_catalog(database_url)
    page.goto(widget_url(fleet, database_url, catalog))
    choose_slot(page, 3, "11:30")
    fill_details(page)
    page.get_by_role("button", name="Book").click()
    pay = page.get_by_role("button", name="Pay €25.00")
    expect(pay).to_be_enabled()

    page.get_by_label("Visa ending 0002 (test card that is declined)").check()
    pay.click()
    expect(page.get_by_role("alert")).to_have_text(
        "Your card was declined. Try another card before your hold ends.")
    expect(page.locator("#hold")).to_contain_text("Your time is held for")
    shot(page, "1-declined")

    page.get_by_label("Visa ending 4242 (test card that pays)").check()
    pay.click()
    expect(page.locator("#booking-status")).to_have_text("paid", timeout=PAID_TIMEOUT)
    shot(page, "2-paid-with-another-card")


def test_a_time_taken_between_seeing_and_booking_it_is_said_and_another_is_picked(
        page: Page, fleet: Fleet, database_url: str, shot: Shot) -> None:
    catalog = make_catalog(database_url)
    page.goto(widget_url(fleet, database_url, catalog))
    day_button(page, 2).click()
    expect(slot_button(page, "14:00")).to_be_visible()  # the page shows it free...
    book_through_api(fleet, catalog, local_start(2, 14))  # ...and someone else books it now
    slot_button(page, "14:00").click()
    fill_details(page)
    page.get_by_role("button", name="Book").click()

    expect(page.get_by_role("alert")).to_have_text(
        "Sorry, that time was just taken by someone else. Please pick another time.")
    expect(slot_button(page, "14:00")).to_have_count(0)  # the list was read again
    expect(page.locator("#when-heading")).to_be_focused()
    shot(page, "1-slot-taken")

    slot_button(page, "14:30").click()
    page.get_by_role("button", name="Book").click()
    expect(page.get_by_role("button", name="Pay €25.00")).to_be_enabled()
    shot(page, "2-another-time-held")


def test_the_customer_link_cancels_and_shows_the_refund_before_confirming(
        page: Page, fleet: Fleet, database_url: str, shot: Shot) -> None:
    catalog = make_catalog(database_url)  # full refund a day ahead
    result = book_through_api(fleet, catalog, local_start(5, 9))
    pay_through_fake(fleet, result, catalog)
    link = (f"{fleet.base_url}/widget/{slug_of(database_url, catalog.provider_id)}"
            f"?booking={result['booking_id']}#ct={result['customer_token']}")

    page.goto(link)
    expect(page.locator("#booking-status")).to_have_text("paid")
    shot(page, "1-booking")
    page.get_by_role("button", name="Cancel booking…").click()
    expect(page.locator("#refund-quote")).to_have_text(
        "If you cancel now you get €25.00 back (100 % of €25.00, by Test Salon's cancellation policy).")
    expect(page.get_by_role("button", name="Yes, cancel booking")).to_be_focused()
    shot(page, "2-refund-quote")
    page.get_by_role("button", name="Yes, cancel booking").click()
    expect(page.locator("#booking-status")).to_have_text("cancelled", timeout=PAID_TIMEOUT)
    expect(page.locator("#refund")).to_have_text("Refund of €25.00: sent to your card.", timeout=PAID_TIMEOUT)
    shot(page, "3-cancelled")

    with api_client(fleet.base_url) as client:
        booking = client.get(f"/v1/bookings/{result['booking_id']}").json()
    assert booking["status"] == "cancelled"
    assert [(r["amount"], r["status"]) for r in booking["refunds"]] == [(2500, "succeeded")]
    assert booking["audit"][-1]["actor"] == "customer"


def test_the_embed_snippet_mounts_on_an_allowed_site_and_is_refused_on_another(
        page: Page, fleet: Fleet, database_url: str, shot: Shot) -> None:
    catalog = make_catalog(database_url)
    with host_site() as site, psycopg.connect(database_url) as conn:
        allowed = issue_public_token(conn, catalog.provider_id, origins=[site.origin])
        elsewhere = issue_public_token(conn, catalog.provider_id, origins=["https://salon.example"])
        conn.commit()
        snippet = '<h1>Salon Ada</h1><p>Book below.</p><script src="{}/widget.js" data-token="{}"></script>'
        page.goto(site.page("/book", snippet.format(fleet.base_url, allowed)))
        frame = page.frame_locator("iframe[title='Book with Test Salon']")
        expect(frame.get_by_role("heading", level=1)).to_have_text("Book with Test Salon")
        shot(page, "1-embedded")
        frame.locator(".days button").nth(4).click()
        frame.locator(".slots").get_by_role("button", name="09:15", exact=True).click()
        frame.get_by_label("Name").fill("Ada Lovelace")
        frame.get_by_label("Email").fill("ada@example.com")
        frame.get_by_role("button", name="Book").click()
        frame.get_by_role("button", name="Pay €25.00").click()
        expect(frame.locator("#booking-status")).to_have_text("paid", timeout=PAID_TIMEOUT)
        shot(page, "2-embedded-paid")

        page.goto(site.page("/elsewhere", snippet.format(fleet.base_url, elsewhere)))
        expect(page.get_by_role("alert")).to_have_text(
            "This booking widget is not enabled for this site, or the booking service cannot be reached.")
        expect(page.locator("iframe")).to_have_count(0)
        shot(page, "3-refused-on-another-site")


def test_the_widget_works_at_phone_width_with_the_keyboard_alone(
        context: BrowserContext, fleet: Fleet, database_url: str, shot: Shot) -> None:
    catalog = make_catalog(database_url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    page.goto(widget_url(fleet, database_url, catalog))
    expect(page.locator(".slots button").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
    shot(page, "1-phone")

    tab_to(page, day_button(page, 1))
    page.keyboard.press("Enter")
    expect(day_button(page, 1)).to_have_attribute("aria-pressed", "true")
    tab_to(page, slot_button(page, "16:45"))
    page.keyboard.press("Enter")
    expect(page.get_by_label("Name")).to_be_focused()  # choosing a time moves on to the details
    page.keyboard.type("Ada Lovelace")
    page.keyboard.press("Tab")
    page.keyboard.type("ada@example.com")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Book")).to_be_focused()
    shot(page, "2-phone-details")
    page.keyboard.press("Enter")

    expect(page.get_by_role("heading", name="4. Pay to confirm")).to_be_focused()
    shot(page, "3-phone-pay")
    tab_to(page, page.get_by_role("button", name="Pay €25.00"))
    page.keyboard.press("Enter")
    expect(page.locator("#booking-status")).to_have_text("paid", timeout=PAID_TIMEOUT)
    expect(page.get_by_role("heading", name="You're booked")).to_be_focused()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(page, "4-phone-paid")
    with api_client(fleet.base_url) as client:
        booking, = client.get("/v1/bookings", params={"provider": catalog.provider_id}).json()["items"]
    start_at = local_start(1, 16) + timedelta(minutes=45)
    assert (booking["status"], datetime.fromisoformat(booking["start_at"])) == ("paid", start_at)
