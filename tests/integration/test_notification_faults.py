"""The outbox relay and the notifications pool under faults: SIGKILLed mid-batch or mid-send, racing each
other. Postgres is the source of truth: nothing is lost, and each (event, channel, recipient) is one
delivery; a message sent again after a crash carries the same id, for the receiver to drop."""

from __future__ import annotations

import signal
import threading
import uuid
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.support import api_client, book_slot, make_catalog, wait_for
from tests.test_notifications import SYSTEM, Receiver
from totem.embedded import PrivateRedis
from totem.fleet import Fleet


def _rows(url: str, query: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def test_a_relay_killed_mid_batch_publishes_nothing_and_the_next_one_fans_out_once(
        fault_fleet: Fleet, isolated_database_url: str) -> None:
    url = isolated_database_url
    catalog = make_catalog(url)
    base = fault_fleet.start_gateway()
    fault_fleet.start_worker()
    with api_client(base) as client:
        booking_id = book_slot(client, catalog, days=50)  # no relay runs yet: its event waits in the outbox
    [event] = _rows(url, "SELECT id FROM outbox WHERE aggregate_id = %s AND published_at IS NULL", booking_id)
    # The relay's insert of deliveries waits on this lock, inside its transaction (the event already claimed).
    blocker = psycopg.connect(url)
    blocker.execute("LOCK TABLE deliveries IN SHARE MODE")
    fault_fleet.start_relay("relay-1")
    wait_for(lambda: _rows(url, "SELECT 1 FROM pg_stat_activity WHERE application_name = 'totem-relay' "
                                "AND wait_event_type = 'Lock'"), 20, "the relay to block mid-batch")
    fault_fleet.kill("relay-1", signal.SIGKILL)
    blocker.rollback()
    blocker.close()
    assert _rows(url, "SELECT published_at FROM outbox WHERE id = %s", event["id"])[0]["published_at"] is None

    fault_fleet.start_relay("relay-2")
    wait_for(lambda: _rows(url, "SELECT 1 FROM outbox WHERE id = %s AND published_at IS NOT NULL", event["id"]),
             20, "the event published by the second relay")
    deliveries = _rows(url, "SELECT channel, recipient FROM deliveries WHERE event_id = %s", event["id"])
    assert deliveries == [{"channel": "email", "recipient": "grace@example.com"}]
    assert len(_rows(url, "SELECT 1 FROM notifications WHERE event_id = %s", event["id"])) == 1
    assert len(_rows(url, "SELECT 1 FROM jobs WHERE payload->>'delivery_id' IN "
                          "(SELECT id::text FROM deliveries WHERE event_id = %s)", event["id"])) == 1


def _published_by(fleet: Fleet, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{fleet.metrics_ports[name]}/", timeout=5).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("totem_relay_events_total"))


def test_racing_relays_fan_each_event_out_once(fault_fleet: Fleet, isolated_database_url: str) -> None:
    url = isolated_database_url
    catalog = make_catalog(url)
    base = fault_fleet.start_gateway()
    fault_fleet.start_worker()
    with api_client(base) as client:
        booked = [book_slot(client, catalog, days=60 + i) for i in range(12)]
    blocker = psycopg.connect(url)  # hold every relay at its first batch until all three have started
    blocker.execute("LOCK TABLE deliveries IN SHARE MODE")
    fault_fleet.env["RELAY_BATCH_SIZE"] = "2"  # many small batches: the relays take turns
    relays = ("relay-a", "relay-b", "relay-c")
    for name in relays:
        fault_fleet.start_relay(name)
    wait_for(lambda: len(_rows(url, "SELECT 1 FROM pg_stat_activity WHERE application_name = 'totem-relay' "
                                    "AND wait_event_type = 'Lock'")) == len(relays), 20, "three relays waiting")
    blocker.rollback()
    blocker.close()
    wait_for(lambda: not _rows(url, "SELECT 1 FROM outbox WHERE published_at IS NULL"), 30, "every event published")
    published = {name: _published_by(fault_fleet, name) for name in relays}
    assert sum(published.values()) >= len(booked)
    assert sum(1 for n in published.values() if n > 0) >= 2, published  # they really raced
    # (the database is the module's: only this provider's events count)
    per_event = _rows(url, "SELECT o.aggregate_id, count(d.id) AS deliveries FROM outbox o "
                           "LEFT JOIN deliveries d ON d.event_id = o.id WHERE o.payload->>'provider_id' = %s "
                           "GROUP BY o.id, o.aggregate_id", catalog.provider_id)
    assert sorted(str(r["aggregate_id"]) for r in per_event) == sorted(booked)
    assert all(r["deliveries"] == 1 for r in per_event)  # the customer's email, once
    jobs = _rows(url, "SELECT payload->>'delivery_id' AS d, count(*) AS n FROM jobs WHERE payload ? 'delivery_id' "
                      "AND payload->>'delivery_id' IN (SELECT id::text FROM deliveries WHERE provider_id = %s) "
                      "GROUP BY 1", catalog.provider_id)
    assert len(jobs) == len(booked) and all(j["n"] == 1 for j in jobs)


def test_a_notifications_worker_killed_mid_send_delivers_with_the_same_message_id(
        fault_fleet: Fleet, isolated_database_url: str) -> None:
    url = isolated_database_url
    catalog = make_catalog(url)
    release = threading.Event()
    receiver = Receiver()
    original = receiver.server.RequestHandlerClass.do_POST  # type: ignore[attr-defined]

    arrivals: list[str] = []

    def hang_first(handler: Any) -> None:  # the first request hangs until the worker is dead
        arrivals.append(handler.headers["webhook-id"])
        if len(arrivals) == 1:
            release.wait(30)
        original(handler)

    receiver.server.RequestHandlerClass.do_POST = hang_first  # type: ignore[attr-defined]
    try:
        base = fault_fleet.start_gateway()
        fault_fleet.start_worker()
        fault_fleet.start_scheduler()
        fault_fleet.start_relay()
        with api_client(base) as client:
            created = client.post(f"/v1/providers/{catalog.provider_id}/webhook-endpoints",
                                  json={"url": receiver.url, "events": ["booking_created"]}, headers=SYSTEM)
            assert created.status_code == 201, created.text
            fault_fleet.start_worker("notifications", name="notifications-1")
            book_slot(client, catalog, days=70)
            wait_for(lambda: arrivals, 20, "the send in flight (the receiver holds it)")
            fault_fleet.kill("notifications-1", signal.SIGKILL)
            release.set()
            fault_fleet.start_worker("notifications", name="notifications-2")
            delivered = wait_for(lambda: _rows(url, "SELECT id, attempts FROM deliveries WHERE channel = 'webhook' "
                                                    "AND status = 'delivered' AND provider_id = %s",
                                               catalog.provider_id), 60, "delivered after the crash")
        assert len(delivered) == 1
        assert len(arrivals) == 2  # the interrupted send, and the one after the crash
        assert set(arrivals) == {str(delivered[0]["id"])}  # every copy carries the delivery's id
    finally:
        release.set()
        receiver.close()


def test_events_published_while_redis_is_down_are_delivered_once_it_is_back(
        fault_fleet: Fleet, isolated_database_url: str, private_redis: PrivateRedis) -> None:
    url = isolated_database_url
    catalog = make_catalog(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE providers SET contact_email = 'owner@redis-down.example' WHERE id = %s",
                     (catalog.provider_id,))
    fault_fleet.start_smtp_sink()
    fault_fleet.start_scheduler()
    fault_fleet.start_relay()
    fault_fleet.start_worker("notifications")
    port = private_redis.port
    private_redis.stop()
    payout_id = str(uuid.uuid4())
    with psycopg.connect(url, autocommit=True) as conn:  # a payout paid while Redis is down
        conn.execute("INSERT INTO outbox (topic, aggregate_id, payload) VALUES ('payout_sent', %s, %s)",
                     (payout_id, Jsonb({"provider_id": catalog.provider_id, "payout_id": payout_id,
                                        "amount": 2250, "currency": "EUR"})))
    wait_for(lambda: _rows(url, "SELECT 1 FROM deliveries d JOIN jobs j ON j.payload->>'delivery_id' = d.id::text "
                                "WHERE d.topic = 'payout_sent' AND d.provider_id = %s AND j.status = 'queued'",
                           catalog.provider_id), 20, "the relay to publish it (its job durable, not enqueued)")
    private_redis.start(port=port)  # empty: the sweeper enqueues the job the relay could not
    [delivered] = wait_for(lambda: _rows(url, "SELECT id, attempts FROM deliveries WHERE topic = 'payout_sent' "
                                              "AND provider_id = %s AND status = 'delivered'", catalog.provider_id),
                           60, "the email delivered")
    assert delivered["attempts"] == 1
    assert fault_fleet.mail_dir is not None
    assert len([p for p in fault_fleet.mail_dir.glob("*.eml") if str(delivered["id"]) in p.name]) == 1


def test_an_event_that_cannot_be_fanned_out_is_set_aside_and_the_events_behind_it_go_out(
        fault_fleet: Fleet, isolated_database_url: str) -> None:
    url = isolated_database_url
    catalog = make_catalog(url)
    base = fault_fleet.start_gateway()
    fault_fleet.start_worker()
    with psycopg.connect(url, autocommit=True) as conn:  # a payload a bug upstream could write: no uuid to cast
        [poison] = conn.execute("INSERT INTO outbox (topic, aggregate_id, payload) VALUES ('booking_created', %s, %s) "
                                "RETURNING id", (uuid.uuid4(), Jsonb({"provider_id": catalog.provider_id,
                                                                      "booking_id": "not-a-uuid"}))).fetchone()
    with api_client(base) as client:
        booking_id = book_slot(client, catalog, days=70)  # its event sits behind the poison one
    fault_fleet.start_relay("relay-poison")

    wait_for(lambda: _rows(url, "SELECT 1 FROM outbox WHERE aggregate_id = %s AND published_at IS NOT NULL",
                           booking_id), 30, "the good event published past the poison one")
    [aside] = _rows(url, "SELECT published_at, relay_error FROM outbox WHERE id = %s", poison)
    assert aside["published_at"] is not None
    assert aside["relay_error"] == "InvalidTextRepresentation (SQLSTATE 22P02)"
    assert _rows(url, "SELECT 1 FROM deliveries WHERE event_id = %s", poison) == []
    good = _rows(url, "SELECT d.recipient FROM deliveries d JOIN outbox o ON o.id = d.event_id "
                      "WHERE o.aggregate_id = %s", booking_id)
    assert good == [{"recipient": "grace@example.com"}]
    metrics = httpx.get(f"http://127.0.0.1:{fault_fleet.metrics_ports['relay-poison']}/", timeout=5).text
    assert "totem_relay_events_set_aside_total 1.0" in metrics
