"""What the widget's browser tests share: the page's URL for a catalog, a booking made and paid through the
API (as another customer would), a second local web server playing a customer's own site for the embed
snippet, and reaching an element with the Tab key alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
from playwright.sync_api import Locator, Page

from tests.support import Catalog, api_client, new_key, wait_for, wait_job
from totem.fleet import Fleet

ZONE = ZoneInfo("Europe/Berlin")  # make_catalog's provider


def slug_of(database_url: str, provider_id: str) -> str:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT slug FROM providers WHERE id = %s", (provider_id,)).fetchone()
    assert row is not None
    return str(row[0])


def widget_url(fleet: Fleet, database_url: str, catalog: Catalog) -> str:
    return f"{fleet.base_url}/widget/{slug_of(database_url, catalog.provider_id)}?token={catalog.public_token}"


def local_day(days_ahead: int) -> date:
    return datetime.now(ZONE).date() + timedelta(days=days_ahead)


def local_start(days_ahead: int, hour: int) -> datetime:
    """``hour``:00 in the provider's time zone, ``days_ahead`` local days from today."""
    return datetime.combine(local_day(days_ahead), time(hour), tzinfo=ZONE)


def book_through_api(fleet: Fleet, catalog: Catalog, start_at: datetime) -> dict[str, Any]:
    """A booking held through the public API, as another customer's widget would; the job's result."""
    with api_client(fleet.base_url) as client:
        accepted = client.post("/v1/bookings", json=catalog.slot_body(start_at),
                               headers={"Idempotency-Key": new_key(), **catalog.widget})
        assert accepted.status_code == 202, accepted.text
        job = wait_job(client, accepted.json()["job_id"], headers=catalog.widget)
    assert job["status"] == "succeeded", job
    return job["result"]  # type: ignore[no-any-return]


def pay_through_fake(fleet: Fleet, result: dict[str, Any], catalog: Catalog) -> None:
    """Confirm the booking's PaymentIntent with the test Visa, as a browser does, and wait until it is paid."""
    confirmed = httpx.post(f"{fleet.stripe_url}/v1/payment_intents/{result['payment_intent_id']}/confirm",
                           data={"key": "pk_test_any", "client_secret": result["client_secret"],
                                 "payment_method": "pm_card_visa"}, timeout=10)
    assert confirmed.status_code == 200, confirmed.text
    with api_client(fleet.base_url) as client:
        wait_for(lambda: client.get(f"/v1/bookings/{result['booking_id']}", headers=catalog.widget)
                 .json()["status"] == "paid", 30, "the booking paid")


class HostSite:
    """A customer's own web site on another origin: ``page(path, html)`` publishes a page."""

    def __init__(self) -> None:
        pages: dict[str, bytes] = {}
        self.pages = pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path.split("?")[0])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body or b"not found")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"

    def page(self, path: str, html: str) -> str:
        self.pages[path] = html.encode()
        return self.origin + path


@contextmanager
def host_site() -> Iterator[HostSite]:
    site = HostSite()
    thread = threading.Thread(target=site.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        site.server.shutdown()
        site.server.server_close()


def tab_to(page: Page, target: Locator, limit: int = 400) -> None:
    """Press Tab until ``target`` has the focus: it is reachable with the keyboard alone, in order."""
    for _ in range(limit):
        if target.evaluate("element => element === document.activeElement"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{target} is not reachable with the Tab key")
