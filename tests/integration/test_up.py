"""`totem up` on the embedded default: it starts its own Postgres and Redis, stops everything it started on
SIGTERM, and a second `totem up` after a crash recovers (orphaned processes, servers left running)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT, future, new_key, wait_for, wait_job
from totem.embedded import PrivatePostgres, PrivateRedis, free_port

pytestmark = pytest.mark.fault


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return False


def _up(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith(("PROMETHEUS_", "dramatiq_"))}
    env["SCHEDULER_INTERVAL_SECONDS"] = "0.5"
    return subprocess.Popen([sys.executable, "-m", "totem.cli", "up", "--data-dir", str(data_dir), "--port",
                             str(port), "--web-workers", "1"], cwd=ROOT, env=env,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_up_runs_the_fleet_on_private_servers_stops_cleanly_and_recovers_from_a_crash(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "up.log"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    first = _up(data_dir, port, log)
    try:
        wait_for(lambda: first.poll() is not None or _ready(base), 120, f"totem up (log {log})", interval=0.5)
        assert first.poll() is None, log.read_text()
        catalog = json.loads((data_dir / "seed.json").read_text())
        resource = next(r for r in catalog["resources"] if r["kind"] == "slot")
        body = {"kind": "slot", "resource_id": resource["id"], "service_id": resource["service_ids"][0],
                "start_at": future(days=5).isoformat(), "customer": {"name": "Ada", "email": "ada@example.com"}}
        token = next(t["token"] for t in catalog["public_tokens"] if t["provider_id"] == resource["provider_id"])
        widget = {"Authorization": f"Bearer {token}"}  # as a newcomer would: the seed's widget token
        with httpx.Client(base_url=base, timeout=10) as client:
            accepted = client.post("/v1/bookings", json=body, headers={"Idempotency-Key": new_key(), **widget})
            job = wait_job(client, accepted.json()["job_id"], headers=widget)
        assert job["status"] == "succeeded" and job["result"]["payment_intent_id"].startswith("pi_")
        assert "Totem is up" in log.read_text() and "curl" in log.read_text()
        # the welcome names the pages a newcomer opens: the demo provider's widget, the console, an owner to sign in as
        slug = next(p["slug"] for p in catalog["providers"] if p["id"] == resource["provider_id"])
        owner = next(o["email"] for o in catalog["owners"] if o["provider_id"] == resource["provider_id"])
        pages = re.search(r"booking widget: ((\S+)/widget/([^?\s]+)\?token=(pk_\S+))\n\s+owner console:  (\S+)/console"
                          r"\s+sign in as (\S+)", log.read_text())
        assert pages is not None and pages.group(3, 4, 6) == (slug, token, owner), log.read_text()
        page = httpx.get(pages.group(1), timeout=5)  # the widget opens with the demo's public token
        assert page.status_code == 200 and f'data-token="{token}"' in page.text
        assert httpx.get(f"{pages.group(5)}/console", timeout=5).status_code == 200
        # the embedded default includes the fake Stripe: paying the intent makes the booking paid
        stripe_base = re.search(r"fake Stripe on (http://\S+),", log.read_text()).group(1)  # type: ignore[union-attr]
        confirmed = httpx.post(f"{stripe_base}/v1/payment_intents/{job['result']['payment_intent_id']}/confirm",
                               data={"payment_method": "pm_card_visa"}, timeout=10)
        assert confirmed.json()["status"] == "succeeded"
        with httpx.Client(base_url=base, timeout=10, headers=widget) as client:
            wait_for(lambda: client.get(f"/v1/bookings/{job['result']['booking_id']}").json()["status"] == "paid",
                     30, "booking paid through the fake Stripe's webhook")

        # A crashed pool is started again (with a line saying so); the fleet goes on serving.
        crashed = int((data_dir / "run" / "bookings.pid").read_text())
        os.killpg(crashed, signal.SIGKILL)
        wait_for(lambda: "bookings restarted" in log.read_text(), 30, "the bookings pool restarted")
        assert int((data_dir / "run" / "bookings.pid").read_text()) != crashed and first.poll() is None
        with httpx.Client(base_url=base, timeout=10) as client:
            again = {**body, "start_at": future(days=6).isoformat()}
            accepted = client.post("/v1/bookings", json=again, headers={"Idempotency-Key": new_key(), **widget})
            assert wait_job(client, accepted.json()["job_id"], headers=widget)["status"] == "succeeded"

        # Crash: the supervisor dies, its processes and servers are orphaned.
        orphans = [int(p.read_text()) for p in (data_dir / "run").glob("*.pid")]
        assert len(orphans) >= 3
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert all(_alive(pid) for pid in orphans)

        second = _up(data_dir, port, log)
        try:
            wait_for(lambda: "stopped processes left by an earlier run" in log.read_text(), 60, "stale reaping")
            wait_for(lambda: second.poll() is not None or _ready(base), 120, f"second totem up (log {log})",
                     interval=0.5)
            assert second.poll() is None, log.read_text()
            assert not any(_alive(pid) for pid in orphans)
            with httpx.Client(base_url=base, timeout=10, headers=widget) as client:  # the data survived
                assert client.get(f"/v1/bookings/{job['result']['booking_id']}").status_code == 200
            fleet_pids = [int(p.read_text()) for p in (data_dir / "run").glob("*.pid")]
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(90) == 0
        assert not any(_alive(pid) for pid in fleet_pids)
        assert PrivatePostgres(data_dir).running_port() is None
        assert PrivateRedis(data_dir).running_pid() is None
        assert "stopped" in log.read_text().splitlines()[-1]
    finally:
        print(log.read_text(errors="replace"))  # pytest shows it only when the test fails
        for fleet_log in sorted((data_dir / "logs").glob("*.log")):
            print(f"--- {fleet_log.name}\n{fleet_log.read_text(errors='replace')[-3000:]}")
        if first.poll() is None:
            first.kill()
        for pid_file in (data_dir / "run").glob("*.pid"):  # never leave a fleet behind, even on failure
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        PrivatePostgres(data_dir).stop(mode="immediate")
        PrivateRedis(data_dir).stop()
        time.sleep(0)
