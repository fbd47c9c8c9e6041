"""The stripe SDK's HTTP transport on urllib3: one keep-alive connection pool per process, shared by the
worker's threads.

Why not the SDK's defaults: measured against the fake Stripe (issue 16), the SDK's client CPU per PaymentIntent
create was 1.0-1.3 ms on ``RequestsClient`` and 0.6-0.7 ms on the stdlib ``UrllibClient``, so the HTTP client,
not the SDK, is the cost; but ``UrllibClient`` opens a connection per call, which against the real Stripe
is a TCP and TLS handshake per call. urllib3 (what requests runs on) keeps its connections alive and skips
requests' per-call session merging, hooks, cookie jar and adapter layers.

The contract is the SDK's ``HTTPClient.request``: ``(body, status, headers)`` for any HTTP status (Stripe's
errors are bodies the SDK turns into exceptions), and ``APIConnectionError`` for a call that never got an
answer. Our retries are tenacity's (``shared/stripe_api.py``), so urllib3's own are off, as are the SDK's.
"""

from __future__ import annotations

import textwrap
import urllib.request
from collections.abc import Mapping
from typing import Any, NoReturn
from urllib.parse import urlsplit

import stripe
import urllib3

# Not worth retrying: a certificate that does not verify, or an address that cannot be parsed. Anything else
# (no connection, a timeout, a connection dropped mid-answer) may or may not have reached Stripe, and is
# retried with the same idempotency key.
_FINAL = (urllib3.exceptions.SSLError, urllib3.exceptions.LocationValueError)


def proxy_for(api_base: str) -> str | None:
    """The proxy for Stripe's address from HTTPS_PROXY/HTTP_PROXY and NO_PROXY, read once, not per call."""
    host = urlsplit(api_base).hostname or ""
    if urllib.request.proxy_bypass(host):
        return None
    proxies = urllib.request.getproxies_environment()
    return proxies.get(urlsplit(api_base).scheme or "https")


class Urllib3Client(stripe.HTTPClient):
    name = "urllib3"

    def __init__(self, *, timeout: float, api_base: str, max_connections: int = 16) -> None:
        super().__init__(verify_ssl_certs=True)
        self._timeout = urllib3.Timeout(connect=min(timeout, 10.0), read=timeout)
        options: dict[str, Any] = {
            # as many keep-alive connections as threads that may call at once; more are opened, not waited for
            "maxsize": max_connections, "block": False, "retries": False, "timeout": self._timeout,
            "cert_reqs": "CERT_REQUIRED", "ca_certs": stripe.ca_bundle_path,
        }
        proxy = proxy_for(api_base)
        self._manager: urllib3.PoolManager = (urllib3.ProxyManager(proxy, **options) if proxy
                                              else urllib3.PoolManager(**options))
        # Every call goes to the one API address: its connection pool is looked up once, not per call (the
        # manager's per-call URL parsing and pool-key lookup were a fifth of this client's CPU).
        self._base = api_base.rstrip("/")
        self._pool = self._manager.connection_from_url(self._base)
        self._direct = proxy is None

    def request(self, method: str, url: str, headers: Mapping[str, str] | None,
                post_data: Any = None, *, _usage: list[str] | None = None) -> tuple[Any, int, Mapping[str, str]]:
        response = self._send(method, url, headers, post_data, preload=True)
        return response.data, response.status, response.headers

    def request_stream(self, method: str, url: str, headers: Mapping[str, str] | None,
                       post_data: Any = None, *, _usage: list[str] | None = None) -> tuple[Any, int, Mapping[str, str]]:
        response = self._send(method, url, headers, post_data, preload=False)
        return response, response.status, response.headers

    def _send(self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any,
              *, preload: bool) -> urllib3.BaseHTTPResponse:
        body = post_data.encode() if isinstance(post_data, str) else post_data
        try:
            if self._direct and url.startswith(self._base):
                return self._pool.urlopen(method.upper(), url[len(self._base):] or "/", body=body,
                                          headers=dict(headers or {}), retries=False, redirect=False,
                                          assert_same_host=False, preload_content=preload)
            return self._manager.request(method.upper(), url, body=body, headers=dict(headers or {}),
                                         retries=False, redirect=False, preload_content=preload)
        except urllib3.exceptions.HTTPError as exc:
            self._handle_request_error(exc)

    def _handle_request_error(self, exc: Exception) -> NoReturn:
        retry = not isinstance(exc, _FINAL)
        message = textwrap.fill("Unexpected error communicating with Stripe. If this problem persists, let us "
                                "know at support@stripe.com.")
        raise stripe.APIConnectionError(  # type: ignore[no-untyped-call]  # the SDK's constructor is untyped
            f"{message}\n\n(Network error: {type(exc).__name__}: {exc})", should_retry=retry) from exc

    def close(self) -> None:
        self._manager.clear()
