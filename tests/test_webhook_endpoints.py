"""Outbound webhooks: signatures a Standard Webhooks receiver accepts (checked with the reference
implementation, ``standardwebhooks``), SSRF refusals, what one POST to a real local receiver comes to, and a
provider's webhook endpoints through the API: the secret shown once, scoped by provider, rotated, deleted,
recovered."""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import psycopg
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from shared import webhooks
from shared.errors import WebhookTargetRefused
from shared.webhooks import check_target, new_secret, post_webhook, signature_header
from tests.support import NO_CREDENTIAL, Catalog, make_catalog

SYSTEM = {"X-System-Token": "test-system-token"}
SECRET_FORMAT = re.compile(r"^whsec_[A-Za-z0-9+/]{43}=$")  # base64 of 32 bytes
GLOBAL_TARGET = "https://1.1.1.1/totem-test-hooks"  # a global address literal: passes the SSRF check, no DNS;
# nothing is ever sent to it: the providers these tests create have no events


def headers_of(msg_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


# Signatures ------------------------------------------------------------------------------------------

def test_a_new_secret_is_whsec_and_32_random_bytes() -> None:
    secret = new_secret()
    assert SECRET_FORMAT.match(secret)
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert new_secret() != secret


def test_the_reference_receiver_verifies_our_signature() -> None:
    secret, msg_id, timestamp, body = new_secret(), f"msg_{uuid.uuid4().hex}", int(time.time()), b'{"type":"x"}'
    header = signature_header([secret], msg_id, timestamp, body)
    assert header.startswith("v1,") and " " not in header
    assert Webhook(secret).verify(body, headers_of(msg_id, timestamp, header)) == {"type": "x"}


def test_a_signature_fails_for_another_secret_or_an_altered_body() -> None:
    secret, msg_id, timestamp = new_secret(), "msg_1", int(time.time())
    header = signature_header([secret], msg_id, timestamp, b'{"a":1}')
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(b'{"a":1}', headers_of(msg_id, timestamp, header))
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"a":2}', headers_of(msg_id, timestamp, header))


def test_during_a_rotation_both_the_old_and_the_new_secret_verify_the_one_header() -> None:
    old, new = new_secret(), new_secret()
    msg_id, timestamp, body = "msg_rotation", int(time.time()), b'{"type":"booking_paid"}'
    header = signature_header([new, old], msg_id, timestamp, body)
    assert len(header.split(" ")) == 2
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers_of(msg_id, timestamp, header)) == {"type": "booking_paid"}


# SSRF ------------------------------------------------------------------------------------------------

PRIVATE_TARGETS = [
    "http://127.0.0.1/hook", "http://10.1.2.3/hook", "http://192.168.0.10:8080/", "http://172.16.0.1/",
    "http://169.254.169.254/latest/meta-data/", "http://[::1]/hook", "http://[::ffff:127.0.0.1]/hook",
    "http://[fe80::1]/", "http://[fc00::1]/", "http://0.0.0.0/", "http://100.64.0.1/", "http://224.0.0.1/",
    "http://[2002:7f00:1::]/", "http://[64:ff9b::a9fe:a9fe]/", "http://localhost:8000/hook", "http://0x7f.1/",
]


@pytest.mark.parametrize("url", PRIVATE_TARGETS)
def test_private_loopback_and_link_local_targets_are_refused(url: str) -> None:
    with pytest.raises(WebhookTargetRefused):
        check_target(url, allow_private=False)
    check_target(url, allow_private=True)


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "file:///etc/passwd", "gopher://127.0.0.1/",
                                 "javascript:alert(1)", "HTTP://1.1.1.1/", "http://", "http:///path"])
def test_only_http_and_https_urls_with_a_host_are_targets(url: str) -> None:
    for allow_private in (False, True):
        with pytest.raises(WebhookTargetRefused):
            check_target(url, allow_private=allow_private)


def test_a_global_address_is_a_target() -> None:
    check_target("https://1.1.1.1/hooks", allow_private=False)
    check_target("http://[2606:4700:4700::1111]:8443/hooks", allow_private=False)


# One POST to a real receiver -------------------------------------------------------------------------

