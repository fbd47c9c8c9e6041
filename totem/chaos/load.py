"""The chaos run's clients: many at once, each booking overlapping slots and stays, retrying every request
with the same Idempotency-Key after a timeout or a refusal that says "try again", paying on the fake Stripe
(sometimes after the hold ran out, sometimes with a declined card first), cancelling, completing, checking
in and out. A client never gives up on a request it started while the run lasts, as a real one would not.

Every key sent and every request accepted (202 and its job id) is recorded: the checker holds the database
to them (each accepted job terminal, no key applied twice)."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from shared.errors import Code

TERMINAL = ("succeeded", "failed")
RETRY_STATUSES = (429, 502, 503, 504)  # rate limited, the gateway or the database restarting
IN_FLIGHT = Code.IDEMPOTENCY_KEY_IN_FLIGHT.value  # the one 409 to retry: others (an invalid transition) are final


@dataclass(frozen=True)
class Catalog:
    provider_id: str
    time_zone: str
    slot_resources: list[str]
    service_id: str
    listings: list[str]
    public_token: str
    system_token: str


@dataclass
class Ledger:
    """What the clients did, shared by every client thread (under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    keys_sent: Counter[str] = field(default_factory=Counter)  # job type → distinct Idempotency-Keys sent
    accepted: dict[str, str] = field(default_factory=dict)  # job id → job type, from every 202
    counts: Counter[str] = field(default_factory=Counter)  # what happened, for the progress line and report
    http_500: int = 0

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counts[name] += n


COMMAND_TYPES = {"cancel": "booking.cancel", "complete": "booking.complete", "check-in": "booking.check_in",
                 "check-out": "booking.check_out"}


class Client:
    def __init__(self, n: int, seed: int, base_url: str, stripe_url: str, catalog: Catalog, ledger: Ledger,
                 deadline: float, hold_ttl_seconds: int) -> None:
        self.rng = random.Random(seed * 1_000 + n)  # noqa: S311 - a repeatable load, not a secret
        self.n, self.catalog, self.ledger, self.deadline = n, catalog, ledger, deadline
        self.hold_ttl = hold_ttl_seconds
        self.days = max(3, int(deadline - time.monotonic()) // 20)
        self.http = httpx.Client(base_url=base_url, timeout=5)
        self.stripe = httpx.Client(base_url=stripe_url, timeout=5)
        self.system = {"X-System-Token": catalog.system_token}
        self.widget = {"Authorization": f"Bearer {catalog.public_token}"}

    def run(self) -> None:
        try:
            while time.monotonic() < self.deadline:
                self.one_booking()
        finally:
            self.http.close()
            self.stripe.close()

    # --- one customer's story -------------------------------------------------------------------------
    def one_booking(self) -> None:
        stay = self.rng.random() < 0.3
        body = self._stay_body() if stay else self._slot_body()
        job = self._accepted_job(self._post("/v1/bookings", body, "booking.create", self.widget), self.widget)
        if job is None or job["status"] != "succeeded":
            self.ledger.count("booking_refused" if job else "booking_unfinished")
            return
        self.ledger.count("booking_held")
        booking_id, intent = job["result"]["booking_id"], job["result"].get("payment_intent_id")
        roll = self.rng.random()
        if roll < 0.12:
            cancel = self._post(f"/v1/bookings/{booking_id}/cancel", {"reason": "changed my mind"},
                                COMMAND_TYPES["cancel"], self.system)
            if intent is not None and self.rng.random() < 0.5:
                self._pay(intent, "pm_card_visa")  # paid in another tab while cancelling: a race, refunded if lost
            self._finished("cancel", cancel)
            return
        if roll < 0.2 or intent is None:
            return  # never paid: the hold expires (the scheduler)
        if roll < 0.28:
            self._sleep(self.hold_ttl + 1)  # pays after the hold ran out: refunded in full
        if self.rng.random() < 0.15:
            self._pay(intent, "pm_card_chargeDeclined")
        if not self._pay(intent, "pm_card_visa") or not self._wait_status(booking_id, ("paid",), 20):
            return
        self.ledger.count("booking_paid")
        roll = self.rng.random()
        if roll < 0.1:  # the customer cancels as the owner completes: exactly one of them may win
            commands = ("cancel", "cancel" if stay else "complete")  # both queued before either runs
            racing = [(command, self._post(f"/v1/bookings/{booking_id}/{command}", {}, COMMAND_TYPES[command],
                                           self.system)) for command in commands]
            for command, job_id in racing:
                self._finished(command, job_id)
        elif roll < 0.3:
            self._command(booking_id, "cancel", {"reason": "cannot come"})
        elif not stay:
            self._command(booking_id, "complete", {})
        elif body["check_in"] == self._today().isoformat():
            for step in ("check-in", "check-out", "complete"):
                job = self._command(booking_id, step, {})
                if job is None or job["status"] != "succeeded":
                    break

    def _slot_body(self) -> dict[str, Any]:
        # few resources and few start times: clients collide on the same slots on purpose; a day more per
        # ~20 s of run, so a long run does not book everything out and end up refused
        start = self._local_midnight(self.rng.randint(1, self.days)) + timedelta(
            hours=9, minutes=30 * self.rng.randint(0, 15))
        return {"kind": "slot", "resource_id": self.rng.choice(self.catalog.slot_resources),
                "service_id": self.catalog.service_id, "start_at": start.isoformat(),
                "customer": {"name": f"Chaos {self.n}", "email": f"client{self.n}@chaos.example"}}

    def _stay_body(self) -> dict[str, Any]:
        check_in = self._today() + timedelta(days=0 if self.rng.random() < 0.4 else self.rng.randint(1, self.days))
        return {"kind": "stay", "resource_id": self.rng.choice(self.catalog.listings),
                "check_in": check_in.isoformat(),
                "check_out": (check_in + timedelta(days=self.rng.randint(1, 2))).isoformat(), "guests": 2,
                "customer": {"name": f"Chaos {self.n}", "email": f"client{self.n}@chaos.example"}}

    def _today(self) -> date:
        return datetime.now(ZoneInfo(self.catalog.time_zone)).date()

    def _local_midnight(self, days: int) -> datetime:
        day = self._today() + timedelta(days=days)
        return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(self.catalog.time_zone))

    # --- requests, retried as a careful client retries ---------------------------------------------------
    def _post(self, path: str, body: dict[str, Any], job_type: str, headers: dict[str, str]) -> str | None:
        """POST under one Idempotency-Key until answered 202 (its job id), a final refusal (None), or the
        run's end. A timeout, a dropped connection, 409 in flight, 429 and 5xx are tried again, same key."""
        key = f"chaos-{uuid.uuid4().hex}"
        with self.ledger.lock:
            self.ledger.keys_sent[job_type] += 1
        impatient = self.rng.random() < 0.2  # the first try gives up long before the gateway answers
        while time.monotonic() < self.deadline:  # after the run's end an unanswered request is simply dropped
            timeout = 0.005 if impatient else 5.0
            impatient = False
            try:
                response = self.http.post(path, json=body, headers={**headers, "Idempotency-Key": key},
                                          timeout=timeout)
            except httpx.TimeoutException:
                self.ledger.count("client_timeouts")
                continue
            except httpx.TransportError:
                self.ledger.count("connection_errors")
                self._sleep(0.3)
                continue
            if response.status_code == 202:
                job_id = str(response.json()["job_id"])
                with self.ledger.lock:
                    self.ledger.accepted[job_id] = job_type
                if response.headers.get("idempotent-replayed") == "true":
                    self.ledger.count("replayed")
                return job_id
            if response.status_code >= 500 and response.status_code != 503:
                with self.ledger.lock:
                    self.ledger.http_500 += 1
            if response.status_code in RETRY_STATUSES or response.status_code >= 500 or self._in_flight(response):
                self.ledger.count(f"retried_after_{response.status_code}")
                self._sleep(0.2)
                continue
            self.ledger.count(f"refused_{response.status_code}")
            return None
        self.ledger.count("gave_up")
        return None

    @staticmethod
    def _in_flight(response: httpx.Response) -> bool:
        if response.status_code != 409:
            return False
        try:
            return bool(response.json().get("code") == IN_FLIGHT)
        except ValueError:
            return False

    def _get(self, path: str, headers: dict[str, str]) -> dict[str, Any] | None:
        try:
            response = self.http.get(path, headers=headers)
        except httpx.TransportError:
            return None
        return response.json() if response.status_code == 200 else None

    def _accepted_job(self, job_id: str | None, headers: dict[str, str], timeout: float = 20) -> dict[str, Any] | None:
        """The job once terminal; None if it is not within ``timeout`` (the checker waits for it later)."""
        if job_id is None:
            return None
        until = min(time.monotonic() + timeout, self.deadline)
        while time.monotonic() < until:
            job = self._get(f"/v1/jobs/{job_id}", headers)
            if job is not None and job["status"] in TERMINAL:
                return job
            self._sleep(0.2)
        return None

    def _command(self, booking_id: str, command: str, body: dict[str, Any]) -> dict[str, Any] | None:
        job_id = self._post(f"/v1/bookings/{booking_id}/{command}", body, COMMAND_TYPES[command], self.system)
        return self._finished(command, job_id)

    def _finished(self, command: str, job_id: str | None) -> dict[str, Any] | None:
        job = self._accepted_job(job_id, self.system)
        self.ledger.count(f"{command}_{job['status'] if job else 'unfinished'}")
        return job

    def _wait_status(self, booking_id: str, statuses: tuple[str, ...], timeout: float) -> bool:
        until = min(time.monotonic() + timeout, self.deadline)
        while time.monotonic() < until:
            booking = self._get(f"/v1/bookings/{booking_id}", self.system)
            if booking is not None and booking["status"] in statuses:
                return True
            self._sleep(0.3)
        return False

    def _pay(self, intent: str, card: str) -> bool:
        """Confirm on the fake Stripe, as Stripe.js would, under one idempotency key retried after a failure
        (the fake may fail the call before or after it takes effect)."""
        key = f"chaos-pay-{uuid.uuid4().hex}"
        for _ in range(10):
            if time.monotonic() >= self.deadline:
                return False
            try:
                response = self.stripe.post(f"/v1/payment_intents/{intent}/confirm", data={"payment_method": card},
                                            headers={"Idempotency-Key": key})
            except httpx.TransportError:
                self._sleep(0.3)
                continue
            if response.status_code == 200:
                return True
            if response.status_code < 500:  # declined, or the intent is no longer waiting (cancelled)
                self.ledger.count("payment_refused")
                return False
            self._sleep(0.2)
        return False

    def _sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, min(seconds, self.deadline - time.monotonic())))

