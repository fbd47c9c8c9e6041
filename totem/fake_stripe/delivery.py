"""Signed event delivery to the one webhook endpoint, as Stripe delivers (and misdelivers) events.

Each event is POSTed as JSON with ``Stripe-Signature: t=<unix>,v1=HMAC-SHA256(secret, "<t>.<payload>")``,
signed at send time (a connected account's event, with ``account`` set, with the Connect endpoint's secret
when one is configured: in Stripe it is a second endpoint, here the same URL),
and retried with backoff until answered 2xx (six attempts unless told: Stripe itself retries for three days,
so a test that keeps our side down longer than the six attempts' ~15 s raises ``attempts``). Only the endpoint's
enabled event types are sent. For tests the endpoint can hold events instead of sending them, send each
one ``copies`` times, send late, and release held events in order, reversed or shuffled (seeded).
Every attempt is recorded in ``deliveries`` (``GET /_fake/deliveries``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger("totem.fake_stripe")


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


@dataclass
class WebhookEndpoint:
    url: str
    secret: str
    connect_secret: str | None = None  # a Connect endpoint's: signs connected accounts' events (``account`` set)
    enabled_events: frozenset[str] | None = None  # None: every type (a Stripe endpoint's "enabled_events")
    hold: bool = False
    held: list[dict[str, Any]] = field(default_factory=list)
    copies: int = 1
    delay_seconds: float = 0.0
    attempts: int = 6
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    http: httpx.AsyncClient | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def open(self) -> None:
        self.http = httpx.AsyncClient(timeout=10)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.http is not None:
            await self.http.aclose()

    def send(self, event: dict[str, Any]) -> None:
        """Send (or hold) a new event, if its type is enabled."""
        if self.enabled_events is not None and event["type"] not in self.enabled_events:
            return
        if self.hold:
            self.held.append(event)
        else:
            for _ in range(self.copies):
                self.schedule(event, self.delay_seconds)

    def schedule(self, event: dict[str, Any], delay: float = 0.0) -> None:
        self._run_in_background(self.deliver(event, delay))

    @property
    def in_flight(self) -> int:
        """Deliveries still under way (waiting to send, sending or waiting to retry)."""
        return len(self.tasks)

    async def deliver(self, event: dict[str, Any], delay: float = 0.0, attempts: int | None = None) -> None:
        """POST one event, signed at send time; retry (backoff) until a 2xx, as Stripe does."""
        attempts = self.attempts if attempts is None else attempts
        if delay:
            await asyncio.sleep(delay)
        if self.http is None:
            raise RuntimeError("the webhook client opens at app start-up")
        payload = json.dumps(event, indent=2)
        secret = self.connect_secret if event.get("account") and self.connect_secret else self.secret
        for attempt in range(1, attempts + 1):
            status: int | str
            try:
                response = await self.http.post(self.url, content=payload, headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "Stripe-Signature": sign(payload, secret),
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
        """Send the held events ``copies`` times each, in the order asked for; the number sent."""
        batch = [event for event in self.held for _ in range(copies)]
        self.held = []
        if order == "shuffled":
            random.Random(seed).shuffle(batch)  # noqa: S311 -- a reproducible test order, not a secret
        elif order == "reversed":
            batch.reverse()
        self._deliver_in_sequence(batch)
        return len(batch)

    def _deliver_in_sequence(self, batch: list[dict[str, Any]]) -> None:
        async def run() -> None:
            for event in batch:  # one after another, so the order chosen is the order of arrival
                await self.deliver(event)

        self._run_in_background(run())

    def _run_in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)  # a strong reference until done, and cancelled at shutdown
        task.add_done_callback(self.tasks.discard)
