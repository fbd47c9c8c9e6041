"""No customer PII in logs: a booking's whole life (held, paid, cancelled and refunded, mailed) runs through
every process of the shared fleet, and then no log of any process holds the customer's name, email or
phone."""

from __future__ import annotations

import uuid

import httpx

from tests.support import Catalog, future, new_key, wait_for, wait_job
from totem.fleet import Fleet


def test_no_log_of_any_process_holds_a_customers_name_email_or_phone(
        client: httpx.Client, catalog: Catalog, fleet: Fleet) -> None:
    tag = uuid.uuid4().hex[:10]
    customer = {"name": f"Zelda Pii{tag}", "email": f"pii-{tag}@example.com",
                "phone": f"+4915{int(tag, 16) % 10**9:09d}"}
    body = {**catalog.slot_body(future(days=120)), "customer": customer}
    accepted = client.post("/v1/bookings", json=body, headers={"Idempotency-Key": new_key(), **catalog.widget})
    job = wait_job(client, accepted.json()["job_id"], headers=catalog.widget)
    assert job["status"] == "succeeded", job
    booking_id = job["result"]["booking_id"]
    confirmed = httpx.post(f"{fleet.stripe_url}/v1/payment_intents/{job['result']['payment_intent_id']}/confirm",
                           data={"payment_method": "pm_card_visa"}, timeout=10)
    assert confirmed.status_code == 200
    wait_for(lambda: client.get(f"/v1/bookings/{booking_id}").json()["status"] == "paid", 30, "paid")
    cancel = client.post(f"/v1/bookings/{booking_id}/cancel", json={}, headers={"Idempotency-Key": new_key()})
    assert wait_job(client, cancel.json()["job_id"])["status"] == "succeeded"
    assert fleet.mail_dir is not None
    wait_for(lambda: len([p for p in fleet.mail_dir.glob("*.eml") if customer["email"] in p.read_text()]) >= 3,
             30, "the customer's mails (held, paid, cancelled) sent")

    leaks = {p.name: [v for v in customer.values() if v in p.read_text(errors="replace")]
             for p in fleet.log_dir.glob("*.log")}
    assert {name: found for name, found in leaks.items() if found} == {}
