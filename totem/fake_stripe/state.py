"""The fake's account: everything it holds in memory, and the rules every API call passes through.

A restart forgets everything, like a fresh Stripe test account. Each API call is logged in ``requests``
with its idempotency key and outcome, and runs under Stripe's idempotency: the same key with the same
parameters replays the stored answer (``Idempotent-Replayed: true``), with other parameters it is a 400
``idempotency_error``; an answer is stored whatever its status, as Stripe does. Armed ``before`` and
``after`` faults (``faults.py``) act around that. Every event is logged in ``events`` and handed to the
webhook endpoint (``delivery.py``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from totem.fake_stripe.delivery import WebhookEndpoint
from totem.fake_stripe.faults import Faults

API_VERSION = "2025-09-30.clover"


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
    def __init__(self, status: int, type_: str, message: str, code: str | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": type_, "message": message, **({"code": code} if code else {}), **extra}}


def int_param(params: dict[str, Any], name: str, *, required: bool = True) -> int | None:
    raw = params.get(name)
    if raw is None:
        if required:
            raise StripeError(400, "invalid_request_error", f"Missing required param: {name}.",
                              "parameter_missing", param=name)
        return None
    try:
        value = int(raw)
    except ValueError:
        raise StripeError(400, "invalid_request_error", f"Invalid integer: {raw}", "parameter_invalid_integer",
                          param=name) from None
    if value < 0:
        raise StripeError(400, "invalid_request_error", f"{name} must be positive", "parameter_invalid_integer")
    return value


@dataclass
class FakeStripe:
    webhooks: WebhookEndpoint
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)
    balance_transactions: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    idempotency: dict[str, tuple[str, int, dict[str, Any]]] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def call(self, operation: str, key: str | None, params: dict[str, Any],
             run: Callable[[], dict[str, Any]]) -> tuple[int, dict[str, Any], bool]:
        """Run one API operation under Stripe's idempotency and the injected faults."""
        record = {"operation": operation, "idempotency_key": key, "params": params, "at": time.time()}
        self.requests.append(record)
        fault = self.faults.take(operation, "before")
        if fault is not None:
            record["outcome"] = "fault_before"
            return fault.status, StripeError(fault.status, "api_error", "injected failure").body, False
        fingerprint = hashlib.sha256(json.dumps([operation, params], sort_keys=True).encode()).hexdigest()
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
        try:
            status, body = 200, run()
        except StripeError as exc:
            status, body = exc.status, exc.body
        if key is not None:
            self.idempotency[key] = (fingerprint, status, body)
        record["outcome"] = "ok" if status == 200 else f"error {status}"
        fault = self.faults.take(operation, "after")
        if fault is not None:
            record["outcome"] = "fault_after"
            return fault.status, StripeError(fault.status, "api_error", "injected failure after commit").body, False
        return status, body, False

    def emit(self, type_: str, obj: dict[str, Any]) -> None:
        """Log an event carrying a snapshot of ``obj`` and hand it to the webhook endpoint."""
        event = {"id": new_id("evt"), "object": "event", "api_version": API_VERSION, "created": int(time.time()),
                 "data": {"object": json.loads(json.dumps(obj))}, "livemode": False, "pending_webhooks": 1,
                 "request": {"id": new_id("req"), "idempotency_key": None}, "type": type_}
        self.events.append(event)
        self.webhooks.send(event)
