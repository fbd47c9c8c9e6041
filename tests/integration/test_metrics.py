"""Each worker pool exports Dramatiq's Prometheus metrics (messages, errors, retries, durations per queue and
actor) on its own port; the gateway exports request metrics on /metrics."""

from __future__ import annotations

import httpx

from tests.support import api_client, future, make_catalog, new_key, wait_for, wait_job
from totem.embedded import PrivateRedis, free_port
from totem.fleet import Fleet


def test_worker_pool_metrics_count_processed_jobs(fault_fleet: Fleet, isolated_database_url: str) -> None:
    catalog = make_catalog(isolated_database_url)
    base = fault_fleet.start_gateway()
    fault_fleet.start_worker()
    port = fault_fleet.metrics_ports["bookings"]
    with api_client(base) as client:
        for days in (31, 32):
            job = client.post("/v1/bookings", json=catalog.slot_body(future(days=days)),
                              headers={"Idempotency-Key": new_key()}).json()
            assert wait_job(client, job["job_id"])["status"] == "succeeded"

    text = _scrape_until(f"http://127.0.0.1:{port}/",
                         'dramatiq_messages_total{actor_name="create_booking",queue_name="bookings"} 2.0')
    assert "dramatiq_message_duration_milliseconds_bucket" in text
    _scrape_until(f"{base}/metrics", 'totem_gateway_jobs_enqueued_total{outcome="sent",queue="bookings"} 2.0')


def test_the_scheduler_exports_leadership_queue_depth_open_jobs_and_outbox_lag(
    fault_fleet: Fleet, isolated_database_url: str, private_redis: PrivateRedis,
) -> None:
    catalog = make_catalog(isolated_database_url)
    port = free_port()
    base = fault_fleet.start_gateway()
    fault_fleet.start_scheduler(metrics_port=port)
    with api_client(base) as client:  # no worker runs: these jobs wait in the queue
        for days in (33, 34, 35):
            assert client.post("/v1/bookings", json=catalog.slot_body(future(days=days)),
                               headers={"Idempotency-Key": new_key()}).status_code == 202

    url = f"http://127.0.0.1:{port}/metrics"
    # each figure is waited for on its own: the gateway's batched enqueue may reach Redis after the rows commit
    _scrape_until(url, 'totem_jobs_open{queue="bookings",status="queued"} 3.0')
    _scrape_until(url, 'totem_queue_depth{queue="bookings"} 3.0')
    text = _scrape_until(url, "totem_scheduler_leader 1.0")
    assert "totem_outbox_lag_seconds" in text and "totem_outbox_pending" in text


def _scrape_until(url: str, expected: str) -> str:
    def scraped() -> str | None:
        try:
            text = httpx.get(url, timeout=2).text
        except httpx.HTTPError:
            return None
        return text if expected in text else None

    return wait_for(scraped, 20, f"{expected} at {url}")  # type: ignore[no-any-return]


def test_a_gateway_of_two_processes_reports_one_sum(fault_fleet: Fleet, isolated_database_url: str) -> None:
    catalog = make_catalog(isolated_database_url)
    base = fault_fleet.start_gateway(workers=2)
    path = f"/v1/resources/{catalog.resource_id}"
    with httpx.Client(base_url=base, timeout=10, headers=catalog.widget,
                      limits=httpx.Limits(max_keepalive_connections=0)) as client:  # new connections: both processes
        assert all(client.get(path).status_code == 200 for _ in range(30))
    text = _scrape_until(f"{base}/metrics", "totem_gateway_db_connections_in_use")
    served = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                 if line.startswith("totem_http_requests_total{") and 'path="/v1/resources/{resource_id}"' in line)
    assert served == 30
    assert "totem_gateway_db_requests_waiting" in text