@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ReceiverHandler)
        self.received: list[Received] = []
        self.release = threading.Event()  # lets the handler that never answers go at teardown

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def requests_for(self, msg_id: str) -> list[Received]:
        return [r for r in self.received if r.headers.get("webhook-id") == msg_id]


class ReceiverHandler(BaseHTTPRequestHandler):
    """Answers by path: /status/<code>, /busy (429, Retry-After: 7), /unavailable (503, Retry-After as a
    date two minutes ahead), /hang (never answers while the test waits)."""

    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.server.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        if self.path == "/hang":
            self.server.release.wait(timeout=30)
            return self._answer(200)
        if self.path == "/busy":
            return self._answer(429, b"slow down", {"Retry-After": "7"})
        if self.path == "/unavailable":
            when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
            return self._answer(503, b"", {"Retry-After": when})
        status = int(self.path.removeprefix("/status/"))
        if status == 302:
            return self._answer(302, b"", {"Location": "/status/200"})
        return self._answer(status, b"boom " * 300 if status >= 500 else b"ok")

    def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def send(receiver: Receiver, path: str, *, secrets: list[str] | None = None, timeout: float = 5.0,
         allow_private: bool = True) -> tuple[str, Any]:
    msg_id = f"msg_{uuid.uuid4().hex}"
    body = json.dumps({"type": "booking_paid", "timestamp": "2026-01-01T00:00:00Z", "data": {"id": msg_id}})
    outcome = post_webhook(receiver.url + path, secrets=secrets or [new_secret()], msg_id=msg_id,
                           body=body.encode(), timeout=timeout, allow_private=allow_private)
    return msg_id, outcome


def test_a_2xx_answer_is_a_success_and_the_receiver_verifies_the_signature(receiver: Receiver) -> None:
    secret = new_secret()
    msg_id, outcome = send(receiver, "/status/200", secrets=[secret])
    assert outcome.succeeded and outcome.status_code == 200 and outcome.error is None
    assert outcome.response_excerpt == "ok" and not outcome.gone and outcome.duration_ms >= 0
    [request] = receiver.requests_for(msg_id)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "Totem-Webhooks/1"
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
    assert Webhook(secret).verify(request.body, request.headers)["data"] == {"id": msg_id}


def test_a_receiver_holding_either_secret_verifies_a_message_sent_during_a_rotation(receiver: Receiver) -> None:
    old, new = new_secret(), new_secret()
    msg_id, outcome = send(receiver, "/status/204", secrets=[new, old])
    assert outcome.succeeded and outcome.response_excerpt is None
    [request] = receiver.requests_for(msg_id)
    for secret in (old, new):
        Webhook(secret).verify(request.body, request.headers)


def test_a_5xx_answer_is_a_failure_with_the_start_of_the_body(receiver: Receiver) -> None:
    _, outcome = send(receiver, "/status/500")
    assert not outcome.succeeded and outcome.status_code == 500 and outcome.error
    assert outcome.response_excerpt is not None and len(outcome.response_excerpt) == 500
    assert outcome.response_excerpt.startswith("boom boom")


def test_a_redirect_is_a_failure_and_is_not_followed(receiver: Receiver) -> None:
    msg_id, outcome = send(receiver, "/status/302")
    assert not outcome.succeeded and outcome.status_code == 302 and "redirect" in (outcome.error or "")
    assert [r.path for r in receiver.requests_for(msg_id)] == ["/status/302"]


def test_410_gone_asks_for_the_endpoint_to_be_disabled(receiver: Receiver) -> None:
    _, outcome = send(receiver, "/status/410")
    assert not outcome.succeeded and outcome.status_code == 410 and outcome.gone


def test_429_retry_after_seconds_is_honoured(receiver: Receiver) -> None:
    _, outcome = send(receiver, "/busy")
    assert not outcome.succeeded and outcome.status_code == 429 and outcome.retry_after_seconds == 7


def test_503_retry_after_as_an_http_date_becomes_seconds(receiver: Receiver) -> None:
    _, outcome = send(receiver, "/unavailable")
    assert outcome.status_code == 503 and outcome.retry_after_seconds is not None
    assert 100 <= outcome.retry_after_seconds <= 121


