"""`totem bench` as one report: from a recorded run's raw figures (tests/data/bench/raw_quick.json, written by
`totem bench --quick`) the writer produces latest.json with the stable keys, report.md with every target and
what limits the unmet ones, and the PNG charts; the open-loop generator counts a stall in every request due
during it; the peer baseline books through the bookings worker's own code."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from bench import peer
from bench.charts import CHARTS
from bench.details import figure_lines
from bench.load import run_load, run_open_loop
from bench.report import summarize, write
from tests.support import ROOT, future, make_catalog, new_key
from totem.fleet import Fleet

RECORDED = ROOT / "tests" / "data" / "bench" / "raw_quick.json"
STABLE_KEYS = ("ratios.e2e_over_all_sql", "ratios.e2e_over_in_request_baseline",
               "ratios.totem_cpu_over_postgres_cpu", "latency.accept_p99_ms_at_half_capacity",
               "ledger.balance_p99_ms_at_1m", "ledger.statement_p99_ms_at_1m", "ledger.entries")


@pytest.fixture
def raw() -> dict[str, Any]:
    return json.loads(RECORDED.read_text())


def _at(document: dict[str, Any], dotted: str) -> Any:
    value: Any = document
    for part in dotted.split("."):
        value = value[part]
    return value


def test_the_report_has_every_stable_key_a_markdown_report_and_three_charts(raw: dict[str, Any],
                                                                              tmp_path: Path) -> None:
    write(raw, tmp_path, figure_lines(raw))
    document = json.loads((tmp_path / "latest.json").read_text())
    for key in STABLE_KEYS:
        assert isinstance(_at(document, key), (int, float)), key
    assert document["ratios"]["e2e_over_all_sql"] == pytest.approx(
        raw["e2e"]["bookings_per_s"] / raw["pgbench_full"]["tps"])
    assert document["ratios"]["e2e_over_in_request_baseline"] == pytest.approx(
        raw["e2e"]["bookings_per_s"] / raw["e2e"]["peer"]["bookings_per_s"])
    cpu = raw["e2e"]["cpu_ms_per_booking"]
    assert document["ratios"]["totem_cpu_over_postgres_cpu"] == pytest.approx(
        (cpu["web"] + cpu["bookings"]) / cpu["postgres"])
    assert [p["fraction"] for p in document["latency"]["curve"]] == [0.25, 0.5, 0.75, 0.9]
    assert [r["processes"] for r in document["scaling"]["runs"]] == [1, 2, 4]
    assert document["raw"] == json.loads(json.dumps(raw, default=str))

    report = (tmp_path / "report.md").read_text()
    assert "py-spy, bookings" in report and "`profile-bookings.txt`" in report  # the profile an unmet target cites
    assert "| `accept_command` | 1.0 |" in report  # pg_stat_statements, by the name of the query in sql/queries
    for target in document["targets"]:
        assert target["name"] in report
    for chart in CHARTS:
        assert f"({chart})" in report
        png = (tmp_path / chart).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000, chart


def test_every_unmet_target_says_what_limits_it(raw: dict[str, Any]) -> None:
    targets = summarize(raw)["targets"]
    assert len(targets) == 7
    for target in targets:
        if not target["met"]:
            assert target["limit"] and target["limit"] != "unknown", target["name"]


def test_ledger_reads_fast_at_fewer_entries_do_not_count_as_met_at_a_million(raw: dict[str, Any]) -> None:
    fast = copy.deepcopy(raw)
    fast["ledger"].update(entries=20_000, balance_p99_ms=1.0, statement_p99_ms=2.0)
    summary = summarize(fast)
    assert summary["ledger"]["at_1m"] is False
    reads = [t for t in summary["targets"] if t["name"].startswith(("balance", "statement"))]
    assert [t["met"] for t in reads] == [None, None]
    assert all("20,000 entries" in t["name"] for t in reads)

    fast["ledger"]["entries"] = 1_000_000
    summary = summarize(fast)
    assert summary["ledger"]["at_1m"] is True
    assert [t["met"] for t in summary["targets"] if t["name"].startswith(("balance", "statement"))] == [True, True]


class _StallingServer:
    """HTTP/1.1 keep-alive: answers 200 at once, except the first answer, held until ``stall_until``."""

    def __init__(self, stall_until: float) -> None:
        self.stall_until = stall_until
        self.answered = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), 0)
                await reader.readexactly(length)
                if self.answered == 0:  # the simulated stall (a GC pause, a lock): part of the scenario
                    await asyncio.sleep(max(0.0, self.stall_until - time.perf_counter()))
                self.answered += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionResetError):
            writer.close()


async def _stalled(open_loop: bool) -> list[float]:
    """20 requests on one connection, due 10 ms apart (open loop) or one after another (closed loop), to a
    server whose first answer comes 200 ms after the start, when the last request is due."""
    server = _StallingServer(time.perf_counter() + 0.2)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    requests = [b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"] * 20
    try:
        if open_loop:
            return (await run_open_loop("127.0.0.1", port, requests, rate=100, max_connections=1,
                                        warm_connections=1)).latencies
        return (await run_load("127.0.0.1", port, requests, 1)).latencies
    finally:
        listener.close()


def test_open_loop_latency_runs_from_each_due_time_so_a_stall_counts_in_every_request_due_during_it() -> None:
    open_latencies = sorted(asyncio.run(_stalled(open_loop=True)))
    closed_latencies = sorted(asyncio.run(_stalled(open_loop=False)))
    assert len(open_latencies) == len(closed_latencies) == 20
    # request i was due at i * 10 ms and answered after the stall (~200 ms): late by ~200 - 10 i ms, so at
    # least half of them by ~100 ms (80: the server's clock starts a moment before the load's); the closed
    # loop sent those after the stall and saw one slow request
    assert open_latencies[9] >= 0.08
    assert closed_latencies[9] < 0.08 <= closed_latencies[-1]


async def _closing_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers one request per connection, then closes it (as uvicorn does to a connection idle too long)."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    await writer.drain()
    writer.close()


def test_open_loop_sends_a_request_again_on_a_fresh_connection_when_the_server_closed_an_idle_one() -> None:
    async def scenario() -> dict[int, int]:
        listener = await asyncio.start_server(_closing_server, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        try:
            requests = [b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"] * 5
            return (await run_open_loop("127.0.0.1", port, requests, rate=200, max_connections=1,
                                        warm_connections=1)).statuses
        finally:
            listener.close()

    assert asyncio.run(scenario()) == {200: 5}


def test_the_peer_baseline_books_a_slot_inside_one_request_through_the_workers_code(
        isolated_database_url: str, fleet: Fleet, fleet_env: dict[str, str], tmp_path: Path) -> None:
    catalog = make_catalog(isolated_database_url)
    env = {**fleet_env, "DATABASE_URL": isolated_database_url, "STRIPE_API_BASE": fleet.stripe_url}
    own = Fleet(env=env, log_dir=tmp_path, fake_stripe=False)
    body = catalog.slot_body(future(days=45))
    headers = {**catalog.widget, "Idempotency-Key": new_key()}
    with peer.running(own, processes=1, threads=2) as (port, _):
        url = f"http://127.0.0.1:{port}/v1/bookings"
        booked = httpx.post(url, json=body, headers=headers, timeout=30)
        again = httpx.post(url, json=body, headers=headers, timeout=30)
    assert booked.status_code == 201, booked.text
    created = booked.json()
    assert created["status"] == "pending_payment" and created["payment_intent_id"].startswith("pi_")
    assert again.status_code == 409  # the key is used: the idempotency row was written by the same statement
    with psycopg.connect(isolated_database_url, row_factory=dict_row) as conn:
        job = conn.execute("SELECT j.status, j.type FROM jobs j JOIN bookings b ON b.created_by_job = j.id "
                           "WHERE b.id = %s", (created["booking_id"],)).fetchone()
        payment = conn.execute("SELECT payment_intent_id FROM payments WHERE booking_id = %s",
                               (created["booking_id"],)).fetchone()
    assert job == {"status": "succeeded", "type": "booking.create"}
    assert payment == {"payment_intent_id": created["payment_intent_id"]}
