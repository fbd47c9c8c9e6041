"""The gateway applies only events rendered in our API version: one in another version (a webhook endpoint
created with the wrong version) is stored, not applied: ``ignored`` with the reason naming both versions,
counted as ``version_mismatch``, answered 200 (Stripe would otherwise retry the same wrong payload)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from shared.stripe_api import STRIPE_API_VERSION
from tests.support import new_key
from totem.fake_stripe import sign

SYSTEM = {"X-System-Token": "test-system-token"}
SECRET = "whsec_totem_dev"


def _post(client: httpx.Client, event: dict[str, Any]) -> httpx.Response:
    payload = json.dumps(event)
    return client.post("/v1/webhooks/stripe", content=payload,
                       headers={"Content-Type": "application/json", "Stripe-Signature": sign(payload, SECRET)})


def _succeeded(api_version: str) -> dict[str, Any]:
    return {"id": f"evt_test_{new_key()}", "object": "event", "type": "payment_intent.succeeded",
            "api_version": api_version, "created": int(time.time()),
            "data": {"object": {"id": f"pi_{new_key()}", "object": "payment_intent", "amount": 100,
                                "currency": "eur", "metadata": {}}}}


def _mismatches(client: httpx.Client) -> float:
    metrics = client.get("/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("totem_stripe_webhook_events_total{")
               and 'outcome="version_mismatch"' in line and 'type="payment_intent.succeeded"' in line)


def test_an_event_in_another_api_version_is_stored_ignored_with_its_reason_and_counted(client: httpx.Client) -> None:
    before = _mismatches(client)
    event = _succeeded("2025-09-30.clover")
    answer = _post(client, event)
    assert answer.status_code == 200 and answer.json() == {"received": True, "duplicate": False}
    stored = client.get(f"/v1/system/stripe-events/{event['id']}", headers=SYSTEM).json()
    assert stored["status"] == "ignored" and stored["job_id"] is None
    assert [(e["effect"], e["detail"]) for e in stored["effects"]] == [
        ("ignored", {"reason": f"api_version 2025-09-30.clover: this endpoint applies only {STRIPE_API_VERSION}"})]
    assert _mismatches(client) == before + 1


def test_an_event_in_our_api_version_is_queued_to_be_applied(client: httpx.Client) -> None:
    event = _succeeded(STRIPE_API_VERSION)
    assert _post(client, event).status_code == 200
    stored = client.get(f"/v1/system/stripe-events/{event['id']}", headers=SYSTEM).json()
    assert stored["job_id"] is not None, stored  # queued for the payments pool, not set aside
