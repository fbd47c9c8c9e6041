"""Connect: connected Accounts, Account Links and the hosted onboarding page, and what Transfers demand of
them.

An account is created as Stripe creates an Express one (``type=express``, or the controller properties
``controller[stripe_dashboard][type]=express`` with ``controller[requirement_collection]=stripe``): nothing
submitted, its requested capabilities ``inactive``, ``charges_enabled`` and ``payouts_enabled`` false and
its ``requirements`` open (``currently_due``, ``disabled_reason: requirements.past_due``). An Account Link
(``type=account_onboarding``) is a URL to this fake's onboarding page, good for 300 s and one submission;
an expired or used link sends the browser to the link's ``refresh_url``, as Stripe does. The page
(plain HTML) has two buttons; opening the link with ``?outcome=complete`` or ``?outcome=incomplete`` does
what they do at once: complete onboarding (capabilities ``active``, charges and payouts enabled, nothing
due), or submit it with an item still due (``external_account``: no bank account yet, nothing enabled).
Then the browser goes to ``return_url``, and the platform hears ``account.updated``, sent as Stripe sends a
connected account's events: with the account's id in the event's ``account`` field. Stripe's ``created`` is
whole seconds; the fake gives each account's events strictly increasing ones (a second later than the
last when two fall in one second), so a test can reorder them without waiting.

A Transfer's ``source_transaction`` must be a charge of this (the platform's) account, succeeded and
captured, in the transfer's currency, and with enough of it left that earlier transfers from it did not
take; a destination that is one of these accounts must have its ``transfers`` capability active.
"""

from __future__ import annotations

import html
import secrets
import time
from typing import Any
from urllib.parse import urlparse

from totem.fake_stripe.state import FakeStripe, StripeError, choice_param

LINK_SECONDS = 300
OPEN_REQUIREMENTS = ["business_profile.mcc", "business_profile.url", "business_type", "external_account",
                     "representative.first_name", "representative.last_name", "tos_acceptance.date",
                     "tos_acceptance.ip"]


def _requirements(currently_due: list[str]) -> dict[str, Any]:
    return {"alternatives": [], "current_deadline": None, "currently_due": list(currently_due),
            "disabled_reason": "requirements.past_due" if currently_due else None, "errors": [],
            "eventually_due": list(currently_due), "past_due": list(currently_due), "pending_verification": []}


def _controller(params: dict[str, Any]) -> dict[str, Any]:
    """The account's controller properties from ``type`` (legacy) or ``controller`` (current)."""
    type_ = choice_param(params, "type", ("express", "standard", "custom"))
    given = params.get("controller") or {}
    dashboard = (given.get("stripe_dashboard") or {}).get("type") or (type_ if type_ != "custom" else "none")
    if type_ is None and not given:
        raise StripeError(400, "invalid_request_error", "You must specify either `type` or `controller`.",
                          "parameter_missing", param="type", saved=False)
    if type_ is not None and given:
        raise StripeError(400, "invalid_request_error", "You cannot specify both `type` and `controller`.",
                          param="controller", saved=False)
    if dashboard != "express":
        raise StripeError(400, "invalid_request_error", "This fake creates Express accounts only "
                          "(controller[stripe_dashboard][type]=express).", param="controller", saved=False)
    return {"fees": {"payer": (given.get("fees") or {}).get("payer", "application")}, "is_controller": True,
            "losses": {"payments": (given.get("losses") or {}).get("payments", "application")},
            "requirement_collection": given.get("requirement_collection", "stripe"),
            "stripe_dashboard": {"type": "express"}, "type": "application"}


def create_account(fake: FakeStripe, params: dict[str, Any]) -> dict[str, Any]:
    controller = _controller(params)
    requested = [name for name, spec in (params.get("capabilities") or {}).items()
                 if str((spec or {}).get("requested", "false")).lower() == "true"]
    account_id = f"acct_{secrets.token_hex(8)}"
    account = {
        "id": account_id, "object": "account", "type": "express", "controller": controller,
        "business_profile": dict(params.get("business_profile") or {}), "business_type": None,
        "capabilities": dict.fromkeys(requested, "inactive"), "charges_enabled": False,
        "country": str(params.get("country") or "DE"), "created": int(time.time()),
        "default_currency": str(params.get("default_currency") or "eur"), "details_submitted": False,
        "email": params.get("email"), "metadata": dict(params.get("metadata") or {}), "payouts_enabled": False,
        "requirements": _requirements(OPEN_REQUIREMENTS), "future_requirements": _requirements([]),
        "tos_acceptance": {"date": None},
    }
    fake.accounts[account_id] = account
    return account


def account(fake: FakeStripe, account_id: str) -> dict[str, Any]:
    found = fake.accounts.get(account_id)
    if found is None:
        raise StripeError(404, "invalid_request_error", f"No such account: '{account_id}'", "resource_missing",
                          param="account")
    return found


