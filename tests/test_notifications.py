"""Notifications end to end, through the real relay, notifications pool, SMTP sink and a real local HTTP
receiver that verifies Standard Webhooks signatures with the reference library (``standardwebhooks``).

The test fleet retries on a short schedule (NOTIFY_RETRY_SCHEDULE=0,1,1,1: four attempts, then dead)."""

from __future__ import annotations

import email
import email.policy
import json
import re
import threading
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.support import NO_CREDENTIAL, Catalog, book_slot, make_catalog, new_key, wait_for, wait_job
from totem.fleet import Fleet

SYSTEM = {"X-System-Token": "test-system-token"}


class Receiver:
    """A provider's webhook endpoint: answers each request with the next status of ``script`` (then 200),
    and keeps what it received."""

    def __init__(self, script: list[int] | None = None) -> None:
        self.script = list(script or [])
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.lock:
                    status = receiver.script.pop(0) if receiver.script else 200
                    receiver.received.append({"headers": dict(self.headers), "body": body, "answered": status})
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"receiver says no")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self, answered: int = 200) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.received if r["answered"] == answered]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def _provider_with_contact(client: httpx.Client, database_url: str) -> tuple[Catalog, str]:
    catalog = make_catalog(database_url)
    address = f"owner-{new_key()[:8]}@salon.example"
    response = client.patch(f"/v1/providers/{catalog.provider_id}", json={"contact_email": address}, headers=SYSTEM)
    assert response.status_code == 200 and response.json()["contact_email"] == address
    return catalog, address


def _command(client: httpx.Client, path: str) -> None:
    accepted = client.post(path, json={}, headers={"Idempotency-Key": new_key(), **SYSTEM})
    assert wait_job(client, accepted.json()["job_id"])["status"] == "succeeded"


