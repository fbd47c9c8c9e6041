"""The HTTP edge of the fake: Stripe's endpoints (``/v1/...``) and the test controls (``/_fake/...``).

Handlers only parse, authenticate and answer; the account and its rules live in ``state.py``, the objects
in ``customers.py``, ``intents.py`` and ``objects.py``. Handlers close over the one ``FakeStripe`` the app
was built with. Every Stripe answer carries ``Request-Id`` and ``Stripe-Version`` (the one version the fake
speaks; a request naming another gets Stripe's 400: ``version.py``), and a replay also
``Idempotent-Replayed: true``. With an API key configured, a call without ``Authorization: Bearer <key>``
gets Stripe's 401. A browser confirms a PaymentIntent as Stripe.js does, with a publishable key
(``key=pk_test_…``) and the intent's ``client_secret`` in the form instead of a secret key (wrong secret:
Stripe's 400 naming ``client_secret``); ``cors.py`` lets any site's page make that call. Each endpoint is an
operation named as the faults name it (``payment_intents.capture``,
``customers.retrieve``): a write runs through ``FakeStripe.call`` (idempotency, faults before / after /
slow); a read fails up front on any fault armed for it.
"""

from __future__ import annotations

import hmac
import html
from collections.abc import Callable
from typing import Any

from litestar import Request, Response, delete, get, post
from litestar.enums import MediaType
from litestar.handlers import HTTPRouteHandler
from litestar.response import Redirect

from totem.fake_stripe import accounts, customers, disputes, intents, objects, refunds
from totem.fake_stripe.faults import Fault
from totem.fake_stripe.state import FakeStripe, StripeError, decode_form, new_id
from totem.fake_stripe.version import API_VERSION, version_refusal

Params = dict[str, Any]
Answer = Response[dict[str, Any]]


def _answer(status: int, body: dict[str, Any], replayed: bool = False) -> Answer:
    headers = {"Request-Id": new_id("req"), "Stripe-Version": API_VERSION}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(body, status_code=status, headers=headers)


def _unauthorized() -> Answer:
    return _answer(401, StripeError(401, "invalid_request_error", "Invalid API Key provided.").body)