def _http_url(params: dict[str, Any], name: str) -> str:
    url = str(params.get(name) or "")
    if urlparse(url).scheme not in ("http", "https"):
        raise StripeError(400, "invalid_request_error", f"Missing required param: {name}." if not url else
                          f"Invalid URL: {name} must be an http or https URL.", "parameter_missing" if not url
                          else "url_invalid", param=name, saved=False)
    return url


def create_account_link(fake: FakeStripe, params: dict[str, Any], base_url: str) -> dict[str, Any]:
    found = account(fake, str(params.get("account") or ""))
    choice_param(params, "type", ("account_onboarding", "account_update"))
    if not params.get("type"):
        raise StripeError(400, "invalid_request_error", "Missing required param: type.", "parameter_missing",
                          param="type", saved=False)
    refresh_url, return_url = _http_url(params, "refresh_url"), _http_url(params, "return_url")
    token, now = secrets.token_urlsafe(18), int(time.time())
    fake.account_links[token] = {"account": found["id"], "refresh_url": refresh_url, "return_url": return_url,
                                 "expires_at": now + LINK_SECONDS, "used": False}
    return {"object": "account_link", "created": now, "expires_at": now + LINK_SECONDS,
            "url": f"{base_url.rstrip('/')}/setup/e/{found['id']}/{token}"}


def onboarding_page(fake: FakeStripe, account_id: str, token: str, outcome: str | None) -> tuple[str, str | None]:
    """What opening an Account Link shows: (html, None), or ("", where to redirect the browser)."""
    link = fake.account_links.get(token)
    if link is None or link["account"] != account_id:
        raise StripeError(404, "invalid_request_error", "This onboarding link does not exist.")
    if link["used"] or link["expires_at"] < time.time():
        return "", str(link["refresh_url"])
    if outcome is None:
        return _page(account_id, token), None
    if outcome not in ("complete", "incomplete"):
        raise StripeError(400, "invalid_request_error", "outcome must be complete or incomplete", param="outcome")
    link["used"] = True
    submit_onboarding(fake, account_id, complete=outcome == "complete")
    return "", str(link["return_url"])


def submit_onboarding(fake: FakeStripe, account_id: str, *, complete: bool) -> dict[str, Any]:
    found = account(fake, account_id)
    due = [] if complete else ["external_account"]
    found.update(details_submitted=True, charges_enabled=complete, payouts_enabled=complete,
                 requirements=_requirements(due),
                 capabilities=dict.fromkeys(found["capabilities"], "active" if complete else "inactive"),
                 tos_acceptance={"date": int(time.time())})
    created = max(int(time.time()), int(found.get("_last_event_created", 0)) + 1)
    found["_last_event_created"] = created
    fake.emit("account.updated", public(found), account=account_id, created=created)
    return found


def public(found: dict[str, Any]) -> dict[str, Any]:
    """The account as the API shows it (without the fake's own bookkeeping)."""
    return {key: value for key, value in found.items() if not key.startswith("_")}


def check_transfer(fake: FakeStripe, params: dict[str, Any], amount: int, currency: str) -> str | None:
    """Refuse a transfer as Stripe would over its destination's capability and its ``source_transaction``;
    the source charge's id, if any."""
    destination = fake.accounts.get(str(params.get("destination")))
    if destination is not None and destination["capabilities"].get("transfers") != "active":
        raise StripeError(400, "invalid_request_error", "Your destination account needs to have at least one of "
                          "the following capabilities enabled: transfers, crypto_transfers, legacy_payments",
                          "insufficient_capabilities_for_transfer", param="destination")
    source = params.get("source_transaction")
    if not source:
        return None
    charge = fake.charges.get(str(source))
    if charge is None:
        raise StripeError(400, "invalid_request_error", f"No such charge: '{source}'", "resource_missing",
                          param="source_transaction")
    if charge["status"] != "succeeded" or not charge["captured"]:
        raise StripeError(400, "invalid_request_error", f"The source_transaction {source} has not succeeded.",
                          param="source_transaction")
    if charge["currency"] != currency:
        raise StripeError(400, "invalid_request_error", f"The currency of source_transaction's balance "
                          f"transaction ({charge['currency']}) must be the same as the transfer currency "
                          f"({currency}).", param="currency")
    taken = sum(t["amount"] for t in fake.transfers.values() if t.get("source_transaction") == source)
    if amount > charge["amount_captured"] - taken:
        raise StripeError(400, "invalid_request_error", f"Insufficient funds in source_transaction {source}: "
                          f"{charge['amount_captured'] - taken} left for a transfer of {amount}.",
                          "insufficient_funds", param="amount")
    return str(source)


def _page(account_id: str, token: str) -> str:
    action = html.escape(f"/setup/e/{account_id}/{token}")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Stripe Express onboarding (fake)</title></head>
<body>
<h1>Set up payouts</h1>
<p>Connected account <code>{html.escape(account_id)}</code> (test mode, fake Stripe).</p>
<form method="get" action="{action}"><input type="hidden" name="outcome" value="complete">
<button type="submit" id="complete">Complete onboarding</button></form>
<form method="get" action="{action}"><input type="hidden" name="outcome" value="incomplete">
<button type="submit" id="incomplete">Leave requirements open</button></form>
</body></html>
"""