def _mails(mail_dir: Path, booking_id: str) -> list[EmailMessage]:
    """Every message in the sink that is about this booking (its id is in every link)."""
    found = []
    for path in sorted(mail_dir.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        text = message.get_body(("plain",))
        if text is not None and booking_id in text.get_content():
            found.append(message)
    return found


def _deliveries(client: httpx.Client, provider_id: str, **query: str) -> list[dict[str, Any]]:
    response = client.get(f"/v1/providers/{provider_id}/deliveries", params={"limit": "200", **query}, headers=SYSTEM)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def _webhooks(client: httpx.Client, provider_id: str, status: str) -> list[dict[str, Any]]:
    return [d for d in _deliveries(client, provider_id, status=status) if d["channel"] == "webhook"]


def _endpoint(client: httpx.Client, provider_id: str, url: str, events: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url, **({"events": events} if events else {})}
    response = client.post(f"/v1/providers/{provider_id}/webhook-endpoints", json=body, headers=SYSTEM)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_a_bookings_life_mails_customer_and_provider_once_per_event_and_fills_the_feed(
        client: httpx.Client, database_url: str, fleet: Fleet) -> None:
    assert fleet.mail_dir is not None
    catalog, owner = _provider_with_contact(client, database_url)
    booking_id = book_slot(client, catalog, days=41)
    _command(client, f"/v1/system/bookings/{booking_id}/mark-paid")
    _command(client, f"/v1/bookings/{booking_id}/complete")

    expected = {("grace@example.com", "booking_created"), ("grace@example.com", "booking_paid"),
                ("grace@example.com", "booking_completed"), (owner, "booking_paid")}
    wait_for(lambda: len(_mails(fleet.mail_dir, booking_id)) >= len(expected), 30, "four emails in the sink")
    deliveries = wait_for(lambda: (d := _deliveries(client, catalog.provider_id))
                          and all(x["status"] == "delivered" for x in d) and len(d) == len(expected) and d,
                          30, "every delivery delivered")
    assert {(d["recipient"], d["topic"]) for d in deliveries} == expected
    assert all(d["attempts"] == 1 and d["attempt_log"][0]["succeeded"] for d in deliveries)
    mails = _mails(fleet.mail_dir, booking_id)
    assert len(mails) == len(expected)  # once each: nothing sent twice
    ids = {d["id"] for d in deliveries}
    assert {m["Message-ID"].strip("<>").split("@")[0] for m in mails} == ids  # Message-ID = delivery id
    confirmation = next(m for m in mails if m["To"] == "grace@example.com" and "confirmed" in m["Subject"])
    # the customer's link opens the booking in the widget, signed in by its customer token (in the fragment)
    link = re.search(r"(https?://\S+/widget/([a-z0-9-]+)\?booking=" + booking_id + r"#ct=(ct_[A-Za-z0-9_-]+))",
                     confirmation.get_body(("plain",)).get_content())
    assert link is not None
    mine = client.get(f"/v1/bookings/{booking_id}", headers={"Authorization": f"Bearer {link[3]}"})
    assert mine.status_code == 200 and mine.json()["id"] == booking_id
    assert client.get(f"/widget/{link[2]}", params={"booking": booking_id}).status_code == 200
    assert confirmation.get_body(("html",)) is not None
    owners = next(m for m in mails if m["To"] == owner)  # the provider's people: the console's page of it
    assert f"/console/bookings/{booking_id}" in owners.get_body(("plain",)).get_content()

    feed = client.get(f"/v1/providers/{catalog.provider_id}/notifications", headers=SYSTEM).json()["items"]
    assert [n["topic"] for n in feed] == ["booking_completed", "booking_paid", "booking_created"]
    read = client.post(f"/v1/providers/{catalog.provider_id}/notifications/{feed[0]['id']}/read", headers=SYSTEM)
    assert read.status_code == 200 and read.json()["read_at"] is not None
    unread = client.get(f"/v1/providers/{catalog.provider_id}/notifications", params={"unread": "true"},
                        headers=SYSTEM).json()["items"]
    assert [n["topic"] for n in unread] == ["booking_paid", "booking_created"]


def test_webhooks_verify_with_the_reference_library_and_carry_the_bookings_current_status(
        client: httpx.Client, database_url: str, receiver: Receiver) -> None:
    catalog = make_catalog(database_url)
    endpoint = _endpoint(client, catalog.provider_id, receiver.url)
    booking_id = book_slot(client, catalog, days=42)
    _command(client, f"/v1/system/bookings/{booking_id}/mark-paid")
    wait_for(lambda: len(receiver.events()) == 2, 20, "two webhooks")
    verifier = Webhook(endpoint["secret"])
    for request in receiver.received:
        verifier.verify(request["body"], request["headers"])  # raises on a bad signature
    created, paid = sorted(receiver.events(), key=lambda e: e["data"]["sequence"])
    assert (created["type"], paid["type"]) == ("booking_created", "booking_paid")
    assert created["data"]["booking_id"] == booking_id and paid["data"]["status"] == "paid"
    assert created["data"]["sequence"] < paid["data"]["sequence"]
    assert created["data"]["link"] == f"/booking/requested/{booking_id}"
    assert paid["data"]["link"] == f"/booking-confirmation/{booking_id}"
    assert {r["headers"]["webhook-id"] for r in receiver.received} == {
        d["id"] for d in _deliveries(client, catalog.provider_id) if d["channel"] == "webhook"}


def test_a_receiver_failing_three_times_gets_the_message_once_on_the_fourth_attempt(
        client: httpx.Client, database_url: str) -> None:
    receiver = Receiver(script=[500, 500, 500])
    try:
        catalog = make_catalog(database_url)
        _endpoint(client, catalog.provider_id, receiver.url, events=["booking_created"])
        book_slot(client, catalog, days=43)
        [delivery] = wait_for(lambda: _webhooks(client, catalog.provider_id, "delivered"), 30,
                              "delivered after retries")
        assert delivery["attempts"] == 4
        assert [(a["succeeded"], a["status_code"]) for a in delivery["attempt_log"]] == [
            (False, 500), (False, 500), (False, 500), (True, 200)]
        assert delivery["attempt_log"][0]["response_excerpt"] == "receiver says no"
        assert len(receiver.events(200)) == 1
    finally:
        receiver.close()


def test_a_receiver_that_always_fails_ends_dead_and_a_retry_delivers_it(
        client: httpx.Client, database_url: str) -> None:
    receiver = Receiver(script=[503] * 4)
    try:
        catalog = make_catalog(database_url)
        _endpoint(client, catalog.provider_id, receiver.url, events=["booking_created"])
        book_slot(client, catalog, days=44)
        [dead] = wait_for(lambda: _webhooks(client, catalog.provider_id, "dead"), 30,
                          "the delivery dead after its last attempt")
        assert dead["attempts"] == 4 and dead["next_attempt_at"] is None
        retried = client.post(f"/v1/deliveries/{dead['id']}/retry", headers=SYSTEM)
        assert retried.status_code == 202
        [delivered] = wait_for(lambda: _webhooks(client, catalog.provider_id, "delivered"), 30,
                               "delivered after the retry")
        assert delivered["id"] == dead["id"] and delivered["attempts"] == 5
        assert client.post(f"/v1/deliveries/{dead['id']}/retry", headers=SYSTEM).status_code == 404  # delivered
    finally:
        receiver.close()


def test_a_410_disables_the_endpoint_and_tells_the_provider(client: httpx.Client, database_url: str,
                                                           fleet: Fleet) -> None:
    assert fleet.mail_dir is not None
    receiver = Receiver(script=[410])
    try:
        catalog, owner = _provider_with_contact(client, database_url)
        endpoint = _endpoint(client, catalog.provider_id, receiver.url, events=["booking_created"])
        book_slot(client, catalog, days=45)
        wait_for(lambda: _webhooks(client, catalog.provider_id, "dead"), 30, "the webhook delivery dead at once")
        listed = client.get(f"/v1/providers/{catalog.provider_id}/webhook-endpoints", headers=SYSTEM).json()
        assert [(e["id"], e["status"]) for e in listed["items"]] == [(endpoint["id"], "disabled")]
        feed = wait_for(lambda: (f := client.get(f"/v1/providers/{catalog.provider_id}/notifications",
                                                 headers=SYSTEM).json()["items"])
                        and f[0]["topic"] == "webhook_endpoint_disabled" and f, 20, "the provider told")
        assert feed[0]["payload"]["url"] == receiver.url
        wait_for(lambda: any(d["recipient"] == owner and d["topic"] == "webhook_endpoint_disabled"
                             and d["status"] == "delivered" for d in _deliveries(client, catalog.provider_id)),
                 20, "the owner emailed")
        assert len(receiver.received) == 1  # nothing more is sent to a disabled endpoint

        recovered = client.post(f"/v1/providers/{catalog.provider_id}/webhook-endpoints/{endpoint['id']}/recover",
                                json={"since": endpoint["created_at"]}, headers=SYSTEM)  # the owner fixed it
        assert recovered.status_code == 202 and recovered.json() == {"requeued": 1}
        wait_for(lambda: _webhooks(client, catalog.provider_id, "delivered"), 30, "delivered after recovery")
        listed = client.get(f"/v1/providers/{catalog.provider_id}/webhook-endpoints", headers=SYSTEM).json()
        assert [e["status"] for e in listed["items"]] == ["active"]
    finally:
        receiver.close()


def test_mail_waits_while_the_smtp_server_refuses_and_goes_out_when_it_accepts(
        client: httpx.Client, database_url: str, fleet: Fleet) -> None:
    assert fleet.mail_dir is not None
    refuse = fleet.mail_dir / ".refuse"
    refuse.touch()
    try:
        catalog = make_catalog(database_url)
        booking_id = book_slot(client, catalog, days=46)  # the booking itself is not held up
        failed = wait_for(lambda: (d := _deliveries(client, catalog.provider_id))
                          and d[0]["attempts"] >= 1 and d[0]["status"] in ("failed", "dead") and d[0], 20,
                          "a refused attempt")
        assert failed["attempt_log"][0]["status_code"] == 451
    finally:
        refuse.unlink()
    if _deliveries(client, catalog.provider_id)[0]["status"] == "dead":  # a slow box ran out the short schedule
        assert client.post(f"/v1/deliveries/{failed['id']}/retry", headers=SYSTEM).status_code == 202
    [delivered] = wait_for(lambda: (d := _deliveries(client, catalog.provider_id, status="delivered")) and d,
                           30, "the mail sent once the server accepts")
    assert delivered["attempts"] >= 2
    assert len(_mails(fleet.mail_dir, booking_id)) == 1


NOTIFICATION_ROUTES = [
    ("GET", "/v1/providers/{provider_id}/notifications"),
    ("POST", "/v1/providers/{provider_id}/notifications/{notification_id}/read"),
    ("GET", "/v1/providers/{provider_id}/deliveries"),
    ("POST", "/v1/deliveries/{delivery_id}/retry"),
    ("GET", "/v1/providers/{provider_id}/webhook-endpoints"),
    ("POST", "/v1/providers/{provider_id}/webhook-endpoints"),
    ("DELETE", "/v1/providers/{provider_id}/webhook-endpoints/{endpoint_id}"),
    ("POST", "/v1/providers/{provider_id}/webhook-endpoints/{endpoint_id}/rotate-secret"),
    ("POST", "/v1/providers/{provider_id}/webhook-endpoints/{endpoint_id}/recover"),
    ("GET", "/v1/providers/{provider_id}/notification-templates"),
    ("PUT", "/v1/providers/{provider_id}/notification-templates/{event}/{audience}"),
    ("DELETE", "/v1/providers/{provider_id}/notification-templates/{event}/{audience}"),
]


def test_every_notification_route_is_documented_and_refuses_a_caller_without_the_system_token(
        client: httpx.Client) -> None:
    paths = client.get("/schema/openapi.json").json()["paths"]
    ids = {"provider_id": new_key(), "notification_id": new_key(), "delivery_id": new_key(),
           "endpoint_id": new_key(), "event": "booking_paid", "audience": "customer"}
    for method, template in NOTIFICATION_ROUTES:
        assert method.lower() in paths[template], f"{method} {template} missing from the OpenAPI document"
        path = template.format(**{k: str(uuid.UUID(v)) if k.endswith("_id") else v for k, v in ids.items()})
        response = client.request(method, path, json={}, headers=NO_CREDENTIAL)
        assert response.status_code == 401 and response.json()["code"] == "UNAUTHORIZED", (method, path)
