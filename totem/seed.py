"""Demo catalog: a salon with two masters and a rental owner with a listing, open 08:00-20:00 every day
in their own time zones, plus a public widget token per provider. Re-runnable: existing providers are
reused and a fresh token is issued."""

from __future__ import annotations

import hashlib
import secrets
from datetime import time
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from shared.db import QUERIES, expect_row

# Full refund up to 24 h before the start, half until the start, nothing after it.
DEMO_CANCELLATION_POLICY = [{"min_hours_before_start": 24, "refund_percent": 100},
                            {"min_hours_before_start": 0, "refund_percent": 50}]

DEMO = [
    {"slug": "studio-aurora", "name": "Studio Aurora", "time_zone": "Europe/Berlin", "currency": "EUR",
     "commission_bps": 1200,
     "services": [("Haircut", 45, 3500), ("Colour & cut", 90, 8900), ("Beard trim", 20, 1500)],
     "resources": [("Anna (master)", "slot", None), ("Ben (master)", "slot", None)]},
    {"slug": "lisbon-lofts", "name": "Lisbon Lofts", "time_zone": "Europe/Lisbon", "currency": "EUR",
     "commission_bps": 1500, "services": [], "resources": [("Alfama loft", "stay", 12000)]},
]


def seed(database_url: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"providers": [], "resources": [], "services": [], "public_tokens": []}
    with psycopg.connect(database_url, row_factory=dict_row) as conn, conn.transaction():
        for spec in DEMO:
            provider = conn.execute(QUERIES["get_provider_by_slug"], {"slug": spec["slug"]}).fetchone()
            if provider is None:
                provider = _create_provider(conn, spec)
            pid = provider["id"]
            out["providers"].append({k: str(v) if k == "id" else v for k, v in provider.items()})
            out["services"] += [_jsonable(s) for s in
                                conn.execute(QUERIES["list_provider_services"], {"provider_id": pid})]
            out["resources"] += [_jsonable(r) for r in
                                 conn.execute(QUERIES["list_provider_resources"], {"provider_id": pid})]
            token = "pt_" + secrets.token_urlsafe(24)
            conn.execute(QUERIES["insert_public_token"],
                         {"token_sha256": hashlib.sha256(token.encode()).digest(), "provider_id": pid})
            out["public_tokens"].append({"provider_id": str(pid), "token": token})
    return out


def _create_provider(conn: psycopg.Connection[Any], spec: dict[str, Any]) -> dict[str, Any]:
    provider = expect_row(conn.execute(QUERIES["insert_provider"], {
        **spec, "hold_ttl_seconds": None, "cancellation_policy": Jsonb(DEMO_CANCELLATION_POLICY)}).fetchone(),
        "insert_provider")
    # paid out daily to a (test-mode) connected account
    conn.execute("UPDATE providers SET payout_account = %s, contact_email = %s WHERE id = %s",
                 (f"acct_demo_{spec['slug'].replace('-', '_')}", f"owner@{spec['slug']}.example", provider["id"]))
    services = [expect_row(conn.execute(QUERIES["insert_service"], {
        "provider_id": provider["id"], "name": name, "duration_minutes": minutes, "price": price,
        "currency": spec["currency"]}).fetchone(), "insert_service") for name, minutes, price in spec["services"]]
    for name, kind, nightly in spec["resources"]:
        resource = expect_row(conn.execute(QUERIES["insert_resource"], {
            "provider_id": provider["id"], "kind": kind, "name": name, "nightly_price": nightly}).fetchone(),
            "insert_resource")
        for service in services if kind == "slot" else []:
            conn.execute(QUERIES["offer_service"], {"resource_id": resource["id"], "service_id": service["id"]})
        for weekday in range(1, 8):
            conn.execute(QUERIES["insert_resource_hours"], {
                "resource_id": resource["id"], "weekday": weekday, "opens_at": time(8), "closes_at": time(20)})
    return provider


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if hasattr(v, "hex") and not isinstance(v, (int, bytes)) else
                [str(x) for x in v] if isinstance(v, list) else v) for k, v in row.items()}
