"""The fake's account: everything it holds in memory, and the rules every API call passes through.

A restart forgets everything, like a fresh Stripe test account. Each API call is logged in ``requests``
with its idempotency key and outcome, and runs under Stripe's idempotency: the same key for the same
request (method and path, e.g. one intent's ``/capture``, and parameters) replays the stored answer
(``Idempotent-Replayed: true``), with another request it is a 400 ``idempotency_error``. As in Stripe, an
answer is stored once the endpoint has begun, whatever its status (a 402 decline, a refused capture), but
not when the parameters fail validation (``StripeError.saved``); it is stored as it was given, not as
the object looks after later calls. So a caller killed mid-capture that retries with its key captures
once. Armed ``before`` and ``after`` faults (``faults.py``) act around that. Every event is logged in
``events`` and handed to the webhook endpoint (``delivery.py``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from shared.stripe_api import STRIPE_API_VERSION
from totem.fake_stripe.delivery import WebhookEndpoint
from totem.fake_stripe.faults import Faults


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def decode_form(body: bytes) -> dict[str, Any]:
    """Stripe's form encoding: ``metadata[booking_id]=x&expand[0]=y`` → nested dicts (lists as dicts)."""
    result: dict[str, Any] = {}
    for key, value in parse_qsl(body.decode(), keep_blank_values=True):
        parts = key.replace("]", "").split("[")
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return result


class StripeError(Exception):
    """A refusal as Stripe answers it. ``saved=False``: the parameters failed validation before the endpoint
    began, so the answer is not kept under the idempotency key (the same key may be retried, fixed)."""

    def __init__(self, status: int, type_: str, message: str, code: str | None = None, *, saved: bool = True,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.saved = saved
        self.body = {"error": {"type": type_, "message": message, **({"code": code} if code else {}), **extra}}


def bool_param(params: dict[str, Any], name: str) -> bool:
    raw = str(params.get(name, "false")).lower()
    if raw not in ("true", "false"):
        raise StripeError(400, "invalid_request_error", f"Invalid boolean: {params[name]}", "parameter_invalid_boolean",
                          param=name, saved=False)
    return raw == "true"


def choice_param(params: dict[str, Any], name: str, choices: tuple[str, ...], default: str | None = None) -> str | None:
    """An enum parameter: one of ``choices``, else Stripe's 400 naming them."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if raw not in choices:
        raise StripeError(400, "invalid_request_error",
                          f"Invalid {name}: must be one of {', '.join(choices)}", param=name, saved=False)
    return str(raw)


def int_param(params: dict[str, Any], name: str, *, required: bool = True) -> int | None:
    raw = params.get(name)
    if raw is None:
        if required:
            raise StripeError(400, "invalid_request_error", f"Missing required param: {name}.",
                              "parameter_missing", param=name, saved=False)
        return None
    try:
        value = int(raw)
    except ValueError:
        raise StripeError(400, "invalid_request_error", f"Invalid integer: {raw}", "parameter_invalid_integer",
                          param=name, saved=False) from None
    if value < 0:
        raise StripeError(400, "invalid_request_error", f"{name} must be positive", "parameter_invalid_integer",
                          param=name, saved=False)
    return value


@dataclass
class FakeStripe:
    webhooks: WebhookEndpoint
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)
    disputes: dict[str, dict[str, Any]] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    payment_methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)  # Connect: connected accounts
    account_links: dict[str, dict[str, Any]] = field(default_factory=dict)  # onboarding link token → its terms
    test_cards: dict[str, str] = field(default_factory=dict)  # payment method id → the test card it was made from
    balance_transactions: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    idempotency: dict[str, tuple[str, int, dict[str, Any]]] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def call(self, operation: str, key: str | None, params: dict[str, Any],
             run: Callable[[], dict[str, Any]], path: str = "") -> tuple[int, dict[str, Any], bool]:
        """Run one API operation (``path``: the request's, part of what a key is bound to) under Stripe's
        idempotency and the injected faults."""
        record = {"operation": operation, "idempotency_key": key, "params": params, "at": time.time()}
        self.requests.append(record)
        fault = self.faults.take(operation, "before")
        if fault is not None:
            record["outcome"] = "fault_before"
            return fault.status, StripeError(fault.status, "api_error", "injected failure").body, False
        fingerprint = hashlib.sha256(json.dumps([operation, path, params], sort_keys=True).encode()).hexdigest()
        if key is not None and key in self.idempotency:
            stored_fingerprint, status, body = self.idempotency[key]
            if stored_fingerprint != fingerprint:
                record["outcome"] = "idempotency_error"
                return 400, StripeError(
                    400, "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters they were first "
                    f"used with. Try using a key other than '{key}' if you meant to execute a different "
                    "request.").body, False
            record["outcome"] = "replayed"
            return status, body, True
        saved = True
        try:
            status, body = 200, run()
        except StripeError as exc:
            status, body, saved = exc.status, exc.body, exc.saved
        if key is not None and saved:  # the answer as it was, not the object as it will be after later calls
            self.idempotency[key] = (fingerprint, status, copy.deepcopy(body))
        record["outcome"] = "ok" if status == 200 else f"error {status}"
        fault = self.faults.take(operation, "after")
        if fault is not None:
            record["outcome"] = "fault_after"
            return fault.status, StripeError(fault.status, "api_error", "injected failure after commit").body, False
        return status, body, False

    def emit(self, type_: str, obj: dict[str, Any], *, account: str | None = None, created: int | None = None) -> None:
        """Log an event carrying a snapshot of ``obj`` and hand it to the webhook endpoint. ``account``: the
        connected account it happened on (a Connect event carries its id)."""
        event = {"id": new_id("evt"), "object": "event", "api_version": STRIPE_API_VERSION,
                 "created": int(time.time()) if created is None else created,
                 "data": {"object": json.loads(json.dumps(obj))}, "livemode": False, "pending_webhooks": 1,
                 "request": {"id": new_id("req"), "idempotency_key": None}, "type": type_,
                 **({"account": account} if account else {})}
        self.events.append(event)
        self.webhooks.send(event)

    def add_balance_transaction(self, type_: str, amount: int, currency: str, source: str) -> dict[str, Any]:
        """Money moving through the balance (a capture, a refund, a transfer), listed newest first."""
        now = int(time.time())
        txn = {"id": new_id("txn"), "object": "balance_transaction", "amount": amount, "currency": currency,
               "fee": 0, "fee_details": [], "net": amount, "type": type_, "reporting_category": type_, "source": source,
               "status": "available", "created": now, "available_on": now}
        self.balance_transactions.append(txn)
        return txn
