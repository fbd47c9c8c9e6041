"""``totem fake-stripe``: a local stand-in for the few Stripe API endpoints Totem uses, for dev and tests.

Our code talks to it through the real ``stripe`` SDK (``STRIPE_API_BASE`` points the SDK here). It speaks
Stripe's form-encoded requests and JSON shapes, honours ``Idempotency-Key`` the way Stripe does (same key +
same parameters → the stored answer with ``Idempotent-Replayed: true``; same key + other parameters → 400
``idempotency_error``), and sends events to ``FAKE_STRIPE_WEBHOOK_URL`` signed as Stripe signs them
(``Stripe-Signature: t=<unix>,v1=HMAC-SHA256(secret, "<t>.<payload>")``), retrying a delivery that is not
answered 2xx. ``FAKE_STRIPE_ENABLED_EVENTS`` (comma list, default ``*``) is the endpoint's enabled events.

Endpoints: create / retrieve / confirm / cancel PaymentIntent, create Refund, create Transfer, list balance
transactions. Test-mode cards as in Stripe: confirming with ``pm_card_chargeDeclined`` (or any payment method
containing "Declined") declines with a 402 ``card_error`` and a ``payment_intent.payment_failed`` event;
anything else succeeds with a charge, a balance transaction and ``payment_intent.succeeded``.

Misbehaviour on demand, for tests (``/_fake/...``, JSON):
* ``POST /_fake/faults {"operation": "payment_intents.create", "times": 2, "when": "before"|"after"}``:
  the next ``times`` calls answer 500. ``before``: nothing happens (a failure in front of Stripe);
  ``after``: the call takes effect and is stored under its idempotency key, but the answer is lost.
  ``"when": "slow", "delay_seconds": 5``: the call waits that long, then takes effect (to kill a caller
  mid-call).
* ``POST /_fake/webhooks {"hold": true, "copies": 1, "delay_seconds": 0}``: hold events instead of sending
  them, send each one ``copies`` times, or send late.
* ``POST /_fake/webhooks/release {"order": "shuffled"|"reversed"|"in_order", "copies": 3, "seed": 1}``.
* ``GET /_fake/requests`` (every API call with its idempotency key and outcome), ``GET /_fake/events``,
  ``GET /_fake/deliveries``.
State lives in memory: a restart forgets everything, like a fresh Stripe test account.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import State

log = logging.getLogger("totem.fake_stripe")

API_VERSION = "2025-09-30.clover"
DECLINED = "Declined"


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


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class StripeError(Exception):
    def __init__(self, status: int, type_: str, message: str, code: str | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": type_, "message": message, **({"code": code} if code else {}), **extra}}


def _int(params: dict[str, Any], name: str, *, required: bool = True) -> int | None:
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
class Fault:
    times: int
    when: str  # before | after | slow
    status: int = 500
    delay_seconds: float = 0.0


@dataclass
class FakeStripe:
    webhook_url: str
    webhook_secret: str
    api_key: str | None
    enabled_events: frozenset[str] | None = None  # None: every type (a Stripe endpoint's "enabled_events")
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)
    balance_transactions: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    idempotency: dict[str, tuple[str, int, dict[str, Any]]] = field(default_factory=dict)
    faults: dict[str, Fault] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    hold: bool = False
    held: list[dict[str, Any]] = field(default_factory=list)
    copies: int = 1
    delay_seconds: float = 0.0
    http: httpx.AsyncClient | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    # --- the API -----------------------------------------------------------------------------------

    def call(self, operation: str, key: str | None, params: dict[str, Any],
             run: Callable[[], dict[str, Any]]) -> tuple[int, dict[str, Any], bool]:
        """Run one API operation under Stripe's idempotency and the injected faults."""
        record = {"operation": operation, "idempotency_key": key, "params": params, "at": time.time()}
        self.requests.append(record)
        fault = self.faults.get(operation)
        if fault and fault.times > 0 and fault.when == "before":
            fault.times -= 1
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
        if fault and fault.times > 0 and fault.when == "after":
            fault.times -= 1
            record["outcome"] = "fault_after"
            return fault.status, StripeError(fault.status, "api_error", "injected failure after commit").body, False
        return status, body, False

    def create_payment_intent(self, params: dict[str, Any]) -> dict[str, Any]:
        amount = _int(params, "amount")
        currency = str(params.get("currency", "")).lower()
        if not amount or amount < 1:
            raise StripeError(400, "invalid_request_error", "Amount must be at least 1.", "amount_too_small")
        if len(currency) != 3:
            raise StripeError(400, "invalid_request_error", "Missing required param: currency.",
                              "parameter_missing", param="currency")
        intent_id = new_id("pi")
        intent = {
            "id": intent_id, "object": "payment_intent", "amount": amount, "amount_received": 0,
            "currency": currency, "status": "requires_payment_method",
            "client_secret": f"{intent_id}_secret_{secrets.token_hex(8)}", "metadata": params.get("metadata", {}),
            "description": params.get("description"), "created": int(time.time()), "livemode": False,
            "capture_method": "automatic", "confirmation_method": "automatic", "latest_charge": None,
            "last_payment_error": None, "payment_method": None, "payment_method_types": ["card"],
        }
        self.intents[intent_id] = intent
        self.emit("payment_intent.created", intent)
        return intent

    def intent(self, intent_id: str) -> dict[str, Any]:
        intent = self.intents.get(intent_id)
        if intent is None:
            raise StripeError(404, "invalid_request_error", f"No such payment_intent: '{intent_id}'",
                              "resource_missing", param="intent")
        return intent

    def confirm(self, intent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        intent = self.intent(intent_id)
        if intent["status"] not in ("requires_payment_method", "requires_confirmation"):
            raise StripeError(400, "invalid_request_error",
                              f"This PaymentIntent's status is {intent['status']}; it cannot be confirmed.",
                              "payment_intent_unexpected_state")
        method = str(params.get("payment_method") or "pm_card_visa")
        intent["payment_method"] = method
        if DECLINED in method:
            error = {"type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
                     "message": "Your card was declined.", "payment_method": {"id": method}}
            intent.update(status="requires_payment_method", last_payment_error=error)
            self.emit("payment_intent.payment_failed", intent)
            raise StripeError(402, "card_error", "Your card was declined.", "card_declined",
                              decline_code="generic_decline", payment_intent=dict(intent))
        charge_id = new_id("ch")
        txn = self.balance_transaction("charge", intent["amount"], intent["currency"], charge_id)
        charge = {
            "id": charge_id, "object": "charge", "amount": intent["amount"], "amount_captured": intent["amount"],
            "amount_refunded": 0, "currency": intent["currency"], "payment_intent": intent_id,
            "metadata": dict(intent["metadata"]), "paid": True, "captured": True, "refunded": False,
            "status": "succeeded", "balance_transaction": txn["id"], "created": int(time.time()),
            "livemode": False, "payment_method": method,
            "refunds": {"object": "list", "data": [], "has_more": False, "total_count": 0,
                        "url": f"/v1/charges/{charge_id}/refunds"},
        }
        self.charges[charge_id] = charge
        intent.update(status="succeeded", amount_received=intent["amount"], latest_charge=charge_id,
                      last_payment_error=None)
        self.emit("charge.succeeded", charge)
        self.emit("payment_intent.succeeded", intent)
        return intent

    def cancel(self, intent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        intent = self.intent(intent_id)
        if intent["status"] in ("succeeded", "canceled"):
            raise StripeError(400, "invalid_request_error",
                              f"You cannot cancel this PaymentIntent because it has a status of {intent['status']}.",
                              "payment_intent_unexpected_state")
        intent.update(status="canceled", cancellation_reason=params.get("cancellation_reason"),
                      canceled_at=int(time.time()))
        self.emit("payment_intent.canceled", intent)
        return intent

    def create_refund(self, params: dict[str, Any]) -> dict[str, Any]:
        charge = self._charge_for(params)
        remaining = charge["amount"] - charge["amount_refunded"]
        amount = _int(params, "amount", required=False)
        amount = remaining if amount is None else amount
        if charge["refunded"] or remaining == 0:
            raise StripeError(400, "invalid_request_error", f"Charge {charge['id']} has already been refunded.",
                              "charge_already_refunded")
        if amount < 1 or amount > remaining:
            raise StripeError(400, "invalid_request_error",
                              f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
                              "amount_too_large")
        refund_id = new_id("re")
        txn = self.balance_transaction("refund", -amount, charge["currency"], refund_id)
        refund = {
            "id": refund_id, "object": "refund", "amount": amount, "currency": charge["currency"],
            "charge": charge["id"], "payment_intent": charge["payment_intent"], "status": "succeeded",
            "reason": params.get("reason"), "metadata": params.get("metadata", {}), "created": int(time.time()),
            "balance_transaction": txn["id"],
        }
        self.refunds[refund_id] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        charge["refunds"]["data"].insert(0, refund)
        charge["refunds"]["total_count"] += 1
        self.emit("refund.created", refund)
        self.emit("charge.refunded", charge)
        return refund

    def _charge_for(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("charge"):
            charge = self.charges.get(str(params["charge"]))
        elif params.get("payment_intent"):
            intent = self.intent(str(params["payment_intent"]))
            charge = self.charges.get(intent["latest_charge"] or "")
        else:
            raise StripeError(400, "invalid_request_error", "One of charge or payment_intent is required.",
                              "parameter_missing")
        if charge is None:
            raise StripeError(400, "invalid_request_error", "This PaymentIntent does not have a successful charge "
                              "to refund.", "charge_not_refundable")
        return charge

    def create_transfer(self, params: dict[str, Any]) -> dict[str, Any]:
        amount = _int(params, "amount")
        currency = str(params.get("currency", "")).lower()
        destination = params.get("destination")
        if not destination:
            raise StripeError(400, "invalid_request_error", "Missing required param: destination.",
                              "parameter_missing", param="destination")
        if not amount:
            raise StripeError(400, "invalid_request_error", "Amount must be at least 1.", "amount_too_small")
        if not str(destination).startswith("acct_") or "invalid" in str(destination):
            raise StripeError(400, "invalid_request_error", f"No such destination: '{destination}'",
                              "resource_missing", param="destination")
        transfer_id = new_id("tr")
        txn = self.balance_transaction("transfer", -amount, currency, transfer_id)
        transfer = {
            "id": transfer_id, "object": "transfer", "amount": amount, "currency": currency,
            "destination": destination, "transfer_group": params.get("transfer_group"),
            "description": params.get("description"), "metadata": params.get("metadata", {}),
            "reversed": False, "amount_reversed": 0, "created": int(time.time()), "livemode": False,
            "balance_transaction": txn["id"],
        }
        self.transfers[transfer_id] = transfer
        self.emit("transfer.created", transfer)
        return transfer

    def balance_transaction(self, type_: str, amount: int, currency: str, source: str) -> dict[str, Any]:
        now = int(time.time())
        txn = {"id": new_id("txn"), "object": "balance_transaction", "amount": amount, "currency": currency,
               "fee": 0, "net": amount, "type": type_, "reporting_category": type_, "source": source,
               "status": "available", "created": now, "available_on": now}
        self.balance_transactions.append(txn)
        return txn

    def list_balance_transactions(self, query: dict[str, str]) -> dict[str, Any]:
        limit = max(1, min(100, int(query.get("limit", "10"))))
        rows = list(reversed(self.balance_transactions))  # newest first, as Stripe lists
        for name in ("type", "source"):
            if query.get(name):
                rows = [r for r in rows if r[name] == query[name]]
        if query.get("starting_after"):
            ids = [r["id"] for r in rows]
            rows = rows[ids.index(query["starting_after"]) + 1:] if query["starting_after"] in ids else []
        page = rows[:limit]
        return {"object": "list", "data": page, "has_more": len(rows) > limit, "url": "/v1/balance_transactions"}

    # --- events and their delivery ----------------------------------------------------------------

    def emit(self, type_: str, obj: dict[str, Any]) -> None:
        event = {"id": new_id("evt"), "object": "event", "api_version": API_VERSION, "created": int(time.time()),
                 "data": {"object": json.loads(json.dumps(obj))}, "livemode": False, "pending_webhooks": 1,
                 "request": {"id": new_id("req"), "idempotency_key": None}, "type": type_}
        self.events.append(event)
        if self.enabled_events is not None and type_ not in self.enabled_events:
            return
        if self.hold:
            self.held.append(event)
        else:
            for _ in range(self.copies):
                self.schedule(event, self.delay_seconds)

    def schedule(self, event: dict[str, Any], delay: float = 0.0) -> None:
        task = asyncio.get_running_loop().create_task(self.deliver(event, delay))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def deliver(self, event: dict[str, Any], delay: float = 0.0, attempts: int = 6) -> None:
        """POST one event, signed at send time; retry (backoff) until a 2xx, as Stripe does."""
        if delay:
            await asyncio.sleep(delay)
        assert self.http is not None
        payload = json.dumps(event, indent=2)
        for attempt in range(1, attempts + 1):
            status: int | str
            try:
                response = await self.http.post(self.webhook_url, content=payload, headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "Stripe-Signature": sign(payload, self.webhook_secret),
                    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"})
                status = response.status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            self.deliveries.append({"event_id": event["id"], "type": event["type"], "attempt": attempt,
                                    "status": status, "at": time.time()})
            if isinstance(status, int) and 200 <= status < 300:
                return
            await asyncio.sleep(min(5.0, 0.2 * 2 ** attempt))
        log.warning("gave up delivering %s after %s attempts", event["id"], attempts)

    def release(self, order: str, copies: int, seed: int | None) -> int:
        batch = [event for event in self.held for _ in range(copies)]
        self.held = []
        if order == "shuffled":
            random.Random(seed).shuffle(batch)
        elif order == "reversed":
            batch.reverse()
        self._deliver_in_sequence(batch)
        return len(batch)

    def _deliver_in_sequence(self, batch: list[dict[str, Any]]) -> None:
        async def run() -> None:
            for event in batch:  # one after another, so the order chosen is the order of arrival
                await self.deliver(event)

        task = asyncio.get_running_loop().create_task(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


# --- HTTP ---------------------------------------------------------------------------------------------


def _fake(state: State) -> FakeStripe:
    return state.fake  # type: ignore[no-any-return]


def _answer(status: int, body: dict[str, Any], replayed: bool = False) -> Response[dict[str, Any]]:
    headers = {"Request-Id": new_id("req"), "Stripe-Version": API_VERSION}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(body, status_code=status, headers=headers)


def _authorized(request: Request[Any, Any, Any], fake: FakeStripe) -> bool:
    if fake.api_key is None:
        return True
    auth = request.headers.get("authorization", "")
    return hmac.compare_digest(auth, f"Bearer {fake.api_key}")


async def _api(request: Request[Any, Any, Any], state: State, operation: str,
               run: Callable[[FakeStripe, dict[str, Any]], dict[str, Any]]) -> Response[dict[str, Any]]:
    fake = _fake(state)
    if not _authorized(request, fake):
        return _answer(401, StripeError(401, "invalid_request_error", "Invalid API Key provided.").body)
    params = decode_form(await request.body())
    fault = fake.faults.get(operation)
    if fault and fault.when == "slow" and fault.times > 0:
        fault.times -= 1
        await asyncio.sleep(fault.delay_seconds)
    status, body, replayed = fake.call(operation, request.headers.get("idempotency-key"), params,
                                       lambda: run(fake, params))
    return _answer(status, body, replayed)


@post("/v1/payment_intents", status_code=200)
async def create_payment_intent(request: Request[Any, Any, Any], state: State) -> Response[dict[str, Any]]:
    return await _api(request, state, "payment_intents.create", lambda f, p: f.create_payment_intent(p))


@get("/v1/payment_intents/{intent_id:str}")
async def retrieve_payment_intent(request: Request[Any, Any, Any], state: State,
                                  intent_id: str) -> Response[dict[str, Any]]:
    fake = _fake(state)
    if not _authorized(request, fake):
        return _answer(401, StripeError(401, "invalid_request_error", "Invalid API Key provided.").body)
    try:
        return _answer(200, fake.intent(intent_id))
    except StripeError as exc:
        return _answer(exc.status, exc.body)


@post("/v1/payment_intents/{intent_id:str}/confirm", status_code=200)
async def confirm_payment_intent(request: Request[Any, Any, Any], state: State,
                                 intent_id: str) -> Response[dict[str, Any]]:
    return await _api(request, state, "payment_intents.confirm", lambda f, p: f.confirm(intent_id, p))


@post("/v1/payment_intents/{intent_id:str}/cancel", status_code=200)
async def cancel_payment_intent(request: Request[Any, Any, Any], state: State,
                                intent_id: str) -> Response[dict[str, Any]]:
    return await _api(request, state, "payment_intents.cancel", lambda f, p: f.cancel(intent_id, p))


@post("/v1/refunds", status_code=200)
async def create_refund(request: Request[Any, Any, Any], state: State) -> Response[dict[str, Any]]:
    return await _api(request, state, "refunds.create", lambda f, p: f.create_refund(p))


@post("/v1/transfers", status_code=200)
async def create_transfer(request: Request[Any, Any, Any], state: State) -> Response[dict[str, Any]]:
    return await _api(request, state, "transfers.create", lambda f, p: f.create_transfer(p))


@get("/v1/balance_transactions")
async def list_balance_transactions(request: Request[Any, Any, Any], state: State) -> Response[dict[str, Any]]:
    fake = _fake(state)
    if not _authorized(request, fake):
        return _answer(401, StripeError(401, "invalid_request_error", "Invalid API Key provided.").body)
    query = {k: str(v) for k, v in request.query_params.items()}
    fault = fake.faults.get("balance_transactions.list")
    if fault and fault.times > 0:
        fault.times -= 1
        return _answer(fault.status, StripeError(fault.status, "api_error", "injected failure").body)
    return _answer(200, fake.list_balance_transactions(query))


@post("/_fake/faults", status_code=200)
async def set_fault(state: State, data: dict[str, Any]) -> dict[str, Any]:
    _fake(state).faults[str(data["operation"])] = Fault(times=int(data.get("times", 1)),
                                                         when=str(data.get("when", "before")),
                                                         status=int(data.get("status", 500)),
                                                         delay_seconds=float(data.get("delay_seconds", 0)))
    return {"ok": True}


@post("/_fake/webhooks", status_code=200)
async def set_webhooks(state: State, data: dict[str, Any]) -> dict[str, Any]:
    fake = _fake(state)
    fake.hold = bool(data.get("hold", fake.hold))
    fake.copies = int(data.get("copies", fake.copies))
    fake.delay_seconds = float(data.get("delay_seconds", fake.delay_seconds))
    return {"hold": fake.hold, "copies": fake.copies, "delay_seconds": fake.delay_seconds, "held": len(fake.held)}


@post("/_fake/webhooks/release", status_code=200)
async def release_webhooks(state: State, data: dict[str, Any]) -> dict[str, Any]:
    fake = _fake(state)
    sent = fake.release(str(data.get("order", "in_order")), int(data.get("copies", 1)), data.get("seed"))
    return {"released": sent}


@get("/_fake/requests")
async def list_requests(state: State) -> list[dict[str, Any]]:
    return _fake(state).requests


@get("/_fake/events")
async def list_events(state: State) -> list[dict[str, Any]]:
    return _fake(state).events


@get("/_fake/deliveries")
async def list_deliveries(state: State) -> list[dict[str, Any]]:
    return _fake(state).deliveries


@get("/_fake/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def _enabled(spec: str) -> frozenset[str] | None:
    names = frozenset(name.strip() for name in spec.split(",") if name.strip())
    return None if not names or "*" in names else names


def create_app(env: dict[str, str] | None = None) -> Litestar:
    env = dict(os.environ) if env is None else env
    port = env.get("PORT", "8000")
    fake = FakeStripe(
        webhook_url=env.get("FAKE_STRIPE_WEBHOOK_URL") or f"http://127.0.0.1:{port}/v1/webhooks/stripe",
        webhook_secret=env.get("STRIPE_WEBHOOK_SECRET") or "whsec_totem_dev",
        api_key=env.get("STRIPE_API_KEY") or None,
        enabled_events=_enabled(env.get("FAKE_STRIPE_ENABLED_EVENTS", "*")),
    )

    async def open_client(app: Litestar) -> None:
        fake.http = httpx.AsyncClient(timeout=10)

    async def close_client(app: Litestar) -> None:
        for task in list(fake.tasks):
            task.cancel()
        if fake.http is not None:
            await fake.http.aclose()

    return Litestar(
        route_handlers=[create_payment_intent, retrieve_payment_intent, confirm_payment_intent,
                        cancel_payment_intent, create_refund, create_transfer, list_balance_transactions,
                        set_fault, set_webhooks, release_webhooks, list_requests, list_events, list_deliveries,
                        health],
        on_startup=[open_client], on_shutdown=[close_client], state=State({"fake": fake}),
        openapi_config=None, debug=False,
    )
