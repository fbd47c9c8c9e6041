"""Hypothesis against the live gateway: whatever a caller sends, the answer is never a 5xx, and a refused
request changes nothing.

* Stripe webhooks: event-shaped payloads (handled and unknown types, wrong types, huge and odd fields, other
  API versions), any JSON, and bytes that are not JSON at all, each signed correctly, signed wrongly, or
  not signed. A correctly signed event is stored once (200); everything else is 400 and stores nothing.
* Booking requests: bodies near the schema (each field possibly of a wrong type, out of range, huge, or
  joined by an unknown one), with a fresh Idempotency-Key each. A refusal (4xx) leaves no key, no job.

Bounded and repeatable: ``derandomize=True`` (examples derived from the test, not from a random seed), no
example database, a fixed number of examples."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from shared.payments import HANDLED_EVENTS
from shared.stripe_api import STRIPE_API_VERSION
from tests.support import Catalog, api_client, make_catalog
from totem.fleet import Fleet

SECRET = "whsec_totem_dev"  # the fleet's STRIPE_WEBHOOK_SECRET (shared/config.py's default)
EVENT_PREFIX = "evt_prop_"  # only these tests store events with this prefix

BOUNDED = settings(max_examples=60, derandomize=True, database=None, deadline=None,
                   suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def gateway(fleet: Fleet) -> Iterator[httpx.Client]:
    # module-scoped, unlike the ``client`` fixture: Hypothesis runs every example inside one test call
    with api_client(fleet.base_url) as client:
        yield client


@pytest.fixture(scope="module")
def conn(database_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="module")
def shop(database_url: str) -> Catalog:
    return make_catalog(database_url)


# --- Stripe webhooks ---------------------------------------------------------------------------------

def _signature(payload: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


# Text a database may not hold (NUL), JSON may not carry (a lone surrogate), or that is merely large or odd.
odd_text = st.one_of(st.sampled_from(["", "\x00", "a\x00b", "\ud800", "\u202e", "\\u0000", "\\\x00"]),
                     st.text(max_size=40),
                     st.text(min_size=3000, max_size=5000, alphabet="ab\x00\u00e9\U0001f600"))
extreme_ints = st.sampled_from([-1, -(2**63), 2**31, 2**62, 2**63, 2**64, 10**30])
json_scalar = st.one_of(st.none(), st.booleans(), extreme_ints, st.integers(min_value=-(2**70), max_value=2**70),
                        st.floats(allow_nan=False, allow_infinity=False), odd_text)
any_json = st.recursive(json_scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                              st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                        max_leaves=12)


@st.composite
def stripe_events(draw: st.DrawFn) -> dict[str, Any]:
    """Event-shaped: each field usually of its right type, sometimes of any other, sometimes missing."""
    def field(right: st.SearchStrategy[Any]) -> Any:
        return draw(st.one_of(right, right, right, any_json))

    event: dict[str, Any] = {
        "id": field(st.builds(lambda s: EVENT_PREFIX + uuid.uuid4().hex + s, st.one_of(odd_text, st.just("")))),
        "object": "event",
        "type": field(st.one_of(st.sampled_from(sorted(HANDLED_EVENTS)), odd_text)),
        "created": field(st.one_of(st.integers(min_value=0, max_value=2**33), extreme_ints)),
        "api_version": field(st.sampled_from([STRIPE_API_VERSION, None, "2020-08-27"])),
        "data": field(st.fixed_dictionaries({"object": st.one_of(
            st.fixed_dictionaries({"id": st.one_of(odd_text, st.none()), "object": st.text(max_size=20)},
                                  optional={"amount": json_scalar, "metadata": any_json}),
            any_json)})),
    }
    for name in draw(st.lists(st.sampled_from(sorted(event)), max_size=2, unique=True)):
        del event[name]
    event.update(draw(st.dictionaries(st.text(max_size=10).filter(lambda k: k not in event), any_json, max_size=2)))
    return event


bodies = st.one_of(
    stripe_events().map(lambda e: json.dumps(e).encode()),  # json.dumps: lone surrogates escaped, as JSON allows
    any_json.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),  # not JSON, often not UTF-8
    stripe_events().map(lambda e: json.dumps(e).encode()[:-1]),  # truncated
)
signatures = st.sampled_from(["right", "right", "right", "wrong_secret", "stale", "garbled", "none", "tampered"])


def _stored(conn: psycopg.Connection[dict[str, Any]]) -> int:
    row = conn.execute("SELECT count(*) AS n FROM stripe_events WHERE event_id LIKE %s",
                       (EVENT_PREFIX + "%",)).fetchone()
    return int(row["n"]) if row else 0


def _headers(payload: bytes, how: str) -> dict[str, str]:
    return {"none": {}, "right": {"Stripe-Signature": _signature(payload)},
            "wrong_secret": {"Stripe-Signature": _signature(payload, "whsec_not_ours")},
            "stale": {"Stripe-Signature": _signature(payload, timestamp=int(time.time()) - 3600)},
            "garbled": {"Stripe-Signature": "t=oops,v1=" + "0" * 64},
            "tampered": {"Stripe-Signature": _signature(payload + b" ")}}[how]


@BOUNDED
@given(payload=bodies, how=signatures)
def test_a_webhook_payload_never_gets_a_5xx_and_a_refused_one_stores_nothing(
        gateway: httpx.Client, conn: psycopg.Connection[dict[str, Any]], payload: bytes, how: str) -> None:
    claimed = _claimed_id(payload)
    existed = claimed is not None and conn.execute(
        "SELECT 1 FROM stripe_events WHERE event_id = %s", (claimed,)).fetchone() is not None
    before = _stored(conn)
    response = gateway.post("/v1/webhooks/stripe", content=payload, headers=_headers(payload, how))
    assert response.status_code in (200, 400), (response.status_code, response.text[:300])
    if how != "right":
        assert response.status_code == 400, response.text[:300]
        assert response.json()["code"] == "WEBHOOK_SIGNATURE_INVALID"
    if response.status_code == 400:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert _stored(conn) == before, "a refused webhook stored an event"
        return
    assert claimed is not None
    assert response.json() == {"received": True, "duplicate": existed}
    assert conn.execute("SELECT 1 FROM stripe_events WHERE event_id = %s", (claimed,)).fetchone()
    assert _stored(conn) == before + (1 if claimed.startswith(EVENT_PREFIX) and not existed else 0)


def _claimed_id(payload: bytes) -> str | None:
    try:
        event = json.loads(payload)
    except ValueError:  # not JSON, not UTF-8
        return None
    claimed = event.get("id") if isinstance(event, dict) else None
    if not isinstance(claimed, str) or "\x00" in claimed:
        return None  # no id, or one no event can have
    try:
        claimed.encode()
    except UnicodeEncodeError:  # a lone surrogate: json reads it, msgspec (and so the gateway) refuses it
        return None
    return claimed


# --- Booking requests --------------------------------------------------------------------------------

def _instant(offset_days: int, minute: int) -> str:
    moment = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=offset_days, minutes=minute)
    return moment.isoformat()


@st.composite
def booking_bodies(draw: st.DrawFn, shop: Catalog) -> Any:
    """A slot or a stay request near the schema: each field usually right, sometimes wrong in type or
    range, sometimes missing; sometimes an unknown field; sometimes not an object at all."""
    def field(right: st.SearchStrategy[Any]) -> Any:
        return draw(st.one_of(right, right, right, any_json))

    customer = field(st.fixed_dictionaries(
        {"name": st.one_of(st.just("Ada"), odd_text),
         "email": st.one_of(st.just("ada@example.com"), st.text(max_size=40), st.just("a" * 300 + "@x.io"))},
        optional={"phone": st.one_of(st.just("+49 30 1234567"), st.text(max_size=40), st.none())}))
    resource = field(st.one_of(st.just(shop.resource_id), st.uuids().map(str), st.text(max_size=40)))
    if draw(st.booleans()):
        body: dict[str, Any] = {
            "kind": field(st.just("slot")), "resource_id": resource,
            "service_id": field(st.one_of(st.just(shop.service_id), st.uuids().map(str))),
            "start_at": field(st.one_of(
                st.builds(_instant, st.integers(-400, 400), st.sampled_from([0, 30])),
                st.sampled_from(["2026-02-30T10:00:00Z", "tomorrow", "2099-01-01T10:00:00", "0.5"]))),
            "customer": customer}
    else:
        check_in = draw(st.dates(min_value=datetime(1990, 1, 1).date(), max_value=datetime(2200, 1, 1).date()))
        nights = draw(st.integers(-5, 400))
        body = {"kind": "stay", "resource_id": resource,
                "check_in": field(st.just(check_in.isoformat())),
                "check_out": field(st.just((check_in + timedelta(days=nights)).isoformat()
                                           if abs(nights) < 365 else "9999-12-31")),
                "guests": field(st.integers(-3, 60)), "customer": customer}
    for name in draw(st.lists(st.sampled_from(sorted(body)), max_size=1)):
        del body[name]
    if draw(st.integers(0, 5)) == 0:
        body[draw(st.text(min_size=1, max_size=10))] = draw(any_json)
    return draw(st.one_of(st.just(body), st.just(body), st.just(body), any_json))


def _trace(conn: psycopg.Connection[dict[str, Any]], key: str) -> dict[str, int]:
    """What a request with this key left behind: its key row, and the job (and so any booking) it made."""
    row = conn.execute("SELECT count(*) AS keys, count(job_id) AS jobs FROM idempotency_keys WHERE key = %s",
                       (key,)).fetchone()
    return {"keys": int(row["keys"]), "jobs": int(row["jobs"])} if row else {"keys": 0, "jobs": 0}


@BOUNDED
@given(data=st.data())
def test_a_booking_body_never_gets_a_5xx_and_a_refused_one_leaves_no_key_and_no_job(
        gateway: httpx.Client, conn: psycopg.Connection[dict[str, Any]], shop: Catalog, data: st.DataObject) -> None:
    body = data.draw(booking_bodies(shop))
    encoded = st.just(json.dumps(body).encode())  # json.dumps escapes lone surrogates, as JSON allows
    raw = data.draw(st.one_of(encoded, encoded, encoded, st.binary(max_size=80)))
    key = uuid.uuid4().hex
    response = gateway.post("/v1/bookings", content=raw, headers={"Idempotency-Key": key, **shop.widget,
                                                                   "Content-Type": "application/json"})
    assert response.status_code < 500, (response.status_code, response.text[:300])
    assert response.status_code in (202, 400, 404, 409, 422), (response.status_code, response.text[:300])
    if response.status_code == 202:
        assert _trace(conn, key) == {"keys": 1, "jobs": 1}
        return
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] in ("VALIDATION_FAILED", "REQUEST_UNPROCESSABLE", "NOT_FOUND"), response.text
    assert _trace(conn, key) == {"keys": 0, "jobs": 0}, "a refused booking request left a key or a job behind"


@pytest.mark.parametrize("customer", [{"name": "Ada\x00", "email": "ada@example.com"},
                                      {"name": "Ada", "email": "ada@example.com", "phone": "+49 30 1234567"}])
def test_a_nul_in_a_booking_is_refused_and_leaves_nothing_while_a_clean_twin_is_accepted(
        gateway: httpx.Client, conn: psycopg.Connection[dict[str, Any]], shop: Catalog,
        customer: dict[str, str]) -> None:
    """Postgres text and jsonb cannot hold U+0000, which JSON and the schema admit: 422, not a 500."""
    key = uuid.uuid4().hex
    body = {"kind": "slot", "resource_id": shop.resource_id, "service_id": shop.service_id,
            "start_at": _instant(300, 0), "customer": customer}
    response = gateway.post("/v1/bookings", json=body, headers={"Idempotency-Key": key, **shop.widget})
    if "\x00" in customer["name"]:
        assert response.status_code == 422 and response.json()["code"] == "REQUEST_UNPROCESSABLE", response.text
        assert _trace(conn, key) == {"keys": 0, "jobs": 0}
    else:
        assert response.status_code == 202, response.text
        assert _trace(conn, key) == {"keys": 1, "jobs": 1}