def test_a_receiver_that_never_answers_is_a_timeout_without_a_status(receiver: Receiver) -> None:
    started = time.monotonic()
    msg_id, outcome = send(receiver, "/hang", timeout=0.5)
    assert not outcome.succeeded and outcome.status_code is None
    assert (outcome.error or "").startswith("timeout") and outcome.response_excerpt is None
    assert time.monotonic() - started < 3 and len(receiver.requests_for(msg_id)) == 1


def test_a_closed_port_is_a_connection_failure_without_a_status() -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as closed:
        port = closed.server_address[1]
    outcome = post_webhook(f"http://127.0.0.1:{port}/hook", secrets=[new_secret()], msg_id="msg_closed", body=b"{}",
                           timeout=2, allow_private=True)
    assert not outcome.succeeded and outcome.status_code is None and (outcome.error or "").startswith("connection")


def test_a_private_target_is_refused_right_before_sending_and_nothing_is_sent(receiver: Receiver) -> None:
    msg_id, outcome = send(receiver, "/status/200", allow_private=False)
    assert not outcome.succeeded and outcome.status_code is None
    assert (outcome.error or "").startswith("target refused") and receiver.requests_for(msg_id) == []


def test_the_post_goes_to_the_address_that_was_checked_even_if_the_name_rebinds(
        receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name answers a checked address once, then another; the POST must not resolve again.
    (The receiver is on loopback, so the check is told to pass it; the second answer would time out.)"""
    answers = iter(["127.0.0.1", "10.255.255.1"])
    port, resolve = receiver.server_address[1], socket.getaddrinfo

    def rebinding(host: str, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host != "hooks.example.test":  # connecting to an address literal goes through getaddrinfo too
            return resolve(host, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(webhooks, "_refusal", lambda address: None)
    outcome = post_webhook(f"http://hooks.example.test:{port}/status/200", secrets=[new_secret()], msg_id="msg_rebind",
                           body=b"{}", timeout=2, allow_private=False)
    assert outcome.succeeded, outcome
    [request] = receiver.requests_for("msg_rebind")
    assert request.headers["host"] == f"hooks.example.test:{port}"


# The API ---------------------------------------------------------------------------------------------

def api(client: httpx.Client, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
        **params: Any) -> httpx.Response:
    return client.request(method, f"/v1{path}", json=body, params=params or None, headers={**SYSTEM, **(headers or {})})


def endpoints(provider_id: str) -> str:
    return f"/providers/{provider_id}/webhook-endpoints"


def create(client: httpx.Client, provider_id: str, **body: Any) -> dict[str, Any]:
    response = api(client, "POST", endpoints(provider_id), {"url": GLOBAL_TARGET, **body})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture
def other_provider(database_url: str) -> Catalog:
    return make_catalog(database_url)


def test_an_endpoint_is_created_with_its_secret_shown_once(client: httpx.Client, catalog: Catalog) -> None:
    created = create(client, catalog.provider_id, events=["booking_paid", "booking_cancelled"])
    assert set(created) == {"id", "url", "events", "status", "disabled_reason", "secret", "created_at"}
    assert created["url"] == GLOBAL_TARGET and created["status"] == "active"
    assert created["events"] == ["booking_paid", "booking_cancelled"]
    assert SECRET_FORMAT.match(created["secret"])
    listed = api(client, "GET", endpoints(catalog.provider_id)).json()
    assert [item["id"] for item in listed["items"]] == [created["id"]] and listed["next_cursor"] is None
    assert "secret" not in listed["items"][0] and created["secret"] not in json.dumps(listed)


def test_an_endpoint_without_events_gets_every_event(client: httpx.Client, catalog: Catalog) -> None:
    assert create(client, catalog.provider_id)["events"] == []


def test_a_repeated_create_with_the_same_idempotency_key_replays_the_same_endpoint(
        client: httpx.Client, catalog: Catalog) -> None:
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = api(client, "POST", endpoints(catalog.provider_id), {"url": GLOBAL_TARGET}, headers=key)
    again = api(client, "POST", endpoints(catalog.provider_id), {"url": GLOBAL_TARGET}, headers=key)
    assert first.status_code == again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert len(api(client, "GET", endpoints(catalog.provider_id)).json()["items"]) == 1


def test_the_list_is_paged_with_a_cursor(client: httpx.Client, catalog: Catalog) -> None:
    ids = [create(client, catalog.provider_id)["id"] for _ in range(3)]
    first = api(client, "GET", endpoints(catalog.provider_id), limit=2).json()
    second = api(client, "GET", endpoints(catalog.provider_id), limit=2, cursor=first["next_cursor"]).json()
    assert [i["id"] for i in first["items"] + second["items"]] == ids and second["next_cursor"] is None


@pytest.mark.parametrize("url", ["ftp://x", "javascript:alert(1)", "http://"])
def test_a_target_that_is_not_http_is_refused_with_422(client: httpx.Client, catalog: Catalog, url: str) -> None:
    response = api(client, "POST", endpoints(catalog.provider_id), {"url": url})
    assert response.status_code == 422 and response.json()["code"] == "WEBHOOK_TARGET_REFUSED"
    assert api(client, "GET", endpoints(catalog.provider_id)).json()["items"] == []


@pytest.mark.parametrize("body", [{}, {"url": GLOBAL_TARGET, "events": ["Not An Event"]},
                                  {"url": GLOBAL_TARGET, "colour": "red"}])
def test_a_malformed_body_is_refused(client: httpx.Client, catalog: Catalog, body: dict[str, Any]) -> None:
    response = api(client, "POST", endpoints(catalog.provider_id), body)
    assert response.status_code == 400 and response.json()["code"] == "VALIDATION_FAILED"


def test_an_unknown_provider_gets_no_endpoint(client: httpx.Client) -> None:
    response = api(client, "POST", endpoints(str(uuid.uuid4())), {"url": GLOBAL_TARGET})
    assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND"


def test_endpoints_need_the_system_token(client: httpx.Client, catalog: Catalog) -> None:
    path = f"/v1{endpoints(catalog.provider_id)}"
    assert client.get(path, headers=NO_CREDENTIAL).json()["code"] == "UNAUTHORIZED"
    assert client.post(path, json={"url": GLOBAL_TARGET}, headers={"X-System-Token": "guess"}).status_code == 403


def test_rotation_gives_a_new_secret_and_keeps_the_old_one_signing_for_a_day(
        client: httpx.Client, catalog: Catalog, db: psycopg.Connection[dict[str, Any]]) -> None:
    created = create(client, catalog.provider_id)
    rotated = api(client, "POST", f"{endpoints(catalog.provider_id)}/{created['id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["id"] == created["id"] and SECRET_FORMAT.match(body["secret"]) and body["secret"] != created["secret"]
    expires = datetime.fromisoformat(body["previous_secret_expires_at"])
    assert timedelta(hours=23) < expires - datetime.now(UTC) <= timedelta(hours=24)
    row = db.execute("SELECT secret, previous_secret FROM webhook_endpoints WHERE id = %s", (created["id"],)).fetchone()
    assert row == {"secret": body["secret"], "previous_secret": created["secret"]}
    msg_id, timestamp, payload = "msg_rotated", int(time.time()), b'{"type":"booking_paid"}'
    header = signature_header([row["secret"], row["previous_secret"]], msg_id, timestamp, payload)
    for secret in (created["secret"], body["secret"]):
        Webhook(secret).verify(payload, headers_of(msg_id, timestamp, header))
    assert body["secret"] not in api(client, "GET", endpoints(catalog.provider_id)).text


def test_a_deleted_endpoint_is_no_longer_listed(client: httpx.Client, catalog: Catalog) -> None:
    kept, deleted = create(client, catalog.provider_id), create(client, catalog.provider_id)
    path = f"{endpoints(catalog.provider_id)}/{deleted['id']}"
    assert api(client, "DELETE", path).status_code == 204
    listed = api(client, "GET", endpoints(catalog.provider_id)).json()["items"]
    assert [item["id"] for item in listed] == [kept["id"]]
    assert api(client, "DELETE", path).status_code == 404
    assert api(client, "POST", f"{path}/rotate-secret").status_code == 404


def test_another_providers_endpoint_is_not_found(client: httpx.Client, catalog: Catalog,
                                                 other_provider: Catalog) -> None:
    theirs = create(client, other_provider.provider_id)
    path = f"{endpoints(catalog.provider_id)}/{theirs['id']}"
    for method, suffix, body in [("DELETE", "", None), ("POST", "/rotate-secret", None),
                                 ("POST", "/recover", {"since": "2020-01-01T00:00:00Z"})]:
        response = api(client, method, path + suffix, body)
        assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND", (method, suffix)
    assert api(client, "GET", endpoints(catalog.provider_id)).json()["items"] == []
    listed = api(client, "GET", endpoints(other_provider.provider_id)).json()["items"]
    assert [item["id"] for item in listed] == [theirs["id"]]


def _endpoint_row(db: psycopg.Connection[dict[str, Any]], provider_id: str) -> str:
    """An endpoint on a closed local port: whatever the re-drive sends there fails harmlessly."""
    row = db.execute("INSERT INTO webhook_endpoints (provider_id, url, secret) VALUES (%s, %s, %s) RETURNING id",
                     (provider_id, "http://127.0.0.1:9/hook", new_secret())).fetchone()
    assert row
    return str(row["id"])


def _delivery(db: psycopg.Connection[dict[str, Any]], provider_id: str, endpoint_id: str, status: str,
              created_at: datetime) -> str:
    event = db.execute("INSERT INTO outbox (topic, aggregate_id, payload, published_at) "
                       "VALUES ('booking_paid', %s, '{}', now()) RETURNING id", (uuid.uuid4(),)).fetchone()
    assert event
    row = db.execute(
        "INSERT INTO deliveries (event_id, topic, provider_id, channel, recipient, endpoint_id, status, attempts,"
        " next_attempt_at, delivered_at, created_at) VALUES (%s, 'booking_paid', %s, 'webhook', %s, %s, %s, 8,"
        " CASE WHEN %s = 'failed' THEN now() + interval '1 day' END, CASE WHEN %s = 'delivered' THEN now() END, %s)"
        " RETURNING id", (event["id"], provider_id, endpoint_id, endpoint_id, status, status, status, created_at),
    ).fetchone()
    assert row
    return str(row["id"])


def test_recover_requeues_the_failed_and_dead_deliveries_since_a_time(
        client: httpx.Client, catalog: Catalog, db: psycopg.Connection[dict[str, Any]]) -> None:
    provider = catalog.provider_id
    endpoint, sibling = _endpoint_row(db, provider), _endpoint_row(db, provider)
    since = datetime.now(UTC) - timedelta(hours=1)
    recent = since + timedelta(minutes=10)
    requeued = [_delivery(db, provider, endpoint, "failed", recent), _delivery(db, provider, endpoint, "dead", recent)]
    left = [_delivery(db, provider, endpoint, "failed", since - timedelta(minutes=1)),
            _delivery(db, provider, endpoint, "delivered", recent),
            _delivery(db, provider, sibling, "dead", recent)]
    state = "SELECT id, status, next_attempt_at, updated_at FROM deliveries WHERE id = ANY(%s::uuid[])"
    before = {r["id"]: r for r in db.execute(state, (requeued + left,)).fetchall()}

    response = api(client, "POST", f"{endpoints(provider)}/{endpoint}/recover", {"since": since.isoformat()})
    assert response.status_code == 202 and response.json() == {"requeued": 2}

    after = {r["id"]: r for r in db.execute(state, (requeued + left,)).fetchall()}
    assert [after[uuid.UUID(d)] for d in left] == [before[uuid.UUID(d)] for d in left]
    # made due now (the re-drive may already have sent them again: either way they were touched)
    assert all(after[uuid.UUID(d)]["updated_at"] > before[uuid.UUID(d)]["updated_at"] for d in requeued)
    again = api(client, "POST", f"{endpoints(provider)}/{endpoint}/recover",
                {"since": (datetime.now(UTC) + timedelta(minutes=1)).isoformat()})
    assert again.json() == {"requeued": 0}


def test_recover_needs_a_time_with_a_zone(client: httpx.Client, catalog: Catalog) -> None:
    endpoint = create(client, catalog.provider_id)
    path = f"{endpoints(catalog.provider_id)}/{endpoint['id']}/recover"
    assert api(client, "POST", path, {"since": "2026-01-01T00:00:00"}).status_code == 400
    assert api(client, "POST", path, {}).status_code == 400
