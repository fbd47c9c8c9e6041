"""Outbound webhooks per Standard Webhooks v1: secrets, signatures, the SSRF check, and one POST.

* A secret is ``whsec_`` + base64 of 32 random bytes; the HMAC key is the decoded bytes.
* ``webhook-signature`` is ``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}." + body)>``, one per secret,
  space separated: during a rotation the current and the previous secret both sign, so a receiver holding
  either verifies the message.
* A target must be http(s) and, unless private targets are allowed (dev and tests), every address its host
  resolves to must be global: never loopback, private, link-local (cloud metadata), multicast, reserved or
  unspecified, also when wrapped in IPv6 (IPv4-mapped, 6to4, NAT64). The check runs when an endpoint is
  registered and again right before each POST, and the POST connects to the very address that was
  checked (the URL's host is replaced by it; ``Host`` and TLS SNI/certificate checks keep the name), so a
  DNS answer that changes between check and connect (rebinding) cannot redirect it. Environment proxies
  are ignored for the same reason. With private targets allowed, httpx resolves the name itself.
* ``post_webhook`` never raises for what the receiver does (refused target, DNS failure, timeout, any
  status): it returns an ``AttemptOutcome``. It raises only for our own mistakes (a malformed secret).
  ``timeout`` bounds each phase (connect, write, each read); reading the answer stops at the deadline too,
  so a receiver that trickles its headers can hold an attempt longer than ``timeout``, never its body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets as random_source
import socket
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from shared.errors import WebhookTargetRefused
from shared.notifications import AttemptOutcome

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix, not a secret
SECRET_BYTES = 32
USER_AGENT = "Totem-Webhooks/1"
EXCERPT_CHARS = 500
_EXCERPT_BYTES = EXCERPT_CHARS * 4  # enough bytes for 500 characters of UTF-8
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(random_source.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    if not secrets:
        raise ValueError("a webhook is signed with at least one secret")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()
        for secret in secrets
    )


def check_target(url: str, *, allow_private: bool) -> None:
    """Raise WebhookTargetRefused unless ``url`` may receive webhooks (see the module docstring)."""
    _checked(url, allow_private=allow_private)


def _checked(url: str, *, allow_private: bool) -> tuple[httpx.URL, list[IPAddress]]:
    """The parsed URL and, unless private targets are allowed, the global addresses its host has."""
    if not url.startswith(("http://", "https://")):
        raise WebhookTargetRefused("a webhook URL must start with http:// or https://")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise WebhookTargetRefused(f"not a valid URL: {exc}") from exc
    if not parsed.host:
        raise WebhookTargetRefused("a webhook URL needs a host")
    if allow_private:
        return parsed, []
    addresses = _resolve(parsed)
    for address in addresses:
        refusal = _refusal(address)
        if refusal:
            raise WebhookTargetRefused(f"{parsed.host} resolves to {address}, {refusal}")
    return parsed, addresses


def _resolve(url: httpx.URL) -> list[IPAddress]:
    host = url.raw_host.decode("ascii")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise WebhookTargetRefused(f"cannot resolve {url.host}: {exc}") from exc
    addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
    if not addresses:
        raise WebhookTargetRefused(f"{url.host} has no address")
    return addresses


def _refusal(address: IPAddress) -> str | None:
    """Why a webhook may not go to ``address`` (an embedded IPv4 is judged as itself), or None."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
        if embedded is not None:
            return _refusal(embedded)
    for kind in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return f"a {kind.replace('_', '-')} address"
    return None if address.is_global else "not a global address"


def post_webhook(url: str, *, secrets: Sequence[str], msg_id: str, body: bytes, timeout: float,
                 allow_private: bool) -> AttemptOutcome:
    """POST one signed message to ``url``; the outcome of this attempt, whatever the receiver did."""
    timestamp = int(time.time())
    headers = {"content-type": "application/json", "user-agent": USER_AGENT, "accept-encoding": "identity",
               "webhook-id": msg_id,
               "webhook-timestamp": str(timestamp),
               "webhook-signature": signature_header(secrets, msg_id, timestamp, body)}
    started = time.monotonic()
    try:
        parsed, addresses = _checked(url, allow_private=allow_private)
    except WebhookTargetRefused as exc:
        return AttemptOutcome(succeeded=False, duration_ms=_since(started), error=f"target refused: {exc.detail}")
    extensions: dict[str, str] = {}
    if addresses:  # connect to the address just checked, keeping the name for Host and TLS
        headers["host"] = parsed.netloc.decode("ascii")
        if parsed.scheme == "https":
            extensions["sni_hostname"] = parsed.raw_host.decode("ascii")
        parsed = parsed.copy_with(host=str(addresses[0]))
    try:
        with (httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
              client.stream("POST", parsed, content=body, headers=headers, extensions=extensions) as response):
            excerpt = _excerpt(response, deadline=started + timeout)
    except httpx.TimeoutException as exc:
        return AttemptOutcome(succeeded=False, duration_ms=_since(started), error=f"timeout: {_short(exc)}")
    except httpx.HTTPError as exc:
        return AttemptOutcome(succeeded=False, duration_ms=_since(started), error=f"connection: {_short(exc)}")
    return _outcome(response, excerpt, _since(started))


def _outcome(response: httpx.Response, excerpt: str | None, duration_ms: int) -> AttemptOutcome:
    status = response.status_code
    succeeded = 200 <= status < 300
    error = None
    if not succeeded:
        error = f"redirect to {response.headers.get('location', '?')[:200]} not followed" \
            if 300 <= status < 400 else f"HTTP {status}"
    retry_after = _retry_after(response.headers.get("retry-after")) if status in (429, 503) else None
    return AttemptOutcome(succeeded=succeeded, duration_ms=duration_ms, status_code=status, error=error,
                          response_excerpt=excerpt, retry_after_seconds=retry_after, gone=status == 410)


def _excerpt(response: httpx.Response, deadline: float) -> str | None:
    """The first characters of the answer; reading stops at the excerpt's size, an error, or the deadline."""
    data = b""
    try:
        for chunk in response.iter_raw():
            data += chunk
            if len(data) >= _EXCERPT_BYTES or time.monotonic() > deadline:
                break
    except httpx.HTTPError:
        pass  # the status already says what the receiver meant; a broken body only shortens the excerpt
    if not data:
        return None
    return data[:_EXCERPT_BYTES].decode(response.encoding or "utf-8", errors="replace")[:EXCERPT_CHARS]


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _since(started: float) -> int:
    return max(0, round((time.monotonic() - started) * 1000))


def _short(exc: Exception) -> str:
    return (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)[:200]
