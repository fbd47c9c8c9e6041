"""The stripe SDK's transport on urllib3 (shared/stripe_http.py): calls reuse one keep-alive connection, any
HTTP answer reaches the SDK as Stripe sent it, a call that got no answer is a retryable APIConnectionError,
and the proxy is taken from the environment once."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
import stripe

from shared.config import Settings
from shared.errors import PaymentProviderRefused
from shared.stripe_api import STRIPE_API_VERSION, CardDeclined, StripeApi
from shared.stripe_http import Urllib3Client, proxy_for


class _Stripe(BaseHTTPRequestHandler):
    """Answers PaymentIntent creates; an amount of 402 declines the card. Counts the connections it accepts."""

    protocol_version = "HTTP/1.1"  # keep-alive
    connections = 0
    seen: ClassVar[list[dict[str, Any]]] = []

    def setup(self) -> None:
        type(self).connections += 1
        super().setup()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        type(self).seen.append({"path": self.path, "body": body, "version": self.headers["Stripe-Version"],
                                "key": self.headers["Idempotency-Key"]})
        answer: dict[str, Any]
        if "amount=402" in body:
            status, answer = 402, {"error": {"type": "card_error", "code": "card_declined", "message": "Declined.",
                                             "decline_code": "insufficient_funds"}}
        else:
            status, answer = 200, {"id": "pi_1", "object": "payment_intent", "amount": 2500, "currency": "eur",
                                   "status": "requires_payment_method", "client_secret": "pi_1_secret_x"}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", "req_test")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stripe_server() -> Iterator[str]:
    _Stripe.connections, _Stripe.seen = 0, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stripe)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _api(base: str, attempts: int = 1) -> StripeApi:
    return StripeApi(Settings(database_url="postgresql://unused", redis_url="redis://unused",
                              stripe_api_key="sk_test_x", stripe_api_base=base, stripe_max_attempts=attempts))


def test_the_api_client_runs_on_urllib3_and_reuses_one_connection(stripe_server: str) -> None:
    api = _api(stripe_server)
    assert isinstance(api.client._requestor._client, Urllib3Client)  # what the SDK was given
    intents = [api.create_payment_intent(booking_id=f"b{n}", amount=2500, currency="EUR",
                                         description="test") for n in range(5)]
    assert {intent.id for intent in intents} == {"pi_1"}
    assert intents[0].client_secret == "pi_1_secret_x"
    assert _Stripe.connections == 1  # five calls, one keep-alive connection
    assert [seen["key"] for seen in _Stripe.seen] == [f"totem-booking-b{n}-intent" for n in range(5)]
    assert {seen["version"] for seen in _Stripe.seen} == {STRIPE_API_VERSION}
    assert "amount=2500" in _Stripe.seen[0]["body"]


def test_an_error_answer_reaches_the_sdk_as_stripe_sent_it(stripe_server: str) -> None:
    with pytest.raises(CardDeclined) as declined:
        _api(stripe_server).create_payment_intent(booking_id="b", amount=402, currency="EUR", description="test")
    assert declined.value.stripe_code == "card_declined"
    assert declined.value.decline_code == "insufficient_funds"
    assert isinstance(declined.value, PaymentProviderRefused)


def test_no_answer_is_a_retryable_connection_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = Urllib3Client(timeout=2, api_base=f"http://127.0.0.1:{port}")
    with pytest.raises(stripe.APIConnectionError) as refused:
        client.request("post", f"http://127.0.0.1:{port}/v1/payment_intents", {}, "amount=1")
    assert refused.value.should_retry
    with pytest.raises(stripe.APIConnectionError):  # and our policy gives up after its attempts, same error
        _api(f"http://127.0.0.1:{port}", attempts=2).create_payment_intent(
            booking_id="b", amount=2500, currency="EUR", description="test")


def test_the_proxy_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert proxy_for("https://api.stripe.com") == "http://proxy.internal:3128"
    monkeypatch.setenv("NO_PROXY", "api.stripe.com")
    assert proxy_for("https://api.stripe.com") is None