def stripe_api(fake: FakeStripe, api_key: str | None) -> list[HTTPRouteHandler]:
    """The Stripe endpoints Totem calls: Customers, PaymentMethods (read), PaymentIntents, Charges (read),
    Refunds, Transfers, balance transactions, Disputes (read)."""

    def refusal(request: Request[Any, Any, Any]) -> Answer | None:
        """Stripe's 401 without the API key (when one is configured), its 400 for a version not spoken."""
        if api_key is not None and not hmac.compare_digest(request.headers.get("authorization", ""),
                                                           f"Bearer {api_key}"):
            return _unauthorized()
        wrong_version = version_refusal(request.headers.get("stripe-version"))
        return None if wrong_version is None else _answer(wrong_version.status, wrong_version.body)

    def publishable_refusal(form: Params, intent_id: str) -> StripeError | None:
        """None when ``form`` carries a test publishable key and the intent's own client secret."""
        key, secret = str(form.get("key", "")), str(form.get("client_secret", ""))
        if not key.startswith("pk_test_"):
            return StripeError(401, "invalid_request_error", "Invalid API Key provided.")
        intent = fake.intents.get(intent_id)
        if intent is None:
            return StripeError(404, "invalid_request_error", f"No such payment_intent: '{intent_id}'",
                               "resource_missing", param="intent")
        if not hmac.compare_digest(secret.encode(), str(intent["client_secret"]).encode()):
            return StripeError(400, "invalid_request_error", "The client_secret provided does not match the "
                               "client_secret associated with the PaymentIntent.", "payment_intent_invalid_parameter",
                               param="client_secret")
        return None

    async def call(request: Request[Any, Any, Any], operation: str, run: Callable[[Params], Params]) -> Answer:
        refused = refusal(request)
        if refused is not None:
            return refused
        params = decode_form(await request.body())
        await fake.faults.stall(operation)
        status, body, replayed = fake.call(operation, request.headers.get("idempotency-key"), params,
                                           lambda: run(params), path=request.url.path)
        return _answer(status, body, replayed)

    def read(request: Request[Any, Any, Any], operation: str, fetch: Callable[[], Params]) -> Answer:
        refused = refusal(request)
        if refused is not None:
            return refused
        fault = fake.faults.take(operation)
        if fault is not None:
            return _answer(fault.status, StripeError(fault.status, "api_error", "injected failure").body)
        try:
            return _answer(200, fetch())
        except StripeError as exc:
            return _answer(exc.status, exc.body)

    @post("/v1/customers", status_code=200)
    async def create_customer(request: Request[Any, Any, Any]) -> Answer:
        return await call(request, "customers.create", lambda p: customers.create_customer(fake, p))

    @get("/v1/customers/{customer_id:str}")
    async def retrieve_customer(request: Request[Any, Any, Any], customer_id: str) -> Answer:
        return read(request, "customers.retrieve", lambda: customers.customer(fake, customer_id))

    @get("/v1/payment_methods/{method_id:str}")
    async def retrieve_payment_method(request: Request[Any, Any, Any], method_id: str) -> Answer:
        return read(request, "payment_methods.retrieve", lambda: customers.payment_method(fake, method_id))

    @post("/v1/payment_intents", status_code=200)
    async def create_payment_intent(request: Request[Any, Any, Any]) -> Answer:
        return await call(request, "payment_intents.create",
                          lambda p: intents.create_payment_intent(fake, p, str(request.base_url)))

    @get("/v1/payment_intents/{intent_id:str}")
    async def retrieve_payment_intent(request: Request[Any, Any, Any], intent_id: str) -> Answer:
        if "key" in request.query_params:  # a browser (Stripe.js) reading the outcome, e.g. after 3-D Secure
            refusal = publishable_refusal(dict(request.query_params), intent_id)
            if refusal is not None:
                return _answer(refusal.status, refusal.body)
            return _answer(200, intents.payment_intent(fake, intent_id))
        return read(request, "payment_intents.retrieve", lambda: intents.payment_intent(fake, intent_id))

    @post("/v1/payment_intents/{intent_id:str}/confirm", status_code=200)
    async def confirm_payment_intent(request: Request[Any, Any, Any], intent_id: str) -> Answer:
        form = decode_form(await request.body())
        if "key" in form:  # a browser (Stripe.js): a publishable key and the intent's client secret
            wrong_version = version_refusal(request.headers.get("stripe-version"))
            refused = publishable_refusal(form, intent_id) if wrong_version is None else wrong_version
            if refused is not None:
                return _answer(refused.status, refused.body)
            params = {k: v for k, v in form.items() if k not in ("key", "client_secret")}
            await fake.faults.stall("payment_intents.confirm")
            status, body, replayed = fake.call("payment_intents.confirm", request.headers.get("idempotency-key"),
                                               params, lambda: intents.confirm_payment_intent(
                                                   fake, intent_id, params, str(request.base_url)),
                                               path=request.url.path)
            return _answer(status, body, replayed)
        return await call(request, "payment_intents.confirm",
                          lambda p: intents.confirm_payment_intent(fake, intent_id, p, str(request.base_url)))

    @post("/v1/payment_intents/{intent_id:str}/cancel", status_code=200)
    async def cancel_payment_intent(request: Request[Any, Any, Any], intent_id: str) -> Answer:
        return await call(request, "payment_intents.cancel",
                          lambda p: intents.cancel_payment_intent(fake, intent_id, p))

    @post("/v1/payment_intents/{intent_id:str}/capture", status_code=200)
    async def capture_payment_intent(request: Request[Any, Any, Any], intent_id: str) -> Answer:
        return await call(request, "payment_intents.capture",
                          lambda p: intents.capture_payment_intent(fake, intent_id, p))

    @get("/v1/charges/{charge_id:str}")
    async def retrieve_charge(request: Request[Any, Any, Any], charge_id: str) -> Answer:
        return read(request, "charges.retrieve", lambda: intents.charge(fake, charge_id))

    @post("/v1/refunds", status_code=200)
    async def create_refund(request: Request[Any, Any, Any]) -> Answer:
        return await call(request, "refunds.create", lambda p: refunds.create_refund(fake, p))

    @get("/v1/refunds/{refund_id:str}")
    async def retrieve_refund(request: Request[Any, Any, Any], refund_id: str) -> Answer:
        return read(request, "refunds.retrieve", lambda: refunds.retrieve_refund(fake, refund_id))

    @post("/v1/transfers", status_code=200)
    async def create_transfer(request: Request[Any, Any, Any]) -> Answer:
        return await call(request, "transfers.create", lambda p: objects.create_transfer(fake, p))

    @get("/v1/balance_transactions")
    async def list_balance_transactions(request: Request[Any, Any, Any]) -> Answer:
        query = {k: str(v) for k, v in request.query_params.items()}
        return read(request, "balance_transactions.list", lambda: objects.list_balance_transactions(fake, query))

    @get("/v1/disputes/{dispute_id:str}")
    async def retrieve_dispute(request: Request[Any, Any, Any], dispute_id: str) -> Answer:
        return read(request, "disputes.retrieve", lambda: disputes.retrieve_dispute(fake, dispute_id))

    @post("/v1/accounts", status_code=200)
    async def create_account(request: Request[Any, Any, Any]) -> Answer:
        return await call(request, "accounts.create", lambda p: accounts.create_account(fake, p))

    @get("/v1/accounts/{account_id:str}")
    async def retrieve_account(request: Request[Any, Any, Any], account_id: str) -> Answer:
        return read(request, "accounts.retrieve", lambda: accounts.public(accounts.account(fake, account_id)))

    @post("/v1/account_links", status_code=200)
    async def create_account_link(request: Request[Any, Any, Any]) -> Answer:
        base = str(request.base_url)
        return await call(request, "account_links.create", lambda p: accounts.create_account_link(fake, p, base))

    return [create_customer, retrieve_customer, retrieve_payment_method, create_payment_intent,
            retrieve_payment_intent, confirm_payment_intent, cancel_payment_intent, capture_payment_intent,
            retrieve_charge, create_refund, retrieve_refund, create_transfer, list_balance_transactions,
            retrieve_dispute, create_account, retrieve_account, create_account_link]


