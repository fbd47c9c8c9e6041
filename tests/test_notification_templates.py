"""A provider's email templates through the API: the effective template per (event, audience), overrides
checked by rendering them before they are stored, scoped by provider, dropped back to the default, and used
by the next email the real notifications pool sends to the SMTP sink."""

from __future__ import annotations

import email
import email.policy
import uuid
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.support import NO_CREDENTIAL, Catalog, future, make_catalog, new_key, wait_for, wait_job
from totem.fleet import Fleet

SYSTEM = {"X-System-Token": "test-system-token"}
OVERRIDE = {
    "subject": "{{ provider.name }} holds {{ booking.service_name }} for {{ customer.name }}",
    "text_body": "Hi {{ customer.name }}, {{ booking.start_at }} ({{ booking.amount_display }}) is yours: {{ link }}\n",
    "html_body": "<p>Hi {{ customer.name }}, <a href=\"{{ link }}\">{{ booking.start_at }}</a></p>",
}


def _path(provider_id: str, event: str | None = None, audience: str | None = None) -> str:
    path = f"/v1/providers/{provider_id}/notification-templates"
    return path if event is None else f"{path}/{event}/{audience}"


def _effective(client: httpx.Client, provider_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    response = client.get(_path(provider_id), headers=SYSTEM)
    assert response.status_code == 200, response.text
    return {(t["event"], t["audience"]): t for t in response.json()["items"]}


def _put(client: httpx.Client, provider_id: str, event: str, audience: str, **body: str) -> httpx.Response:
    return client.put(_path(provider_id, event, audience), json={**OVERRIDE, **body}, headers=SYSTEM)


def _defaults(database_url: str) -> dict[tuple[str, str], str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT event, audience, subject FROM notification_templates "
                            "WHERE provider_id IS NULL AND audience <> 'user'").fetchall()
    return {(event, audience): subject for event, audience, subject in rows}


def test_a_provider_without_overrides_sees_every_platform_default(client: httpx.Client, database_url: str) -> None:
    catalog = make_catalog(database_url)
    effective = _effective(client, catalog.provider_id)
    assert {key: t["subject"] for key, t in effective.items()} == _defaults(database_url)
    assert {t["source"] for t in effective.values()} == {"default"}
    created = effective[("booking_created", "customer")]
    assert "{{ customer.name }}" in created["text_body"] and "{{ link }}" in created["html_body"]
    assert created["updated_at"]


def test_an_unknown_provider_is_404(client: httpx.Client) -> None:
    unknown = str(uuid.uuid4())
    for response in (client.get(_path(unknown), headers=SYSTEM),
                     _put(client, unknown, "booking_created", "customer"),
                     client.delete(_path(unknown, "booking_created", "customer"), headers=SYSTEM)):
        assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND", response.text


def test_an_override_is_listed_as_the_providers_own_and_a_second_put_replaces_it(
        client: httpx.Client, database_url: str) -> None:
    catalog = make_catalog(database_url)
    stored = _put(client, catalog.provider_id, "booking_paid", "customer")
    assert stored.status_code == 200, stored.text
    assert stored.json() == {**_effective(client, catalog.provider_id)[("booking_paid", "customer")],
                             **OVERRIDE, "event": "booking_paid", "audience": "customer", "source": "provider"}
    replaced = _put(client, catalog.provider_id, "booking_paid", "customer", subject="Confirmed, {{ customer.name }}")
    assert replaced.status_code == 200, replaced.text
    assert datetime.fromisoformat(replaced.json()["updated_at"]) >= datetime.fromisoformat(stored.json()["updated_at"])
    effective = _effective(client, catalog.provider_id)
    assert effective[("booking_paid", "customer")]["subject"] == "Confirmed, {{ customer.name }}"
    assert effective[("booking_paid", "customer")]["source"] == "provider"
    assert effective[("booking_paid", "provider")]["source"] == "default"  # the other audience untouched
    assert {key for key, t in effective.items() if t["source"] == "provider"} == {("booking_paid", "customer")}


def _mail_about(mail_dir: Path, booking_id: str) -> EmailMessage | None:
    for path in sorted(mail_dir.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        text = message.get_body(("plain",))
        if text is not None and booking_id in text.get_content():
            return message
    return None


def _book(client: httpx.Client, catalog: Catalog, days: int) -> str:
    accepted = client.post("/v1/bookings", json=catalog.slot_body(future(days=days)),
                           headers={"Idempotency-Key": new_key()})
    assert accepted.status_code == 202, accepted.text
    job = wait_job(client, accepted.json()["job_id"])
    assert job["status"] == "succeeded", job
    return str(job["result"]["booking_id"])


def test_the_next_email_is_rendered_from_the_providers_override(client: httpx.Client, database_url: str,
                                                               fleet: Fleet) -> None:
    assert fleet.mail_dir is not None
    catalog, other = make_catalog(database_url), make_catalog(database_url)
    contact = client.patch(f"/v1/providers/{catalog.provider_id}",
                           json={"contact_email": f"owner-{new_key()[:8]}@salon.example"}, headers=SYSTEM)
    assert contact.status_code == 200, contact.text
    assert _put(client, catalog.provider_id, "booking_created", "customer").status_code == 200

    booking_id, others_booking_id = _book(client, catalog, days=61), _book(client, other, days=62)
    mail = wait_for(lambda: _mail_about(fleet.mail_dir, booking_id), 30, "the customer's email in the sink")
    assert mail["To"] == "grace@example.com"
    assert mail["Subject"] == "Test Salon holds Cut for Grace Hopper"
    text = mail.get_body(("plain",)).get_content()
    assert text.startswith("Hi Grace Hopper, ") and "(25.00 EUR) is yours: http" in text
    html = mail.get_body(("html",)).get_content()
    assert html.startswith("<p>Hi Grace Hopper, <a href=\"http") and f"?booking={booking_id}#ct=ct_" in html
    untouched = wait_for(lambda: _mail_about(fleet.mail_dir, others_booking_id), 30, "the other provider's email")
    assert untouched["Subject"] == "Your booking with Test Salon is held"  # another provider keeps the default


BROKEN = {
    "syntax error": "Hello {{ customer.name ",
    "unclosed block": "{% if booking.amount %}paid",
    "unknown variable": "Hello {{ customer.nickname }}",
    "unknown top-level name": "Hello {{ nobody }}",
    "sandbox escape": "{{ ''.__class__ }}",
    "sandbox escape to subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "dunder attribute": "{{ booking.id.format.__globals__ }}",
    "memory bomb": "{{ 'x' * 100000000 }}",
}


@pytest.mark.parametrize("part", ["subject", "text_body", "html_body"])
@pytest.mark.parametrize("source", BROKEN.values(), ids=BROKEN.keys())
def test_a_template_that_does_not_render_is_refused_and_nothing_is_stored(
        client: httpx.Client, database_url: str, source: str, part: str) -> None:
    catalog = make_catalog(database_url)
    assert _put(client, catalog.provider_id, "booking_paid", "customer").status_code == 200
    before = _effective(client, catalog.provider_id)
    for event in ("booking_paid", "booking_cancelled"):  # one with an override, one without
        refused = _put(client, catalog.provider_id, event, "customer", **{part: source})
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "NOTIFICATION_TEMPLATE_INVALID"
        assert refused.json()["detail"].startswith(f"{part}: ")
    assert _effective(client, catalog.provider_id) == before


def test_every_default_renders_against_the_sample_context_an_override_is_checked_with(
        client: httpx.Client, database_url: str) -> None:
    """Storing each default as an override proves the check accepts every variable the defaults use."""
    catalog = make_catalog(database_url)
    for (event, audience), template in _effective(client, catalog.provider_id).items():
        body = {part: template[part] for part in ("subject", "text_body", "html_body")}
        stored = client.put(_path(catalog.provider_id, event, audience), json=body, headers=SYSTEM)
        assert stored.status_code == 200, (event, audience, stored.text)
    assert {t["source"] for t in _effective(client, catalog.provider_id).values()} == {"provider"}


def test_an_event_without_a_default_cannot_be_invented(client: httpx.Client, database_url: str) -> None:
    catalog = make_catalog(database_url)
    for event in ("booking_teleported", "BOOKING_PAID", "booking paid"):
        response = _put(client, catalog.provider_id, event, "customer")
        assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND", response.text
    assert {t["source"] for t in _effective(client, catalog.provider_id).values()} == {"default"}


def test_an_audience_other_than_customer_or_provider_is_refused(client: httpx.Client, database_url: str) -> None:
    catalog = make_catalog(database_url)
    for response in (_put(client, catalog.provider_id, "booking_paid", "everyone"),
                     client.delete(_path(catalog.provider_id, "booking_paid", "everyone"), headers=SYSTEM)):
        assert response.status_code == 400 and response.json()["code"] == "VALIDATION_FAILED", response.text


@pytest.mark.parametrize(("field", "size"), [("subject", 501), ("text_body", 100_001), ("html_body", 100_001)])
def test_a_part_over_its_limit_is_refused(client: httpx.Client, database_url: str, field: str, size: int) -> None:
    catalog = make_catalog(database_url)
    response = _put(client, catalog.provider_id, "booking_paid", "customer", **{field: "x" * size})
    assert response.status_code == 400 and response.json()["code"] == "VALIDATION_FAILED", response.text
    at_limit = _put(client, catalog.provider_id, "booking_paid", "customer", **{field: "x" * (size - 1)})
    assert at_limit.status_code == 200, at_limit.text
    assert _put(client, catalog.provider_id, "booking_paid", "customer", subject="").status_code == 400


def test_another_providers_override_is_neither_seen_nor_deleted(client: httpx.Client, database_url: str) -> None:
    owner, stranger = make_catalog(database_url), make_catalog(database_url)
    assert _put(client, owner.provider_id, "booking_paid", "customer").status_code == 200
    assert {t["source"] for t in _effective(client, stranger.provider_id).values()} == {"default"}
    deleted = client.delete(_path(stranger.provider_id, "booking_paid", "customer"), headers=SYSTEM)
    assert deleted.status_code == 404
    assert _effective(client, owner.provider_id)[("booking_paid", "customer")]["source"] == "provider"


def test_deleting_the_override_restores_the_default(client: httpx.Client, database_url: str) -> None:
    catalog = make_catalog(database_url)
    default = _effective(client, catalog.provider_id)[("booking_paid", "customer")]
    assert _put(client, catalog.provider_id, "booking_paid", "customer").status_code == 200
    deleted = client.delete(_path(catalog.provider_id, "booking_paid", "customer"), headers=SYSTEM)
    assert deleted.status_code == 204 and deleted.content == b""
    assert _effective(client, catalog.provider_id)[("booking_paid", "customer")] == default
    again = client.delete(_path(catalog.provider_id, "booking_paid", "customer"), headers=SYSTEM)
    assert again.status_code == 404 and again.json()["code"] == "NOT_FOUND"


def test_every_route_needs_the_system_token(client: httpx.Client, database_url: str) -> None:
    catalog = make_catalog(database_url)
    one = _path(catalog.provider_id, "booking_paid", "customer")
    calls = [("GET", _path(catalog.provider_id), None), ("PUT", one, OVERRIDE), ("DELETE", one, None)]
    for method, path, body in calls:
        missing = client.request(method, path, json=body, headers=NO_CREDENTIAL)
        assert missing.status_code == 401 and missing.json()["code"] == "UNAUTHORIZED", (method, missing.text)
        wrong = client.request(method, path, json=body, headers={"X-System-Token": "not-the-token"})
        assert wrong.status_code == 403 and wrong.json()["code"] == "FORBIDDEN", (method, wrong.text)
    assert {t["source"] for t in _effective(client, catalog.provider_id).values()} == {"default"}
