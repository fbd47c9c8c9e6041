"""Test support: the test run's own database and Redis namespace, a fleet of real processes, a catalog."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from shared.db import QUERIES
from totem.embedded import free_port

ROOT = Path(__file__).resolve().parent.parent

# Short timings so recovery paths are exercised in seconds, not minutes.
FAST_TIMINGS = {
    "SCHEDULER_INTERVAL_SECONDS": "0.5",
    "SCHEDULER_LEASE_SECONDS": "3",
    "JOB_LEASE_SECONDS": "4",
    "JOB_REQUEUE_AFTER_SECONDS": "2",
    "IDEMPOTENCY_LEASE_SECONDS": "3",
    "SYSTEM_TOKEN": "test-system-token",
    "PAYOUT_MATURITY_SECONDS": "0",
    "RECONCILE_INTERVAL_SECONDS": "0",
    "LOG_LEVEL": "INFO",
}


def reachable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


@dataclass
class Fleet:
    """Real gateway / worker / scheduler processes, as `totem up` runs them."""

    env: dict[str, str]
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    base_url: str = ""
    gateway_port: int = 0
    stripe_url: str = ""

    def __post_init__(self) -> None:
        """Ports are fixed up front: the fake Stripe posts its webhooks to the gateway, the workers call the
        fake, so every process must know both before any starts."""
        self.gateway_port = free_port()
        stripe_port = free_port()
        self.stripe_url = f"http://127.0.0.1:{stripe_port}"
        self.env = {**self.env, "STRIPE_API_BASE": self.stripe_url, "FAKE_STRIPE_PORT": str(stripe_port),
                    "FAKE_STRIPE_WEBHOOK_URL": f"http://127.0.0.1:{self.gateway_port}/v1/webhooks/stripe"}

    def start(self, name: str, *args: str, **extra_env: str) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "totem.cli", *args], env={**self.env, **extra_env}, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def start_gateway(self, workers: int = 1) -> str:
        """The gateway, and the fake Stripe beside it (started once per fleet)."""
        if "fake-stripe" not in self.procs:
            self.start("fake-stripe", "fake-stripe")
            wait_for(lambda: _ok(self.stripe_url + "/_fake/health"), 30,
                     f"fake Stripe up (log {self.log_dir}/fake-stripe.log)")
        port = self.gateway_port
        self.start("web", "gateway", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers))
        self.base_url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _ok(self.base_url + "/healthz"), 30, f"gateway up (log {self.log_dir}/web.log)")
        return self.base_url

    def start_worker(self, pool: str = "bookings", name: str | None = None, threads: int = 4) -> None:
        metrics_port = self.env.get("WORKER_METRICS_PORT") or str(free_port())  # pools on one host: own ports
        self.start(name or pool, "worker", pool, "--processes", "1", "--threads", str(threads),
                   WORKER_METRICS_PORT=metrics_port)

    def start_scheduler(self, name: str = "scheduler", metrics_port: int | None = None) -> None:
        self.start(name, "scheduler", SCHEDULER_METRICS_PORT=str(metrics_port or free_port()))

    def kill(self, name: str, sig: int) -> None:
        """SIGKILL hits the whole process group (a crash); SIGTERM only the leader (as a supervisor does)."""
        proc = self.procs.pop(name)
        if sig == signal.SIGKILL:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
        proc.wait(40)

    def stop(self) -> None:
        for name in list(self.procs):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(40)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_job(client: httpx.Client, job_id: str, timeout: float = 30) -> dict[str, Any]:
    def terminal() -> dict[str, Any] | None:
        job = client.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] in ("succeeded", "failed") else None

    return wait_for(terminal, timeout, f"job {job_id} terminal", interval=0.05)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Catalog:
    provider_id: str
    resource_id: str
    service_id: str
    duration_minutes: int = 30
    price: int = 2500

    def slot_body(self, start_at: datetime, **overrides: Any) -> dict[str, Any]:
        body = {"kind": "slot", "resource_id": self.resource_id, "service_id": self.service_id,
                "start_at": start_at.isoformat(),
                "customer": {"name": "Grace Hopper", "email": "grace@example.com"}}
        return {**body, **overrides}


ALL_DAY = ("00:00", "24:00")


# Full refund a day ahead, half until the start, nothing after.
STANDARD_POLICY = [{"min_hours_before_start": 24, "refund_percent": 100},
                   {"min_hours_before_start": 0, "refund_percent": 50}]


def make_catalog(database_url: str, *, hold_ttl_seconds: int | None = None, time_zone: str = "Europe/Berlin",
                 hours: tuple[str, str] | None = ALL_DAY, price: int = 2500,
                 policy: list[dict[str, int]] | None = None) -> Catalog:
    """A provider with one slot resource offering one 30-minute service, open ``hours`` every day."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        provider = conn.execute(QUERIES["insert_provider"], {
            "slug": f"p-{uuid.uuid4().hex[:12]}", "name": "Test Salon", "time_zone": time_zone,
            "currency": "EUR", "commission_bps": 1000, "hold_ttl_seconds": hold_ttl_seconds,
            "cancellation_policy": Jsonb(STANDARD_POLICY if policy is None else policy)}).fetchone()
        assert provider
        resource = conn.execute(QUERIES["insert_resource"], {
            "provider_id": provider["id"], "kind": "slot", "name": "Master", "nightly_price": None}).fetchone()
        service = conn.execute(QUERIES["insert_service"], {
            "provider_id": provider["id"], "name": "Cut", "duration_minutes": 30, "price": price,
            "currency": "EUR"}).fetchone()
        assert resource and service
        conn.execute(QUERIES["offer_service"], {"resource_id": resource["id"], "service_id": service["id"]})
        for weekday in range(1, 8) if hours else ():
            conn.execute(QUERIES["insert_resource_hours"], {"resource_id": resource["id"], "weekday": weekday,
                                                            "opens_at": hours[0], "closes_at": hours[1]})
    return Catalog(str(provider["id"]), str(resource["id"]), str(service["id"]), price=price)


def future(days: int = 30, hour: int = 10) -> datetime:
    base = datetime.now(UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    return base + timedelta(days=days)


def new_key() -> str:
    return uuid.uuid4().hex
