"""Demo catalog: a salon with two masters and a rental owner with a listing, open 08:00-20:00 every day
in their own time zones, plus a public widget token, an owner and a staff member per provider, and a
platform admin. Re-runnable: existing providers, users and memberships are reused and a fresh token is
issued. Users sign in by magic link (``POST /v1/auth/magic-links``; the mail lands in the mail folder)."""

from __future__ import annotations

from datetime import time
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from shared import tokens
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
ADMIN_EMAIL = "admin@totem.localhost"


def owner_email(slug: str) -> str:
    """A demo provider's owner: also its contact_email, so the provider's mail and the owner's meet."""
    return f"owner@{slug}.example"


def seed(database_url: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"providers": [], "resources": [], "services": [], "public_tokens": [],
                                            "owners": [], "admins": []}
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
            out["public_tokens"].append(_public_token(conn, pid))
            slug = str(spec["slug"])
            for email, role in ((owner_email(slug), "owner"), (f"staff@{slug}.example", "staff")):
                user = _user(conn, email, None)
                conn.execute(QUERIES["upsert_membership"], {"user_id": user["id"], "provider_id": pid, "role": role})
                out["owners"].append({"provider_id": str(pid), "email": user["email"], "role": role})
        admin = _user(conn, ADMIN_EMAIL, "admin")
        out["admins"].append({"email": admin["email"], "platform_role": "admin"})
    return out


def _public_token(conn: psycopg.Connection[Any], provider_id: Any) -> dict[str, Any]:
    token = tokens.new_token(tokens.PUBLIC)
    row = expect_row(conn.execute(QUERIES["insert_public_token"], {
        "digest": tokens.digest(token), "provider_id": provider_id, "prefix": token[:tokens.SHOWN_PREFIX_LENGTH],
        "name": "demo widget", "allowed_origins": []}).fetchone(), "insert_public_token")
    return {"provider_id": str(provider_id), "token": token, "id": str(row["id"]), "prefix": row["prefix"]}


def _user(conn: psycopg.Connection[Any], email: str, platform_role: str | None) -> dict[str, Any]:
    return expect_row(conn.execute(QUERIES["upsert_user"], {"email": email, "platform_role": platform_role})
                      .fetchone(), "upsert_user")


def _create_provider(conn: psycopg.Connection[Any], spec: dict[str, Any]) -> dict[str, Any]:
    provider = expect_row(conn.execute(QUERIES["insert_provider"], {
        **spec, "hold_ttl_seconds": None, "cancellation_policy": Jsonb(DEMO_CANCELLATION_POLICY)}).fetchone(),
        "insert_provider")
    # paid out daily to a (test-mode) connected account
    conn.execute("UPDATE providers SET payout_account = %s, contact_email = %s WHERE id = %s",
                 (f"acct_demo_{spec['slug'].replace('-', '_')}", owner_email(spec["slug"]), provider["id"]))
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
