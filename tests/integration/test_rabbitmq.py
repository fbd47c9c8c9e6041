"""RabbitMQ as the job broker (BROKER_URL=amqp://…): the whole booking path, payments and mail run over it;
messages wait durably while no worker runs; and losing the broker's messages loses nothing, because Postgres
is the source of truth (the scheduler's sweeper enqueues them again). Each test run works in a RabbitMQ
virtual host of its own; RabbitMQ must run on 127.0.0.1:5672 (guest/guest), as on the CI machine."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import FAST_TIMINGS, api_client, future, inherited_env, make_catalog, new_key, wait_for, wait_job
from totem.embedded import PrivateRedis
from totem.fleet import Fleet


def _rabbitmqctl(*args: str) -> str:
    binary = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"rabbitmqctl {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture
def vhost() -> Iterator[str]:
    name = f"totem-test-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", name)
    _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    try:
        yield name
    finally:
        _rabbitmqctl("delete_vhost", name)


@pytest.fixture
def rabbit_fleet(isolated_database_url: str, private_redis: PrivateRedis, vhost: str,
                 tmp_path: Path) -> Iterator[Fleet]:
    env = inherited_env()
    env.update(FAST_TIMINGS, DATABASE_URL=isolated_database_url, REDIS_URL=private_redis.url(),
               REDIS_NAMESPACE="totem-rabbit", BROKER_URL=f"amqp://guest:guest@127.0.0.1:5672/{vhost}")
    (tmp_path / "logs").mkdir()
    fleet = Fleet(env=env, log_dir=tmp_path / "logs", mail_dir=tmp_path / "mail")
    try:
        yield fleet
    finally:
        fleet.stop()


def _queue_length(vhost: str, queue: str) -> int:
    for line in _rabbitmqctl("list_queues", "-p", vhost, "name", "messages", "--quiet").splitlines():
        name, _, count = line.partition("\t")
        if name == queue:
            return int(count)
    return 0


def test_bookings_payments_and_mail_run_over_rabbitmq(rabbit_fleet: Fleet, isolated_database_url: str,
                                                       vhost: str) -> None:
    catalog = make_catalog(isolated_database_url)
    fleet = rabbit_fleet
    fleet.start_all()
    with api_client(fleet.base_url) as client:
        accepted = client.post("/v1/bookings", json=catalog.slot_body(future(days=90)),
                               headers={"Idempotency-Key": new_key(), **catalog.widget})
        job = wait_job(client, accepted.json()["job_id"], headers=catalog.widget)
        assert job["status"] == "succeeded", job
        booking_id = job["result"]["booking_id"]
        confirmed = httpx.post(f"{fleet.stripe_url}/v1/payment_intents/{job['result']['payment_intent_id']}/confirm",
                               data={"payment_method": "pm_card_visa"}, timeout=10)
        assert confirmed.status_code == 200
        wait_for(lambda: client.get(f"/v1/bookings/{booking_id}").json()["status"] == "paid", 30,
                 "paid through the payments pool over RabbitMQ")
    assert fleet.mail_dir is not None
    wait_for(lambda: len(list(fleet.mail_dir.glob("*.eml"))) >= 2, 30, "the mails sent by the notifications pool")
    queues = dict(line.split("\t") for line in _rabbitmqctl("list_queues", "-p", vhost, "name", "type",
                                                              "--quiet").splitlines() if "\t" in line)
    assert queues["bookings"] == "quorum" and queues["payment_webhooks"] == "quorum"  # replicated, durable


def test_messages_wait_durably_and_a_lost_queue_loses_nothing(
        rabbit_fleet: Fleet, isolated_database_url: str, vhost: str) -> None:
    catalog = make_catalog(isolated_database_url)
    fleet = rabbit_fleet
    base = fleet.start_gateway()  # no worker yet: the messages wait in RabbitMQ
    with api_client(base) as client:
        jobs = [client.post("/v1/bookings", json=catalog.slot_body(future(days=91 + i)),
                            headers={"Idempotency-Key": new_key(), **catalog.widget}).json()["job_id"]
                for i in range(4)]
        wait_for(lambda: _queue_length(vhost, "bookings") == 4, 20, "four messages queued in RabbitMQ")
        _rabbitmqctl("purge_queue", "-p", vhost, "bookings")  # the broker loses them
        wait_for(lambda: _queue_length(vhost, "bookings") == 0, 20, "the queue empty (its stats refresh every 5 s)")
        fleet.start_worker()
        fleet.start_scheduler()  # its sweeper enqueues the jobs still queued in Postgres
        done = [wait_job(client, job_id, timeout=60, headers=catalog.widget) for job_id in jobs]
    assert [job["status"] for job in done] == ["succeeded"] * 4
    assert [job["attempts"] for job in done] == [1] * 4
