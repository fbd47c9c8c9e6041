"""Ledger figures: posting rate through ``ledger_post`` (idempotency key, fingerprint, accounts, entries,
balance check at commit) against the same rows inserted directly (the balance check still applies), both
with pgbench; then a provider statement and balance read at 100,000 ledger entries on its accounts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from bench.pgbench import render
from bench.rows import one_row
from shared.db import QUERIES

STATEMENT_ENTRIES = 100_000
_PROVIDER_ENTRIES = ("SELECT count(*) FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id "
                     "WHERE a.provider_id = %s")


def _entries(provider_id: str) -> str:
    return ("'[{\"kind\": \"platform_cash\", \"provider_id\": null, \"currency\": \"EUR\", \"amount\": 2500},"
            f" {{\"kind\": \"provider_pending\", \"provider_id\": \"{provider_id}\", \"currency\": \"EUR\","
            " \"amount\": -2250},"
            " {\"kind\": \"platform_commission\", \"provider_id\": null, \"currency\": \"EUR\","
            " \"amount\": -250}]'::jsonb")


def write_scripts(directory: Path, provider_id: str, accounts: dict[str, int]) -> dict[str, Path]:
    key = "('bench:' || CAST(:client_id AS text) || ':' || CAST(:n AS text))"
    post = render("ledger_post", {"key": key, "kind": "'capture'", "booking_id": "NULL", "payout_id": "NULL",
                                  "external_ref": "NULL", "description": "NULL", "entries": _entries(provider_id)})
    direct = [
        "BEGIN;",
        "INSERT INTO ledger_transactions (idempotency_key, kind, fingerprint) "
        f"VALUES ({key} || '-direct', 'capture', sha256({key}::bytea)) RETURNING id AS txn \\gset",
        "INSERT INTO ledger_entries (transaction_id, account_id, amount, currency) VALUES "
        f"(CAST(:txn AS bigint), {accounts['platform_cash']}, 2500, 'EUR'), "
        f"(CAST(:txn AS bigint), {accounts['provider_pending']}, -2250, 'EUR'), "
        f"(CAST(:txn AS bigint), {accounts['platform_commission']}, -250, 'EUR');",
        "COMMIT;",
    ]
    paths = {"ledger_post": directory / "ledger_post.sql", "ledger_direct": directory / "ledger_direct.sql"}
    paths["ledger_post"].write_text("\\set n :n + 1\n" + post + "\n")
    paths["ledger_direct"].write_text("\\set n :n + 1\n" + "\n".join(direct) + "\n")
    return paths


def accounts(url: str, provider_id: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {kind: one_row(conn, "SELECT ledger_account(%s, %s, 'EUR')",
                              (kind, None if kind.startswith("platform_") else provider_id))[0]
                for kind in ("platform_cash", "provider_pending", "platform_commission")}


def fill(url: str, provider_id: str, say: Callable[[str], None]) -> int:
    """Top the provider's accounts up to STATEMENT_ENTRIES entries (captures posted through ledger_post)."""
    with psycopg.connect(url, autocommit=True) as conn:
        have = one_row(conn, _PROVIDER_ENTRIES, (provider_id,))[0]
        missing = max(0, STATEMENT_ENTRIES - have)
        say(f"ledger: posting {missing} more captures so the provider has {STATEMENT_ENTRIES} entries ...")
        for start in range(0, missing, 10_000):
            conn.execute(
                "SELECT ledger_post('fill:' || g, 'capture', NULL, NULL, NULL, NULL, jsonb_build_array("
                "jsonb_build_object('kind', 'platform_cash', 'provider_id', NULL, 'currency', 'EUR', 'amount', 2500),"
                " jsonb_build_object('kind', 'provider_pending', 'provider_id', %s::text, 'currency', 'EUR',"
                " 'amount', -2250),"
                " jsonb_build_object('kind', 'platform_commission', 'provider_id', NULL, 'currency', 'EUR',"
                " 'amount', -250)))"
                " FROM generate_series(%s::int, %s::int) g", (provider_id, start, min(missing, start + 10_000) - 1))
        conn.execute("ANALYZE ledger_entries")
        return int(one_row(conn, _PROVIDER_ENTRIES, (provider_id,))[0])


def read_times(url: str, provider_id: str, runs: int = 20) -> dict[str, Any]:
    """p50/p99 of the statement (a window of the last day, running balance over all earlier entries), the
    whole-history statement (first 5,000 rows) and the balance, at 100k entries."""
    out: dict[str, Any] = {}
    with psycopg.connect(url, row_factory=dict_row, autocommit=True) as conn:
        span = one_row(conn, "SELECT min(created_at) AS lo, max(created_at) AS hi FROM ledger_entries")
        cases = {
            "statement_last_day": ("provider_statement", {"provider_id": provider_id, "from": span["hi"] - _day(),
                                                          "to": span["hi"] + _day(), "limit": 5001}),
            "statement_all_first_page": ("provider_statement", {"provider_id": provider_id, "from": span["lo"],
                                                                "to": span["hi"] + _day(), "limit": 5001}),
            "balance": ("provider_balances", {"provider_id": provider_id}),
        }
        for name, (query, params) in cases.items():
            timings = []
            for _ in range(runs):
                started = time.perf_counter()
                conn.execute(QUERIES[query], params).fetchall()
                timings.append((time.perf_counter() - started) * 1000)
            timings.sort()
            out[name] = {"p50_ms": round(statistics.median(timings), 2),
                         "p99_ms": round(timings[min(len(timings) - 1, int(len(timings) * 0.99))], 2)}
    return out


def _day() -> timedelta:
    return timedelta(days=1)


def run(url: str, work: Path, seconds: int, resources: list[dict[str, str]], *, entries: int) -> dict[str, Any]:
    """The ledger figures behind the agreed interface (bench/run.py calls this): ledger_post against direct
    inserts (pgbench), then balance and statement reads with ``entries`` entries on one provider. A thin
    wrapper over the functions above; a statement's figures are the slower of its two pages."""
    from bench.bookings import say
    from bench.run import _pgbench  # here, not at the top: bench.run imports this module

    global STATEMENT_ENTRIES
    with psycopg.connect(url, autocommit=True) as conn:
        provider_id = str(one_row(conn, "SELECT id FROM providers WHERE slug = 'bench-salon'")[0])
    scripts = write_scripts(work / "pgbench", provider_id, accounts(url, provider_id))
    post = _pgbench(url, scripts["ledger_post"], seconds, resources)
    direct = _pgbench(url, scripts["ledger_direct"], seconds, resources)
    kept, STATEMENT_ENTRIES = STATEMENT_ENTRIES, entries
    try:
        have = fill(url, provider_id, say)
    finally:
        STATEMENT_ENTRIES = kept
    reads = read_times(url, provider_id)
    pages = (reads["statement_last_day"], reads["statement_all_first_page"])
    return {"entries": have, "post_tps": post["tps"], "direct_tps": direct["tps"],
            "post_over_direct": post["tps"] / direct["tps"],
            "balance_p50_ms": reads["balance"]["p50_ms"], "balance_p99_ms": reads["balance"]["p99_ms"],
            "statement_p50_ms": max(page["p50_ms"] for page in pages),
            "statement_p99_ms": max(page["p99_ms"] for page in pages)}
