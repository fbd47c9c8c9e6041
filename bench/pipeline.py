"""(c) The outbox pipeline under booking load: the same bookings as (b), posted with the relay, the
notifications pool and the SMTP sink running, until every job is terminal, every outbox row of the phase is
published and every delivery is delivered. Its bookings/s against (b)'s is what the pipeline costs the
booking path; with it the relay's events/s and batches, the outbox lag (published_at - created_at), emails/s
and CPU per booking for every part, the pipeline's processes included.

(r) runs first, with the relay alone (its deliveries are sent when the notifications pool starts, before (c)):
what publishing costs the booking path apart from sending, whose CPU competes for the same two cores.

Outbox rows left unpublished by earlier phases (they ran without a relay) are marked published first, so the
relay works on this phase's events only; the bench catalog has no webhook endpoints and no provider contact
address, so each booking fans out into one email (the customer's booking_created) and one in-app notification.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
import urllib.request
from datetime import datetime
from typing import Any

from bench.bookings import Conn, measure, say
from bench.rows import one_row_async
from shared.registry import JOB_TYPES, NOTIFICATION_DELIVER
from totem.fleet import Fleet, wait_listening

NOTIFICATIONS_POOL = JOB_TYPES[NOTIFICATION_DELIVER].pool
PARTS = ("smtp-sink", NOTIFICATIONS_POOL, "relay")
SETTLE_SECONDS = 45  # a pipeline that cannot deliver a phase's mail within this is reported, not waited for
WARM_BOOKINGS = 64


async def start_relay(conn: Conn, fleet: Fleet) -> None:
    """The relay alone: events become deliveries and queued send jobs, and nothing sends them yet."""
    await conn.execute("UPDATE outbox SET published_at = now() WHERE published_at IS NULL")
    fleet.start_relay()
    if not wait_listening(fleet.metrics_ports["relay"], 30):
        raise RuntimeError(f"the relay exported no metrics; see {fleet.log_dir / 'relay.log'}")


async def start_senders(conn: Conn, fleet: Fleet) -> None:
    """The notifications pool and the SMTP sink; returns once every delivery staged so far is delivered."""
    fleet.start_smtp_sink()
    fleet.start_worker(NOTIFICATIONS_POOL)
    await _wait_settled(conn, 0)


async def warm(conn: Conn, fleet: Fleet, servers: dict[str, int], resources: list[dict[str, str]],
               concurrency: int, first_day: datetime) -> None:
    """A few bookings through the fresh pipeline (imports, template compilation, connections) first."""

    async def settle() -> None:
        await _wait_settled(conn, 0)

    await measure(conn, fleet, servers, resources, WARM_BOOKINGS, concurrency, first_day, settle=settle)


def stop(fleet: Fleet) -> None:
    for name in PARTS[::-1]:
        if name in fleet.procs:
            fleet.kill(name, signal.SIGTERM)


async def phase(conn: Conn, fleet: Fleet, servers: dict[str, int], resources: list[dict[str, str]], count: int,
                concurrency: int, first_day: datetime, *, mail: bool = True) -> dict[str, Any]:
    """``count`` bookings through the running pipeline; the outbox figures of their events, and with ``mail``
    their deliveries' (waited for: CPU then counts until the last is out). Without, the phase ends when every
    event is published, and mail still being sent is left to ``stop``."""
    first_event = (await one_row_async(conn, "SELECT coalesce(max(id), 0) AS id FROM outbox"))["id"]
    batches_before = _relay_counters(fleet)

    async def settle() -> None:
        await _wait_settled(conn, first_event, mail=mail)

    result = await measure(conn, fleet, servers, resources, count, concurrency, first_day, settle=settle)
    batches = {k: v - batches_before.get(k, 0.0) for k, v in _relay_counters(fleet).items()}
    outbox = await one_row_async(conn, """
        SELECT count(*) AS events, count(published_at) AS published,
               extract(epoch FROM max(published_at) - min(created_at))::float8 AS span,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM published_at - created_at)) AS lag_p50,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM published_at - created_at)) AS lag_p99,
               extract(epoch FROM max(published_at - created_at))::float8 AS lag_max
        FROM outbox WHERE id > %s""", (first_event,))
    ok_batches = batches.get("ok", 0.0)
    result.update({
        "events": outbox["events"], "published": outbox["published"],
        "relay_events_per_s": outbox["published"] / max(1e-9, outbox["span"] or 0.0),
        "relay_batches": int(ok_batches), "relay_failed_batches": int(batches.get("failed", 0.0)),
        "events_per_batch": outbox["published"] / ok_batches if ok_batches else None,
        "outbox_lag_p50_ms": _ms(outbox["lag_p50"]), "outbox_lag_p99_ms": _ms(outbox["lag_p99"]),
        "outbox_lag_max_ms": _ms(outbox["lag_max"]),
    })
    return {**result, **(await _mail(conn, first_event))} if mail else result


async def _mail(conn: Conn, first_event: int) -> dict[str, Any]:
    sent = await one_row_async(conn, """
        SELECT count(*) AS deliveries, count(*) FILTER (WHERE d.status <> 'delivered') AS undelivered,
               count(*) FILTER (WHERE d.channel = 'email' AND d.status = 'delivered') AS emails,
               extract(epoch FROM max(d.delivered_at) FILTER (WHERE d.channel = 'email')
                                  - min(o.created_at))::float8 AS email_span,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM d.delivered_at - o.created_at))
                 FILTER (WHERE d.channel = 'email') AS email_p50,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM d.delivered_at - o.created_at))
                 FILTER (WHERE d.channel = 'email') AS email_p99,
               (SELECT count(*) FROM notifications n WHERE n.event_id > %(first)s) AS in_app
        FROM deliveries d JOIN outbox o ON o.id = d.event_id WHERE d.event_id > %(first)s""",
                               {"first": first_event})
    return {
        "deliveries": sent["deliveries"], "undelivered": sent["undelivered"], "in_app": sent["in_app"],
        "emails_delivered": sent["emails"],
        "emails_per_s": sent["emails"] / max(1e-9, sent["email_span"] or 0.0),
        "event_to_email_p50_ms": _ms(sent["email_p50"]), "event_to_email_p99_ms": _ms(sent["email_p99"]),
    }


def _ms(seconds: Any) -> float | None:
    return None if seconds is None else float(seconds) * 1000


async def _wait_settled(conn: Conn, first_event: int, mail: bool = True) -> None:
    """Until every event after ``first_event`` is published and (with ``mail``) each of its deliveries
    delivered; gives up (the figures then say how many were not) after SETTLE_SECONDS."""
    say("waiting for every outbox event to be published" + (" and every delivery delivered" if mail else ""))
    deadline = time.monotonic() + SETTLE_SECONDS * (2 if first_event == 0 else 1)
    while True:
        row = await one_row_async(conn, """
            SELECT (SELECT count(*) FROM outbox WHERE id > %(first)s AND published_at IS NULL) AS unpublished,
                   (SELECT count(*) FROM deliveries WHERE event_id > %(first)s AND status <> 'delivered') AS pending
            """, {"first": first_event})
        if row["unpublished"] == 0 and (row["pending"] == 0 or not mail):
            return
        if time.monotonic() > deadline:
            say(f"  gave up waiting: {row['unpublished']} unpublished, {row['pending']} not delivered")
            return
        say(f"  unpublished {row['unpublished']}, not delivered {row['pending']}")
        await asyncio.sleep(1)


_COUNTER = re.compile(r'^totem_relay_batches_total\{outcome="(\w+)"\} ([0-9.e+]+)$', re.MULTILINE)


def _relay_counters(fleet: Fleet) -> dict[str, float]:
    """The relay's batch counters by outcome (an empty poll is an "ok" batch too), from its metrics port."""
    url = f"http://127.0.0.1:{fleet.metrics_ports['relay']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {outcome: float(value) for outcome, value in _COUNTER.findall(text)}
