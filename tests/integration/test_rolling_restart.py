"""A rolling restart under load, as an operator (or a platform) does it: `totem up` runs the whole fleet (our
supervisor, as a Procfile runner would), a client keeps booking, and each process type in turn is SIGTERMed
(and restarted by the supervisor), then SIGKILLed (and restarted again). At the end every accepted request's
job is terminal, exactly once: one booking per succeeded job, none doubled. On Redis, and on RabbitMQ."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from tests.integration.test_rabbitmq import _rabbitmqctl
from tests.support import FAST_TIMINGS, ROOT, future, inherited_env, wait_for
from totem.embedded import PrivateRedis, free_port

ROLES = ("web", "bookings", "payments", "payouts", "notifications", "scheduler", "relay")


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    if request.param == "redis":
        yield {}
        return
    vhost = f"totem-rolling-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield {"BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}"}
    finally:
        _rabbitmqctl("delete_vhost", vhost)


def _pid(run: Path, role: str) -> int | None:
    try:
        return int((run / f"{role}.pid").read_text())
    except (OSError, ValueError):
        return None


def test_a_rolling_restart_of_every_process_type_under_load_ends_with_every_job_terminal_once(
        tmp_path: Path, isolated_database_url: str, private_redis: PrivateRedis, broker_env: dict[str, str]) -> None:
    data, port = tmp_path / "data", free_port()
    env = {**inherited_env(), **FAST_TIMINGS, **broker_env, "DATABASE_URL": isolated_database_url,
           "REDIS_URL": private_redis.url(), "REDIS_NAMESPACE": "totem-rolling"}
    log = tmp_path / "up.log"
    up = subprocess.Popen([sys.executable, "-m", "totem.cli", "up", "--data-dir", str(data), "--port", str(port),
                           "--web-workers", "1"], cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    accepted: list[str] = []
    stop = threading.Event()
    try:
        wait_for(lambda: up.poll() is not None or "Totem is up" in log.read_text(), 120, "totem up")
        assert up.poll() is None, log.read_text()[-3000:]
        seed = json.loads((data / "seed.json").read_text())
        resource = next(r for r in seed["resources"] if r["kind"] == "slot" and r["service_ids"])
        token = next(t["token"] for t in seed["public_tokens"] if t["provider_id"] == resource["provider_id"])

        def load() -> None:  # a well-behaved client: the same key until the request is accepted
            with httpx.Client(base_url=base, timeout=10, headers={"Authorization": f"Bearer {token}"}) as client:
                for i in range(10_000):
                    if stop.is_set():
                        return
                    body = {"kind": "slot", "resource_id": resource["id"], "service_id": resource["service_ids"][0],
                            "start_at": (future(days=200) + timedelta(minutes=30 * i)).isoformat(),
                            "customer": {"name": "Rolling", "email": "rolling@example.com"}}
                    key = uuid.uuid4().hex
                    while not stop.is_set():
                        with contextlib.suppress(httpx.HTTPError):
                            response = client.post("/v1/bookings", json=body, headers={"Idempotency-Key": key})
                            if response.status_code == 202:
                                accepted.append(response.json()["job_id"])
                                break
                            assert response.status_code == 503, response.text

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        wait_for(lambda: len(accepted) >= 5, 30, "load flowing")
        run = data / "run"
        for role in ROLES:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                before = _pid(run, role)
                assert before is not None, role
                with contextlib.suppress(ProcessLookupError):
                    if sig == signal.SIGKILL:
                        os.killpg(before, sig)  # a crash: the process and its children
                    else:
                        os.kill(before, sig)  # a stop, as a supervisor or platform sends it
                wait_for(lambda r=role, b=before: _pid(run, r) not in (None, b), 60,
                         f"{role} restarted after {sig.name}")
            count = len(accepted)
            wait_for(lambda c=count: len(accepted) > c, 60, f"bookings accepted again after restarting {role}")
        stop.set()
        loader.join(30)

        def terminal() -> list[dict[str, Any]] | None:
            with psycopg.connect(isolated_database_url, row_factory=dict_row) as conn:
                rows = conn.execute("SELECT id::text, status FROM jobs WHERE id = ANY(%s::uuid[])",
                                    (accepted,)).fetchall()
            return rows if len(rows) == len(accepted) and all(r["status"] in ("succeeded", "failed") for r in rows) \
                else None

        jobs = wait_for(terminal, 120, "every accepted job terminal")
        assert len(set(accepted)) == len(accepted)
        with psycopg.connect(isolated_database_url, row_factory=dict_row) as conn:
            made = conn.execute("SELECT created_by_job::text AS job, count(*) AS n FROM bookings "
                                "WHERE created_by_job = ANY(%s::uuid[]) GROUP BY 1", (accepted,)).fetchall()
        assert all(row["n"] == 1 for row in made)  # none doubled
        assert {row["job"] for row in made} == {j["id"] for j in jobs if j["status"] == "succeeded"}
        assert "restarted" in log.read_text()
    finally:
        stop.set()
        up.send_signal(signal.SIGTERM)
        up.wait(90)
