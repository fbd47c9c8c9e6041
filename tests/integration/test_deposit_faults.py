"""A payments worker killed with SIGKILL inside a deposit capture: the retried job captures nothing more (the
same Stripe idempotency key), the claim is recorded and posted to the ledger once, and the stay completes."""

from __future__ import annotations

import signal
import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
from psycopg.rows import dict_row

from shared.db import QUERIES
from tests.support import api_client, new_key, wait_for, wait_job
from totem.fleet import Fleet

pytestmark = __import__("pytest").mark.fault
LISBON = ZoneInfo("Europe/Lisbon")


def _query(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def _command(client: httpx.Client, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = client.post(path, json=body or {}, headers={"Idempotency-Key": new_key()})
    assert response.status_code == 202, response.text
    return wait_job(client, response.json()["job_id"])


def test_a_payments_worker_killed_inside_a_deposit_capture_captures_once(
        fault_fleet: Fleet, isolated_database_url: str) -> None:
    url = isolated_database_url
    with psycopg.connect(url, row_factory=dict_row, autocommit=True) as conn:
        provider = conn.execute(QUERIES["insert_provider"], {
            "slug": f"d-{uuid.uuid4().hex[:12]}", "name": "Deposits", "time_zone": "Europe/Lisbon",
            "currency": "EUR", "commission_bps": 1000, "hold_ttl_seconds": None,
            "cancellation_policy": psycopg.types.json.Jsonb([])}).fetchone()
        assert provider
        listing = conn.execute(QUERIES["insert_resource"], {
            "provider_id": provider["id"], "kind": "stay", "name": "Loft", "nightly_price": 10_000}).fetchone()
        assert listing
        conn.execute("UPDATE resources SET security_deposit = 30000 WHERE id = %s", (listing["id"],))
    base = fault_fleet.start_gateway()
    fault_fleet.start_worker()
    fault_fleet.start_worker("payments", name="payments-1")
    fault_fleet.start_scheduler()
    today = datetime.now(LISBON).date()
    with api_client(base) as client:
        created = _command(client, "/v1/bookings", {
            "kind": "stay", "resource_id": str(listing["id"]), "check_in": today.isoformat(),
            "check_out": (today + timedelta(days=1)).isoformat(), "guests": 1,
            "customer": {"name": "Ada", "email": "ada@example.com"}})
        booking_id, intent = created["result"]["booking_id"], created["result"]["payment_intent_id"]
        httpx.post(f"{fault_fleet.stripe_url}/v1/payment_intents/{intent}/confirm", timeout=10,
                   data={"payment_method": "pm_card_visa"})
        wait_for(lambda: client.get(f"/v1/bookings/{booking_id}").json()["deposit"]["status"] == "authorized", 30,
                 "the deposit held")
        _command(client, f"/v1/bookings/{booking_id}/check-in")
        _command(client, f"/v1/bookings/{booking_id}/check-out")
        httpx.post(f"{fault_fleet.stripe_url}/_fake/faults", timeout=10,
                   json={"operation": "payment_intents.capture", "times": 1, "when": "slow", "delay_seconds": 3})
        claim = client.post(f"/v1/bookings/{booking_id}/deposit/claim", json={"amount": 12_000, "reason": "stains"},
                            headers={"Idempotency-Key": new_key()})
        assert claim.status_code == 202, claim.text
        wait_for(lambda: _query(url, "SELECT 1 FROM jobs WHERE type = 'deposit.claim' AND status = 'running'"), 20,
                 "the claim job inside its Stripe call")
        fault_fleet.kill("payments-1", signal.SIGKILL)
        fault_fleet.start_worker("payments", name="payments-2")
        job = wait_job(client, claim.json()["job_id"], timeout=90)
        view = client.get(f"/v1/bookings/{booking_id}").json()
    assert job["status"] == "succeeded", job
    assert view["status"] == "completed"
    assert (view["deposit"]["status"], view["deposit"]["claimed_amount"]) == ("claimed", 12_000)
    deposit_intent = view["deposit"]["payment_intent_id"]
    captures = [e for e in httpx.get(f"{fault_fleet.stripe_url}/_fake/events", timeout=10).json()
                if e["type"] == "charge.captured" and e["data"]["object"]["payment_intent"] == deposit_intent]
    assert len(captures) == 1
    postings = _query(url, "SELECT kind FROM ledger_transactions WHERE booking_id = %s AND kind = 'deposit_capture'",
                      booking_id)
    assert len(postings) == 1