def hosted_pages(fake: FakeStripe) -> list[HTTPRouteHandler]:
    """Pages a browser opens on Stripe's side: Connect onboarding (an Account Link's URL)."""

    @get("/setup/e/{account_id:str}/{token:str}", media_type=MediaType.HTML)
    async def onboarding(account_id: str, token: str, outcome: str | None = None) -> Response[Any]:
        try:
            page, redirect = accounts.onboarding_page(fake, account_id, token, outcome)
        except StripeError as exc:
            return Response(html.escape(str(exc)), status_code=exc.status, media_type=MediaType.TEXT)
        if redirect is not None:
            return Redirect(redirect, status_code=303)
        return Response(page, media_type=MediaType.HTML)

    return [onboarding]


def fake_controls(fake: FakeStripe) -> list[HTTPRouteHandler]:
    """``/_fake/...``: arm faults, steer webhook delivery, let an authorisation lapse, open and close disputes
    (and move their evidence deadline), and read what happened (JSON, no auth)."""

    @post("/_fake/faults", status_code=200)
    async def set_fault(data: dict[str, Any]) -> dict[str, Any]:
        fake.faults.arm(str(data["operation"]), Fault.from_request(data))
        return {"ok": True}

    @delete("/_fake/faults", status_code=200)
    async def clear_faults() -> dict[str, Any]:
        fake.faults.armed.clear()
        return {"ok": True}

    def webhook_settings() -> dict[str, Any]:
        webhooks = fake.webhooks
        return {"hold": webhooks.hold, "copies": webhooks.copies, "delay_seconds": webhooks.delay_seconds,
                "attempts": webhooks.attempts, "held": len(webhooks.held), "in_flight": webhooks.in_flight}

    @post("/_fake/webhooks", status_code=200)
    async def set_webhooks(data: dict[str, Any]) -> dict[str, Any]:
        webhooks = fake.webhooks
        webhooks.hold = bool(data.get("hold", webhooks.hold))
        webhooks.copies = int(data.get("copies", webhooks.copies))
        webhooks.delay_seconds = float(data.get("delay_seconds", webhooks.delay_seconds))
        webhooks.attempts = max(1, int(data.get("attempts", webhooks.attempts)))
        return webhook_settings()

    @get("/_fake/webhooks")
    async def get_webhooks() -> dict[str, Any]:
        return webhook_settings()

    @post("/_fake/webhooks/release", status_code=200)
    async def release_webhooks(data: dict[str, Any]) -> dict[str, Any]:
        sent = fake.webhooks.release(str(data.get("order", "in_order")), int(data.get("copies", 1)),
                                     data.get("seed"))
        return {"released": sent}

    @post("/_fake/payment_intents/{intent_id:str}/expire_authorization", status_code=200)
    async def expire_authorization(intent_id: str) -> Answer:
        try:
            return _answer(200, intents.expire_authorization(fake, intent_id))
        except StripeError as exc:
            return _answer(exc.status, exc.body)

    def control(run: Callable[[], Params]) -> Answer:
        try:
            return _answer(200, run())
        except StripeError as exc:
            return _answer(exc.status, exc.body)

    @post("/_fake/refunds", status_code=200)
    async def dashboard_refund(data: dict[str, Any]) -> Answer:
        return control(lambda: refunds.create_dashboard_refund(fake, data))

    @post("/_fake/refunds/{refund_id:str}/succeed", status_code=200)
    async def succeed_refund(refund_id: str) -> Answer:
        return control(lambda: refunds.succeed_refund(fake, refund_id))

    @post("/_fake/refunds/{refund_id:str}/fail", status_code=200)
    async def fail_refund(refund_id: str, data: dict[str, Any] | None = None) -> Answer:
        return control(lambda: refunds.fail_refund(fake, refund_id, (data or {}).get("failure_reason")))

    @post("/_fake/disputes", status_code=200)
    async def open_dispute(data: dict[str, Any]) -> Answer:
        return control(lambda: disputes.open_dispute(fake, data))

    @post("/_fake/disputes/{dispute_id:str}/close", status_code=200)
    async def close_dispute(dispute_id: str, data: dict[str, Any]) -> Answer:
        return control(lambda: disputes.close_dispute(fake, dispute_id, data))

    @post("/_fake/disputes/{dispute_id:str}/due_by", status_code=200)
    async def move_dispute_due_by(dispute_id: str, data: dict[str, Any]) -> Answer:
        return control(lambda: disputes.move_due_by(fake, dispute_id, data))

    @get("/_fake/requests")
    async def list_requests() -> list[dict[str, Any]]:
        return fake.requests

    @get("/_fake/events")
    async def list_events() -> list[dict[str, Any]]:
        return fake.events

    @get("/_fake/deliveries")
    async def list_deliveries() -> list[dict[str, Any]]:
        return fake.webhooks.deliveries

    @get("/_fake/objects")
    async def list_objects() -> dict[str, list[dict[str, Any]]]:
        return {"payment_intents": list(fake.intents.values()), "charges": list(fake.charges.values()),
                "refunds": list(fake.refunds.values()), "transfers": list(fake.transfers.values())}

    @get("/_fake/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return [set_fault, clear_faults, set_webhooks, get_webhooks, release_webhooks, expire_authorization,
            dashboard_refund, succeed_refund, fail_refund, open_dispute, close_dispute, move_dispute_due_by,
            list_requests, list_events, list_deliveries, list_objects, health]
