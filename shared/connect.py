"""Stripe Connect: a provider's Express connected account, what Stripe last said of it, and whether it can be
paid.

* One account per provider (``stripe_accounts``, primary key the provider). It is created by the
  ``connect.onboard`` job with a Stripe idempotency key derived from the provider, so retries and racing
  requests make one account; every request gets a fresh Account Link (they are single-use and short-lived).
* ``account.updated`` (a connected account's event: the account id is in the event's ``account`` field and
  its object is the Account) sets ``charges_enabled``, ``payouts_enabled``, ``details_submitted`` and the open
  ``requirements``, once per event and only if the event is not older (Stripe's ``created``) than the state
  already held: any order and any number of copies end at the newest state.
* Settlement pays a Connect provider only while ``payouts_enabled``; otherwise the period's batch is
  recorded as held, with the reason (``hold_reason``), and the money stays available for a later period.
  A provider with only a ``payout_account`` string (given to us, not onboarded through us: legacy and demo
  data) is paid to it as before.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from shared import audit
from shared.db import QUERIES

ONBOARDING_RETURN_PATH = "/console/settings"


class Requirements(msgspec.Struct):
    currently_due: list[str] = []
    past_due: list[str] = []
    disabled_reason: str | None = None
    current_deadline: int | None = None


class StripeAccountView(msgspec.Struct):
    id: str
    charges_enabled: bool
    payouts_enabled: bool
    details_submitted: bool
    requirements: Requirements
    updated_at: datetime  # Stripe's time of the state shown


class OnboardJob(msgspec.Struct, frozen=True):
    """Payload of a connect.onboard job: the provider, who asked (for the audit log) and where the browser
    goes back to."""

    provider_id: uuid.UUID
    refresh_url: str
    return_url: str
    actor: str
    actor_id: str | None = None
    actor_role: str | None = None
    request_id: str | None = None
    ip: str | None = None


class OnboardingLink(msgspec.Struct):
    """Result of a connect.onboard job: the account and the link that finishes its onboarding."""

    provider_id: uuid.UUID
    account_id: str
    created: bool  # a new account (False: the provider's existing one)
    url: str
    expires_at: int


def requirements_of(account: dict[str, Any]) -> dict[str, Any]:
    open_ = account.get("requirements") or {}
    shown: dict[str, Any] = msgspec.to_builtins(Requirements(
        currently_due=list(open_.get("currently_due") or []), past_due=list(open_.get("past_due") or []),
        disabled_reason=open_.get("disabled_reason"), current_deadline=open_.get("current_deadline")))
    return shown


def _state(account: dict[str, Any]) -> dict[str, Any]:
    return {"account_id": account["id"], "charges_enabled": bool(account.get("charges_enabled")),
            "payouts_enabled": bool(account.get("payouts_enabled")),
            "details_submitted": bool(account.get("details_submitted")),
            "requirements": Jsonb(requirements_of(account))}


def account_of(conn: psycopg.Connection[Any], provider_id: uuid.UUID) -> dict[str, Any] | None:
    row: dict[str, Any] | None = conn.execute(QUERIES["stripe_account_of"], {"provider_id": provider_id}).fetchone()
    return row


def record_created(conn: psycopg.Connection[Any], job: OnboardJob, account: dict[str, Any]) -> bool:
    """Keep the account we created for the provider (audited); False if it already had its row."""
    row = conn.execute(QUERIES["insert_stripe_account"], {
        **_state(account), "provider_id": job.provider_id, "stripe_created": int(account["created"])}).fetchone()
    if row is None:
        return False
    audit.record(conn, audit.params(
        {"actor": job.actor, "actor_id": job.actor_id, "actor_role": job.actor_role}, job.provider_id,
        "provider.stripe_account.create", "stripe_account", account["id"],
        after={"account_id": account["id"], "type": "express"}, request_id=job.request_id, ip=job.ip))
    return True


def apply_account_updated(conn: psycopg.Connection[Any], event_id: str,
                          account: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Apply one account.updated: (effect, detail) for the event's record."""
    params = {**_state(account), "event_id": event_id}
    row = conn.execute(QUERIES["apply_account_state"], params).fetchone()
    if row is None and account_of_id(conn, account["id"]):
        return "no_change", {"account_id": account["id"], "reason": "a newer state of the account is held"}
    if row is None:
        provider_id = _uuid((account.get("metadata") or {}).get("provider_id"))
        row = conn.execute(QUERIES["adopt_stripe_account"], {**params, "provider_id": provider_id}).fetchone() \
            if provider_id else None
    if row is None:
        return "unknown_account", {"account_id": account["id"]}
    return "stripe_account_updated", {
        "account_id": row["account_id"], "provider_id": str(row["provider_id"]),
        "charges_enabled": row["charges_enabled"], "payouts_enabled": row["payouts_enabled"],
        "requirements": row["requirements"]}


def account_of_id(conn: psycopg.Connection[Any], account_id: str) -> bool:
    return conn.execute(QUERIES["stripe_account_exists"], {"account_id": account_id}).fetchone() is not None


def _uuid(raw: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(raw)) if raw else None
    except ValueError:
        return None


def hold_reason(account: dict[str, Any] | None) -> str | None:
    """Why a provider's payouts cannot go out now (None: they can)."""
    if account is None or account["payouts_enabled"]:
        return None
    requirements = account["requirements"] or {}
    due = ", ".join(requirements.get("currently_due") or []) or "none listed"
    disabled = requirements.get("disabled_reason")
    return f"payouts not enabled (requirements: {due}" + (f"; {disabled}" if disabled else "") + ")"


def payout_destination(conn: psycopg.Connection[Any], provider_id: uuid.UUID) -> tuple[str | None, str | None]:
    """A provider's connected account (None: pay its ``payout_account`` as given) and, if it cannot be paid
    now, why."""
    account = account_of(conn, provider_id)
    if account is None:
        return None, None
    return account["account_id"], hold_reason(account)
