"""The widget's edges over real HTTP (no browser): CORS on the API decided by a public token's
allowed_origins, the fake Stripe confirming from a browser with a publishable key and the client secret, and
the widget page's headers (a strict CSP; frame-ancestors from the token) and its problems for bad input."""

from __future__ import annotations

import re

import httpx
import psycopg

from tests.browser.widget_support import book_through_api, local_start, slug_of
from tests.support import api_client, issue_public_token, make_catalog
from totem.fleet import Fleet

SITE = "https://salon.example"


def test_a_preflight_is_answered_and_only_a_tokens_allowed_origins_may_read_its_answers(
        fleet: Fleet, database_url: str) -> None:
    catalog = make_catalog(database_url)
    with psycopg.connect(database_url) as conn:
        pinned = {"Authorization": f"Bearer {issue_public_token(conn, catalog.provider_id, origins=[SITE])}"}
    with api_client(fleet.base_url) as client:
        preflight = client.options("/v1/bookings", headers={
            "Origin": SITE, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key"})
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == SITE
        assert "Idempotency-Key" in preflight.headers["access-control-allow-headers"]
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert preflight.headers["vary"] == "Origin"
        refused = client.options("/v1/bookings", headers={"Origin": "null", "Access-Control-Request-Method": "POST"})
        assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers

        allowed = client.get("/v1/services", params={"provider": catalog.provider_id},
                             headers={**pinned, "Origin": SITE})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == SITE
        assert "Retry-After" in allowed.headers["access-control-expose-headers"]
        assert "Origin" in allowed.headers["vary"]

        elsewhere = client.get("/v1/services", headers={**pinned, "Origin": "https://evil.example"})
        assert elsewhere.status_code == 403 and elsewhere.json()["code"] == "FORBIDDEN"
        assert "access-control-allow-origin" not in elsewhere.headers

        own = client.get("/v1/services", headers={**pinned, "Origin": fleet.base_url})  # the widget's iframe
        assert own.status_code == 200

        unpinned = client.get("/v1/services", headers={**catalog.widget, "Origin": "https://any.example"})
        assert unpinned.headers["access-control-allow-origin"] == "https://any.example"
        no_origin = client.get("/v1/services", headers=catalog.widget)
        assert "access-control-allow-origin" not in no_origin.headers and no_origin.headers["vary"] == "Origin"
        owner = client.get("/v1/services", headers={**catalog.owner, "Origin": SITE})  # sessions: not cross-site
        assert owner.status_code == 200 and "access-control-allow-origin" not in owner.headers


def test_the_fake_stripe_confirms_from_a_browser_with_a_publishable_key_and_the_intents_client_secret(
        fleet: Fleet, database_url: str) -> None:
    catalog = make_catalog(database_url)
    result = book_through_api(fleet, catalog, local_start(6, 12))
    confirm = f"{fleet.stripe_url}/v1/payment_intents/{result['payment_intent_id']}/confirm"
    browser = {"Origin": SITE}

    preflight = httpx.options(confirm, headers={**browser, "Access-Control-Request-Method": "POST"}, timeout=10)
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == "*"
    wrong_secret = httpx.post(confirm, headers=browser, timeout=10, data={
        "key": "pk_test_widget", "client_secret": result["client_secret"] + "x", "payment_method": "pm_card_visa"})
    assert wrong_secret.status_code == 400 and wrong_secret.json()["error"]["param"] == "client_secret"
    secret_key = httpx.post(confirm, headers=browser, timeout=10, data={
        "key": "sk_test_leaked", "client_secret": result["client_secret"], "payment_method": "pm_card_visa"})
    assert secret_key.status_code == 401
    declined = httpx.post(confirm, headers=browser, timeout=10, data={
        "key": "pk_test_widget", "client_secret": result["client_secret"], "payment_method": "pm_card_chargeDeclined"})
    assert declined.status_code == 402 and declined.json()["error"]["code"] == "card_declined"
    assert declined.headers["access-control-allow-origin"] == "*"
    paid = httpx.post(confirm, headers=browser, timeout=10, data={
        "key": "pk_test_widget", "client_secret": result["client_secret"], "payment_method": "pm_card_visa"})
    assert paid.status_code == 200 and paid.json()["status"] == "succeeded"


def test_the_widget_page_has_a_strict_csp_its_token_decides_who_may_frame_it_and_bad_input_is_a_problem(
        fleet: Fleet, database_url: str) -> None:
    catalog = make_catalog(database_url)
    other = make_catalog(database_url)
    slug = slug_of(database_url, catalog.provider_id)
    with psycopg.connect(database_url) as conn:
        pinned = issue_public_token(conn, catalog.provider_id, origins=[SITE])
    with httpx.Client(base_url=fleet.base_url, timeout=10) as client:
        page = client.get(f"/widget/{slug}", params={"token": catalog.public_token})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
        assert csp["default-src"] == "'none'" and csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
        assert csp["connect-src"] == f"'self' {fleet.stripe_url}"
        assert csp["frame-ancestors"] == "'self' *"  # a token without allowed_origins: any site may embed
        assert page.headers["referrer-policy"] == "no-referrer"
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text) and " style=" not in page.text  # nothing inline
        assert f'data-token="{catalog.public_token}"' in page.text and 'data-payments="fake"' in page.text

        framed = client.get(f"/widget/{slug}", params={"token": pinned})
        assert "frame-ancestors 'self' https://salon.example" in framed.headers["content-security-policy"]
        customer = client.get(f"/widget/{slug}")  # the customer's link: no public token, not embeddable
        assert customer.status_code == 200 and "frame-ancestors 'self'" in customer.headers["content-security-policy"]

        for path, params, status, code in [
            ("/widget/no-such-salon", {}, 404, "NOT_FOUND"),
            ("/widget/Not_A_Slug!", {}, 400, "VALIDATION_FAILED"),
            (f"/widget/{slug}", {"token": "pk_" + "x" * 30}, 401, "UNAUTHORIZED"),
            (f"/widget/{slug}", {"token": other.public_token}, 401, "UNAUTHORIZED"),
            (f"/widget/{slug}", {"token": "not a token"}, 400, "VALIDATION_FAILED"),
        ]:
            refused = client.get(path, params=params)
            assert (refused.status_code, refused.json()["code"]) == (status, code), (path, refused.text)
            assert refused.headers["content-type"] == "application/problem+json"

        loader = client.get("/widget.js")
        assert loader.status_code == 200 and loader.headers["content-type"].startswith("text/javascript")
        assert "document.currentScript" in loader.text
        for module in ("app.js", "api.js", "manage.js", "pay.js", "format.js", "dom.js", "widget.css"):
            assert client.get(f"/static/widget/{module}").status_code == 200, module
